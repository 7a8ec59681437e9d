"""Experiments end to end on tiny budgets: runs, figures, and summaries whose numbers match the logs."""
import json
import math

import pytest
from PIL import Image

from gannorm.app.experiments import EXPERIMENTS, run_experiment
from gannorm.cli import main
from gannorm.errors import ConfigError

TINY = ["train.steps=4", "diagnostics.every=2", "model.width=0.125", "train.progress=false",
        "diagnostics.batch_size=16", "train.batch_size_d=16", "train.batch_size_g=16"]


def first_layer(run_dir, key):
    recs = [json.loads(line) for line in (run_dir / "diagnostics.jsonl").read_text().splitlines()]
    return recs, next(iter(recs[0]["layers"].values()))[key]


def test_gradients_experiment(tmp_path):
    result = run_experiment("gradients", TINY, tmp_path, only=["sn", "strict_sn"])
    assert set(result.runs) == {"sn", "strict_sn"} and result.unfinished() == []
    assert all(run.status.status == "finished" for run in result.runs.values())
    for fig in result.figures:
        img = Image.open(fig)
        assert img.size[0] > 600 and len(img.getcolors(1 << 20)) > 50
    # the strict / SN ratio in the summary is the ratio of the logged first-layer gradients at init
    recs, strict0 = first_layer(result.folder / "strict_sn", "grad_raw")
    _, sn0 = first_layer(result.folder / "sn", "grad_raw")
    assert [r["step"] for r in recs] == [0, 2, 4]
    assert f"raw, at init: strict SN / SN = {strict0 / sn0:.3g}" in result.summary
    assert "Verdict on the SNGAN CNN D, at initialisation:" in result.summary
    assert (result.folder / "summary.md").read_text().startswith("# Experiment: gradients")
    # strict SN divides by the operator norm, which is >= the reshaped-kernel norm SN uses
    layer = next(iter(recs[0]["layers"].values()))
    assert layer["strict_sigma"] >= layer["raw_spectral"] * 0.999


def test_variance_experiment_via_cli(tmp_path, capsys):
    assert main(["experiment", "variance", *TINY, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    folder = tmp_path / "experiment-variance"
    assert (folder / "variance.png").is_file() and "LeCun" in out
    recs, ratio0 = first_layer(folder / "lecun", "var_ratio")
    assert f"| {next(iter(recs[0]['layers']))} | {ratio0:.3g} |" in (folder / "summary.md").read_text()
    assert abs(math.log(ratio0)) < 0.5  # a fresh LeCun layer: ratio about 1


def test_scale_experiment_reads_method_and_scale(tmp_path):
    result = run_experiment("scale", ["train.steps=2", "train.eval_every=2", "train.eval_num_samples=100",
                                      "model.width=0.125", "train.progress=false", "train.batch_size_d=16",
                                      "train.batch_size_g=16"], tmp_path, only=["ssn_1.0", "bssn_1.4"])
    assert "| ssn | 1 |" in result.summary and "| bssn | 1.4 |" in result.summary
    assert (result.folder / "scale.png").is_file()


def _fmt(v):
    return "-" if v is None else f"{v:.3g}"


def test_mean_drift_experiment_numbers_match_the_logs(tmp_path):
    result = run_experiment("mean_drift", TINY, tmp_path)
    assert set(result.runs) == {"none", "sn", "msn"} and result.unfinished() == []
    names = {f.name for f in result.figures}
    assert names == {"mean_drift.png", "gradient_sparsity.png"}
    for fig in result.figures:
        img = Image.open(fig)
        assert img.size[0] > 1000 and len(img.getcolors(1 << 20)) > 50
    text = (result.folder / "summary.md").read_text()
    assert text.startswith("# Experiment: mean_drift") and "Verdict: SN's layers" in text
    for variant in ("none", "sn", "msn"):
        recs = [json.loads(line) for line in (result.folder / variant / "diagnostics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in recs] == [0, 2, 4]
        assert len(recs[0]["layers"]) == 12                    # 11 convs (extra_convs: 1) + the linear
        for name, first in recs[0]["layers"].items():
            last = recs[-1]["layers"][name]
            d0, d1 = first["act_mean"] / first["act_std"], last["act_mean"] / last["act_std"]
            later = sorted(v for r in recs[1:] if (v := r["layers"][name]["grad_sparsity"]) is not None)
            median = None if not later else (later[len(later) // 2] if len(later) % 2
                                             else (later[len(later) // 2 - 1] + later[len(later) // 2]) / 2)
            centred = variant == "msn" and first["act_mean"] < 1e-6 * first["act_std"]  # beta = 0 at init
            mark = " (centred)" if centred else ""
            row = (f"| {name}{mark} | {_fmt(d0)} | {_fmt(d1)} | {_fmt(d1 - d0)} | {_fmt(first['act_mean'])} / "
                   f"{_fmt(last['act_mean'])} | {_fmt(first['act_std'])} / {_fmt(last['act_std'])} | "
                   f"{_fmt(first['grad_sparsity'])} | {_fmt(median)} |")
            assert row in text, row
    # MSN centres every strided conv but the first, and the last conv: 3 of them here
    assert text.count("(centred) |") == 3 and "MSN at the 3 layers it centres" in text


def test_bad_requests():
    with pytest.raises(ConfigError, match="unknown variant"):
        run_experiment("gradients", TINY, "/nonexistent", only=["nope"])
    with pytest.raises(ConfigError, match="set by the experiment"):
        run_experiment("gradients", ["train.out_dir=x"], "/nonexistent")
    with pytest.raises(KeyError, match="unknown experiment"):
        run_experiment("nope")
    assert EXPERIMENTS.names() == ["gradients", "variance", "scale", "mean_drift"]
    assert all(e.description for e in EXPERIMENTS.entries())
