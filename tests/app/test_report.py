"""gannorm.app.report: the stability page (tables, embedded figures and samples) and the terminal table,
from a hand-built SweepResults; then the page rendered by headless Chromium."""
import base64
import io
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from gannorm.app.report import PAGE_NAME, render, terminal_table
from gannorm.app.report.figures import _figure, _x_axis, grid_figure, training_figure
from gannorm.app.report.groups import group, median_run
from gannorm.app.sweep.results import RunRow, SweepResults
from gannorm.errors import GannormError

VARIANTS = ["sn", "bssn", "gn"]
LRS = [1e-4, 2e-3]                      # spans 20x: a log x axis
SEEDS = [0, 1, 2, 3]
NOISE = [0.1, -0.2, 0.3, 0.05]
# sn is far worse than bssn in every pair; gn is bssn give or take, with mixed signs (seed noise)
OFFSET = {"sn": lambda s, c: 10.0 + NOISE[s], "bssn": lambda s, c: 0.0,
          "gn": lambda s, c: [0.5, -0.4, 0.3, -0.6][s] * (1 if c == 0 else -1)}
DIVERGED = ("sn", 1, 1)                 # (variant, cell index, seed)
TABLE_ROWS = {"stability": 6, "paired": 3, "noise": 3, "failures": 6, "health": 2}
N_IMAGES = 1 + 1 + 3                    # metric vs lr, metric over training, one sample grid per variant


def value(variant: str, c: int, seed: int) -> float:
    return 10.0 + 2.0 * c + NOISE[seed] + OFFSET[variant](seed, c)


def make_results(root) -> SweepResults:
    runs, series = [], {}
    for vi, variant in enumerate(VARIANTS):
        for c, lr in enumerate(LRS):
            for seed in SEEDS:
                run_id = f"{variant}-{c}-{seed}"
                run_dir = root / run_id
                run_dir.mkdir(parents=True)
                Image.new("RGB", (8, 8), (60 * vi, 40 * c, 50 * seed)).save(run_dir / "samples.png")
                diverged = (variant, c, seed) == DIVERGED
                final = {} if diverged else {"cfd": value(variant, c, seed), "cis": 1.0}
                runs.append(RunRow(run_id, variant, {"optim.lr_d": lr}, seed, "diverged" if diverged else "finished",
                                   final, error="loss is <nan> at step 30" if diverged else None,
                                   run_dir=str(run_dir), seconds=12.0))
                steps = range(0, 50 if not diverged else 30, 10)
                series[run_id] = [(s, value(variant, c, seed) + 40.0 / (s + 10)) for s in steps]
    health = {"sn-1-1": [{"step": 20, "rule": "grad_explosion", "layer": "net.4", "message": "grad norm 3e4"},
                         {"step": 10, "rule": "grad_explosion", "layer": "net.4", "message": "grad norm 2e3"}],
              "sn-0-2": [{"step": 40, "rule": "grad_explosion", "layer": "net.2", "message": "grad norm 1e3"}],
              "gn-1-0": [{"step": 30, "rule": "sigma_collapse", "layer": None, "message": "sigma near 0"}]}
    return SweepResults(name="lr-sweep", metric="cfd", lower_is_better=True, success={"max": 13.0},
                        grid_keys=["optim.lr_d"], variants=list(VARIANTS), runs=runs, series=series, health=health)


class PageParser(HTMLParser):
    """Tables (id -> body rows of cell texts), images' src, and anything that could reach the network."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.external, self._table, self._row = {}, [], [], None, None
        self.scripts_with_src, self.links = 0, 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in ("src", "href"):
            if a.get(name) and not a[name].startswith(("data:", "#")):
                self.external.append(a[name])
        if tag == "table":
            self._table = self.tables.setdefault(a["id"].removeprefix("table-"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._row.append("")
        elif tag == "img":
            self.images.append(a)
        self.scripts_with_src += tag == "script" and "src" in a
        self.links += tag == "link"

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag == "tr" and self._row is not None:
            if self._row:                                    # header rows have no <td>
                self._table.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._row:
            self._row[-1] += data


@pytest.fixture
def results(tmp_path):
    return make_results(tmp_path / "runs")


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    path = render(make_results(root / "runs"), root / "report.html")
    parser = PageParser()
    parser.feed(path.read_text(encoding="utf-8"))
    return path, parser


def _png(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,")
    data = base64.b64decode(src.split(",", 1)[1], validate=True)
    img = Image.open(io.BytesIO(data))
    img.load()
    assert img.format == "PNG"
    return img


def test_every_table_with_its_rows(page):
    _, parser = page
    assert {k: len(v) for k, v in parser.tables.items()} == TABLE_ROWS


def test_page_is_self_contained(page):
    path, parser = page
    text = path.read_text(encoding="utf-8")
    assert parser.external == [] and parser.scripts_with_src == 0 and parser.links == 0
    assert "Content-Security-Policy" in text and "http://" not in text and "https://" not in text
    assert "loss is &lt;nan&gt; at step 30" in text                 # user text is escaped
    assert len(parser.images) == N_IMAGES
    sizes = [_png(img["src"]).size for img in parser.images]
    assert all(w > 0 and h > 0 for w, h in sizes)


def test_stability_rows_hold_the_statistics(page):
    _, parser = page
    rows = {(r[0], r[1]): r for r in parser.tables["stability"]}
    diverged = rows[("sn", "optim.lr_d=0.002")]
    finite = [value("sn", 1, s) for s in SEEDS if s != 1]
    assert diverged[2] == "4"
    assert diverged[3].startswith("0/4 = 0%")                        # sn is above the 13.0 success bound
    assert diverged[4] == f"{np.median(finite):.4g}"
    assert diverged[5] == f"{np.mean(finite):.4g} ± {np.std(finite, ddof=1):.3g}"
    assert diverged[8] == f"{min(finite):.4g}"
    bssn = rows[("bssn", "optim.lr_d=0.0001")]
    assert bssn[3].startswith("4/4 = 100% [51%, 100%]")
    failures = {(r[0], r[1]): r for r in parser.tables["failures"]}
    assert failures[("sn", "optim.lr_d=0.002")][2:7] == ["4", "3", "1", "0", "0"]


def test_paired_verdicts(page):
    _, parser = page
    verdicts = {(r[0], r[1]): (r[2], r[6]) for r in parser.tables["paired"]}
    assert verdicts[("sn", "bssn")] == ("7", "larger than seed noise: bssn is better")
    assert verdicts[("bssn", "gn")] == ("8", "within seed noise")
    noise = {r[0]: r[1:] for r in parser.tables["noise"]}
    best = [min(VARIANTS, key=lambda v: np.median([value(v, c, s) for s in SEEDS if (v, c, s) != DIVERGED]))
            for c in range(2)]
    assert {v: noise[v][0] for v in VARIANTS} == {v: f"{best.count(v)} / 2" for v in VARIANTS}
    assert best.count("sn") == 0
    # 4 seeds per cell can never reach p < 0.05: every variant is within noise of the best in every cell
    assert all(noise[v][1] == "2 / 2" for v in VARIANTS)
    health = {(r[0], r[1]): r[2:] for r in parser.tables["health"]}
    assert health[("sn", "grad_explosion")] == ["2", "3", "10", "net.4: grad norm 2e3"]


def test_samples_are_the_median_runs(page):
    path, parser = page
    results = make_results(path.parent / "again")
    samples = [img for img in parser.images if img.get("class") == "samples"]
    assert len(samples) == 3
    for variant, img in zip(VARIANTS, samples):
        run = median_run(results, variant)
        done = sorted(value(variant, c, s) for c in range(2) for s in SEEDS if (variant, c, s) != DIVERGED)
        assert run.final["cfd"] == done[(len(done) - 1) // 2]
        with open(os.path.join(run.run_dir, "samples.png"), "rb") as fh:
            assert base64.b64decode(img["src"].split(",", 1)[1]) == fh.read()


def test_missing_samples_and_pending_runs(results, tmp_path):
    for run in results.runs:
        if run.variant == "gn":
            os.remove(os.path.join(run.run_dir, "samples.png"))
        elif run.variant == "bssn":                         # killed mid-write: a truncated PNG is not shown
            data = open(os.path.join(run.run_dir, "samples.png"), "rb").read()
            open(os.path.join(run.run_dir, "samples.png"), "wb").write(data[: len(data) // 2])
    results.runs.append(RunRow("gn-0-9", "gn", {"optim.lr_d": 1e-4}, 9, "pending"))
    parser = PageParser()
    text = render(results, tmp_path).read_text(encoding="utf-8")
    parser.feed(text)
    assert (tmp_path / PAGE_NAME).is_file()
    assert len(parser.images) == N_IMAGES - 2 and text.count("is missing or not a readable PNG") == 2
    rows = {(r[0], r[1]): r for r in parser.tables["failures"]}
    assert rows[("gn", "optim.lr_d=0.0001")][2] == "5" and rows[("gn", "optim.lr_d=0.0001")][6] == "1"
    stab = {(r[0], r[1]): r for r in parser.tables["stability"]}
    assert stab[("gn", "optim.lr_d=0.0001")][2] == "4"               # the pending run is not counted


def test_terminal_table(results):
    text = terminal_table(results)
    lines = text.splitlines()
    assert lines[1].split()[:3] == ["variant", "cell", "runs"]
    assert set(lines[2]) == {"-", " "}
    body = lines[3:9]
    assert [ln.split()[0] for ln in body] == ["sn", "sn", "bssn", "bssn", "gn", "gn"]
    assert "0/4 = 0%" in body[1] and "lower is better" in lines[-1]


def test_bad_success_rule_is_a_user_error(results, tmp_path):
    results.success = {"min": 3.0}
    with pytest.raises(GannormError, match="lr-sweep: success"):
        render(results, tmp_path / "r.html")


def test_x_axis_scale():
    fig, (a, b, c) = _figure(1, 3)
    assert _x_axis(a, "lr", [1e-4, 2e-3]) == {1e-4: 1e-4, 2e-3: 2e-3} and a.get_xscale() == "log"
    _x_axis(b, "n_dis", [1, 5])
    assert b.get_xscale() == "linear"
    assert _x_axis(c, "method", ["sn", "bssn"]) == {"bssn": 0.0, "sn": 1.0}


def test_figures_need_data(results):
    results.series = {}
    for run in results.runs:
        run.status, run.final = "failed", {}
    groups = group(results)
    assert training_figure(results, groups) is None and grid_figure(results, groups, 0) is None


# ----------------------------------------------------------------------------------- headless Chromium
def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _rendered(exe: str, page_path, profile) -> str:
    """The ``<body ...>`` tag of the page as Chromium has it after loading (the page's check script ran)."""
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
           "--dump-dom", page_path.as_uri()]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    body = re.search(r"<body[^>]*>", out.stdout)
    assert body, f"chromium printed no page (rc {out.returncode}): {out.stderr[-500:]}"
    return body.group(0)


def test_page_renders_in_headless_chromium(page, tmp_path):
    exe = _chromium()
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not on PATH, and CI must run this test: apt-get install -y chromium")
        pytest.skip("chromium is not on PATH (apt-get install -y chromium to run this check)")
    path, _ = page
    body = _rendered(exe, path, tmp_path / "profile")
    assert f'data-images-ok="{N_IMAGES}/{N_IMAGES}"' in body
    assert f'data-tables-ok="{len(TABLE_ROWS)}/{len(TABLE_ROWS)}"' in body
    # the check can fail: a damaged image and an emptied table are seen as not rendered
    text = path.read_text(encoding="utf-8")
    uri = text.rindex("data:image/png;base64,") + len("data:image/png;base64,")
    text = text[:uri] + "AAAA" + text[uri + 4:]
    text = re.sub(r'(<table id="table-health">).*?(</table>)', r"\1\2", text, flags=re.S)
    broken = tmp_path / "broken.html"
    broken.write_text(text, encoding="utf-8")
    body = _rendered(exe, broken, tmp_path / "profile")
    assert f'data-images-ok="{N_IMAGES - 1}/{N_IMAGES}"' in body
    assert f'data-tables-ok="{len(TABLE_ROWS) - 1}/{len(TABLE_ROWS)}"' in body


def test_a_verdict_on_fewer_than_six_pairs_says_it_cannot_tell():
    """5 pairs all of one sign: the Wilcoxon p is 0.0625 at best, so the page says the pairs cannot tell
    rather than calling the difference seed noise; 6 such pairs are larger than seed noise."""
    from types import SimpleNamespace

    from gannorm.app.report.tables import verdict
    from gannorm.stability import compare_paired
    results = SimpleNamespace(lower_is_better=True)
    five = compare_paired([1.0, 2, 3, 4, 5], [11.0, 12, 13.5, 14, 15])
    assert verdict(results, "a", "b", five) == "cannot tell: 5 pairs give no Wilcoxon p below 0.0625"
    six = compare_paired([1.0, 2, 3, 4, 5, 6], [11.0, 12, 13.5, 14, 15, 16.5])
    assert verdict(results, "a", "b", six) == "larger than seed noise: a is better"
    mixed = compare_paired([1.0, 2, 3, 4, 5, 6, 7], [1.5, 1, 3.5, 3, 5.5, 5, 7.5])
    assert verdict(results, "a", "b", mixed) == "within seed noise"
