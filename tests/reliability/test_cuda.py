"""Everything that runs on CUDA, run on every device there is: the CPU always, a GPU where one exists.

Each test takes ``device`` from :data:`DEVICES`; the cuda case is skipped with the reason "no GPU" where
``torch.cuda.is_available()`` is false, so the same code runs on the CPU here and on a GPU where there is
one. A GPU run is checked against the CPU on the same inputs (the models are built on the CPU from the
seed, the data and z come from CPU generators, so both devices compute the same function): with TF32 off
(cudnn allows it for convolutions by default) the two agree to float32 rounding, ``RTOL``/``ATOL``.

- training: a few steps of a tiny digits run for each of :data:`CONFIGS` finish with finite losses, every
  parameter, buffer and optimizer state on the device; the checkpoint loads on the CPU with
  ``weights_only=True``, holds the trained weights, and resumes on the other device (a GPU run on the CPU,
  a CPU run on the GPU where there is one);
- precision: bf16 autocast on both devices and fp16 (with its GradScaler) on a GPU really run the
  discriminator's convolutions in that dtype, with float32 weights and power-iteration vectors; fp16 on the
  CPU is the one-line error;
- sampling and evaluation: a run's samples and its ``gannorm eval`` numbers (the digits classifier) on the
  device equal the CPU's within the tolerances;
- state: G's BatchNorm, the GN wrapper and the EMA copy follow ``.to(device)`` (the normalization methods,
  feature norms included, are ``test_devices.py``'s); the Lipschitz bound's restarted Lanczos runs there;
- device names: one gannorm does not train on, or a GPU index past the last GPU, is a one-line error.

The cases marked ``xfail(strict=True)`` are known bugs, each named in its reason with its fix; once a fix is
in, its case passes, which fails the run until the mark is removed.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math

import pytest
import torch
from torch import nn
from conftest import DIGITS_CNN, LOG_EVERY_STEP, QUIET as SHARED_QUIET

from gannorm import config as config_mod
from gannorm.app.evaluation import evaluate_run
from gannorm.app.sampling import load_generator, sample_z
from gannorm.diagnostics import lipschitz, operator_norm
from gannorm.errors import ConfigError
from gannorm.gradnorm import GradientNormalized
from gannorm.metrics.evaluate import EvalOptions, generate
from gannorm.networks import build_discriminator, build_generator
from gannorm.runfolder import RunFolder
from gannorm.training import Trainer
from gannorm.training.ema import EMA
from gannorm.training.sample_mode import sampling

pytestmark = pytest.mark.usefixtures("one_thread")

GPU = torch.cuda.is_available()
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not GPU, reason="no GPU"))
DEVICES = ["cpu", CUDA]
#: where a run trained on ``device`` is resumed: the other device (the CPU again where there is no GPU)
OTHER = {"cpu": "cuda" if GPU else "cpu", "cuda": "cpu"}
#: a GPU against the CPU, TF32 off: float32 rounding through a few small layers
RTOL, ATOL = 1e-3, 1e-5

QUIET = [*SHARED_QUIET, *LOG_EVERY_STEP]
TINY = [*DIGITS_CNN, "normalization.method=sn", "normalization.options={}", "train.batch_size_d=8",
        "train.batch_size_g=8", "train.steps=2", *QUIET]

#: a representative set of what training runs: each weight normalization family, GN/PGN, a penalty, CR, EMA
CONFIGS = {
    "sn": ["diagnostics.every=2", "diagnostics.batch_size=8"],  # the probes and Lipschitz bounds on the device
    "bssn": ["normalization.method=bssn", "normalization.options={scale: 1.2}"],
    "strict_sn": ["normalization.method=strict_sn"],
    "msn": ["normalization.method=msn"],
    "gn": ["normalization.method=none", "normalization.function=gn", "train.channels_last=true"],
    "pgn": ["normalization.method=none", "normalization.function=pgn", "train.real_hflip=true"],
    "wgan_gp": ["normalization.method=none", "train.loss=wasserstein", "train.penalty=wgan_gp"],
    "cr": ["train.cr_weight=5", "train.cr_translate=0.2"],
    "ema": ["train.ema_decay=0.9", "train.ema_buffers=average"],
    "first_order_g": ["normalization.method=none", "normalization.function=gn", "normalization.first_order_g=true"],
}


def cfg(tmp_path, device, *extra):
    return config_mod.load(None, [*TINY, f"train.out_dir={tmp_path}", f"train.device={device}", *extra])


@pytest.fixture
def no_tf32():
    """Float32 convolutions and matmuls on a GPU (cudnn allows TF32 by default), so that it matches the CPU;
    the flags are restored afterwards."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    before = cudnn.allow_tf32, matmul.allow_tf32
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32 = before


def off_device(device, **modules: nn.Module) -> list[str]:
    """The parameters and buffers (state-dict names, parametrizations' vectors included) not on ``device``."""
    kind = torch.device(device).type
    return [f"{name}.{key}" for name, m in modules.items()
            for key, t in m.state_dict(keep_vars=True).items() if t.device.type != kind]


def trainer_off_device(device, trainer: Trainer) -> list[str]:
    """What of ``trainer``'s models and optimizer states is not on ``device`` (Adam's step counts are CPU
    scalars by design)."""
    models = {"G": trainer.G, "D": trainer.D, **({"G_ema": trainer.ema.model} if trainer.ema else {})}
    stray = off_device(device, **models)
    kind = torch.device(device).type
    for name, opt in (("opt_g", trainer.opt_g), ("opt_d", trainer.opt_d)):
        stray += [f"{name}.{key}" for state in opt.state.values() for key, t in state.items()
                  if torch.is_tensor(t) and key != "step" and t.device.type != kind]
    return stray


def logged(run_dir) -> list[dict[str, float]]:
    """The training scalars of each G step (``train.log_every=1``), in order, once every row of
    ``metrics.jsonl`` (the probes' ``diag/`` rows too) is checked to be finite."""
    rows = RunFolder.open(run_dir).read_metrics()
    assert_finite([r.values for r in rows])
    steps = [r for r in rows if "loss_d" in r.values]
    assert [r.step for r in steps] == list(range(1, len(steps) + 1))
    return [r.values for r in steps]


def assert_finite(rows):
    bad = [(i, k, v) for i, row in enumerate(rows) for k, v in row.items()
           if isinstance(v, float) and not math.isfinite(v)]
    assert rows and not bad, bad


# ---------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("device", DEVICES)
def test_training_runs_on_the_device_and_resumes_on_the_other(tmp_path, device, name, no_tf32):
    trainer = Trainer(cfg(tmp_path / "a", device, *CONFIGS[name]))
    assert trainer.device.type == device
    result = trainer.run()
    assert (result.status, result.step) == ("finished", 2)
    rows = logged(result.run_dir)
    assert len(rows) == 2
    if name == "sn":  # the probes ran on the device (steps 0 and 2)
        assert len(RunFolder.open(result.run_dir).read_diagnostics()) == 2
    assert not trainer_off_device(device, trainer)
    if device == "cuda":  # the first D step (n_dis 1) sees the initial weights, the same data and z: the CPU's numbers
        reference = Trainer(cfg(tmp_path / "b", "cpu", *CONFIGS[name])).run()
        first, expected = rows[0], logged(reference.run_dir)[0]
        for key in ("loss_d", "d_real", "d_fake"):
            assert first[key] == pytest.approx(expected[key], rel=RTOL, abs=ATOL), key

    # the checkpoint loads on the CPU with weights_only and holds the trained weights
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    assert state["step"] == 2
    for key, model in (("G", trainer.G), ("D", trainer.D)):
        saved = state[key]
        assert saved.keys() == model.state_dict().keys()
        for k, t in model.state_dict().items():
            assert torch.equal(saved[k], t.detach().cpu()), f"{key}.{k}"

    # ... and resumes on the other device from exactly those weights
    other = OTHER[device]
    folder = RunFolder.open(result.run_dir)
    resumed = Trainer(folder.read_config([f"train.device={other}", "train.steps=3"]), resume=result.run_dir)
    assert resumed.device.type == other and resumed.step == 2
    assert not trainer_off_device(other, resumed)
    for k, t in resumed.D.state_dict().items():
        assert torch.equal(t.cpu(), state["D"][k]), k
    again = resumed.run()
    assert (again.status, again.step) == ("finished", 3)
    assert len(logged(again.run_dir)) == 3
    assert not trainer_off_device(other, resumed)


# ---------------------------------------------------------------------------------------------- precision
AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}
@pytest.mark.parametrize("function", ["none", pytest.param("gn", id="gn")])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("device", DEVICES)
def test_mixed_precision_runs_the_convolutions_in_that_dtype(tmp_path, device, precision, function, request):
    c = cfg(tmp_path, device, f"train.precision={precision}", f"normalization.function={function}",
            *(["normalization.method=none"] if function != "none" else []))
    if precision == "fp16" and device == "cpu":
        with pytest.raises(ConfigError) as err:
            Trainer(c)
        assert str(err.value) == "config key train.precision: fp16 needs a GPU; use bf16 on the CPU"
        return
    trainer = Trainer(c)
    seen: set[torch.dtype] = set()
    first_conv = next(m for m in trainer.D.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_hook(lambda m, args, out: seen.add(out.dtype))
    result = trainer.run()
    assert (result.status, result.step) == ("finished", 2)
    assert len(logged(result.run_dir)) == 2
    assert seen == {AUTOCAST[precision]}  # autocast on this device's type, not another's
    # the weights, the optimizer and the power-iteration vectors stay float32
    for name, t in [*trainer.D.state_dict().items(), *trainer.G.state_dict().items()]:
        assert not t.is_floating_point() or t.dtype == torch.float32, name
    assert not trainer_off_device(device, trainer)
    state = torch.load(result.checkpoint, map_location="cpu", weights_only=True)
    if precision == "fp16":  # the loss scaler runs, and its state is saved
        assert trainer.scaler is not None and math.isfinite(trainer.scaler.get_scale())
        assert state["scaler"] and math.isfinite(float(state["scaler"]["scale"]))
    else:
        assert trainer.scaler is None and state["scaler"] is None


# ---------------------------------------------------------------------------------- sampling and evaluation
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 2-step digits run with an EMA, trained on the CPU (one thread)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = tmp_path_factory.mktemp("runs")
        result = Trainer(cfg(out, "cpu", "train.ema_decay=0.5", "train.run_name=r")).run()
    finally:
        torch.set_num_threads(before)
    assert result.status == "finished"
    return result.run_dir


@pytest.mark.parametrize("device", DEVICES)
def test_samples_on_the_device_equal_the_cpu_ones(tiny_run, device, no_tf32):
    g, c, shape = load_generator(tiny_run)
    z = sample_z(40, c.model.z_dim, seed=3)
    with sampling(g, c.train.sample_mode):
        expected = g(z)
    g_dev = copy.deepcopy(g).to(device)
    assert not off_device(device, G=g_dev)
    with sampling(g_dev, c.train.sample_mode):
        x = g_dev(z.to(device))
    assert x.device.type == device and x.shape == (40, *shape)
    torch.testing.assert_close(x.cpu(), expected, rtol=RTOL, atol=ATOL)
    # the evaluation's batched generation: samples on the device, returned on the CPU, in the same batches
    on_device = generate(g_dev, 300, c.model.z_dim, seed=7, batch_size=256, device=device)
    assert on_device.device.type == "cpu"
    torch.testing.assert_close(on_device, generate(g, 300, c.model.z_dim, seed=7, batch_size=256),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("device", DEVICES)
def test_evaluation_on_the_device_gives_the_cpu_numbers(tiny_run, device, tmp_path, no_tf32):
    """``gannorm eval`` of the EMA and raw generators by the digits classifier (cached under
    ``~/.cache/gannorm`` or ``GANNORM_CACHE``; trained once, some seconds, where it is missing)."""
    options = EvalOptions(metrics=("cfd", "cis", "ckid"), num_samples=200, progress=False)
    cpu = evaluate_run(tiny_run, dataclasses.replace(options, device="cpu"), tmp_path / "cpu.json")
    dev = evaluate_run(tiny_run, dataclasses.replace(options, device=device), tmp_path / "dev.json")
    assert set(dev["results"]) == set(cpu["results"]) == {"ema", "raw"}
    for kind, result in dev["results"].items():
        for metric, values in result["metrics"].items():
            expected = cpu["results"][kind]["metrics"][metric]
            for key, value in values.items():
                # samples agree to ~1e-6; the classifier (always on the CPU) maps them to the same features
                assert value == pytest.approx(expected[key], rel=1e-3, abs=1e-4), (kind, metric, key)
    assert json.loads((tmp_path / "dev.json").read_text())["step"] == 2


# ------------------------------------------------------------------------------------ state follows .to()
#: on the CPU-only machine the move is checked with the meta device: like a GPU, not where the model was built
MOVES = ["meta", CUDA]


def generators():
    torch.manual_seed(0)
    yield "cnn", build_generator("cnn", (3, 16, 16), z_dim=8, width=0.125)
    yield "resnet", build_generator("resnet", (3, 16, 16), z_dim=8, width=0.125)


@pytest.mark.parametrize("device", MOVES)
def test_generator_batchnorm_and_the_ema_copy_follow_to(device, no_tf32):
    for arch, g in generators():
        assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in g.modules()), arch
        moved = copy.deepcopy(g).to(device)
        assert not off_device(device, G=moved), arch
        ema = EMA(moved, 0.9, buffers="average")  # the trainer builds it from G on the device
        assert not off_device(device, G_ema=ema.model), arch
        ema.update(moved, 1)
        assert not off_device(device, G_ema=ema.model), arch
        if device == "meta":
            continue
        z = torch.randn(5, 8)
        with torch.no_grad():
            torch.testing.assert_close(moved.eval()(z.to(device)).cpu(), g.eval()(z), rtol=RTOL, atol=1e-4)


@pytest.mark.parametrize("first_order_g", [False, True])
@pytest.mark.parametrize("device", MOVES)
def test_the_gn_wrapper_follows_to(device, first_order_g, no_tf32):
    torch.manual_seed(0)
    d = GradientNormalized(build_discriminator("cnn", (3, 16, 16), width=0.125, normalization="sn"), "gn",
                           0.0, first_order_g)
    moved = copy.deepcopy(d).to(device)
    assert not off_device(device, D=moved)
    if device == "meta":
        return
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    torch.testing.assert_close(moved.eval()(x.to(device)).detach().cpu(), d.eval()(x).detach(), rtol=RTOL,
                               atol=1e-4)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not GPU, reason="no GPU"))])
def test_operator_norm_restarts_its_lanczos_on_the_device(device, monkeypatch, no_tf32):
    """A basis of 8 vectors (as a large layer gets) makes the Lanczos iteration restart; the result is the
    largest singular value of the layer's dense matrix."""
    monkeypatch.setattr(lipschitz, "_BASIS_BYTES", 0)
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1).to(device)
    shape = (2, 5, 5)
    calls = []
    conv.register_forward_hook(lambda m, args, out: calls.append(1))
    sigma = operator_norm(conv, shape, n_iter=200, tol=1e-9)
    assert len(calls) > 2 * 8  # more matvecs (one forward each, a few more to check affinity) than a basis holds
    n = math.prod(shape)
    with torch.no_grad():
        basis = torch.eye(n, device=device).reshape(n, *shape)
        dense = (conv(basis) - conv(torch.zeros(1, *shape, device=device))).reshape(n, -1)
    assert sigma == pytest.approx(float(torch.linalg.matrix_norm(dense.double().cpu(), ord=2)), rel=1e-5)


# ------------------------------------------------------------------------------------------ device names
def test_a_device_gannorm_does_not_train_on_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError) as err:
        Trainer(cfg(tmp_path, "meta"))
    assert str(err.value).startswith("config key train.device: 'meta' ") and "\n" not in str(err.value)
    assert not any(tmp_path.iterdir())  # refused before a run folder is made


@pytest.mark.skipif(not GPU, reason="no GPU")
def test_a_gpu_index_past_the_last_gpu_is_a_one_line_error(tmp_path):
    name = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(ConfigError) as err:
        Trainer(cfg(tmp_path, name))
    assert str(err.value).startswith(f"config key train.device: {name} ") and "\n" not in str(err.value)
