"""MSN: placement, batch statistics in training, running statistics in eval, refusal by GN."""
import copy

import pytest
import torch
from torch import nn

import gannorm
from gannorm.gradnorm import gradient_normalize
from gannorm.networks import build_discriminator
from gannorm.normalizations.mean_sn import MeanOnlyBatchNorm


def test_mean_only_bn_uses_batch_mean_in_train_and_running_mean_in_eval():
    bn = MeanOnlyBatchNorm(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, -1.0]))
        bn.bias.copy_(torch.tensor([0.5, 0.0, 1.0]))
    x = torch.randn(8, 3, 4, 4) * 3 + 5
    y = bn(x)
    mean = x.mean(dim=(0, 2, 3))
    expected = bn.weight.view(1, 3, 1, 1) * (x - mean.view(1, 3, 1, 1)) + bn.bias.view(1, 3, 1, 1)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(bn.running_mean, 0.1 * mean)  # momentum 0.1 from 0
    assert (y - bn.bias.view(1, 3, 1, 1)).mean(dim=(0, 2, 3)).abs().max() < 1e-5  # centred, not scaled
    bn.eval()
    z = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(bn(z), bn.weight.view(1, 3, 1, 1) * (z - bn.running_mean.view(1, 3, 1, 1))
                               + bn.bias.view(1, 3, 1, 1))
    assert torch.equal(bn(z[:1]), bn(z)[:1])  # eval: samples do not interact


def test_official_placement_in_the_sngan_cnn_discriminator():
    d = build_discriminator("cnn", (3, 32, 32), width=0.125, normalization="msn")
    placed = [n[:-4] for n, m in d.named_modules() if isinstance(m, MeanOnlyBatchNorm)]
    # convs: features.0 k3, .2 k4s2, .4 k3, .6 k4s2, .8 k3, .10 k4s2, .12 k3 -> after the 2nd and 3rd
    # stride-2 convs and after the final conv, before the LeakyReLU
    assert placed == ["features.6", "features.10", "features.12"]
    assert all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in d.modules()
               if isinstance(m, (nn.Conv2d, nn.Linear)))
    for m in d.modules():  # freeze the power iteration so repeated forwards see the same weights
        if isinstance(m, gannorm.PowerIterationNorm):
            m.eval()
    x = torch.randn(4, 3, 32, 32)
    h = d.features[:8](x)  # through features.6 (conv + its mean-only BN) and its LeakyReLU
    conv = d.features[6]
    conv_out = conv._conv_forward(d.features[:6](x), conv.weight, conv.bias)
    msn = conv.msn
    expected = msn.weight.view(1, -1, 1, 1) * (conv_out - conv_out.mean(dim=(0, 2, 3), keepdim=True)) \
        + msn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(h, nn.functional.leaky_relu(expected, 0.1), rtol=1e-4, atol=1e-5)


def test_msn_state_dict_deepcopy_and_gn_refusal():
    d = build_discriminator("cnn", (3, 16, 16), width=0.125, normalization="msn")
    x = torch.randn(4, 3, 16, 16)
    d(x).sum().backward()
    e = copy.deepcopy(d)
    f = build_discriminator("cnn", (3, 16, 16), width=0.125, normalization="msn")
    f.load_state_dict(d.state_dict())
    for m in (d, e, f):
        m.eval()
    assert torch.equal(d(x), e(x)) and torch.equal(d(x), f(x))
    assert any(k.endswith("msn.running_mean") for k in d.state_dict())
    with pytest.raises(ValueError, match="batch-coupling"):
        gradient_normalize(d, x)


def test_msn_in_the_registry():
    assert "msn" in gannorm.METHODS
