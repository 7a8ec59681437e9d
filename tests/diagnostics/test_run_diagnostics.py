"""The trainer records diagnostics every N steps without changing the training itself."""
import json

import pytest
import torch

from gannorm import config as config_mod
from gannorm.app.training import resume, train
from gannorm.errors import ConfigError
from gannorm.diagnostics.health import HealthWarning
from gannorm.diagnostics.records import ProbeRecord
from gannorm.runfolder import RunFolder, load_checkpoint

TINY = ["data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125",
        "normalization.method=bssn", "normalization.options={scale: 1.2}", "train.batch_size_d=16",
        "train.batch_size_g=16", "train.log_every=2", "train.sample_every=50", "train.checkpoint_every=3",
        "train.progress=false", "train.tensorboard=false", "diagnostics.batch_size=8"]


def cfg(tmp_path, *extra):
    return config_mod.load(None, TINY + [f"train.out_dir={tmp_path}"] + list(extra))


def records(run):
    return [json.loads(line) for line in (run / "diagnostics.jsonl").read_text().splitlines()]


def test_records_at_init_every_n_and_at_the_end(tmp_path):
    run = train(cfg(tmp_path, "train.steps=5", "diagnostics.every=2", "diagnostics.strict=true")).run_dir
    recs = records(run)
    assert [r["step"] for r in recs] == [0, 2, 4, 5]
    layer = recs[0]["layers"]["features.0"]
    assert layer["sigma1"] > 0 and layer["strict_sigma"] >= layer["sigma"] * 0.999  # operator >= reshaped norm
    assert set(recs[-1]["input_grad"]) == {"real", "fake", "interpolated"}
    assert recs[-1]["lipschitz_upper"] >= recs[-1]["lipschitz_lower"] > 0
    typed = RunFolder.open(run).read_diagnostics()
    assert [r.to_json() for r in typed] == recs and all(isinstance(r, ProbeRecord) for r in typed)


def test_diagnostics_do_not_change_training(tmp_path):
    a = train(cfg(tmp_path, "train.steps=4", "train.run_name=a")).run_dir
    b = train(cfg(tmp_path, "train.steps=4", "train.run_name=b", "diagnostics.every=1")).run_dir
    sa, sb = load_checkpoint(a / "checkpoint.pt"), load_checkpoint(b / "checkpoint.pt")
    for part in ("G", "D"):
        for k, v in sa[part].items():
            assert torch.equal(v, sb[part][k]), (part, k)


def test_resume_keeps_records_up_to_the_checkpoint(tmp_path):
    run = train(cfg(tmp_path, "train.steps=3", "diagnostics.every=1")).run_dir
    assert [r["step"] for r in records(run)] == [0, 1, 2, 3]
    resume(run, ["train.steps=5"])
    assert [r["step"] for r in records(run)] == [0, 1, 2, 3, 4, 5]


def test_bad_settings_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"scale is not an option of method 'none'.*normalization.options=\{\}"):
        train(cfg(tmp_path, "normalization.method=none"))
    with pytest.raises(ConfigError, match="diagnostics.every"):
        train(cfg(tmp_path, "diagnostics.every=-1"))
    with pytest.raises(ConfigError, match="model.d_init"):
        train(cfg(tmp_path, "model.d_init=orthonormal"))
    assert not any(tmp_path.iterdir())  # nothing written


def test_headline_numbers_reach_the_metric_log_but_not_the_csv(tmp_path):
    run = train(cfg(tmp_path, "train.steps=4", "diagnostics.every=2")).run_dir
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    diag = [r for r in rows if "diag/lipschitz_lower" in r]
    assert [r["step"] for r in diag] == [0, 2, 4]
    last = records(run)[-1]
    assert diag[-1]["diag/lipschitz_upper"] == last["lipschitz_upper"]
    layers = list(last["layers"].values())
    assert diag[-1]["diag/grad_first_over_last"] == layers[0]["grad_effective"] / layers[-1]["grad_effective"]
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "loss_d" in header and "diag/" not in header


def test_warnings_are_printed_once_and_written_to_the_run(tmp_path, capsys):
    run = train(cfg(tmp_path, "train.steps=4", "diagnostics.every=2", "diagnostics.explode_abs=1e-12")).run_dir
    rows = [json.loads(line) for line in (run / "health.jsonl").read_text().splitlines()]
    layers = list(records(run)[0]["layers"])
    assert [(r["rule"], r["layer"], r["step"]) for r in rows] == [("exploding_gradient", n, 0) for n in layers]
    assert [w.to_json() for w in RunFolder.open(run).read_health()] == rows
    assert all(isinstance(w, HealthWarning) for w in RunFolder.open(run).read_health())
    err = capsys.readouterr().err
    assert err.count("gannorm health warning: step 0: exploding gradient in layer") == len(layers)
    assert "diagnostics.explode_abs" in err


def test_a_resumed_run_does_not_repeat_its_warnings(tmp_path, capsys):
    run = train(cfg(tmp_path, "train.steps=2", "diagnostics.every=1", "train.checkpoint_every=1",
                    "diagnostics.explode_abs=1e-12")).run_dir
    first = RunFolder.open(run).read_health()
    assert first and {w.step for w in first} == {0}
    capsys.readouterr()
    resume(run, ["train.steps=4"])
    assert RunFolder.open(run).read_health() == first
    assert "gannorm health warning" not in capsys.readouterr().err
    assert [r.step for r in RunFolder.open(run).read_diagnostics()] == [0, 1, 2, 3, 4]
