"""A sweep is refused, with one line naming what is wrong and where, before anything is written: a seed or grid
value listed twice (two runs of one run id), a reserved key set by a variant or a ``key=value`` grid key, a
grid or variant value the config refuses, and ``--workers`` / ``--threads`` below 1."""
from __future__ import annotations

import json

import pytest

from gannorm.app.sweep import load_sweep, run_sweep
from gannorm.cli import main
from gannorm.errors import ConfigError, GannormError

TINY = ["train.steps=12", "model.d_options={hidden: 16}", "model.g_options={hidden: 16}",
        "train.tensorboard=false", "train.eval_num_samples=200"]


def write(tmp_path, **body):
    path = tmp_path / "s.yaml"
    path.write_text(json.dumps({"base": "ring8", "metric": "modes", "overrides": TINY, **body}))
    return path


@pytest.mark.parametrize("body,match", [
    ({"seeds": [0, 3, 0]}, r"seed 0 is listed twice in seeds"),
    ({"grid": {"optim.lr_d": [2.0e-4, 1.0e-3, 2.0e-4]}}, r"grid key optim.lr_d lists the value '0.0002' twice"),
    ({"grid": {"optim.lr_d": [1, 1.0]}},  # different texts, one config: one run id
     r"runs base \(seed 0, optim.lr_d=1\) and base \(seed 0, optim.lr_d=1.0\) are the same run"),
    ({"variants": {"a": ["train.steps=3", "train.out_dir=/tmp/elsewhere"]}}, r"variant a sets train.out_dir"),
    ({"variants": {"a": [" train.seed = 5"]}}, r"variant a sets train.seed"),
    ({"variants": {"a": ["train.run_name=x"]}}, r"variant a sets train.run_name"),
    ({"grid": {"train.seed=7 #": [1]}}, r"grid key 'train.seed=7 #' sets train.seed, which is set by the sweep"),
    ({"variants": {"a": [], "b": []}, "grid": {"optim.lr_d": [2.0e-4], "train.steps": [3, 5.5]}},
     r"s.yaml: run a \(seed 0, optim.lr_d=0.0002, train.steps=5.5\): config key train.steps: 5.5 is not int"),
    ({"variants": {"a": [], "b": ["train.steps=5.5"]}}, r"s.yaml: run b \(seed 0\): config key train.steps"),
])
def test_a_bad_sweep_is_one_line_naming_where(tmp_path, body, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_sweep(str(write(tmp_path, **body)))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("body,options,match", [
    ({"seeds": [0, 0]}, [], "seed 0 is listed twice"),
    ({"grid": {"optim.lr_d": [2.0e-4, 2.0e-4]}}, [], "grid key optim.lr_d lists the value"),
    ({}, ["--workers", "0"], "--workers must be an integer >= 1, got 0"),
    ({}, ["--workers", "-1"], "--workers must be an integer >= 1, got -1"),
    ({}, ["--threads", "0"], "--threads must be an integer >= 1, got 0"),
    ({}, ["--threads", "-1"], "--threads must be an integer >= 1, got -1"),
])
def test_the_cli_refuses_with_exit_2_and_writes_nothing(tmp_path, capsys, body, options, match):
    spec, out = write(tmp_path, **body), tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--no-report", *options]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err, err
    assert not out.exists()


def test_run_sweep_refuses_workers_and_threads_below_1(tmp_path):
    spec = write(tmp_path)
    for kwargs in ({"workers": 0}, {"threads": 0}, {"threads": -1}):
        with pytest.raises(GannormError, match="must be an integer >= 1"):
            run_sweep(str(spec), tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_another_sweep_is_not_run_into_a_sweep_s_folder(tmp_path, capsys):
    """The folder of sweep 'first' refuses sweep 'other' (it took the folder over: sweep.json rewritten, the
    first sweep's runs listed and counted in the second's table)."""
    first = tmp_path / "first.yaml"
    first.write_text(json.dumps({"base": "ring8", "metric": "modes", "overrides": [*TINY, "train.steps=3"]}))
    other = tmp_path / "other.yaml"
    other.write_text(first.read_text())
    out = tmp_path / "out"
    assert run_sweep(str(first), out).ran == 1
    before = (out / "sweep.json").read_text()
    assert main(["sweep", str(other), "--out", str(out), "--no-report"]) == 2
    err = capsys.readouterr().err
    assert f"{out} holds sweep 'first', not 'other'" in err and err.count("\n") == 1
    assert (out / "sweep.json").read_text() == before
    assert run_sweep(str(first), out).skipped == 1  # the sweep itself still runs into its folder
