"""Mean drift (act_mean, act_std) and gradient sparsity against independent computations; the records."""
import json
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import gannorm
from gannorm.diagnostics.probes import (SPARSITY_TAU, ChannelMoments, activation_statistics, channel_moments,
                                        gradient_sparsity, probe)
from gannorm.diagnostics.records import OPTIONAL_QUANTITIES, LayerProbe, ProbeRecord
from gannorm.losses import LOSSES

HINGE = LOSSES.get("hinge").d


def pooled_stats(outputs, channel_dim=1):
    """act_mean and act_std from numpy: the outputs concatenated, per-channel moments over the rest."""
    x = np.concatenate([np.moveaxis(o.detach().double().numpy(), channel_dim, 0).reshape(o.shape[channel_dim], -1)
                        for o in outputs], axis=1)
    return np.abs(x.mean(axis=1)).mean(), math.sqrt(x.var(axis=1).mean())


def test_a_zero_weight_linear_layer_has_its_bias_as_channel_means():
    d = nn.Sequential(nn.Linear(5, 4), nn.LeakyReLU(0.2), nn.Linear(4, 1))
    bias = torch.tensor([0.5, -2.0, 0.0, 3.0])
    with torch.no_grad():
        d[0].weight.zero_()
        d[0].bias.copy_(bias)
    rec = probe(d, HINGE, torch.randn(6, 5), torch.randn(3, 5), bounds=False)
    layer = rec.layers["0"]
    assert layer.act_mean == pytest.approx(float(bias.abs().mean()), rel=1e-12)
    assert layer.act_std == 0.0 and math.isnan(layer.drift)  # constant outputs: no spread


def test_conv_statistics_match_numpy_on_the_pooled_real_and_fake_outputs():
    torch.manual_seed(0)
    d = nn.Sequential(nn.Conv2d(2, 6, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(6, 8, 3, 1, 1), nn.LeakyReLU(0.2),
                      nn.Flatten(), nn.Linear(8 * 4 * 4, 1))
    with torch.no_grad():
        d[0].bias.copy_(torch.linspace(-1, 1, 6))
    real, fake = torch.randn(5, 2, 8, 8) + 0.3, torch.randn(7, 2, 8, 8)
    rec = probe(d, HINGE, real, fake, bounds=False)
    with torch.no_grad():
        outs = {"0": [d[0](real), d[0](fake)], "2": [d[:3](real), d[:3](fake)], "5": [d(real), d(fake)]}
    for name, pair in outs.items():
        mean, std = pooled_stats(pair, channel_dim=-1 if name == "5" else 1)
        assert rec.layers[name].act_mean == pytest.approx(mean, rel=1e-9)
        assert rec.layers[name].act_std == pytest.approx(std, rel=1e-9)
        assert rec.layers[name].drift == pytest.approx(mean / std, rel=1e-9)


def test_channel_moments_combine_to_the_moments_of_the_concatenation():
    a, b = torch.randn(3, 4, 5, 5) * 2 + 1, torch.randn(9, 4, 2, 7) - 3
    both = channel_moments(a, 1) + channel_moments(b, 1)
    x = torch.cat([a.movedim(1, 0).reshape(4, -1), b.movedim(1, 0).reshape(4, -1)], dim=1).double()
    assert both.count == x.shape[1]
    assert torch.allclose(both.mean, x.mean(1)) and torch.allclose(both.m2 / both.count, x.var(1, unbiased=False))
    stats = activation_statistics(both)
    assert stats["act_mean"] == pytest.approx(float(x.mean(1).abs().mean()))
    assert stats["act_std"] == pytest.approx(float(x.var(1, unbiased=False).mean().sqrt()))
    assert isinstance(both, ChannelMoments)


def msn_d():
    """A small D under MSN: its mean-only batch norm follows the last conv ("2")."""
    d = nn.Sequential(nn.Conv2d(2, 6, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(6, 8, 3, 1, 1), nn.LeakyReLU(0.2),
                      nn.Flatten(), nn.Linear(8 * 4 * 4, 1))
    d = gannorm.normalize(d, "msn")
    assert hasattr(d[2], "msn") and not hasattr(d[0], "msn")
    return d


def test_msn_layers_are_centred_in_training_mode():
    d = msn_d().train()
    real, fake = torch.randn(8, 2, 8, 8) + 1.0, torch.randn(8, 2, 8, 8)
    rec = probe(d, HINGE, real, fake, bounds=False)
    msn, plain = rec.layers["2"], rec.layers["0"]
    assert msn.act_mean < 1e-6 * msn.act_std          # beta = 0: the batch mean is subtracted per forward
    assert plain.drift > 1e-3                          # the first conv is not centred


def test_the_probe_sees_the_output_after_msn():
    """The probe's hook runs after MSN's (registered at build time): gamma and beta show, the raw
    conv output's mean does not."""
    torch.manual_seed(1)
    d = msn_d().eval()
    bn = d[2].msn.train()                              # SN weights fixed (eval), MSN on batch means
    gamma, beta = torch.linspace(0.5, 3.0, 8), torch.linspace(-2.0, 1.5, 8)
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
    real, fake = torch.randn(6, 2, 8, 8) + 1.0, torch.randn(4, 2, 8, 8) - 0.5
    rec = probe(d, HINGE, real, fake, bounds=False)
    with torch.no_grad():
        raw = [F.conv2d(d[1](d[0](x)), d[2].weight, d[2].bias, padding=1) for x in (real, fake)]
    shape = (1, -1, 1, 1)
    after = [gamma.view(shape) * (h - h.mean(dim=(0, 2, 3), keepdim=True)) + beta.view(shape) for h in raw]
    mean, std = pooled_stats(after)
    assert rec.layers["2"].act_mean == pytest.approx(float(beta.abs().mean()), rel=1e-5)
    assert rec.layers["2"].act_mean == pytest.approx(mean, rel=1e-5)
    assert rec.layers["2"].act_std == pytest.approx(std, rel=1e-5)
    raw_mean, raw_std = pooled_stats(raw)
    assert abs(rec.layers["2"].act_std - raw_std) > 0.1 * raw_std  # not the pre-MSN output


def test_gradient_sparsity_against_numpy():
    rng = np.random.default_rng(0)
    g = rng.standard_normal((16, 9, 3, 3))
    g[rng.random(g.shape) < 0.3] = 0.0
    g[0, 0, 0, 0] = 1e-3                               # small but nonzero: counted
    expected = np.mean(np.abs(g) <= SPARSITY_TAU * np.sqrt(np.mean(g ** 2)))
    assert gradient_sparsity(torch.from_numpy(g).float()) == pytest.approx(expected, abs=1e-12)
    assert 0.3 < expected < 0.33
    assert gradient_sparsity(torch.from_numpy(g), tau=0.5) == np.mean(np.abs(g) <= 0.5 * np.sqrt(np.mean(g ** 2)))
    assert math.isnan(gradient_sparsity(torch.zeros(3, 3)))  # no gradient at all (saturated hinge): undefined
    assert gradient_sparsity(torch.tensor([0.0, 0.0, 0.0, 1.0])) == 0.75
    assert gradient_sparsity(torch.ones(3, 3)) == 0.0
    assert math.isnan(gradient_sparsity(torch.tensor([1.0, math.inf])))
    assert gradient_sparsity(None) is None
    # the scale does not matter
    t = torch.from_numpy(g)
    assert gradient_sparsity(t * 1e-8) == gradient_sparsity(t) == gradient_sparsity(t * 1e6)


def test_new_quantities_round_trip_and_old_records_lack_them():
    d = msn_d().train()
    rec = probe(d, HINGE, torch.randn(4, 2, 8, 8), torch.randn(4, 2, 8, 8), bounds=False)
    back = ProbeRecord.from_json(json.loads(json.dumps(rec.to_json())))
    assert back == rec and all(back.layers[n].act_std is not None for n in back.layers)
    old = LayerProbe("Conv2d", 9, 18, grad_raw=0.5)
    obj = old.to_json()
    assert not set(OPTIONAL_QUANTITIES) & set(obj)      # not measured: not written (old lines stay the same)
    loaded = LayerProbe.from_json(obj)
    assert loaded == old and loaded.act_mean is None and loaded.drift is None and loaded.value("drift") is None
    nan = LayerProbe(act_mean=math.nan, act_std=1.0, grad_sparsity=math.inf).to_json()
    assert nan["act_mean"] is None and nan["act_std"] == 1.0 and nan["grad_sparsity"] is None
    assert LayerProbe(act_mean=0.5, act_std=2.0).value("drift") == 0.25
