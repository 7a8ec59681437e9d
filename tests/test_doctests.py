"""The examples in the library's docstrings run: every ``>>>`` line of the modules below is a doctest, and every
public function of those modules documents its arguments and shows an example (the torch style: ``Args:``,
``Returns:``, ``Example::``).

The README's test command (``python -m pytest -q``) collects this file, so CI runs the examples. Each module's
examples run with the global RNG state saved and restored around them, so they leave no trace on other tests.
"""
from __future__ import annotations

import doctest
import importlib
import inspect
import io

import numpy as np
import pytest
import torch

#: the library modules whose docstring examples run (the pure functions of the library layer)
MODULES = (
    "gannorm.normalizations.model", "gannorm.normalizations.spectral", "gannorm.normalizations.bidirectional",
    "gannorm.normalizations.strict", "gannorm.normalizations.depthwise", "gannorm.normalizations.weight_norm",
    "gannorm.normalizations.convert", "gannorm.normalizations.options", "gannorm.normalizations.gamma",
    "gannorm.normalizations.mean_sn", "gannorm.normalizations.layers", "gannorm.normalizations.power_iteration",
    "gannorm.gradnorm", "gannorm.penalties", "gannorm.init", "gannorm.augment",
    "gannorm.metrics.frechet", "gannorm.metrics.inception_score", "gannorm.metrics.kid", "gannorm.metrics.mixtures",
    "gannorm.stability",
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
#: names every example may use without importing them (as in torch's docstrings)
GLOBS = {"torch": torch, "nn": torch.nn, "np": np}


def public_functions(module) -> list[tuple[str, object]]:
    return [(name, obj) for name, obj in vars(module).items()
            if not name.startswith("_") and inspect.isfunction(obj) and obj.__module__ == module.__name__]


@pytest.mark.parametrize("name", MODULES)
def test_the_examples_run(name):
    module = importlib.import_module(name)
    tests = [t for t in doctest.DocTestFinder().find(module, extraglobs=GLOBS) if t.examples]
    assert tests, f"{name} has no examples"
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    state = torch.random.get_rng_state()
    try:
        for test in tests:
            runner.run(test, out=out.write)
    finally:
        torch.random.set_rng_state(state)
    assert runner.failures == 0, out.getvalue()


@pytest.mark.parametrize("name", MODULES)
def test_every_public_function_has_args_and_a_running_example(name):
    module = importlib.import_module(name)
    for fn_name, fn in public_functions(module):
        doc = inspect.getdoc(fn) or ""
        assert "Example::" in doc and ">>>" in doc, f"{name}.{fn_name}: no Example:: section with >>> lines"
        if inspect.signature(fn).parameters:
            assert "Args:" in doc, f"{name}.{fn_name}: no Args: section"


def test_a_wrong_example_fails():
    """The runner used above does report a wrong output (so a passing run means the outputs match)."""
    def bad():
        """
        >>> 1 + 1
        3
        """
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in doctest.DocTestFinder().find(bad, "bad", globs={}):
        runner.run(test, out=lambda _: None)
    assert runner.failures == 1
