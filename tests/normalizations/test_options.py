"""Every numeric option of every method is range checked before the model is touched."""
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import gannorm
from gannorm.errors import GannormError, OptionError
from gannorm.normalizations import OPTION_CHECKS, MethodSpec, OptionCheck

NAN, INF = math.nan, math.inf
#: per option: values that must be refused, and values that must be accepted
BAD = {
    "scale": [0, 0.0, -1.4, INF, NAN, "1.4", True, None],
    "n_power_iterations": [0, -1, 1.5, True, "2"],
    "eps": [0, -1e-12, NAN, INF, "1e-12"],
    "warmup": [-1, 2.5, None, False],
    "update": ["sometimes", None, 1],
    "grad_through_vectors": [1, "yes", None],
    "momentum": [0, -0.1, 1.5, NAN],
    "gamma_init": [0, -1.0, INF, NAN],
    "input_shape": [(), (3, 0, 8), (3, -8, 8), "3x8x8", (3.0, 8, 8), 8],
}
GOOD = {
    "scale": [0.5, 1, 1.4], "n_power_iterations": [1, 3], "eps": [1e-8], "warmup": [0, 5],
    "update": ["forward", "step"], "grad_through_vectors": [True, False], "momentum": [0.1, 1.0],
    "gamma_init": [0.5, 2], "input_shape": [(3, 8, 8), [3, 8, 8]],
}
#: what a method needs to be applied at all (by option name)
BASE = {"scale": 1.3, "input_shape": (3, 8, 8)}


def base_options(spec):
    return {o: BASE[o] for o in spec.required_options() + (["input_shape"] if spec.needs_input_shapes else [])}


def small_d():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(4, 4, 4, 2, 1),
                         nn.LeakyReLU(0.1), nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Flatten(),
                         nn.Linear(4 * 4 * 4, 1))


def cases(table):
    out = []
    for method in gannorm.METHODS.names():
        for option in gannorm.METHODS.get(method).accepted_options():
            out += [pytest.param(method, option, value, id=f"{method}-{option}-{value!r}") for value in table[option]]
    return out


def test_every_option_of_every_method_has_bad_and_good_values_here():
    for entry in gannorm.METHODS.entries():
        for option in entry.obj.accepted_options():
            assert option in BAD and option in GOOD and option in OPTION_CHECKS, (entry.name, option)


@pytest.mark.parametrize("method, option, value", cases(BAD))
def test_a_bad_value_is_a_one_line_option_error_and_leaves_the_model_alone(method, option, value):
    spec = gannorm.METHODS.get(method)
    options = {**base_options(spec), option: value}
    with pytest.raises(OptionError) as err:
        spec.check_options(options)
    assert err.value.option == option and str(err.value).startswith(f"{option} must be ")
    assert repr(value) in str(err.value) and "\n" not in str(err.value)
    d = small_d()
    before = {k: v.clone() for k, v in d.state_dict().items()}
    with pytest.raises(OptionError) as err:
        gannorm.normalize(d, method, **options)
    assert err.value.option == option and str(err.value).startswith(f"normalization {method!r}: {option} must be ")
    assert isinstance(err.value, GannormError) and isinstance(err.value, ValueError)
    assert not any(parametrize.is_parametrized(m) or hasattr(m, "msn") for m in d.modules())
    assert d.state_dict().keys() == before.keys() and all(torch.equal(before[k], v) for k, v in d.state_dict().items())


@pytest.mark.parametrize("method, option, value", cases(GOOD))
def test_a_good_value_is_accepted(method, option, value):
    spec = gannorm.METHODS.get(method)
    options = {**base_options(spec), option: value}
    spec.check_options(options)
    d = gannorm.normalize(small_d(), method, **options)
    assert torch.isfinite(d(torch.randn(2, 3, 8, 8))).all()


def test_the_message_says_what_the_option_does():
    with pytest.raises(OptionError, match=r"^normalization 'bssn': scale must be a finite number > 0, got -1.4 "
                                          r"\(the effective weight is scale \* W / sigma: .* flips its sign\)$"):
        gannorm.normalize(small_d(), "bssn", scale=-1.4)
    with pytest.raises(OptionError, match="momentum must be a number in \\(0, 1\\], got 0 .*never moves"):
        gannorm.normalize(small_d(), "msn", momentum=0)


def test_unknown_and_missing_options_are_option_errors_naming_the_option():
    spec = gannorm.METHODS.get("ssn")
    with pytest.raises(OptionError) as err:
        spec.check_options({"scale": 1.0, "scal": 2})
    assert err.value.option == "scal" and "allowed: scale, n_power_iterations" in str(err.value)
    with pytest.raises(OptionError) as err:
        spec.check_options({})
    assert err.value.option == "scale" and "requires option(s) scale" in str(err.value)
    gannorm.METHODS.get("strict_sn").check_options({})  # input_shape may come later, from the data shape
    with pytest.raises(OptionError, match="unknown option\\(s\\) input_shape"):
        gannorm.METHODS.get("sn").check_options({"input_shape": (3, 8, 8)})


@pytest.mark.parametrize("call", [
    lambda: gannorm.spectral_norm(nn.Linear(3, 3), scale=0),
    lambda: gannorm.bidirectional_spectral_norm(nn.Conv2d(3, 3, 3), scale=-1.0),
    lambda: gannorm.strict_spectral_norm(nn.Conv2d(3, 3, 3), input_shape=(3, 8, 8), eps=0),
    lambda: gannorm.depthwise_separable_spectral_norm(nn.Conv2d(3, 3, 3, groups=3), input_shape=(3, 8, 8), scale=0),
    lambda: gannorm.spectral_norm(nn.Linear(3, 3), n_power_iterations=0),
    lambda: gannorm.spectral_norm(nn.Linear(3, 3), update="never"),
])
def test_the_per_layer_functions_check_the_same_ranges(call):
    with pytest.raises(OptionError):
        call()


def test_a_method_with_an_unchecked_option_cannot_be_registered():
    def apply(layers, alpha=1.0):
        pass

    with pytest.raises(ValueError, match="option\\(s\\) alpha of apply have no range check"):
        MethodSpec(apply)
    spec = MethodSpec(apply, checks={**OPTION_CHECKS, "alpha": OptionCheck(lambda x: x > 1, "> 1")})
    with pytest.raises(OptionError, match="alpha must be > 1, got 0.5"):
        spec.check_options({"alpha": 0.5})
    spec.check_options({"alpha": 2.0})
