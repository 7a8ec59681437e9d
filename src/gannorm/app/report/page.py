"""The report as one self-contained HTML page: inline CSS, images as ``data:`` URIs, nothing from the network.

The page reads without JavaScript. Its one inline script only counts, once the page has loaded, the
images that decoded and the tables that laid out, into ``data-*`` attributes of ``<body>``
(``data-images-ok="5/5"``), so a headless browser can check the page rendered. A Content-Security-Policy
``<meta>`` forbids every fetch but ``data:`` images.
"""
from __future__ import annotations

import base64
import html
import os
from pathlib import Path

from ...errors import GannormError
from ...fileio import atomic_write_text
from ..sampling import prepare_output
from ..sweep.results import SweepResults
from ..sweep.runner import owns
from .figures import Picture, grid_figure, sample_pictures, training_figure
from .groups import Groups, group, variants
from .tables import Table, all_tables, rule_of

PAGE_NAME = "report.html"

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

_CSS = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; vertical-align: top; }
th { background: #f2f2f2; text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
p.note, figcaption { color: #555; font-size: .9em; max-width: 60em; }
figure { margin: 1em 0; } img { max-width: 100%; }
.samples { display: flex; flex-wrap: wrap; gap: 1.5em; }
.samples img { width: 256px; image-rendering: pixelated; border: 1px solid #ccc; }
.samples figure { max-width: 280px; }
"""

_CHECK = """
window.addEventListener("load", function () {
  var imgs = document.images, ok = 0, tables = document.getElementsByTagName("table"), shown = 0;
  for (var i = 0; i < imgs.length; i++) if (imgs[i].complete && imgs[i].naturalWidth > 0) ok++;
  for (var j = 0; j < tables.length; j++) if (tables[j].offsetHeight > 0 && tables[j].rows.length > 1) shown++;
  document.body.dataset.imagesOk = ok + "/" + imgs.length;
  document.body.dataset.tablesOk = shown + "/" + tables.length;
});
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def table_html(table: Table) -> str:
    """``table`` as HTML (``id="table-<id>"``), or a line saying there is nothing to show."""
    if not table.rows:
        return f'<p class="empty" id="table-{esc(table.id)}-empty">Nothing to show: no rows.</p>'
    numeric = table.numeric or [False] * len(table.header)
    head = "".join(f"<th>{esc(h)}</th>" for h in table.header)
    body = "".join("<tr>" + "".join(f'<td{" class=num" if n else ""}>{esc(c)}</td>' for c, n in zip(row, numeric))
                   + "</tr>\n" for row in table.rows)
    return f'<table id="table-{esc(table.id)}">\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody></table>'


def picture_html(picture: Picture, cls: str = "") -> str:
    data = base64.b64encode(picture.png).decode("ascii")
    return (f'<figure><img{f" class={cls}" if cls else ""} alt="{esc(picture.title)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{esc(picture.caption)}</figcaption></figure>')


def section(id_: str, title: str, body: str, note: str = "") -> str:
    note_html = f'<p class="note">{esc(note)}</p>\n' if note else ""
    return f'<section id="{esc(id_)}">\n<h2>{esc(title)}</h2>\n{note_html}{body}\n</section>\n'


def _table_section(table: Table) -> str:
    return section(table.id, table.title, table_html(table), table.note)


def _figure_sections(results: SweepResults, groups: Groups) -> list[str]:
    grids = [p for i in range(len(results.grid_keys)) if (p := grid_figure(results, groups, i))]
    training = training_figure(results, groups)
    samples = sample_pictures(results)
    sample_body = "".join(picture_html(p, "samples") if p else
                          f'<figure><figcaption>{esc(v)}: {esc(why)}</figcaption></figure>' for v, p, why in samples)
    return [
        section("grid", f"{results.metric} vs the grid",
                "\n".join(picture_html(p) for p in grids) or "<p>No grid, or no run finished.</p>"),
        section("training", f"{results.metric} over training",
                picture_html(training) if training else "<p>No run recorded the metric during training.</p>"),
        section("samples", "Samples of each variant's median run", f'<div class="samples">{sample_body}</div>'),
    ]


def _overview(results: SweepResults) -> str:
    done = sum(r.status in ("finished", "diverged", "failed") for r in results.runs)
    damaged = sum(r.damaged is not None for r in results.runs)
    items = [("metric", f"{results.metric} ({'lower' if results.lower_is_better else 'higher'} is better)"),
             ("runs", f"{len(results.runs)} ({done} done" + (f"; {damaged} with damaged records, see \"Damaged run "
                                                             "folders\")" if damaged else ")")),
             ("variants", ", ".join(variants(results))),
             ("grid", ", ".join(results.grid_keys) or "none"), ("success", str(rule_of(results)))]
    return "<ul>" + "".join(f"<li><b>{esc(k)}</b>: {esc(v)}</li>" for k, v in items) + "</ul>"


def page_html(results: SweepResults) -> str:
    """The whole page as a string."""
    groups = group(results)
    tables = {t.id: _table_section(t) for t in all_tables(results, groups)}
    grid, training, samples = _figure_sections(results, groups)
    body = [tables["stability"], tables["paired"], tables["noise"], grid, training, tables["failures"],
            *([tables["damaged"]] if "damaged" in tables else []), tables["health"], samples]
    title = f"Sweep {results.name}: stability report"
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
            f'<style>{_CSS}</style>\n</head>\n<body>\n<h1>{esc(title)}</h1>\n{_overview(results)}\n'
            + "".join(body) + f"<script>{_CHECK}</script>\n</body>\n</html>\n")


def report_path(folder: str | os.PathLike, output: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Where ``gannorm report DIR [-o OUTPUT]`` writes its page, checked before anything is written.

    Without ``output``: ``DIR/report.html``, the sweep's own page, replaced each time. An ``output`` folder
    means ``output/report.html``. Any other file must be a new ``.html`` file (an existing one only with
    ``overwrite``), and never one of the sweep folder's own records (``sweep.json``, the store, anything
    under ``runs/``: :func:`gannorm.app.sweep.owns`), even with ``overwrite``.

    Args:
        folder: the sweep folder.
        output: ``-o``, or None.
        overwrite: whether an existing ``output`` may be replaced.

    Returns:
        The page's path.

    Raises:
        GannormError: one line naming the file and what to do instead.

    Example::

        render(results, report_path("runs/sweep-x", "page.html", overwrite=True))
    """
    own = Path(folder) / PAGE_NAME
    if output is None:
        return own
    path = Path(output).expanduser()
    if path.is_dir():
        path = path / PAGE_NAME
    if os.path.realpath(path) == os.path.realpath(own):
        return own
    if owns(Path(folder), path):
        raise GannormError(f"output {path} is one of the sweep folder's own records (sweep.json, the results store, "
                           f"the run folders), which the report never writes over; give -o a new .html file")
    return prepare_output(path, ".html", overwrite)


def render(results: SweepResults, out: str | os.PathLike) -> Path:
    """Write the report page to ``out`` (a file, or ``out/report.html`` when ``out`` is a folder); returns
    its path. The page is written atomically: a crash leaves the previous report."""
    path = Path(out)
    if path.is_dir():
        path = path / PAGE_NAME
    atomic_write_text(path, page_html(results))
    return path
