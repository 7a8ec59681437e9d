"""A run folder's logs, read for analysis: one record per step, sorted, through :class:`RunFolder`.

:func:`load_run` reads the folder with :meth:`RunFolder.load` (which skips and counts unreadable lines,
e.g. the truncated last line of a run killed mid-write) and then keeps one record per step: a probe
recorded twice (a resumed run) counts once, the later one; rows of ``metrics.jsonl`` that share a step
(training, evaluation and diagnostics scalars) are merged into one. Health warnings are sorted by step.
"""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from ...diagnostics.records import ProbeRecord
from ...errors import RunFolderError
from ...runfolder import DIAGNOSTICS, METRICS, MetricsRow, RunFolder, RunRecords

NO_DIAGNOSTICS_HINT = "train with diagnostics.every=N (e.g. 100) to record diagnostics"


def load_run(run_dir: str | os.PathLike) -> RunRecords:
    """The logs of a run folder, one record per step (see the module docstring).

    Not a run folder, or one with neither ``diagnostics.jsonl`` nor ``metrics.jsonl``: a one-line
    :class:`~gannorm.errors.RunFolderError`.
    """
    folder = RunFolder.open(run_dir)
    if not folder.diagnostics_file.is_file() and not folder.metrics_file.is_file():
        raise RunFolderError(f"{run_dir} has no {DIAGNOSTICS} (nor {METRICS}): {NO_DIAGNOSTICS_HINT}")
    run = folder.load()
    return replace(run, diagnostics=_last_per_step(run.diagnostics), metrics=_merged_per_step(run.metrics),
                   health=sorted(run.health, key=lambda w: w.step))


def run_name(run: RunRecords) -> str:
    """The run folder's name (figure titles, the summary's heading)."""
    return Path(run.path).resolve().name


def _last_per_step(records: list[ProbeRecord]) -> list[ProbeRecord]:
    by_step = {r.step: r for r in records}
    return [by_step[s] for s in sorted(by_step)]


def _merged_per_step(rows: list[MetricsRow]) -> list[MetricsRow]:
    merged: dict[int, dict[str, float]] = {}
    for row in rows:
        merged.setdefault(row.step, {}).update(row.values)
    return [MetricsRow(s, merged[s]) for s in sorted(merged)]
