"""Strict SN and DSSN without ``input_shape``: the layers' input shapes are read off the first call, as torch's
lazy modules infer their sizes; the result equals the explicit form bitwise, and an explicit shape still wins."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils import parametrize

import gannorm
from gannorm.networks import SNGANCNNDiscriminator, build_discriminator
from gannorm.networks.dscnn import DSCNNDiscriminator


def pair(make):
    torch.manual_seed(0)
    a = make()
    b = make()
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("method,make", [
    ("strict_sn", lambda: SNGANCNNDiscriminator(resolution=32, width=0.25)),
    ("dssn", lambda: DSCNNDiscriminator(32, 3, width=0.25)),
])
def test_inferred_at_the_first_forward_equals_the_explicit_form(method, make):
    explicit, lazy = pair(make)
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(1)
    gannorm.normalize(explicit, method, input_shape=(3, 32, 32))
    out_explicit = explicit(x)
    gannorm.normalize(lazy, method)
    assert not any(parametrize.is_parametrized(m) for m in lazy.modules())  # nothing until the first call
    torch.manual_seed(1)  # the power iterations' starting vectors are drawn when the method is applied
    out_lazy = lazy(x)
    assert torch.equal(out_explicit, out_lazy)
    a, b = explicit.state_dict(), lazy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert gannorm.sigmas(explicit) == gannorm.sigmas(lazy)


def test_a_conditional_d_gets_its_labels_in_the_inferring_call():
    torch.manual_seed(0)
    D = build_discriminator("cnn", (1, 16, 16), width=0.25, num_classes=10)
    gannorm.normalize(D, "strict_sn")
    out = D(torch.randn(3, 1, 16, 16), torch.tensor([1, 2, 3]))
    assert out.shape == (3, 1) and parametrize.is_parametrized(D.features[0])
    assert D.features[0].parametrizations.weight[0].input_shape == (1, 16, 16)


def test_an_explicit_shape_is_applied_at_once_and_a_second_normalize_is_refused():
    D = SNGANCNNDiscriminator(resolution=32, width=0.25)
    gannorm.normalize(D, "strict_sn", input_shape=(3, 32, 32))
    assert parametrize.is_parametrized(D.features[0])
    lazy = SNGANCNNDiscriminator(resolution=32, width=0.25)
    gannorm.normalize(lazy, "strict_sn")
    with pytest.raises(ValueError, match="already normalized"):
        gannorm.normalize(lazy, "sn")
    lazy(torch.randn(2, 3, 32, 32))
    assert lazy.features[0].parametrizations.weight[0].input_shape == (3, 32, 32)
