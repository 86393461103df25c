"""Every Examples section of bnlib's docstrings runs, and every module has some."""

import doctest
import importlib

import numpy as np
import pytest

MODULES = ["functional", "layers", "nn", "optim", "gradcheck", "train", "module"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"bnlib.{name}")
    result = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.ELLIPSIS, verbose=False)
    assert result.attempted > 0, f"bnlib.{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in bnlib.{name}"
