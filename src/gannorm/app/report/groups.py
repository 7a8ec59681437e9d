"""A sweep's runs grouped the way the report reads them: by variant, grid cell and seed.

A grid cell is the tuple of its values in the sweep's ``grid_keys`` order (``()`` without a grid).
Only runs that are done (finished, diverged or failed) count; a run still pending or running is left
out of the statistics and counted as "not done". The value of a run is its final headline metric when
it finished with a finite one, else NaN: a diverged or failed run is a run without a final metric.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..sweep.results import RunRow, SweepResults

DONE = ("finished", "diverged", "failed")
NAN = float("nan")

Cell = tuple


@dataclass(frozen=True)
class Groups:
    """The done runs' values: ``values[(variant, cell)] = {seed: metric or NaN}``; cells in grid order."""
    cells: list[Cell]
    values: dict[tuple[str, Cell], dict[int, float]]
    runs: dict[tuple[str, Cell], list[RunRow]]

    def of(self, variant: str, cell: Cell) -> dict[int, float]:
        return self.values.get((variant, cell), {})


def cell_of(results: SweepResults, run: RunRow) -> Cell:
    return tuple(_hashable(run.cell.get(key)) for key in results.grid_keys)


def _hashable(value: Any) -> Any:
    """A grid value usable in a dict key: lists become tuples, mappings tuples of their items."""
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple((k, _hashable(v)) for k, v in sorted(value.items()))
    return value


def cell_label(results: SweepResults, cell: Cell) -> str:
    """``optim.lr_d=0.0002, train.n_dis=2``; ``all runs`` without a grid."""
    if not results.grid_keys:
        return "all runs"
    return ", ".join(f"{key}={format_value(v)}" for key, v in zip(results.grid_keys, cell))


def format_value(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def run_value(results: SweepResults, run: RunRow) -> float:
    """The run's final headline metric, or NaN when it did not finish with a finite one."""
    value = run.final.get(results.metric) if run.status == "finished" else None
    try:
        value = float(value) if value is not None else NAN
    except (TypeError, ValueError):
        return NAN
    return value if math.isfinite(value) else NAN


def group(results: SweepResults) -> Groups:
    """Group the done runs by (variant, cell) and seed (a repeated seed keeps its last row)."""
    values: dict[tuple[str, Cell], dict[int, float]] = {}
    runs: dict[tuple[str, Cell], list[RunRow]] = {}
    cells: list[Cell] = []
    for run in results.runs:
        cell = cell_of(results, run)
        if cell not in cells:
            cells.append(cell)
        runs.setdefault((run.variant, cell), []).append(run)
        if run.status in DONE:
            values.setdefault((run.variant, cell), {})[run.seed] = run_value(results, run)
    return Groups(cells=_sorted(cells), values=values, runs=runs)


def _sorted(cells: list[Cell]) -> list[Cell]:
    """Cells in increasing grid order when their values compare, else in order of first appearance."""
    try:
        return sorted(cells)
    except TypeError:
        return cells


def variants(results: SweepResults) -> list[str]:
    """The sweep's variants in its order, then any that only the runs name."""
    names = list(results.variants)
    return names + [v for v in dict.fromkeys(r.variant for r in results.runs) if v not in names]


def keyed(results: SweepResults, groups: Groups, variant: str) -> dict[tuple[Cell, int], float]:
    """``{(cell, seed): value}`` of one variant over every cell, for a paired comparison."""
    return {(cell, seed): v for cell in groups.cells for seed, v in groups.of(variant, cell).items()}


def median_run(results: SweepResults, variant: str) -> RunRow | None:
    """The variant's run whose final metric is the median of its finished runs (the lower middle one for
    an even count, ordered from best to worst); None when none finished with a metric."""
    done = [(run_value(results, r), r) for r in results.runs if r.variant == variant]
    done = [(v, r) for v, r in done if not math.isnan(v)]
    if not done:
        return None
    done.sort(key=lambda vr: vr[0], reverse=not results.lower_is_better)
    return done[(len(done) - 1) // 2][1]
