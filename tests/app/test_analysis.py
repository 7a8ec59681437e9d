"""gannorm analyze: parsing a run folder's logs, series, figures, summary and the CLI."""
import json
import math

import pytest

from gannorm.app.analysis import NO_DIAGNOSTICS_HINT, analyze, load_run
from gannorm.app.analysis.series import (describe_run, gradient_ratio, input_grad_series, last_eval, layer_names,
                                         layer_series, latest_layer_values, metric_series, probe_series)
from gannorm.cli import main
from gannorm.diagnostics.records import ProbeRecord
from gannorm.errors import GannormError, RunFolderError
from gannorm.runfolder import MetricsRow

LAYERS = ["net.0", "net.2", "net.4"]          # net.2 is a BSN layer: sigma1/sigma2
STEPS = [100, 200, 300, 400, 500]
FIGURES = ["gradients.png", "sigmas.png", "variance.png", "input_gradients.png", "lipschitz.png", "mean_drift.png"]
WARNING = "grad norm of net.4 is 3.2e+04, above 1e+03: D's last layer is exploding"


def grad_raw(layer: int, probe: int) -> float:
    return 10.0 ** (-layer) * (1 + probe)          # spans orders of magnitude across layers


def grad_eff(layer: int, probe: int) -> float:
    return 2.0 * grad_raw(layer, probe) + 0.5 * layer


def act_mean(layer: int, probe: int) -> float:
    return 0.1 * (layer + 1) * (1 + probe)           # the channel means drift with training


def act_std(layer: int, probe: int) -> float:
    return 1.0 + 0.25 * probe


def sparsity(layer: int, probe: int) -> float:
    return 0.01 * (layer + 1) + 0.002 * probe


def layer_record(i: int, p: int, drift: bool = True) -> dict:
    rec = {"kind": "Linear" if i == 2 else "Conv2d", "fan_in": 27 * (i + 1), "fan_out": 64,
           "sigma": 1.0 + 0.1 * i + 0.01 * p, "sigma1": None, "sigma2": None, "strict_sigma": None,
           "raw_spectral": 3.0 + p, "raw_frobenius": 5.0 + p,
           "grad_raw": grad_raw(i, p), "grad_effective": grad_eff(i, p),
           "var_ratio": 0.4 + 0.1 * i + 0.05 * p, "ref_xavier": 0.1 * (i + 1), "ref_kaiming": 2.0}
    if drift:
        rec.update(act_mean=act_mean(i, p), act_std=act_std(i, p), grad_sparsity=sparsity(i, p))
    if i == 1:                                      # the BSN layer
        rec.update(sigma1=1.0 + 0.02 * p, sigma2=1.1 + 0.03 * p)
    if i == 0:
        rec["strict_sigma"] = 1.5 + 0.1 * p
    if i == 2 and p == 2:                           # nulls are skipped
        rec.update(sigma=None, grad_raw=None, var_ratio=None)
    return rec


def probe(p: int, drift: bool = True) -> dict:
    return {"step": STEPS[p],
            "layers": {name: layer_record(i, p, drift) for i, name in enumerate(LAYERS)},
            "input_grad": {"real": {"mean": 1.0 + p, "min": 0.5 + p, "max": 2.0 + p},
                           "fake": {"mean": 0.8 + p, "min": 0.1, "max": 3.0 + p},
                           "interpolated": {"mean": 0.9 + p, "min": None, "max": 2.5 + p}},
            "d_real": 0.3 + 0.1 * p, "d_fake": -0.2 - 0.1 * p,
            "lipschitz_upper": 10.0 * 3 ** p, "lipschitz_lower": None if p == 1 else 0.8 + p}


def make_run(root, name="run", truncated=False, diagnostics=True, metrics=True, drift=True):
    run = root / name
    run.mkdir(parents=True)
    if diagnostics:
        text = "".join(json.dumps(probe(p, drift)) + "\n" for p in range(len(STEPS)))
        if truncated:
            text += json.dumps(probe(0))[:57]         # killed mid-write
        (run / "diagnostics.jsonl").write_text(text)
        (run / "health.jsonl").write_text(json.dumps(
            {"step": 400, "rule": "exploding_gradient", "layer": "net.4", "value": 3.2e4, "threshold": 1e3,
             "message": WARNING}) + "\n")
    if metrics:
        rows = [{"step": s, "loss_d": 1.5 - s / 1000, "loss_g": 0.2 + s / 1000, "d_real": 0.1, "d_fake": -0.1,
                 "lr_factor": 1.0} for s in range(50, 550, 50)]
        rows[3]["eval/cfd"], rows[3]["eval/cis"] = 12.0, 3.0
        rows[9]["eval/cfd"], rows[9]["eval/cis"] = 7.25, 4.5
        rows[5]["loss_d"] = "nan"                     # how MetricLogger writes a non-finite value
        (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (run / "config.yaml").write_text(
        "data:\n  name: digits\n  resolution: 16\nmodel:\n  arch: cnn\n  width: 0.25\n"
        "normalization:\n  method: bssn\n  options: {scale: 1.4}\n  function: none\ntrain:\n  loss: hinge\n")
    (run / "status.json").write_text(json.dumps({"status": "finished", "step": 500, "seconds": 12.0}))
    return run


@pytest.fixture(scope="module")
def analyzed(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("analyze"))
    return run, analyze(run)


def test_series_extraction():
    records = [ProbeRecord.from_json(probe(p)) for p in range(len(STEPS))]
    assert layer_names(records) == LAYERS
    raw = layer_series(records, "grad_raw")
    assert list(raw) == LAYERS
    assert raw["net.0"] == (STEPS, [grad_raw(0, p) for p in range(5)])
    assert raw["net.4"] == ([100, 200, 400, 500], [grad_raw(2, p) for p in (0, 1, 3, 4)])  # the null is skipped
    bsn = layer_series(records, "sigma1")
    assert list(bsn) == ["net.2"] and bsn["net.2"][1] == pytest.approx([1.0 + 0.02 * p for p in range(5)])
    assert list(layer_series(records, "strict_sigma")) == ["net.0"]
    assert probe_series(records, "lipschitz_lower") == ([100, 300, 400, 500], [0.8, 2.8, 3.8, 4.8])
    with pytest.raises(ValueError, match="unknown probe quantity"):
        probe_series(records, "layers")
    steps, mean, lo, hi = input_grad_series(records, "interpolated")
    assert steps == STEPS and mean == pytest.approx([0.9 + p for p in range(5)])
    assert all(math.isnan(v) for v in lo) and hi == pytest.approx([2.5 + p for p in range(5)])
    latest = latest_layer_values(records, "var_ratio")
    assert latest["net.0"] == (500, pytest.approx(0.6)) and latest["net.4"] == (500, pytest.approx(0.8))
    g = gradient_ratio(records[0], "grad_raw")
    assert (g.first, g.last) == ("net.0", "net.4") and g.ratio == pytest.approx(100.0)
    assert gradient_ratio(records[2], "grad_raw").ratio is None  # net.4's grad_raw is null at step 300
    assert gradient_ratio(ProbeRecord(1, layers={"a": records[0].layers["net.0"]})) is None


def test_metrics_series_and_last_eval(tmp_path):
    run = load_run(make_run(tmp_path, diagnostics=False))
    steps, values = metric_series(run.metrics, "loss_d")
    assert 300 not in steps and len(steps) == 9                  # "nan" is left out
    assert last_eval(run.metrics) == {"eval/cfd": (500, 7.25), "eval/cis": (500, 4.5)}


def test_analyze_writes_the_figures(analyzed):
    from PIL import Image
    run, written = analyzed
    assert [p.name for p in written] == [*FIGURES, "summary.md"]
    for path in written[:-1]:
        assert path.parent == run / "analysis"
        img = Image.open(path).convert("RGB")
        assert img.size[0] >= 600 and img.size[1] >= 300
        colors = img.getcolors(maxcolors=1 << 20)
        assert len(colors) > 50, path.name                         # lines, text, colormap: not blank
    assert not [p for p in (run / "analysis").iterdir() if p.name.endswith(".tmp")]


def test_summary_has_layers_warning_and_gradient_ratio(analyzed):
    run, written = analyzed
    text = (run / "analysis" / "summary.md").read_text()
    for name in LAYERS:
        assert f"| {name} |" in text
    assert WARNING in text and "exploding_gradient" in text
    assert "bssn (scale=1.4)" in text and "cnn" in text and "digits" in text
    assert "generator steps 100 to 500" in text
    # first/last-layer gradient norm ratio, first and last probe, computed here from the inputs
    first_raw = grad_raw(0, 0) / grad_raw(2, 0)
    last_raw = grad_raw(0, 4) / grad_raw(2, 4)
    last_eff = grad_eff(0, 4) / grad_eff(2, 4)
    assert f"| first | 100 | net.0 / net.4 | {first_raw:.4g} |" in text
    assert f"| last | 500 | net.0 / net.4 | {last_raw:.4g} | {last_eff:.4g} |" in text
    assert f"upper bound (product of layer norms): {10.0 * 3 ** 4:.4g}" in text
    assert "| cfd | 500 | 7.25 |" in text


def test_summary_has_the_mean_drift_of_each_layer(analyzed):
    run, _ = analyzed
    text = (run / "analysis" / "summary.md").read_text()
    assert "## Mean drift and gradient sparsity" in text
    for i, name in enumerate(LAYERS):
        d0, d1 = act_mean(i, 0) / act_std(i, 0), act_mean(i, 4) / act_std(i, 4)
        assert (f"| {name} | {d0:.4g} | {d1:.4g} | {d1 - d0:.4g} | {act_mean(i, 0):.4g} | {act_mean(i, 4):.4g} | "
                f"{act_std(i, 0):.4g} | {act_std(i, 4):.4g} | {sparsity(i, 0):.4g} | {sparsity(i, 4):.4g} |") in text
    records = load_run(run).diagnostics
    assert layer_series(records, "drift")["net.2"][1] == pytest.approx(
        [act_mean(1, p) / act_std(1, p) for p in range(5)])


def test_records_without_drift_get_no_drift_figure(tmp_path):
    run = make_run(tmp_path, drift=False)              # diagnostics written before drift was measured
    written = analyze(run)
    assert [p.name for p in written] == [*FIGURES[:-1], "summary.md"]
    assert "not recorded (diagnostics written before" in written[-1].read_text()


def test_truncated_last_line_is_tolerated(tmp_path):
    run_dir = make_run(tmp_path, truncated=True)
    run = load_run(run_dir)
    assert [r.step for r in run.diagnostics] == STEPS
    assert run.skipped == {"diagnostics.jsonl": 1}
    written = analyze(run_dir, tmp_path / "out")
    assert (tmp_path / "out" / "summary.md") in written
    assert "skipped 1 unreadable line" in (tmp_path / "out" / "summary.md").read_text()
    # killed before the first complete probe: only the summary, which says so
    (run_dir / "diagnostics.jsonl").write_text(json.dumps(probe(0))[:40])
    (run_dir / "metrics.jsonl").unlink()
    written = analyze(run_dir, tmp_path / "early")
    assert [p.name for p in written] == ["summary.md"] and "no complete record yet" in written[0].read_text()


def test_metrics_only_run_writes_the_summary_and_a_hint(tmp_path):
    run_dir = make_run(tmp_path, diagnostics=False)
    written = analyze(run_dir)
    assert [p.name for p in written] == ["summary.md"]
    assert NO_DIAGNOSTICS_HINT in written[0].read_text()


def test_missing_folder_and_folder_without_logs(tmp_path):
    with pytest.raises(RunFolderError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFolderError, match="is not a run folder"):
        load_run(tmp_path / "empty")
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only" / "config.yaml").write_text("data: {name: digits}\n")
    with pytest.raises(GannormError) as err:
        load_run(tmp_path / "config-only")
    msg = str(err.value)
    assert "has no diagnostics.jsonl" in msg and NO_DIAGNOSTICS_HINT in msg and "\n" not in msg
    assert "diagnostics.every=N" in NO_DIAGNOSTICS_HINT


def test_cli_prints_the_summary_and_the_files(analyzed, tmp_path, capsys):
    run, _ = analyzed
    out = tmp_path / "cli-out"
    assert main(["analyze", str(run), "-o", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert f"# Analysis of {run.name}" in stdout and WARNING in stdout
    for name in [*FIGURES, "summary.md"]:
        assert str(out / name) in stdout and (out / name).is_file()


@pytest.mark.parametrize("bad", ["missing", "empty"])
def test_cli_bad_run_is_one_line_and_exit_2(tmp_path, capsys, bad):
    (tmp_path / "empty").mkdir()
    assert main(["analyze", str(tmp_path / bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gannorm: error: ") and "\n" not in err


def test_metric_rows_sharing_a_step_are_merged(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    rows = [{"step": 500, "loss_d": 1.0}, {"step": 500, "diag/lipschitz_lower": 2.0}, {"step": 500, "eval/cfd": 3.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_run(run).metrics == [MetricsRow(500, {"loss_d": 1.0, "diag/lipschitz_lower": 2.0, "eval/cfd": 3.0})]


def test_a_probe_recorded_twice_counts_once_the_later_one(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    again = {**probe(1), "d_real": 42.0}                              # step 200 re-recorded after a resume
    lines = [probe(0), probe(1), probe(2), again, {**probe(3), "step": None}]
    (run / "diagnostics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    loaded = load_run(run)
    assert [r.step for r in loaded.diagnostics] == STEPS[:3]
    assert loaded.diagnostics[1].d_real == 42.0 and loaded.skipped == {"diagnostics.jsonl": 1}


def test_describe_run():
    info = describe_run({"normalization": {"method": "bssn", "options": {"scale": 1.4}},
                         "model": {"arch": "cnn", "width": 0.25}, "data": {"name": "digits", "resolution": 16}})
    assert (info.method, info.function, info.network, info.dataset, info.loss) == (
        "bssn (scale=1.4)", "none", "cnn (width 0.25)", "digits (16x16)", None)
    assert describe_run({"model": "junk"}).network == "?"
