"""Test configuration shared by every test file.

Without CUDA, Triton kernels run under its interpreter on CPU tensors; Triton
reads TRITON_INTERPRET when a kernel is defined, so it is set here, before any
test module imports the kernels.
"""
import os
import shutil

if shutil.which("nvidia-smi") is None and not os.environ.get("CUDA_VISIBLE_DEVICES"):
    os.environ.setdefault("TRITON_INTERPRET", "1")
