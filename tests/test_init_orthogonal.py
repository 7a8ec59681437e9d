"""The ``orthogonal`` init scheme: Q^T Q = I (or Q Q^T = I) on the [units, fan_in] matrix, checked with a dense
product, for wide and tall layers, convs, transposed convs and normalized layers."""
import pytest
import torch
from torch import nn

import gannorm
from gannorm.errors import OptionError
from gannorm.init import SCHEMES, init_weights, orthogonal_units, raw_weight


def _units_matrix(m):
    w = raw_weight(m).detach()
    if isinstance(m, nn.ConvTranspose2d):
        w = w.transpose(0, 1)  # [in, out, k, k]: the output channels are the units
    return w.reshape(w.shape[0], -1).double()


@pytest.mark.parametrize("layer", [nn.Linear(16, 5), nn.Linear(5, 16), nn.Conv2d(4, 6, 3), nn.Conv2d(8, 100, 1),
                                   nn.ConvTranspose2d(6, 3, 4, 2, 1)], ids=lambda m: repr(m))
@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal_rows_or_columns(layer, gain):
    torch.manual_seed(0)
    init_weights(layer, "orthogonal", gain=None if gain == 1.0 else gain, bias=0.0)
    q = _units_matrix(layer) / gain
    units, fan_in = q.shape
    if units <= fan_in:
        assert torch.allclose(q @ q.T, torch.eye(units, dtype=q.dtype), atol=1e-5)  # orthonormal rows
    else:
        assert torch.allclose(q.T @ q, torch.eye(fan_in, dtype=q.dtype), atol=1e-5)  # orthonormal columns
    assert float(layer.bias.detach().abs().max()) == 0.0
    # singular values all equal to the gain (an independent check of the same property)
    s = torch.linalg.svdvals(q * gain)
    assert torch.allclose(s, torch.full_like(s, gain), atol=1e-5)


def test_a_random_matrix_is_not_orthogonal():
    """The check above fails on torch's default init (so it can tell orthogonal from not)."""
    torch.manual_seed(0)
    q = _units_matrix(nn.Linear(16, 5))
    assert not torch.allclose(q @ q.T, torch.eye(5, dtype=q.dtype), atol=1e-2)


def test_matches_torch_orthogonal_for_conv_and_linear():
    for make in (lambda: nn.Conv2d(4, 6, 3), lambda: nn.Linear(7, 3)):
        a, b = make(), make()
        torch.manual_seed(3)
        init_weights(a, "orthogonal")
        torch.manual_seed(3)
        nn.init.orthogonal_(b.weight)
        assert torch.equal(a.weight, b.weight)


def test_normalized_layers_get_their_raw_weight():
    d = gannorm.normalize(nn.Sequential(nn.Linear(10, 6), nn.ReLU(), nn.Linear(6, 1)), "sn")
    init_weights(d, "orthogonal")
    q = _units_matrix(d[0])
    assert torch.allclose(q @ q.T, torch.eye(6, dtype=q.dtype), atol=1e-5)


def test_scheme_is_listed_and_refuses_uniform():
    assert "orthogonal" in SCHEMES
    with pytest.raises(OptionError, match="init scheme 'orthogonal' does not use distribution='uniform'; it "
                                          "takes gain, bias"):
        init_weights(nn.Linear(3, 3), "orthogonal", distribution="uniform")


def test_orthogonal_units_keeps_shape_and_dtype():
    w = torch.empty(3, 5, 2, 2, dtype=torch.float64)
    q = orthogonal_units(w, 1)
    assert q.shape == w.shape and q.dtype == torch.float64
    m = q.transpose(0, 1).reshape(5, -1)
    assert torch.allclose(m @ m.T, torch.eye(5, dtype=m.dtype), atol=1e-6)


def test_discriminator_init_option():
    from gannorm.networks import build_discriminator
    d = build_discriminator("cnn", (3, 16, 16), width=1 / 8, init="orthogonal")
    q = _units_matrix(d.features[2])
    assert torch.allclose(q @ q.T, torch.eye(q.shape[0], dtype=q.dtype), atol=1e-5)
