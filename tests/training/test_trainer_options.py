"""Training options, each against a run with it off or an independent computation: train.real_hflip,
train.g_bn_stats_in_d_step, optim.lr_decay_start, train.penalty_weight, normalization.function_eps and
train.eval_metrics. Tiny runs (ring8 with a small MLP, digits at 8 px with width 0.125), one thread."""
import pytest
import torch
from torch import nn
from conftest import DIGITS_CNN, LOG_EVERY_STEP, QUIET as SHARED_QUIET, RING8_MLP

from gannorm import PENALTIES
from gannorm import config as config_mod
from gannorm.app.training import train
from gannorm.runfolder import RunFolder
from gannorm.training import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = [*SHARED_QUIET, *LOG_EVERY_STEP]
RING8 = [*RING8_MLP, *QUIET]
DIGITS = [*DIGITS_CNN, "normalization.method=sn", "normalization.options={}", "train.batch_size_d=64",
          "train.batch_size_g=64", *QUIET]


def cfg(tmp_path, base, *extra):
    return config_mod.load(None, [*base, f"train.out_dir={tmp_path}", *extra])


def last_logged(result, key):
    return RunFolder.open(result.run_dir).read_metrics()[-1].values[key]


# ---------------------------------------------------------------------------------------- train.real_hflip
def d_inputs_of_one_step(trainer):
    """Every batch D sees during one train_step, and the real batch drawn from a copy of the training RNG."""
    seen = []
    hook = trainer.D.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    rng = torch.Generator()
    rng.set_state(trainer.rng.get_state())
    real = trainer.data.sample(trainer.cfg.train.batch_size_d, rng)
    try:
        trainer.train_step()
    finally:
        hook.remove()
    return seen, real


def per_sample(x, y):
    """[B] booleans: image i of x equals image i of y."""
    return (x == y).flatten(1).all(1)


def test_real_hflip_flips_about_half_the_real_images_with_the_training_rng(tmp_path):
    seen, real = d_inputs_of_one_step(Trainer(cfg(tmp_path, DIGITS, "train.real_hflip=false")))
    assert any(torch.equal(x, real) for x in seen)  # off: the real batch as drawn
    batches = []
    for global_seed in (1, 2):  # the global RNG does not decide the flips
        torch.manual_seed(global_seed)
        seen, drawn = d_inputs_of_one_step(Trainer(cfg(tmp_path, DIGITS, "train.real_hflip=true")))
        assert torch.equal(drawn, real)  # the same items are drawn as with hflip off
        flipped = [x for x in seen if x.shape == real.shape and
                   (per_sample(x, real) | per_sample(x, real.flip(-1))).all()]
        assert len(flipped) == 1  # one batch is the real one, each image as drawn or mirrored
        batches.append(flipped[0])
    assert torch.equal(batches[0], batches[1])
    mirrored = per_sample(batches[0], real.flip(-1)) & ~per_sample(batches[0], real)
    kept = per_sample(batches[0], real) & ~per_sample(batches[0], real.flip(-1))
    assert 16 <= int(mirrored.sum()) <= 48 and int(kept.sum()) >= 16  # of 64, flip probability 1/2


# ----------------------------------------------------------------------------- train.g_bn_stats_in_d_step
def batchnorm_update(running_mean, running_var, momentum, x):
    """torch's BatchNorm running-statistics update for one training forward on ``x``, by hand."""
    dims = [0] + list(range(2, x.ndim))
    mean, var = x.double().mean(dims), x.double().var(dims, unbiased=True)
    return (1 - momentum) * running_mean + momentum * mean, (1 - momentum) * running_var + momentum * var


@pytest.mark.parametrize("in_d_step", [True, False])
def test_g_batchnorm_running_stats_update_in_the_d_steps_only_when_asked(tmp_path, in_d_step):
    trainer = Trainer(cfg(tmp_path, DIGITS, "train.n_dis=2", f"train.g_bn_stats_in_d_step={in_d_step}"))
    bns = [m for m in trainer.G.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns
    before = [(m.running_mean.double().clone(), m.running_var.double().clone(), m.momentum,
               int(m.num_batches_tracked)) for m in bns]
    calls, modes = {m: [] for m in bns}, []

    def record(module, args):
        calls[module].append(args[0].detach().clone())
        modes.append(module.training)
    hooks = [m.register_forward_pre_hook(record) for m in bns]
    trainer.train_step()
    for h in hooks:
        h.remove()
    assert all(modes)  # every G forward normalizes with batch statistics, the D steps' too
    for m, (mean, var, momentum, tracked) in zip(bns, before):
        assert len(calls[m]) == 3  # G's forwards: two D steps, then the G step
        counted = calls[m] if in_d_step else calls[m][-1:]
        for x in counted:
            mean, var = batchnorm_update(mean, var, momentum, x)
        torch.testing.assert_close(m.running_mean.double(), mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(m.running_var.double(), var, rtol=1e-5, atol=1e-6)
        assert int(m.num_batches_tracked) == tracked + len(counted)
        assert m.momentum == momentum  # restored after the D steps


# ------------------------------------------------------------------------------------ optim.lr_decay_start
def test_linear_lr_decay_starts_at_lr_decay_start_and_reaches_0_at_the_last_step(tmp_path):
    steps, start, n_dis, lr_d, lr_g = 10, 4, 2, 1e-3, 3e-4
    trainer = Trainer(cfg(tmp_path, RING8, f"train.steps={steps}", f"train.n_dis={n_dis}", "optim.lr_decay=linear",
                          f"optim.lr_decay_start={start}", f"optim.lr_d={lr_d}", f"optim.lr_g={lr_g}"))
    used = {"d": [], "g": []}
    for key, opt in (("d", trainer.opt_d), ("g", trainer.opt_g)):
        opt.register_step_pre_hook(lambda o, args, kwargs, key=key: used[key].append(o.param_groups[0]["lr"]))
    assert trainer.run().status == "finished"
    # G step s (0-based) trains with factor 1 before `start`, then 1 - (s - start) / (steps - start): linear,
    # reaching 0 at s = steps
    factor = [1.0 if s < start else 1 - (s - start) / (steps - start) for s in range(steps)]
    assert factor[start] == 1.0 and factor[-1] == pytest.approx(1 / (steps - start))
    assert used["g"] == pytest.approx([lr_g * f for f in factor], rel=1e-12)
    assert used["d"] == pytest.approx([lr_d * f for f in factor for _ in range(n_dis)], rel=1e-12)


# ------------------------------------------------------------------------------------ train.penalty_weight
@pytest.mark.parametrize("penalty", ["r1", "wgan_gp"])
def test_the_logged_penalty_is_proportional_to_penalty_weight(tmp_path, penalty):
    # one D step: the same seed gives the same D, batch and interpolates, so only the weight differs
    def logged(*extra):
        return last_logged(train(cfg(tmp_path, RING8, "train.steps=1", f"train.penalty={penalty}", *extra)),
                           "penalty")
    one, two, unset = logged("train.penalty_weight=1"), logged("train.penalty_weight=2"), logged()
    assert one > 0
    assert two == pytest.approx(2 * one, rel=1e-6)
    assert unset == pytest.approx(PENALTIES.get(penalty).default_weight * one, rel=1e-6)


# ---------------------------------------------------------------------------- normalization.function_eps
def test_gn_eps_enters_the_denominator(tmp_path):
    trainer = Trainer(cfg(tmp_path, RING8, "normalization.method=none", "normalization.options={}",
                          "normalization.function=gn", "normalization.function_eps=0.5"))
    trainer.train_step()  # a trained D, not only its initialisation
    x = trainer.data.sample(32, torch.Generator().manual_seed(4)).requires_grad_(True)
    f = trainer.D.inner(x).squeeze(1)
    (g,) = torch.autograd.grad(f.sum(), x)
    expected = f.detach() / (g.norm(dim=1) + f.detach().abs() + 0.5)
    torch.testing.assert_close(trainer.D(x.detach()).squeeze(1).detach(), expected, rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------- train.eval_metrics
def test_eval_metrics_names_exactly_what_is_evaluated(tmp_path, monkeypatch):
    monkeypatch.setenv("GANNORM_CACHE", str(tmp_path / "cache"))  # the digits classifier is trained here, once
    result = train(cfg(tmp_path, DIGITS, "train.steps=1", "train.eval_every=1", "train.eval_num_samples=100",
                       "train.eval_metrics=[cis]"))  # the digits default would be cfd, cis and ckid
    records = RunFolder.open(result.run_dir).read_eval()
    assert [(r.step, set(r.metrics)) for r in records] == [(1, {"cis"})]
    assert {k for k in result.last if k.startswith("eval/")} == {"eval/cis", "eval/cis_std"}
