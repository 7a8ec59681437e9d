"""Typed diagnostics records: the JSON of diagnostics.jsonl, written and read back, old lines included."""
import json
import math

import pytest

from gannorm.diagnostics.records import QUANTITIES, GradStats, LayerProbe, ProbeRecord

# a line as gannorm wrote it before the records were typed (the documented format)
OLD_LINE = json.dumps({
    "step": 500,
    "layers": {"net.0": {"kind": "Conv2d", "fan_in": 27, "fan_out": 576, "sigma": 1.02, "sigma1": 1.0,
                         "sigma2": 1.04, "strict_sigma": None, "raw_spectral": 3.1, "raw_frobenius": 5.2,
                         "var_ratio": 0.41, "grad_raw": 0.01, "grad_effective": 0.03, "ref_xavier": 0.09,
                         "ref_kaiming": 1.98},
               "net.2": {"kind": "Linear", "fan_in": 64, "fan_out": 1, "sigma": None, "sigma1": None,
                         "sigma2": None, "strict_sigma": None, "raw_spectral": 0.5, "raw_frobenius": 0.6,
                         "var_ratio": 1.1, "grad_raw": None, "grad_effective": 0.2, "ref_xavier": 1.97,
                         "ref_kaiming": 1.98}},
    "input_grad": {"real": {"mean": 1.0, "min": 0.5, "max": 2.0}, "fake": {"mean": 0.8, "min": 0.1, "max": 3.0}},
    "d_real": 0.3, "d_fake": -0.2, "loss_d": 1.7, "lipschitz_upper": None,
    "lipschitz_upper_note": "no Lipschitz rule for 'x' (Mystery)", "lipschitz_lower": 0.8})


def test_an_old_line_loads_and_writes_back_byte_for_byte():
    rec = ProbeRecord.from_json(json.loads(OLD_LINE))
    assert rec.step == 500 and list(rec.layers) == ["net.0", "net.2"]
    layer = rec.layers["net.0"]
    assert (layer.kind, layer.fan_in, layer.fan_out, layer.sigma2, layer.grad_effective) == ("Conv2d", 27, 576,
                                                                                             1.04, 0.03)
    assert rec.layers["net.2"].grad_raw is None and rec.input_grad["fake"] == GradStats(0.8, 0.1, 3.0)
    assert rec.lipschitz_upper is None and "Mystery" in rec.lipschitz_upper_note
    assert json.dumps(rec.to_json()) == OLD_LINE


def test_non_finite_values_are_written_as_null():
    rec = ProbeRecord(step=3, layers={"a": LayerProbe("Linear", 4, 2, grad_raw=math.nan, grad_effective=math.inf)},
                      input_grad={"real": GradStats(math.nan, 0.0, math.inf)}, d_real=-math.inf, d_fake=1.0,
                      loss_d=math.nan, lipschitz_upper=2.0, lipschitz_lower=math.inf)
    obj = json.loads(json.dumps(rec.to_json(), allow_nan=False))  # strict JSON: no NaN/Infinity tokens
    assert obj["layers"]["a"]["grad_raw"] is None and obj["layers"]["a"]["grad_effective"] is None
    assert obj["input_grad"]["real"] == {"mean": None, "min": 0.0, "max": None}
    assert obj["d_real"] is None and obj["loss_d"] is None and obj["lipschitz_lower"] is None
    assert obj["lipschitz_upper"] == 2.0 and "lipschitz_upper_note" not in obj


def test_reading_is_tolerant():
    rec = ProbeRecord.from_json({"step": 7.0, "layers": {"a": {"grad_raw": "nan", "fan_in": 3.0, "extra": 1},
                                                         "broken": 5},
                                 "input_grad": {"real": {"mean": 2}}, "d_real": True, "future_key": [1]})
    assert rec.step == 7 and list(rec.layers) == ["a"]
    a = rec.layers["a"]
    assert math.isnan(a.grad_raw) and a.fan_in == 3 and a.kind is None and a.sigma is None
    assert rec.input_grad == {"real": GradStats(2.0, None, None)}
    assert rec.d_real is None and rec.lipschitz_upper is None and rec.lipschitz_upper_note is None
    assert ProbeRecord.from_json({"step": 1, "layers": None, "input_grad": "x"}) == ProbeRecord(1)


@pytest.mark.parametrize("bad", [{}, {"step": None}, {"step": "3"}, {"step": 2.5}, {"step": True}, [1]])
def test_a_record_without_an_integer_step_is_refused(bad):
    with pytest.raises(ValueError, match="integer 'step'"):
        ProbeRecord.from_json(bad)


def test_layer_values_by_name():
    layer = LayerProbe(var_ratio=0.5, sigma1=1.2)
    assert layer.value("var_ratio") == 0.5 and layer.value("sigma1") == 1.2 and layer.value("grad_raw") is None
    assert "kind" not in QUANTITIES and QUANTITIES[0] == "sigma"
    with pytest.raises(ValueError, match="unknown per-layer quantity 'kind'"):
        layer.value("kind")
