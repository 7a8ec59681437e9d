"""The init schemes as a registry: ``init_weights`` draws bit for bit what it drew before the registry, and the
entries say what each scheme takes."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import gannorm
from gannorm.errors import OptionError
from gannorm.init import (
    INIT_SCHEMES,
    SCHEMES,
    InitScheme,
    fans,
    init_weights,
    orthogonal_units,
    raw_weight,
)
from gannorm.normalizations.model import NORMALIZABLE, reset_power_iteration
from gannorm.normalizations.spectral import default_dim
from gannorm.normalizations.weight_norm import weight_norm_layers
from gannorm.registry import UnknownNameError


# ------------------------------------------------ the implementation before the registry (gannorm 0.1.0, verbatim)
def _old_std(scheme, fan_in, fan_out, gain, slope, std):
    if scheme == "lecun":
        return (1.0 if gain is None else gain) / math.sqrt(fan_in)
    if scheme == "xavier":
        return (1.0 if gain is None else gain) * math.sqrt(2.0 / (fan_in + fan_out))
    if scheme == "kaiming":
        return (gannorm.leaky_relu_gain(slope) if gain is None else gain) / math.sqrt(fan_in)
    return std


@torch.no_grad()
def old_init_weights(model, scheme, *, distribution="normal", gain=None, slope=0.0, std=0.02, bias=0.0):
    for m in model.modules():
        if not isinstance(m, NORMALIZABLE):
            continue
        w = raw_weight(m)
        s = _old_std(scheme, *fans(m), gain, slope, std)
        if scheme == "orthogonal":
            w.copy_(orthogonal_units(w, default_dim(m), 1.0 if gain is None else gain))
        elif scheme == "trunc_normal":
            nn.init.trunc_normal_(w, 0.0, s, -2 * s, 2 * s)
        elif distribution == "uniform":
            nn.init.uniform_(w, -math.sqrt(3.0) * s, math.sqrt(3.0) * s)
        else:
            nn.init.normal_(w, 0.0, s)
        b = m.parametrizations.bias.original if hasattr(m, "parametrizations") and "bias" in m.parametrizations \
            else m.bias
        if b is not None:
            nn.init.constant_(b, bias)
    for m, p in weight_norm_layers(model):
        p.reset_gain(raw_weight(m))
    reset_power_iteration(model)
    return model


def seeded_model(method: str | None) -> nn.Module:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.LeakyReLU(0.1), nn.ConvTranspose2d(6, 4, 4, 2, 1),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5), nn.ReLU(), nn.Linear(5, 1))
    return model if method is None else gannorm.normalize(model, method)


CALLS = [("lecun", {}), ("lecun", {"distribution": "uniform", "gain": 1.3}), ("xavier", {}),
         ("xavier", {"distribution": "uniform", "gain": 2 ** 0.5, "bias": 0.1}), ("kaiming", {"slope": 0.2}),
         ("kaiming", {"gain": 0.7, "distribution": "uniform"}), ("normal", {}), ("normal", {"std": 0.05}),
         ("trunc_normal", {"std": 0.03}), ("orthogonal", {}), ("orthogonal", {"gain": 1.5, "bias": -0.2})]


@pytest.mark.parametrize("method", [None, "sn", "weight_norm"])
@pytest.mark.parametrize("scheme,options", CALLS)
def test_init_weights_is_bitwise_the_former_implementation(scheme, options, method):
    torch.manual_seed(11)
    expected = old_init_weights(seeded_model(method), scheme, **options)
    expected_rng = torch.random.get_rng_state()
    torch.manual_seed(11)
    got = init_weights(seeded_model(method), scheme, **options)
    assert torch.equal(torch.random.get_rng_state(), expected_rng)  # the same draws, in the same order
    want = expected.state_dict()
    assert list(got.state_dict()) == list(want)
    for key, value in got.state_dict().items():
        assert torch.equal(value, want[key]), key


def test_every_entry_carries_what_a_caller_needs():
    assert INIT_SCHEMES.names() == ["lecun", "xavier", "kaiming", "normal", "trunc_normal", "orthogonal", "wn_arpit"]
    assert gannorm.INIT_SCHEMES is INIT_SCHEMES and SCHEMES is INIT_SCHEMES  # the former name still works
    for entry in INIT_SCHEMES.entries():
        spec = entry.obj
        assert isinstance(spec, InitScheme) and entry.description and spec.reference
        assert set(spec.options) <= {"distribution", "gain", "slope", "std"}
        assert spec.layer_types == gannorm.normalizations.NORMALIZABLE
    assert INIT_SCHEMES.get("kaiming").options == ("distribution", "gain", "slope")
    assert INIT_SCHEMES.get("trunc_normal").options == ("std",)
    assert INIT_SCHEMES.get("wn_arpit").options == () and INIT_SCHEMES.get("wn_arpit").uses_forward
    assert not any(INIT_SCHEMES.get(n).uses_forward for n in INIT_SCHEMES.names() if n != "wn_arpit")


@pytest.mark.parametrize("scheme,option,value", [("lecun", "std", 0.1), ("normal", "gain", 2.0),
                                                 ("normal", "distribution", "uniform"), ("xavier", "slope", 0.2),
                                                 ("orthogonal", "std", 0.5), ("wn_arpit", "gain", 1.0)])
def test_an_option_the_scheme_does_not_use_is_refused_before_anything_changes(scheme, option, value):
    layer = nn.Linear(4, 3)
    before = layer.weight.detach().clone()
    with pytest.raises(OptionError, match=f"^init scheme '{scheme}' does not use {option}=") as err:
        init_weights(layer, scheme, **{option: value})
    assert err.value.option == option and "\n" not in str(err.value)
    assert torch.equal(layer.weight, before)


def test_bad_distribution_and_unknown_scheme_are_gannorm_errors():
    with pytest.raises(OptionError, match="distribution must be 'normal' or 'uniform', got 'cauchy'"):
        init_weights(nn.Linear(2, 2), "lecun", distribution="cauchy")
    with pytest.raises(UnknownNameError, match="^unknown init scheme 'he'; known: lecun, xavier"):
        init_weights(nn.Linear(2, 2), "he")
