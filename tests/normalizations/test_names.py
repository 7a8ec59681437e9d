"""The public names: remove_normalization (and its deprecated former name remove), the strict and depthwise classes
named after their functions (former names kept), and one error type per kind of mistake."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import gannorm
from gannorm.errors import (
    ConfigError,
    GannormError,
    InputError,
    LayerTypeError,
    OptionError,
)
from gannorm.normalizations import depthwise, strict


def small_d() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(4 * 4 * 4, 1))


def test_remove_normalization_leaves_the_effective_weights_as_plain_layers():
    d = gannorm.normalize(small_d(), "bssn", scale=1.4).eval()
    x = torch.randn(2, 3, 6, 6)
    out = d(x)
    effective = [d[0].weight.detach().clone(), d[3].weight.detach().clone()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new name warns about nothing
        plain = gannorm.remove_normalization(d)
    assert plain is d and not any(parametrize.is_parametrized(m) for m in d.modules())
    assert torch.equal(d[0].weight, effective[0]) and torch.equal(d[3].weight, effective[1])
    torch.testing.assert_close(d(x), out)


def test_remove_is_a_deprecated_alias_that_still_works():
    a = gannorm.normalize(small_d(), "sn").eval()
    b = gannorm.normalize(small_d(), "sn").eval()  # the same seed: the same model (a deepcopy of a parametrized
    # module shares its class with the original, so removing from one would break the other: a torch limitation)
    with pytest.warns(DeprecationWarning, match="gannorm.remove is deprecated; use gannorm.remove_normalization"):
        out = gannorm.remove(a)
    assert out is a
    gannorm.remove_normalization(b)
    assert a.state_dict().keys() == b.state_dict().keys()
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert gannorm.normalizations.remove is gannorm.remove


def test_the_warning_points_at_the_caller():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gannorm.remove(gannorm.normalize(nn.Linear(2, 2), "sn"))
    assert caught[0].filename == __file__


def test_class_names_match_their_functions_and_the_former_names_still_work():
    conv = gannorm.strict_spectral_norm(nn.Conv2d(2, 3, 3), input_shape=(2, 5, 5))
    assert type(conv.parametrizations.weight[0]) is gannorm.StrictSpectralNorm
    assert type(conv.parametrizations.weight[0]).__name__ == "StrictSpectralNorm"
    assert gannorm.ConvOperatorNorm is gannorm.StrictSpectralNorm is strict.ConvOperatorNorm
    dw = gannorm.depthwise_separable_spectral_norm(nn.Conv2d(2, 2, 3, groups=2), input_shape=(2, 5, 5))
    assert type(dw.parametrizations.weight[0]) is gannorm.DepthwiseSeparableSpectralNorm
    assert depthwise.DepthwiseSpectralNorm is gannorm.DepthwiseSeparableSpectralNorm
    # the pattern every method follows: spectral_norm/SpectralNorm, bidirectional_spectral_norm/Bidirectional...
    for fn, cls in ((gannorm.spectral_norm, gannorm.SpectralNorm),
                    (gannorm.bidirectional_spectral_norm, gannorm.BidirectionalSpectralNorm),
                    (gannorm.strict_spectral_norm, gannorm.StrictSpectralNorm),
                    (gannorm.depthwise_separable_spectral_norm, gannorm.DepthwiseSeparableSpectralNorm)):
        assert "".join(w.capitalize() for w in fn.__name__.split("_")) == cls.__name__


# ------------------------------------------------------------------------------- one error type per mistake
def one_line(err: pytest.ExceptionInfo) -> bool:
    return "\n" not in str(err.value) and isinstance(err.value, GannormError)


def test_normalizing_twice_is_an_input_error_like_a_bad_option_is_an_option_error():
    d = gannorm.normalize(small_d(), "sn")
    with pytest.raises(InputError, match="already normalized; call gannorm.remove_normalization") as err:
        gannorm.normalize(d, "bssn", scale=1.0)
    assert one_line(err) and isinstance(err.value, ValueError)  # still a ValueError, as before
    with pytest.raises(OptionError, match="scale") as err:
        gannorm.normalize(small_d(), "bssn", scale=-1.0)
    assert one_line(err) and isinstance(err.value, ValueError)


@pytest.mark.parametrize("call,kind,option", [
    (lambda: gannorm.strict_spectral_norm(nn.Conv2d(3, 4, 3), input_shape=(2, 8, 8)), OptionError, "input_shape"),
    (lambda: gannorm.strict_spectral_norm(nn.Conv2d(3, 4, 3), input_shape=(8, 8)), OptionError, "input_shape"),
    (lambda: gannorm.depthwise_separable_spectral_norm(nn.Conv2d(2, 2, 3, groups=2), input_shape=(3, 8, 8)),
     OptionError, "input_shape"),
    (lambda: gannorm.normalize(nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Conv2d(2, 1, 1)), "dssn",
                               input_shape=(2, 8, 8, 8)), OptionError, "input_shape"),
    (lambda: gannorm.spectral_norm(nn.Linear(3, 3), dim=5), OptionError, "dim"),
    (lambda: gannorm.normalizations.weight_norm(nn.Linear(3, 3), dim=4), OptionError, "dim"),
    (lambda: gannorm.spectral_norm(nn.Linear(3, 3), "kernel"), InputError, None),
    (lambda: gannorm.depthwise_separable_spectral_norm(nn.Conv2d(2, 2, 3, groups=2, dilation=2),
                                                       input_shape=(2, 8, 8)), InputError, None),
    (lambda: gannorm.normalize(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1)), "batch_norm"), InputError, None),
    (lambda: gannorm.remove_normalization(gannorm.normalize(
        nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 3), nn.Linear(3, 1)), "layer_norm")), InputError, None),
    (lambda: strict.StrictSpectralNorm(nn.BatchNorm2d(3), torch.ones(3, 3), (3, 4, 4)), LayerTypeError, None),
    (lambda: gannorm.normalizations.mean_sn.attach_mean_norm(nn.BatchNorm2d(3)), LayerTypeError, None),
])
def test_user_mistakes_in_the_normalizations_are_one_line_gannorm_errors(call, kind, option):
    with pytest.raises(kind) as err:
        call()
    assert one_line(err), str(err.value)
    assert isinstance(err.value, ValueError)  # compatible with the ValueError they used to be
    if option is not None:
        assert err.value.option == option
    if kind is LayerTypeError:
        assert isinstance(err.value, TypeError)  # compatible with the TypeError they used to be


def test_gradnorm_mistakes_are_gannorm_errors():
    d = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    x = torch.randn(3, 2)
    with pytest.raises(InputError, match="first_order=True is the G step") as err:
        gannorm.gradient_normalize(d, x, first_order=True)
    assert one_line(err)
    for bad in (-1.0, float("nan"), "0"):
        with pytest.raises(OptionError, match="eps must be a finite number >= 0") as err:
            gannorm.gradient_normalize(d, x, eps=bad)
        assert err.value.option == "eps"
        with pytest.raises(OptionError):
            gannorm.penalty_gradient_normalize(d, x, eps=bad)
        with pytest.raises(OptionError):
            gannorm.GradientNormalized(d, "gn", eps=bad)
    with pytest.raises(ConfigError, match="batch-coupling"):  # the trainer's check: a ConfigError, as before
        gannorm.GradientNormalized(nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2)), "gn")
    assert gannorm.gradient_normalize(d, x, eps=1e-8).shape == (3, 1)
