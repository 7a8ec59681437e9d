"""One public API: the per-layer functions share a signature; METHODS entries carry their capabilities."""
import inspect

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import gannorm
from gannorm.normalizations import MethodSpec, method_options

PER_LAYER = [gannorm.spectral_norm, gannorm.bidirectional_spectral_norm, gannorm.strict_spectral_norm,
             gannorm.depthwise_separable_spectral_norm]
COMMON = {"scale": 1.0, "n_power_iterations": 1, "eps": 1e-12, "update": "forward", "grad_through_vectors": False,
          "warmup": 15}


@pytest.mark.parametrize("fn", PER_LAYER, ids=lambda f: f.__name__)
def test_per_layer_functions_share_one_signature(fn):
    params = list(inspect.signature(fn).parameters.values())
    assert [p.name for p in params[:2]] == ["module", "name"]
    assert params[0].kind is params[1].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert params[1].default == "weight"
    rest = params[2:]
    assert rest and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in rest), [str(p) for p in rest]
    defaults = {p.name: p.default for p in rest}
    assert {k: defaults.get(k) for k in COMMON} == COMMON
    extra = set(defaults) - set(COMMON)
    assert extra <= {"dim", "input_shape"}
    if "input_shape" in extra:  # strict SN and DSSN: required, keyword-only
        assert defaults["input_shape"] is inspect.Parameter.empty


def test_options_are_keyword_only_at_the_call():
    with pytest.raises(TypeError):
        gannorm.spectral_norm(nn.Linear(3, 3), "weight", 2)  # n_power_iterations is no longer positional
    with pytest.raises(TypeError):
        gannorm.strict_spectral_norm(nn.Conv2d(3, 4, 3), (3, 8, 8))  # input_shape must be named
    layer = gannorm.strict_spectral_norm(nn.Conv2d(3, 4, 3), "weight", input_shape=(3, 8, 8), scale=2.0, warmup=0)
    assert layer.parametrizations.weight[0].scale == 2.0


def test_every_method_entry_is_a_method_spec_that_says_whether_it_needs_input_shapes():
    needs = {e.name for e in gannorm.METHODS.entries() if e.obj.needs_input_shapes}
    assert needs == {"strict_sn", "dssn"}
    for entry in gannorm.METHODS.entries():
        assert isinstance(entry.obj, MethodSpec) and entry.description == entry.obj.description != ""
        params = inspect.signature(entry.obj.apply).parameters
        assert method_options(entry.name) == [p for p in params if p not in ("layers", "input_shapes")]
    assert method_options("ssn")[0] == "scale" and gannorm.METHODS.get("ssn").required_options() == ["scale"]


def test_method_spec_refuses_an_apply_that_disagrees_with_needs_input_shapes():
    def apply(layers, scale=1.0):
        pass

    with pytest.raises(ValueError, match="input_shapes"):
        MethodSpec(apply, needs_input_shapes=True)
    assert MethodSpec(apply).options() == ["scale"]


def test_normalize_asks_the_entry_for_input_shapes():
    def model():
        return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 5 * 5, 1))

    lazy = gannorm.normalize(model(), "strict_sn", warmup=0)  # no input_shape: inferred at the first forward
    assert not parametrize.is_parametrized(lazy[0])
    lazy(torch.zeros(3, 2, 5, 5))
    assert lazy[0].parametrizations.weight[0].input_shape == (2, 5, 5)
    with pytest.raises(ValueError, match="normalization 'sn': unknown option\\(s\\) input_shape"):
        gannorm.normalize(model(), "sn", input_shape=(2, 5, 5))
    m = gannorm.normalize(model(), "strict_sn", input_shape=(2, 5, 5), warmup=0)
    assert m[0].parametrizations.weight[0].input_shape == (2, 5, 5)
    assert m(torch.zeros(1, 2, 5, 5)).shape == (1, 1)
