"""The `>>>` examples in every module's docstrings run and give what they show."""
import doctest
import importlib
import pkgutil

import pytest

import mothello_fast

MODULES = sorted(m.name for m in pkgutil.walk_packages(mothello_fast.__path__, "mothello_fast.")
                 if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    if result.attempted == 0:
        pytest.skip(f"{name} has no examples")
    assert result.failed == 0
