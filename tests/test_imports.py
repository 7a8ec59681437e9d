"""Importing a library loads no layer above it: ``import gannorm.normalizations`` (or ``import gannorm``) loads
neither the trainer, the config, the run folder, the data, the metrics nor the commands; ``gannorm.train`` and the
other application names load on first use (module ``__getattr__``)."""
from __future__ import annotations

import json
import subprocess
import sys

ABOVE = ("gannorm.training", "gannorm.config", "gannorm.runfolder", "gannorm.app", "gannorm.data", "gannorm.metrics",
         "gannorm.cli", "gannorm.yamlsafe", "yaml", "matplotlib", "sklearn", "scipy")

PROBE = """
import json, sys
import {module}
loaded = sorted(m for m in sys.modules if m.startswith({above!r}))
import gannorm
train = gannorm.train  # the lazy name resolves
print(json.dumps({{"loaded": loaded, "after": "gannorm.training" in sys.modules, "name": train.__module__}}))
"""


def loaded_by(module: str) -> dict:
    out = subprocess.run([sys.executable, "-c", PROBE.format(module=module, above=ABOVE)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def test_libraries_load_nothing_above_them():
    for module in ("gannorm", "gannorm.normalizations", "gannorm.gradnorm", "gannorm.penalties", "gannorm.augment"):
        result = loaded_by(module)
        assert result["loaded"] == [], (module, result["loaded"])
        assert result["after"] and result["name"] == "gannorm.app.training"


def test_unknown_names_are_still_attribute_errors():
    import gannorm
    try:
        gannorm.no_such_thing  # noqa: B018
    except AttributeError as err:
        assert "no_such_thing" in str(err)
    else:
        raise AssertionError("gannorm.no_such_thing did not raise")
    assert {"train", "resume", "RunFolder", "RunResult"} <= set(dir(gannorm))
