"""The trainer on tiny data: outputs, a real learning signal, exact resume, divergence."""
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import gannorm
from gannorm import config as config_mod
from gannorm.app.training import resume, train
from gannorm.cli import main
from gannorm.networks import NETWORKS, NetworkSpec, build_generator
from gannorm.registry import Entry
from gannorm.runfolder import RunFolder
from gannorm.training import Callback, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_DIGITS = ["data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125",
               "normalization.method=bssn", "normalization.options={scale: 1.2}", "train.batch_size_d=16",
               "train.batch_size_g=16", "train.log_every=2", "train.sample_every=5", "train.checkpoint_every=5",
               "train.progress=false", "train.tensorboard=false"]


def cfg(tmp_path, *extra):
    return config_mod.load(None, TINY_DIGITS + [f"train.out_dir={tmp_path}"] + list(extra))


def checkpoint(run_dir):
    return RunFolder.open(run_dir).load_checkpoint()


def metrics_rows(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def energy_distance(x, y):
    """Independent two-sample energy distance (Szekely): 2E|X-Y| - E|X-X'| - E|Y-Y'|."""
    return float(2 * torch.cdist(x, y).mean() - torch.cdist(x, x).mean() - torch.cdist(y, y).mean())


def test_run_folder_holds_everything(tmp_path):
    result = train(cfg(tmp_path, "train.steps=6"))
    d = result.run_dir
    assert result.status == "finished" and result.step == 6
    for name in ["config.yaml", "metrics.jsonl", "metrics.csv", "checkpoint.pt", "samples.png", "status.json"]:
        assert (d / name).is_file(), name
    rows = metrics_rows(d)
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert {"loss_d", "loss_g", "d_real", "d_fake", "it_per_s", "sigma/features.0/sigma1"} <= set(rows[0])
    assert json.loads((d / "status.json").read_text())["status"] == "finished"
    assert sorted(p.name for p in (d / "samples").iterdir()) == ["step_0000005.png", "step_0000006.png"]
    state = checkpoint(d)
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
    state = checkpoint(run_dir)
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


class StopAt(Callback):
    """Asks the trainer to stop after G step ``step``, as the SIGTERM handler does."""

    def __init__(self, step):
        self.step = step

    def on_step(self, trainer, scalars):
        if trainer.step == self.step:
            trainer.request_stop(signal.SIGTERM)


def test_resume_gives_bitwise_equal_weights(tmp_path):
    extra = ["train.ema_decay=0.9", "normalization.options={scale: 1.2, update: step}", "train.g_reuses_d_z=true",
             "optim.lr_decay=linear"]
    full = train(cfg(tmp_path / "a", "train.steps=12", *extra))
    trainer = Trainer(cfg(tmp_path / "b", "train.steps=12", *extra))
    trainer.callbacks.append(StopAt(7))
    part = trainer.run()
    assert part.status == "interrupted" and part.step == 7 and checkpoint(part.run_dir)["step"] == 7
    done = resume(part.run_dir)
    assert done.step == 12 and done.run_dir == part.run_dir
    _assert_bitwise(_weights(full.run_dir), _weights(done.run_dir))
    ema_a = checkpoint(full.run_dir)["G_ema"]
    ema_b = checkpoint(done.run_dir)["G_ema"]
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    steps = [r["step"] for r in metrics_rows(done.run_dir)]
    assert steps == [2, 4, 6, 8, 10, 12]  # the log continues without duplicates


# The CLI in a child process whose train_step sends the process a real SIGINT during G step K, as a Ctrl-C
# would: the handler must let step K finish, checkpoint it and exit with 130.
SIGINT_AT_STEP = """
import os, signal, sys
from gannorm.cli import main
from gannorm.training import Trainer
train_step = Trainer.train_step
def interrupted_step(self):
    out = train_step(self)
    if self.step == {step}:
        os.kill(os.getpid(), signal.SIGINT)
    return out
Trainer.train_step = interrupted_step
sys.exit(main(sys.argv[1:]))
"""


def test_sigint_stops_after_the_step_and_the_command_line_resumes_it(tmp_path):
    killed_at = 3
    run = tmp_path / "killed" / "r"
    args = TINY_DIGITS + [f"train.out_dir={tmp_path / 'killed'}", "train.steps=400", "train.checkpoint_every=1000",
                          "train.run_name=r", "train.threads=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", SIGINT_AT_STEP.format(step=killed_at), "train", *args],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 130, proc.stderr
    assert "gannorm train --resume" in proc.stderr
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["step"] == killed_at
    assert checkpoint(run)["step"] == killed_at  # saved on the way out, although checkpoint_every=1000
    assert main(["train", "--resume", str(run), f"train.steps={killed_at + 4}"]) == 0
    # the CLI with no config uses the digits preset: the uninterrupted reference must too
    straight = train("digits", TINY_DIGITS + [f"train.out_dir={tmp_path / 'straight'}", f"train.steps={killed_at + 4}",
                                              "train.threads=1"])
    _assert_bitwise(_weights(straight.run_dir), _weights(run))


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
    state = checkpoint(result.run_dir)
    assert state["step"] == 5
    assert all(torch.isfinite(v).all() for _, v in _flatten(state["D"]))


def test_bf16_precision_trains_with_float32_power_iteration(tmp_path):
    result = train(cfg(tmp_path, "train.steps=3", "train.precision=bf16"))
    assert result.status == "finished"
    state = checkpoint(result.run_dir)
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
    result = gannorm.train(cfg(tmp_path, "train.steps=2", "train.tensorboard=true"))
    events = list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert result.status == "finished" and events and events[0].stat().st_size > 0


def per_sample_input_gradients(D, x):
    """D's outputs [B] and the norms of their input gradients [B], by autograd (samples are independent)."""
    x = x.clone().requires_grad_(True)
    out = D(x).squeeze(1)
    (g,) = torch.autograd.grad(out.sum(), x)
    return out.detach(), g.flatten(1).norm(dim=1)


def check_gn(trainer, x):
    """GN's bound and, on a linear piece of a LeakyReLU D (n = ||grad f|| locally constant), its exact shape:
    |f/(n + |f|)| = 1 - n/(n + |f|) and ||grad (f/(n + |f|))|| = n^2/(n + |f|)^2, so sqrt(grad norm) + |out| = 1."""
    trainer.D.eval()  # stored power-iteration vectors: every forward sees the same D
    out, norms = per_sample_input_gradients(trainer.D, x)
    assert (out.abs() < 1).all() and (norms <= 1 + 1e-5).all()
    torch.testing.assert_close(norms.sqrt() + out.abs(), torch.ones_like(out), rtol=0, atol=1e-4)


def check_pgn(trainer, x):
    """D is PGN of the network it wraps: (1 - f) / (||1 - grad f|| + |1 - f|), by autograd on the inner network."""
    trainer.D.eval()  # stored power-iteration vectors: every forward sees the same D
    xs = x.clone().requires_grad_(True)
    f = trainer.D.inner(xs).squeeze(1)
    (g,) = torch.autograd.grad(f.sum(), xs)
    expected = (1 - f.detach()) / ((1 - g).flatten(1).norm(dim=1) + (1 - f.detach()).abs())
    torch.testing.assert_close(trainer.D(x).squeeze(1).detach(), expected, rtol=1e-5, atol=1e-6)


def check_weight_clip(trainer, x):
    raw = [p for name, p in trainer.D.named_parameters() if name.endswith(("original", "bias"))]
    assert raw and max(float(p.detach().abs().max()) for p in raw) <= 0.05


@pytest.mark.parametrize("extra,check", [
    (["normalization.method=none", "normalization.options={}", "normalization.function=gn", "train.loss=ns"],
     check_gn),
    (["normalization.method=none", "normalization.options={}", "normalization.function=gn",
      "normalization.first_order_g=true"], check_gn),
    (["normalization.method=sn", "normalization.options={}", "normalization.function=pgn"], check_pgn),
    (["train.penalty=wgan_gp", "train.weight_clip=0.05"], check_weight_clip),
    (["train.penalty=r1", "train.penalty_every=2", "train.ortho_reg=1e-4"], None),
])
def test_function_normalizations_and_penalties_train(tmp_path, extra, check):
    result = train(cfg(tmp_path, "train.steps=4", *extra))
    assert result.status == "finished"
    rows = metrics_rows(result.run_dir)
    assert all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    if any("penalty" in e for e in extra):
        assert "penalty" in rows[-1]
    if check is not None:  # the trained D (rebuilt from the checkpoint) is what the config asked for
        trainer = Trainer(cfg(tmp_path / "check", "train.steps=4", *extra))
        trainer.D.load_state_dict(checkpoint(result.run_dir)["D"])
        check(trainer, trainer.data.sample(16, torch.Generator().manual_seed(3)))


def bn_mlp_discriminator(shape, *, width, depth, hidden, slope):
    return nn.Sequential(nn.Linear(shape[0], 16), nn.BatchNorm1d(16), nn.LeakyReLU(slope), nn.Linear(16, 1))


def test_gn_refuses_batchnorm_and_unknown_functions(tmp_path, monkeypatch):
    with pytest.raises(gannorm.config.ConfigError, match="normalization.function: 'gnn' is not one of none, gn, pgn"):
        Trainer(cfg(tmp_path, "normalization.function=gnn"))
    # a user's architecture whose D has a BatchNorm (registered for this test only)
    mlp = NETWORKS.get("mlp")
    spec = NetworkSpec(mlp.generator, bn_mlp_discriminator, "vector", options=mlp.options)
    monkeypatch.setitem(NETWORKS._entries, "bn_mlp", Entry("bn_mlp", spec, "MLP D with a BatchNorm1d"))
    ring8 = ["data.name=ring8", "data.options={n: 100}", "data.resolution=null", "model.arch=bn_mlp",
             "normalization.method=none", "normalization.options={}"]
    for function in ("gn", "pgn"):
        with pytest.raises(ValueError) as err:
            Trainer(cfg(tmp_path, *ring8, f"normalization.function={function}"))
        assert str(err.value) == (f"{function} needs a discriminator without batch-coupling layers, but 1 "
                                  "(BatchNorm1d) mixes samples; remove it (or use a per-sample normalization such "
                                  "as SN)")
    # MSN's mean-only batch norm couples samples too
    # (refused by the config, from the method's registry entry: couples_samples)
    with pytest.raises(ValueError, match="^config key normalization.function: gn needs per-sample D outputs, but "
                                         "normalization.method 'msn' uses batch statistics"):
        Trainer(cfg(tmp_path, "normalization.method=msn", "normalization.options={}", "normalization.function=gn"))
    for method in ("msn", "batch_norm"):
        with pytest.raises(ValueError, match=f"^config key train.penalty: r1 penalizes per-sample input gradients, "
                                             f"but normalization.method '{method}' uses batch statistics"):
            Trainer(cfg(tmp_path, f"normalization.method={method}", "normalization.options={}", "train.penalty=r1"))
    assert not list(tmp_path.iterdir())  # refused before any run folder was made


def test_consistency_regularization_is_logged_and_scales_with_its_weight(tmp_path):
    # one D step, logged: the same seed gives the same batch, augmentation and D, so only the weight differs
    logged = [metrics_rows(train(cfg(tmp_path, "train.steps=1", "train.log_every=1", f"train.cr_weight={w}",
                                     "train.cr_translate=0.2")).run_dir)[-1]["penalty"] for w in (5, 10)]
    assert logged[0] > 0
    assert logged[1] == pytest.approx(2 * logged[0], rel=1e-6)


def biases_before_batchnorm(model):
    """Biases of layers followed by a BatchNorm: their gradient is 0 in exact arithmetic (BN removes the batch
    mean), so Adam moves them by rounding noise alone, differently in two memory layouts."""
    leaves = [(n, m) for n, m in model.named_modules() if not list(m.children())]
    return {f"{n}.bias" for (n, m), (_, after) in zip(leaves, leaves[1:])
            if isinstance(after, nn.modules.batchnorm._BatchNorm) and getattr(m, "bias", None) is not None}


@pytest.mark.parametrize("extra", [[], ["normalization.function=gn", "normalization.method=none",
                                        "normalization.options={}", "normalization.first_order_g=true"]])
def test_channels_last_trains_the_same_model(tmp_path, extra):
    runs = [train(cfg(tmp_path, "train.steps=3", f"train.run_name=cl{flag}", f"train.channels_last={flag}", *extra))
            for flag in ("false", "true")]
    a, b = (checkpoint(r.run_dir) for r in runs)
    noise_only = {"G": biases_before_batchnorm(build_generator("cnn", (1, 8, 8), width=0.125)), "D": set()}
    assert noise_only["G"]  # the SNGAN CNN G has conv + BN blocks
    for part in ("G", "D"):
        for k, v in a[part].items():
            if v.is_floating_point() and k not in noise_only[part]:
                torch.testing.assert_close(b[part][k].contiguous(), v, rtol=1e-4, atol=1e-5, msg=f"{part} {k}")
    assert b["D"]["features.0.parametrizations.weight.original" if not extra else "inner.features.0.weight"
                  ].is_contiguous(memory_format=torch.channels_last)


def test_the_models_are_built_on_train_threads(tmp_path, monkeypatch):
    """The models are built (initialised, normalized, BSSN's power iterations warmed up) on ``train.threads``,
    as the training runs, and the caller's count is restored. They were built on the caller's count: the
    warm-up's matrix products sum in the thread count's order, so a sweep worker (2 threads by default,
    ``train.threads=1``) started a BSSN run from other vectors than ``gannorm train`` with OMP_NUM_THREADS=1,
    and the runs ended apart (final FD 5.44 against 4.83 for one seed)."""
    seen = []
    build = Trainer._build_models

    def spy(self):
        seen.append(torch.get_num_threads())
        return build(self)

    monkeypatch.setattr(Trainer, "_build_models", spy)
    wide = ["data.resolution=16", "model.width=0.25", "model.d_options={extra_convs: 2}", "train.threads=1"]
    states = []
    for caller in (2, 1):
        torch.set_num_threads(caller)  # the one_thread fixture restores the count afterwards
        trainer = Trainer(cfg(tmp_path / str(caller), *wide))
        assert torch.get_num_threads() == caller
        states.append({k: v.clone() for k, v in trainer.D.state_dict().items()})
    assert seen == [1, 1]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
