"""What a sweep's results store holds, as typed records: the input of ``gannorm report``."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunRow:
    """One run of a sweep (a row of the store's ``runs`` table)."""
    run_id: str                          # stable: a hash of the resolved config
    variant: str                         # the variant's name ("base" when the sweep has none)
    cell: dict[str, Any]                 # the grid cell: {"optim.lr_d": 2e-4, ...} ({} without a grid)
    seed: int
    status: str                          # finished, diverged, failed, running, pending, damaged
    final: dict[str, float] = field(default_factory=dict)  # the last evaluation: {"cfd": 3.1, "cis": 8.2, ...}
    error: str | None = None             # why a run failed or diverged
    run_dir: str = ""                    # its run folder (samples.png, metrics.jsonl, ...)
    seconds: float | None = None         # training wall time
    damaged: str | None = None           # which records of its run folder were unreadable, and what was recovered


@dataclass
class SweepResults:
    """Everything the report needs from a sweep."""
    name: str
    metric: str                          # the headline metric, e.g. "cfd"
    lower_is_better: bool                # from the metric's registry entry
    success: dict[str, float]            # what counts as success: {"max": 10.0} and/or {"min": ...} on the metric
    grid_keys: list[str]                 # the grid's config keys, in the sweep file's order
    variants: list[str]                  # in the sweep file's order
    runs: list[RunRow]
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # run_id -> [(step, metric)]
    health: dict[str, list[dict[str, Any]]] = field(default_factory=dict)     # run_id -> [{step, rule, layer, message}]
