"""Which run folder holds each run of a sweep: its own, or an ended one whose id has changed since.

A run's id hashes its resolved config (:func:`~gannorm.app.sweep.spec.id_values`), so editing a sweep
file (a fixed variant, an extra metric) changes the ids of the runs it touches. The runs trained under the
old ids are not lost: each run folder's ``tags.json`` says which variant, grid cell and seed it is. A run
of today's sweep whose own folder ``runs/<id>`` does not exist is placed in an *ended* (finished, diverged,
failed) run folder with the same variant, cell and seed: it is recorded and reported under that folder's
id and not trained again, with a one-line note naming the config keys that differ from today's sweep file.
Partial run folders under old ids are left alone (their checkpoint belongs to another config).
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ... import config as config_mod
from ...runfolder import STATUS, RunFolder
from .spec import NOT_IN_ID, RunSpec, SweepSpec, run_config
from .worker import ENDED

#: the most differing keys a note names (then "and N more")
NOTE_KEYS = 4


def _tag_key(variant: Any, cell: Any, seed: Any) -> tuple[str, str, int] | None:
    """(variant, cell as canonical JSON, seed), or None when the values are not a sweep run's tags."""
    if (not isinstance(variant, str) or not isinstance(cell, dict) or isinstance(seed, bool)
            or not isinstance(seed, int)):
        return None
    return variant, json.dumps(cell, sort_keys=True, default=str), seed


def ended_by_tags(runs_dir: Path, skip: set[str]) -> dict[tuple[str, str, int], Path]:
    """The ended run folders under ``runs_dir`` (less the names in ``skip``) by their tags; of two with the
    same tags, the one whose status was written last."""
    found: dict[tuple[str, str, int], Path] = {}
    for path in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        if path.name in skip or not path.is_dir():
            continue
        folder = RunFolder(path)
        status = folder.read_status()
        tags = folder.read_tags()
        key = _tag_key(tags.get("variant"), tags.get("cell"), tags.get("seed"))
        if status is None or status.status not in ENDED or key is None:
            continue
        if key not in found or (path / STATUS).stat().st_mtime > (found[key] / STATUS).stat().st_mtime:
            found[key] = path
    return found


def _flat(values: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(values, dict):
        return {prefix: values}
    out: dict[str, Any] = {}
    for key, value in values.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return {k.rstrip("."): v for k, v in out.items()}


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The dotted config keys whose values differ between two configs as dicts (``config.yaml`` and today's
    resolved config), less the keys that do not change what a run computes (:data:`NOT_IN_ID`).

    Args:
        old: a run folder's config as read from its ``config.yaml``.
        new: today's config of the same run, :func:`gannorm.config.to_dict`.

    Returns:
        Sorted keys such as ``["optim.lr_d", "normalization.options.scale"]``.

    Example::

        config_differences({"optim": {"lr_d": 2e-4}}, {"optim": {"lr_d": 1e-3}})   # ['optim.lr_d']
    """
    a, b = (_flat(json.loads(json.dumps(c, default=str))) for c in (old, new))
    ignored = tuple(NOT_IN_ID)
    return sorted(k for k in a.keys() | b.keys()
                  if a.get(k) != b.get(k) and not any(k == i or k.startswith(f"{i}.") for i in ignored))


def _note(run: RunSpec, path: Path, keys: list[str]) -> str:
    where = f"variant {run.variant}, seed {run.seed}" + (f", {json.dumps(run.cell)}" if run.cell else "")
    named = ", ".join(keys[:NOTE_KEYS]) + (f" and {len(keys) - NOTE_KEYS} more" if len(keys) > NOTE_KEYS else "")
    differs = f"its config differs from today's sweep file in {named}" if keys else "its config matches today's"
    return (f"gannorm: kept {path.name} ({where}) under its id, not trained again: {differs} (today's id "
            f"{run.run_id}; delete {path} to train it again)")


def place_runs(spec: SweepSpec, runs: Sequence[RunSpec], runs_dir: Path,
               announce: Callable[[str], None] = lambda _msg: None) -> list[RunSpec]:
    """Today's runs, each with the id of the run folder that holds it (see the module's docstring).

    Args:
        spec: the sweep.
        runs: its expansion (:func:`~gannorm.app.sweep.spec.expand`).
        runs_dir: the sweep folder's ``runs/``.
        announce: gets one line per run kept under an old id.

    Returns:
        ``runs``, with the run id of each run kept under an old id replaced by that id.

    Example::

        runs = place_runs(spec, expand(spec), Path("runs/sweep-x/runs"), announce=print)
    """
    today = {run.run_id for run in runs}
    old = ended_by_tags(runs_dir, today)
    out = []
    for run in runs:
        key = _tag_key(run.variant, run.cell, run.seed)
        path = old.pop(key, None) if key is not None and not (runs_dir / run.run_id).exists() else None
        if path is None:
            out.append(run)
            continue
        keys = config_differences(RunFolder(path).read_config_dict(), config_mod.to_dict(run_config(spec, run)))
        announce(_note(run, path, keys))
        out.append(dataclasses.replace(run, run_id=path.name))
    return out


__all__ = ["config_differences", "ended_by_tags", "place_runs"]
