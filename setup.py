"""Builds the Cython extension only; all metadata lives in pyproject.toml."""
import platform

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

compile_args = ["-O3"]
if platform.machine() in ("x86_64", "AMD64"):
    # popcnt and friends: every x86-64 CPU since 2009 has them, and the
    # bitboard core counts bits on every ply.
    compile_args.append("-march=x86-64-v2")

engine = Extension(
    "mothello_fast._engine",
    sources=["csrc/_engine.pyx"],
    include_dirs=["csrc", numpy.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    extra_compile_args=compile_args,
)

setup(ext_modules=cythonize([engine], compiler_directives={"language_level": 3}))
