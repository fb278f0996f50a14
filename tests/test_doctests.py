"""The `>>>` examples in every module's docstrings run and give what they show."""
import doctest
import importlib
import pkgutil

import pytest

import mothello_fast
import mothello_fast.kernels

# the package itself, its modules, and the kernels (which live outside the package's
# directory, in kernels/, so that walking mothello_fast.__path__ does not reach them)
MODULES = ["mothello_fast", "mothello_fast.kernels"] + sorted(
    m.name for package in (mothello_fast, mothello_fast.kernels)
    for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    if result.attempted == 0:
        pytest.skip(f"{name} has no examples")
    assert result.failed == 0
