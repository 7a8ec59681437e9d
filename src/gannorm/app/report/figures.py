"""The report's figures, as PNG bytes: metric vs each grid key, metric over training, sample grids.

Drawn with matplotlib's object API (``Figure`` and the Agg canvas, no pyplot state), imported when a
figure is made. Each ``*_figure`` function returns a :class:`Picture`, or None when the sweep has none
of its data.
"""
from __future__ import annotations

import io
import math
import numbers
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np
from PIL import Image

from ...runfolder import RunFolder
from ..sweep.results import SweepResults
from .groups import Cell, Groups, cell_label, cell_of, format_value, median_run, run_value, variants

_DPI = 80
_LOG_SPAN = 10.0          # a numeric grid axis spanning more than this factor is drawn on a log scale


@dataclass(frozen=True)
class Picture:
    """One image of the page: PNG bytes, a title and a caption."""
    title: str
    caption: str
    png: bytes


def _figure(nrows: int, ncols: int, width: float = 5.6, height: float = 3.8):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, list(axes)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _quartiles(values: Sequence[float]) -> tuple[float, float, float] | None:
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return None
    return cast("tuple[float, float, float]", tuple(float(q) for q in np.quantile(x, [0.25, 0.5, 0.75])))


# ----------------------------------------------------------------------------------- metric vs a grid key
def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _x_axis(ax, key: str, values: list[Any]) -> dict[Any, float]:
    """Positions of the key's values on the x axis: numeric (log when positive over > 10x) or categorical."""
    if all(_is_number(v) for v in values):
        if min(values) > 0 and max(values) / min(values) > _LOG_SPAN:
            ax.set_xscale("log")
        ax.set_xlabel(key + (" (log scale)" if ax.get_xscale() == "log" else ""))
        return {v: float(v) for v in values}
    labels = sorted(values, key=str)
    ax.set_xticks(range(len(labels)), [format_value(v) for v in labels])
    ax.set_xlabel(key)
    return {v: float(i) for i, v in enumerate(labels)}


def grid_figure(results: SweepResults, groups: Groups, index: int) -> Picture | None:
    """The metric's median (IQR error bars) against grid key ``index``, one line per variant and per value
    of the other keys."""
    key = results.grid_keys[index]
    fig, (ax,) = _figure(1, 1, width=7.0, height=4.2)
    xs = _x_axis(ax, key, list(dict.fromkeys(cell[index] for cell in groups.cells)))
    drawn = 0
    for variant in variants(results):
        for rest, cells in _lines(groups.cells, index).items():
            points = [(xs[c[index]], q) for c in cells if (q := _quartiles(list(groups.of(variant, c).values())))]
            if points:
                drawn += 1
                _error_line(ax, points, variant + "".join(f", {k}={format_value(v)}" for k, v in
                                                          zip(_other_keys(results, index), rest)))
    if not drawn:
        return None
    ax.set_ylabel(f"final {results.metric} (median, IQR)")
    ax.legend(fontsize="small")
    ax.set_title(f"final {results.metric} vs {key}")
    return Picture(f"{results.metric} vs {key}", f"Median and interquartile range over seeds of the final "
                   f"{results.metric} for each value of {key}; cells where no run finished are not drawn.", _png(fig))


def _lines(cells: list[Cell], index: int) -> dict[tuple, list[Cell]]:
    """Cells grouped by their values of the other grid keys (one line each), in grid order."""
    out: dict[tuple, list[Cell]] = {}
    for cell in cells:
        out.setdefault(cell[:index] + cell[index + 1:], []).append(cell)
    return out


def _other_keys(results: SweepResults, index: int) -> list[str]:
    return results.grid_keys[:index] + results.grid_keys[index + 1:]


def _error_line(ax, points: list[tuple[float, tuple[float, float, float]]], label: str) -> None:
    points.sort(key=lambda p: p[0])
    x = [p[0] for p in points]
    q1, med, q3 = (np.array([p[1][i] for p in points]) for i in range(3))
    ax.errorbar(x, med, yerr=[med - q1, q3 - med], marker="o", capsize=4, label=label)


# ----------------------------------------------------------------------------------- metric over training
def training_figure(results: SweepResults, groups: Groups) -> Picture | None:
    """Per grid cell, each variant's metric over training: the median across seeds and the IQR band."""
    cells = [c for c in groups.cells if any(_series(results, groups, v, c) for v in variants(results))]
    if not cells:
        return None
    ncols = min(3, len(cells))
    fig, axes = _figure(math.ceil(len(cells) / ncols), ncols)
    colors = {v: f"C{i % 10}" for i, v in enumerate(variants(results))}
    for ax, cell in zip(axes, cells):
        for variant in variants(results):
            _band(ax, _series(results, groups, variant, cell), variant, colors[variant])
        ax.set_title(cell_label(results, cell), fontsize="small")
        ax.set_xlabel("step")
        ax.set_ylabel(results.metric)
        ax.legend(fontsize="small")
    for ax in axes[len(cells):]:
        ax.set_visible(False)
    return Picture(f"{results.metric} over training", f"Median across seeds (line) and interquartile range "
                   f"(band) of {results.metric} during training, per grid cell.", _png(fig))


def _series(results: SweepResults, groups: Groups, variant: str, cell: Cell) -> list[list[tuple[int, float]]]:
    runs = groups.runs.get((variant, cell), [])
    return [results.series[r.run_id] for r in runs if results.series.get(r.run_id)]


def _band(ax, series: list[list[tuple[int, float]]], label: str, color: str) -> None:
    if not series:
        return
    steps = sorted({int(s) for run in series for s, _ in run})
    col = {s: i for i, s in enumerate(steps)}
    grid = np.full((len(series), len(steps)), np.nan)
    for i, run in enumerate(series):
        for s, v in run:
            grid[i, col[int(s)]] = v if v is not None and math.isfinite(v) else np.nan
    seen = np.isfinite(grid).any(axis=0)
    x, grid = np.asarray(steps)[seen], grid[:, seen]
    q1, med, q3 = np.nanquantile(grid, [0.25, 0.5, 0.75], axis=0)
    marker = "o" if len(x) < 12 else None  # a run evaluated only a few times still shows its points
    ax.plot(x, med, color=color, marker=marker, label=f"{label} ({len(series)} runs)")
    if len(x) > 1:
        ax.fill_between(x, q1, q3, color=color, alpha=0.25, linewidth=0)
    else:
        ax.errorbar(x, med, yerr=[med - q1, q3 - med], color=color, capsize=4, linewidth=0)


# ----------------------------------------------------------------------------------- sample grids
def sample_pictures(results: SweepResults) -> list[tuple[str, Picture | None, str]]:
    """``(variant, Picture or None, why not)`` per variant: the sample grid of its median run."""
    return [(variant, *_samples_of(results, variant)) for variant in variants(results)]


def _samples_of(results: SweepResults, variant: str) -> tuple[Picture | None, str]:
    run = median_run(results, variant)
    if run is None:
        return None, "no run finished with a metric"
    if not run.run_dir:
        return None, f"run {run.run_id} has no run folder"
    path = RunFolder(run.run_dir).samples_file
    png = _read_png(path)
    if png is None:
        return None, f"{path} is missing or not a readable PNG"
    caption = (f"{variant}: run {run.run_id}, {cell_label(results, cell_of(results, run))}, seed {run.seed}, "
               f"{results.metric} = {run_value(results, run):.4g} (the median of its finished runs)")
    return Picture(f"samples of {variant}", caption, png), ""


def _read_png(path: Path) -> bytes | None:
    """The file's bytes when it is a complete PNG image, else None (missing, truncated, another format)."""
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                return None
            img.load()
    except (OSError, SyntaxError, ValueError):
        return None
    return data
