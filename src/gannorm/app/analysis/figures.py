"""Figure plumbing shared by ``gannorm analyze`` and ``gannorm experiment``: headless, atomic PNGs.

Figures are built with matplotlib's object API (``Figure`` plus the Agg canvas, no pyplot state), so
they work headless and from threads. matplotlib is imported when a figure is made.
"""
from __future__ import annotations

import io
from pathlib import Path

from ...fileio import atomic_write


def new_figure(ncols: int, width: float = 6.0, height: float = 4.4):
    """A ``Figure`` with ``ncols`` side-by-side axes (grid on) and the list of those axes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width * ncols, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
    return fig, list(axes)


def save_png(fig, path: Path) -> Path:
    """Write ``fig`` as a PNG through a temporary file (never a truncated PNG); returns ``path``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    atomic_write(path, lambda fh: fh.write(data))
    return path
