"""``gannorm report``: a sweep's stability statistics as one self-contained web page, and as text.

The input is a sweep's :class:`~gannorm.app.sweep.results.SweepResults`. :mod:`.groups` groups the
runs by variant, grid cell and seed; :mod:`.tables` computes the statistics (with
:mod:`gannorm.stability`) into typed tables; :mod:`.figures` draws the figures as PNG bytes;
:mod:`.page` writes the HTML. :func:`render` writes the page, :func:`terminal_table` returns the
stability table as plain text.
"""
from __future__ import annotations

from ..sweep.results import SweepResults
from .groups import group
from .page import PAGE_NAME, page_html, render, report_path
from .tables import Table, all_tables, damaged_lines, stability_table, text_table

__all__ = ["PAGE_NAME", "Table", "all_tables", "page_html", "render", "report_path", "terminal_table"]


def terminal_table(results: SweepResults) -> str:
    """The stability table (per variant and grid cell) as aligned plain text, with its reading note, then a
    line per variant with damaged run folders (if any)."""
    table = stability_table(results, group(results))
    return "\n".join([f"{table.title}: {results.name}", text_table(table), table.note, *damaged_lines(results)])
