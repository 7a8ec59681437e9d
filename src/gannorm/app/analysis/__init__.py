"""``gannorm analyze RUN``: figures and a Markdown summary of a run folder's diagnostics.

The work is split in four: :mod:`.reading` reads the run folder into typed records (one per step),
:mod:`.series` turns records into series (pure functions), :mod:`.plots` draws one figure per function,
:mod:`.summary` writes the Markdown. :func:`analyze` writes every figure the run has data for, and
``summary.md``, into the run's ``analysis/`` folder.
"""
from __future__ import annotations

import os
from contextlib import nullcontext
from pathlib import Path

from ...fileio import atomic_write_text
from ...runfolder import RunFolder
from .plots import FIGURES
from .reading import NO_DIAGNOSTICS_HINT, load_run
from .summary import summarize

SUMMARY = "summary.md"

__all__ = ["FIGURES", "NO_DIAGNOSTICS_HINT", "SUMMARY", "analyze", "load_run", "summarize"]


def analyze(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Write the figures for which the run has data and ``summary.md`` into ``run_dir/analysis`` (or
    ``out_dir``); returns the files written, ``summary.md`` last. Prints nothing. Writing into the run folder,
    it holds the folder's lock (another writer there is a one-line :class:`~gannorm.errors.RunFolderError`)."""
    run = load_run(run_dir)
    folder = RunFolder(run.path)
    out = Path(out_dir) if out_dir is not None else folder.analysis_dir
    # RUN/analysis: one writer at a time in a run folder
    with folder.locked("or write the analysis elsewhere with -o DIR") if folder.contains(out) else nullcontext():
        out.mkdir(parents=True, exist_ok=True)
        written = [path for name, plot in FIGURES.items() if (path := plot(run, out / name)) is not None]
        summary = out / SUMMARY
        atomic_write_text(summary, summarize(run, written))
    return [*written, summary]
