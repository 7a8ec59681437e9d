"""EMA buffer modes (copy / average) and sample modes (eval / train), against hand computations."""
import pytest
import torch
from torch import nn

import gannorm
from gannorm import config as config_mod
from gannorm.runfolder import RunFolder
from gannorm.training import Trainer
from gannorm.training.ema import EMA, power_iteration_buffers
from gannorm.training.sample_mode import SamplingView, sampling

pytestmark = pytest.mark.usefixtures("one_thread")


def _model():
    """Linear -> BatchNorm1d -> an SN-normalized Linear: parameters, BN running stats and SN vectors."""
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), gannorm.normalize(nn.Sequential(nn.Linear(4, 2)), "sn"))


def _live_step(model, k):
    """What a training step does to G: new weights, then a training forward (moves BN stats and SN vectors)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * (k + 1))
    model.train()(torch.randn(6, 3, generator=torch.Generator().manual_seed(k)) * (k + 1) + k)


def test_average_mode_follows_the_ema_recursion_for_bn_stats_and_copies_the_rest():
    model, d, k_steps = _model(), 0.7, 4
    ema = EMA(model, decay=d, buffers="average")
    mean = model[1].running_mean.clone()   # the EMA starts as a copy
    var = model[1].running_var.clone()
    params = [p.detach().clone() for p in model.parameters()]
    for k in range(k_steps):
        _live_step(model, k)
        ema.update(model, step=k + 1)
        mean = d * mean + (1 - d) * model[1].running_mean   # the hand recursion
        var = d * var + (1 - d) * model[1].running_var
        params = [d * e + (1 - d) * p.detach() for e, p in zip(params, model.parameters())]
    e_bn = ema.model[1]
    assert not torch.allclose(e_bn.running_mean, model[1].running_mean)  # averaged, not copied
    torch.testing.assert_close(e_bn.running_mean, mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(e_bn.running_var, var, rtol=1e-6, atol=1e-7)
    assert e_bn.num_batches_tracked.item() == model[1].num_batches_tracked.item() == k_steps  # integers copied
    for e, p in zip(ema.model.parameters(), params):
        torch.testing.assert_close(e, p, rtol=1e-6, atol=1e-7)
    live_sn = model[2][0].parametrizations.weight[0]
    ema_sn = ema.model[2][0].parametrizations.weight[0]
    assert torch.equal(ema_sn._u, live_sn._u) and torch.equal(ema_sn._v, live_sn._v)  # copied, still unit
    assert float(ema_sn._u.norm()) == pytest.approx(1.0, rel=1e-6)


def test_copy_mode_copies_every_buffer_and_average_mode_copies_before_the_start():
    model = _model()
    copy_ema, late = EMA(model, 0.9, buffers="copy"), EMA(model, 0.9, start=10, buffers="average")
    _live_step(model, 0)
    copy_ema.update(model, step=1)
    late.update(model, step=1)  # before ema_start: a plain copy, buffers included
    for ema in (copy_ema, late):
        for (name, e), b in zip(ema.model.named_buffers(), model.buffers()):
            assert torch.equal(e, b), name
    for e, p in zip(late.model.parameters(), model.parameters()):
        assert torch.equal(e, p)


def test_power_iteration_vectors_are_found_by_their_modules():
    gannorm_sn = gannorm.normalize(nn.Sequential(nn.Conv2d(2, 3, 3), nn.Linear(4, 2)), "bsn")
    torch_param = nn.utils.parametrizations.spectral_norm(nn.Linear(3, 3))
    torch_hook = nn.utils.spectral_norm(nn.Linear(3, 3))
    model = nn.ModuleDict({"g": gannorm_sn, "p": torch_param, "h": torch_hook, "bn": nn.BatchNorm1d(3)})
    found = power_iteration_buffers(model)
    expected = {n for n, _ in model.named_buffers() if not n.startswith("bn.")}
    assert found == expected and len(found) == 2 * 2 + 2 + 2 + 2  # BSN's two pairs on the conv, SN on the linear
    assert all(n.split(".")[-1] in ("_u", "_v", "_u1", "_v1", "_u2", "_v2", "weight_u", "weight_v") for n in found)


def test_ema_refuses_an_unknown_buffer_mode():
    with pytest.raises(ValueError, match="copy, average"):
        EMA(nn.Linear(2, 2), 0.9, buffers="mean")


# ------------------------------------------------------------------------------------------ sample modes
def _bn_generator():
    torch.manual_seed(5)
    g = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    with torch.no_grad():  # running statistics far from any batch's, so the two modes differ
        g[1].running_mean.fill_(2.0)
        g[1].running_var.fill_(9.0)
        g[1].num_batches_tracked.fill_(7)
    return g


def _hand_forward(g, z, mean, var):
    lin, bn, out = g[0], g[1], g[3]
    h = z @ lin.weight.T + lin.bias
    h = (h - mean) / torch.sqrt(var + bn.eps) * bn.weight + bn.bias
    return torch.relu(h) @ out.weight.T + out.bias


@pytest.mark.parametrize("starts_in_train", [False, True])
def test_train_mode_sampling_uses_batch_statistics_and_changes_nothing(starts_in_train):
    g = _bn_generator().train(starts_in_train)
    before = {k: v.clone() for k, v in g.state_dict().items()}
    z = torch.randn(10, 4, generator=torch.Generator().manual_seed(1))
    with sampling(g, "train") as s:
        out = s(z)
        assert torch.is_grad_enabled() is False
    h = z @ g[0].weight.T + g[0].bias
    expected = _hand_forward(g, z, h.mean(0), h.var(0, unbiased=False))   # the batch's own statistics
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    assert all(torch.equal(before[k], v) for k, v in g.state_dict().items())  # running stats and count unchanged
    assert all(m.training == starts_in_train for m in g.modules())
    with sampling(g, "eval") as s:
        out_eval = s(z)
    torch.testing.assert_close(out_eval, _hand_forward(g, z, g[1].running_mean, g[1].running_var), rtol=1e-5,
                               atol=1e-6)
    assert all(m.training == starts_in_train for m in g.modules())


def test_a_sampling_view_keeps_its_mode_when_set_to_eval():
    g = _bn_generator().eval()
    view = SamplingView(g, "train").eval()  # what the metrics' generate() does
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(2))
    with sampling(g, "train"):
        expected = g(z)
    assert torch.equal(view(z), expected) and not g.training
    assert list(view.parameters()) == []  # the generator is held, not a submodule


# ------------------------------------------------------------------------------------------ in the trainer
def test_trainer_averages_bn_stats_and_samples_in_train_mode(tmp_path):
    """A GN-GAN-style run: the EMA's BN stats follow the recursion; the grid and the evaluation use batch stats."""
    c = config_mod.load(None, ["data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125",
                               "train.batch_size_d=8", "train.batch_size_g=8", "train.steps=3", "train.log_every=1",
                               "train.sample_every=3", "train.checkpoint_every=3", "train.eval_every=3",
                               "train.eval_num_samples=64", "train.eval_metrics=[cfd]", "train.progress=false",
                               "train.tensorboard=false", "diagnostics.every=0", "train.ema_decay=0.5",
                               "train.ema_buffers=average", "train.sample_mode=train", f"train.out_dir={tmp_path}"])
    trainer = Trainer(c)
    expected = trainer.ema.model.bn0.running_mean.clone()
    original = Trainer.train_step

    def step_and_record(self):
        out = original(self)
        expected.mul_(0.5).add_(0.5 * self.G.bn0.running_mean)
        return out

    trainer.train_step = step_and_record.__get__(trainer)
    ema_buffers_before_grid = {}

    def grid_keeps_buffers(self=trainer, save=trainer.save_samples):
        ema_buffers_before_grid.update({k: v.clone() for k, v in self.ema.model.state_dict().items()})
        path = save()
        assert all(torch.equal(v, ema_buffers_before_grid[k]) for k, v in self.ema.model.state_dict().items())
        return path

    trainer.save_samples = grid_keeps_buffers
    assert trainer.run().status == "finished"
    torch.testing.assert_close(trainer.ema.model.bn0.running_mean, expected, rtol=1e-6, atol=1e-7)
    assert not torch.equal(trainer.ema.model.bn0.running_mean, trainer.G.bn0.running_mean)
    assert ema_buffers_before_grid and not trainer.ema.model.training
    (record,) = RunFolder.open(trainer.run_dir).read_eval()
    assert record.protocol["generator_mode"] == "train" and record.generator == "ema"


@pytest.mark.parametrize("override,message", [
    ("train.ema_buffers=mean", "config key train.ema_buffers: 'mean' is not one of copy, average"),
    ("train.sample_mode=test", "config key train.sample_mode: 'test' is not one of eval, train"),
])
def test_the_mode_keys_are_checked(override, message):
    with pytest.raises(config_mod.ConfigError) as err:
        config_mod.load(None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)
