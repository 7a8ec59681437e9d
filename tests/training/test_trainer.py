"""The trainer on tiny data: outputs, a real learning signal, exact resume, divergence."""
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import gannorm
from gannorm import config as config_mod
from gannorm.training.io import load_checkpoint
from gannorm.training.trainer import Trainer, resume, train

TINY_DIGITS = ["data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125",
               "normalization.method=bssn", "normalization.options={scale: 1.2}", "train.batch_size_d=16",
               "train.batch_size_g=16", "train.log_every=2", "train.sample_every=5", "train.checkpoint_every=5",
               "train.progress=false", "train.tensorboard=false"]


def cfg(tmp_path, *extra):
    return config_mod.load(None, TINY_DIGITS + [f"train.out_dir={tmp_path}"] + list(extra))


def energy_distance(x, y):
    """Independent two-sample energy distance (Szekely): 2E|X-Y| - E|X-X'| - E|Y-Y'|."""
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def test_run_folder_holds_everything(tmp_path):
    result = train(cfg(tmp_path, "train.steps=6"))
    d = result.run_dir
    assert result.status == "finished" and result.step == 6
    for name in ["config.yaml", "metrics.jsonl", "metrics.csv", "checkpoint.pt", "samples.png", "status.json"]:
        assert (d / name).is_file(), name
    rows = [json.loads(line) for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert {"loss_d", "loss_g", "d_real", "d_fake", "it_per_s", "sigma/features.0/sigma1"} <= set(rows[0])
    assert json.loads((d / "status.json").read_text())["status"] == "finished"
    assert sorted(p.name for p in (d / "samples").iterdir()) == ["step_0000005.png", "step_0000006.png"]
    state = load_checkpoint(d / "checkpoint.pt")
    assert state["step"] == 6
    assert config_mod.from_dict(state["config"]).normalization.method == "bssn"
    # a second run with the same name gets its own folder
    assert train(cfg(tmp_path, "train.steps=1")).run_dir != d


def test_training_lowers_the_energy_distance_on_ring8(tmp_path):
    c = config_mod.load(None, [f"train.out_dir={tmp_path}", "data.name=ring8", "data.options={n: 4000}",
                               "model.arch=mlp", "model.width=0.5", "model.z_dim=8", "normalization.method=sn",
                               "train.steps=200", "train.n_dis=5", "train.batch_size_d=128", "train.batch_size_g=128",
                               "optim.lr_d=1e-3", "optim.lr_g=1e-3", "optim.betas_d=[0.5, 0.9]",
                               "optim.betas_g=[0.5, 0.9]", "train.progress=false", "train.tensorboard=false",
                               "train.log_every=100", "train.sample_every=200", "train.checkpoint_every=200"])
    trainer = Trainer(c)
    real = trainer.data.sample(1000, torch.Generator().manual_seed(5))
    z = torch.randn(1000, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        before = energy_distance(trainer.G.eval()(z), real)
    trainer.G.train()
    assert trainer.run().status == "finished"
    with torch.no_grad():
        after = energy_distance(trainer.G.eval()(z), real)
    assert after < 0.5 * before, (before, after)


def _weights(run_dir):
    state = load_checkpoint(Path(run_dir) / "checkpoint.pt")
    return state["G"], state["D"], state["opt_d"]["state"]


def _assert_bitwise(a, b):
    for sa, sb in zip(a, b):
        flat_a = {k: v for k, v in _flatten(sa)}
        flat_b = {k: v for k, v in _flatten(sb)}
        assert flat_a.keys() == flat_b.keys()
        for k in flat_a:
            assert torch.equal(flat_a[k], flat_b[k]), k


def _flatten(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _flatten(v, f"{prefix}{k}.")
    elif isinstance(obj, torch.Tensor):
        yield prefix, obj


def test_resume_gives_bitwise_equal_weights(tmp_path):
    extra = ["train.ema_decay=0.9", "normalization.options={scale: 1.2, update: step}", "train.g_reuses_d_z=true",
             "optim.lr_decay=linear"]
    full = train(cfg(tmp_path / "a", "train.steps=12", *extra))
    trainer = Trainer(cfg(tmp_path / "b", "train.steps=12", *extra))
    step = trainer.train_step

    def stop_at_7():
        out = step()
        if trainer.step == 7:
            trainer._stop_signal = signal.SIGTERM  # what the SIGTERM handler records
        return out

    trainer.train_step = stop_at_7
    part = trainer.run()
    assert part.status == "interrupted" and part.step == 7
    done = resume(part.run_dir)
    assert done.step == 12 and done.run_dir == part.run_dir
    _assert_bitwise(_weights(full.run_dir), _weights(done.run_dir))
    ema_a = load_checkpoint(full.run_dir / "checkpoint.pt")["G_ema"]
    ema_b = load_checkpoint(done.run_dir / "checkpoint.pt")["G_ema"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    steps = [json.loads(line)["step"] for line in (done.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6, 8, 10, 12]  # the log continues without duplicates


def test_kill_and_resume_from_the_command_line(tmp_path):
    args = TINY_DIGITS + [f"train.out_dir={tmp_path / 'killed'}", "train.steps=400", "train.checkpoint_every=1000",
                          "train.run_name=r"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "gannorm.cli", "train", *args, "train.threads=1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    metrics = tmp_path / "killed" / "r" / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    status = json.loads((tmp_path / "killed" / "r" / "status.json").read_text())
    assert status["status"] == "interrupted" and 0 < status["step"] < 400
    assert "gannorm train --resume" in err
    killed_at = status["step"]
    rc = subprocess.run([sys.executable, "-m", "gannorm.cli", "train", "--resume", str(tmp_path / "killed" / "r"),
                         f"train.steps={killed_at + 4}", "train.threads=1"], capture_output=True, text=True, env=env)
    assert rc.returncode == 0, rc.stderr
    # the CLI with no config uses the digits preset: the uninterrupted reference must too
    straight = train("digits", TINY_DIGITS + [f"train.out_dir={tmp_path / 'straight'}", f"train.steps={killed_at + 4}",
                                              "train.threads=1"])
    _assert_bitwise(_weights(straight.run_dir), _weights(tmp_path / "killed" / "r"))


def test_nan_run_is_marked_diverged_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = Trainer(cfg(tmp_path, "train.steps=20"))
    original = trainer.train_step

    def exploding_step():
        if trainer.step == 7:  # the weights blow up after the checkpoint of step 5
            with torch.no_grad():
                trainer.D.linear.parametrizations.weight.original.fill_(float("inf"))
        return original()

    trainer.train_step = exploding_step
    result = trainer.run()
    assert result.status == "diverged" and result.step == 7
    status = json.loads((result.run_dir / "status.json").read_text())
    assert status["status"] == "diverged" and status["checkpoint_step"] == 5 and "non-finite" in status["reason"]
    state = load_checkpoint(result.run_dir / "checkpoint.pt")
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for _, v in _flatten(state["D"]))


def test_bf16_precision_trains_with_float32_power_iteration(tmp_path):
    result = train(cfg(tmp_path, "train.steps=3", "train.precision=bf16"))
    assert result.status == "finished"
    state = load_checkpoint(result.run_dir / "checkpoint.pt")
    vectors = [v for k, v in state["D"].items() if k.rsplit(".", 1)[-1].startswith(("_u", "_v"))]
    assert vectors and all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in vectors)


def test_fp16_on_cpu_is_refused(tmp_path):
    with pytest.raises(gannorm.config.ConfigError, match="fp16 needs a GPU; use bf16"):
        Trainer(cfg(tmp_path, "train.precision=fp16", "train.device=cpu"))


def test_bad_registry_values_are_one_line_errors(tmp_path):
    with pytest.raises(gannorm.config.ConfigError, match="train.loss: 'hing' is not one of hinge"):
        Trainer(cfg(tmp_path, "train.loss=hing"))
    with pytest.raises(gannorm.config.ConfigError, match="normalization.method: 'bsssn'"):
        Trainer(cfg(tmp_path, "normalization.method=bsssn"))


def test_top_level_api_and_tensorboard(tmp_path):
    pytest.importorskip("tensorboard")  # the test extra installs it
    result = gannorm.train(cfg(tmp_path, "train.steps=2", "train.tensorboard=true"))
    events = list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert result.status == "finished" and events and events[0].stat().st_size > 0


@pytest.mark.parametrize("extra", [
    ["normalization.method=none", "normalization.options={}", "normalization.function=gn", "train.loss=ns"],
    ["normalization.method=none", "normalization.options={}", "normalization.function=gn",
     "normalization.first_order_g=true"],
    ["normalization.method=sn", "normalization.options={}", "normalization.function=pgn"],
    ["train.penalty=wgan_gp", "train.weight_clip=0.05"],
    ["train.penalty=r1", "train.penalty_every=2", "train.ortho_reg=1e-4"],
])
def test_function_normalizations_and_penalties_train(tmp_path, extra):
    result = train(cfg(tmp_path, "train.steps=4", *extra))
    assert result.status == "finished"
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    if any("penalty" in e for e in extra):
        assert "penalty" in rows[-1]
    if "train.weight_clip=0.05" in extra:
        state = load_checkpoint(result.run_dir / "checkpoint.pt")["D"]
        assert max(float(v.abs().max()) for k, v in state.items() if k.endswith(("original", "bias"))) <= 0.05


def test_gn_refuses_batchnorm_and_unknown_functions(tmp_path):
    with pytest.raises(gannorm.config.ConfigError, match="normalization.function: 'gnn' is not one of none, gn, pgn"):
        Trainer(cfg(tmp_path, "normalization.function=gnn"))


def test_consistency_regularization_trains_and_is_logged(tmp_path):
    result = train(cfg(tmp_path, "train.steps=3", "train.cr_weight=5", "train.cr_translate=0.2"))
    rows = [json.loads(line) for line in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert result.status == "finished" and rows[-1]["penalty"] >= 0


@pytest.mark.parametrize("extra", [[], ["normalization.function=gn", "normalization.method=none",
                                        "normalization.options={}", "normalization.first_order_g=true"]])
def test_channels_last_trains_the_same_model(tmp_path, extra):
    runs = [train(cfg(tmp_path, "train.steps=3", f"train.run_name=cl{flag}", f"train.channels_last={flag}", *extra))
            for flag in ("false", "true")]
    a, b = (load_checkpoint(r.run_dir / "checkpoint.pt") for r in runs)
    for part in ("G", "D"):
        for k, v in a[part].items():
            if v.is_floating_point():
                torch.testing.assert_close(b[part][k].contiguous(), v, rtol=1e-4, atol=1e-5, msg=f"{part} {k}")
    assert b["D"]["features.0.parametrizations.weight.original" if not extra else "inner.features.0.weight"
                  ].is_contiguous(memory_format=torch.channels_last)
