"""Every family's registry is available the same way, as ``gannorm.<NAME>``: the very object its module defines, the
light ones loaded with ``import gannorm``, the heavier ones on first use; no registry of a library module is left
out."""
from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

import gannorm
from gannorm.registry import Registry, UnknownNameError

#: the library packages and modules whose module-level registries must all be exported
LIBRARY = ("gannorm.normalizations", "gannorm.gradnorm", "gannorm.penalties", "gannorm.init", "gannorm.losses",
           "gannorm.augment", "gannorm.networks", "gannorm.data", "gannorm.metrics")


def library_registries() -> dict[int, tuple[Registry, set[str]]]:
    """``{id: (registry, the names it has)}`` for every module-level Registry in the library modules (a former name
    such as ``gannorm.init.SCHEMES`` is the same object under a second name)."""
    found: dict[int, tuple[Registry, set[str]]] = {}
    for package in LIBRARY:
        module = importlib.import_module(package)
        names = [package]
        if hasattr(module, "__path__"):
            names += [f"{package}.{m.name}" for m in pkgutil.iter_modules(module.__path__)]
        for name in names:
            for attr, value in vars(importlib.import_module(name)).items():
                if isinstance(value, Registry):
                    found.setdefault(id(value), (value, set()))[1].add(attr)
    return found


def test_every_library_registry_is_a_top_level_name():
    found = library_registries().values()
    assert len(found) == len(gannorm.REGISTRIES)
    for registry, names in found:
        exported = names & set(gannorm.REGISTRIES)
        assert len(exported) == 1, (registry.family, names)
        name = exported.pop()
        assert getattr(gannorm, name) is registry, name
        assert name in gannorm.__all__ and name in dir(gannorm)
    assert gannorm.init.SCHEMES is gannorm.INIT_SCHEMES


@pytest.mark.parametrize("name", ["METHODS", "FUNCTIONS", "PENALTIES", "INIT_SCHEMES", "LOSSES", "NETWORKS",
                                  "DATASETS", "METRICS"])
def test_each_registry_answers_the_same_way(name):
    registry = getattr(gannorm, name)
    names = registry.names()
    assert names and all(isinstance(n, str) for n in names)
    assert all(entry.description for entry in registry.entries()), f"{name}: an entry without a description"
    with pytest.raises(UnknownNameError, match=f"^unknown {registry.family} 'no_such_entry'; known: {names[0]}"):
        registry.get("no_such_entry")


def test_the_heavy_registries_load_on_first_use_only():
    probe = ("import json, sys, gannorm\n"
             "heavy = ('gannorm.data', 'gannorm.metrics.evaluate', 'gannorm.losses')\n"
             "before = sorted(m for m in heavy if m in sys.modules)\n"
             "gannorm.METRICS\n"
             "print(json.dumps({'before': before, 'after': 'gannorm.metrics.evaluate' in sys.modules}))")
    out = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                    check=True).stdout)
    assert out == {"before": [], "after": True}


def test_registry_has_no_decorator_left():
    assert not hasattr(Registry, "decorator")  # removed: nothing registered through it
