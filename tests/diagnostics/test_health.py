"""Health warnings fire on constructed exploding and vanishing discriminators, not on a healthy one."""
import dataclasses
import json
import math

import pytest
import torch
from torch import nn

import gannorm
from gannorm.diagnostics.health import HealthMonitor, HealthRules, HealthWarning, check
from gannorm.diagnostics.probes import probe
from gannorm.diagnostics.records import LayerProbe, ProbeRecord
from gannorm.init import init_weights
from gannorm.losses import LOSSES

WASSERSTEIN = LOSSES.get("wasserstein").d  # linear: no saturation hides a large gradient


def mlp(depth=5, width=32, dim=16):
    layers, d = [], dim
    for _ in range(depth - 1):
        layers += [nn.Linear(d, width), nn.LeakyReLU(0.2)]
        d = width
    net = nn.Sequential(*layers, nn.Linear(d, 1))
    init_weights(net, "lecun")
    return net


def linears(net):
    return [m for m in net if isinstance(m, nn.Linear)]


def record_of(net, step=0):
    real, fake = torch.randn(32, 16), torch.randn(32, 16) + 0.5
    return probe(net, WASSERSTEIN, real, fake, step=step, bounds=False)


def rules_fired(monitor, *records):
    return [(w.rule, w.layer) for r in records for w in monitor(r)]


def test_silent_on_healthy_models():
    for net in (mlp(), gannorm.normalize(mlp(), "sn"), gannorm.normalize(mlp(), "bssn", scale=1.4)):
        monitor = HealthMonitor()
        assert rules_fired(monitor, record_of(net, 0), record_of(net, 100)) == []


def test_exploding_by_size():
    net = mlp()
    with torch.no_grad():
        for m in linears(net):
            m.weight.mul_(20.0)  # every layer 20x its LeCun scale: the gradient grows like 20^(depth-1)
    fired = rules_fired(HealthMonitor(), record_of(net))
    assert ("exploding_gradient", "0") in fired


def test_exploding_by_growth():
    net = mlp()
    monitor = HealthMonitor()
    assert rules_fired(monitor, record_of(net, 0), record_of(net, 10), record_of(net, 20)) == []
    with torch.no_grad():
        for m in linears(net):
            m.weight.mul_(7.0)  # 7^4 = 2401x larger gradients in the first layer: > 1e3x, still < 1e3 absolute
    rec = record_of(net, 30)
    fired = [(w.rule, w.layer, w.value) for w in monitor(rec)]
    assert any(rule == "exploding_gradient" and layer == "0" and value > 1e3 for rule, layer, value in fired)
    assert rec.layers["0"].grad_raw < 1e3  # layer 0 fired for its growth, not its size


def test_growth_from_a_tiny_initialisation_is_not_explosion():
    net = mlp()
    with torch.no_grad():
        for m in linears(net):
            m.weight.mul_(0.1)  # a small-output init: the step-0 gradients are ~1e-4 of the later ones
    monitor = HealthMonitor()
    assert rules_fired(monitor, record_of(net, 0)) == []
    with torch.no_grad():
        for m in linears(net):
            m.weight.mul_(10.0)
    assert rules_fired(monitor, record_of(net, 10), record_of(net, 20)) == []


def test_vanishing():
    net = mlp(depth=6)
    with torch.no_grad():
        ls = linears(net)
        ls[0].weight.mul_(1e4)  # a huge first layer feeding tiny middle layers: the first layer's
        for m in ls[1:-1]:      # backward signal passes the tiny layers, the last layer's input does not shrink
            m.weight.mul_(0.1)
    rec = record_of(net)
    ratio = rec.layers["0"].grad_effective / rec.layers[str(2 * 5)].grad_effective
    assert ratio < 1e-3
    fired = rules_fired(HealthMonitor(), rec)
    assert ("vanishing_gradient", "0") in fired
    assert not any(rule == "exploding_gradient" for rule, _ in fired)


def test_saturation_and_non_finite_rules():
    rec = ProbeRecord(step=3, d_real=40.0, d_fake=-5.0,
                      layers={"a": LayerProbe(grad_raw=float("nan"), grad_effective=1.0),
                              "b": LayerProbe(grad_raw=1.0, grad_effective=1.0)})
    warnings = check(rec, HealthRules())
    assert {w.rule for w in warnings} == {"saturated_outputs", "non_finite"}
    assert [w.layer for w in warnings if w.rule == "non_finite"] == ["a"]
    assert check(dataclasses.replace(rec, d_real=20.0, layers={}), HealthRules()) == []
    assert check(dataclasses.replace(rec, layers={}), HealthRules(saturate_gap=100.0)) == []


def test_non_finite_gradient_of_a_real_probe():
    net = nn.Sequential(nn.Linear(16, 8), nn.Linear(8, 1))
    with torch.no_grad():
        net[0].weight.fill_(1e37)  # the hidden layer overflows float32
    x = torch.rand(4, 16) + 100
    rec = probe(net, WASSERSTEIN, x, x + 1, step=5, bounds=False)
    fired = [(w.rule, w.layer, w.step) for w in HealthMonitor()(rec)]
    assert ("non_finite", "1", 5) in fired


def test_each_warning_fires_once_and_a_primed_monitor_does_not_repeat_it():
    net = mlp()
    with torch.no_grad():
        for m in linears(net):
            m.weight.mul_(20.0)
    monitor = HealthMonitor()
    first = monitor(record_of(net, 10))
    assert first and all(w.step == 10 and w.message.startswith("step 10: ") for w in first)
    assert monitor(record_of(net, 20)) == []
    # what a resumed run does: read its warnings back from health.jsonl and prime a new monitor
    lines = [json.dumps(w.to_json()) for w in first]
    read = [HealthWarning.from_json(json.loads(line)) for line in lines]
    assert read == first
    resumed = HealthMonitor()
    resumed.prime([], read)
    assert resumed(record_of(net, 30)) == []
    assert [(w.rule, w.layer) for w in HealthMonitor()(record_of(net, 30))] == [(w.rule, w.layer) for w in first]


def test_a_primed_monitor_keeps_the_growth_baseline():
    net = mlp()
    early = [record_of(net, s) for s in (0, 10, 20)]
    with torch.no_grad():
        for m in linears(net):
            m.weight.mul_(7.0)  # > 1e3x growth of the first layer's gradient, below 1e3 in size
    late = record_of(net, 30)
    resumed = HealthMonitor()
    resumed.prime(early)
    # the median of the probes after step 0
    expected = {n: (early[1].layers[n].grad_raw + early[2].layers[n].grad_raw) / 2 for n in early[1].layers}
    assert resumed.baseline() == pytest.approx(expected, rel=1e-12)
    assert ("exploding_gradient", "0") in [(w.rule, w.layer) for w in resumed(late)]
    assert late.layers["0"].grad_raw < 1e3  # so layer 0 fired for its growth; without history it does not
    assert ("exploding_gradient", "0") not in [(w.rule, w.layer) for w in HealthMonitor()(late)]


def test_health_warning_json():
    w = HealthWarning(4, "non_finite", "net.0", math.nan, math.inf, "step 4: layer net.0: ... nan")
    obj = json.loads(json.dumps(w.to_json()))
    assert obj == {"step": 4, "rule": "non_finite", "layer": "net.0", "value": "nan", "threshold": "inf",
                   "message": "step 4: layer net.0: ... nan"}
    back = HealthWarning.from_json(obj)
    assert math.isnan(back.value) and back.threshold == math.inf and back.layer == "net.0"
    # an old line with missing fields still loads; a line without a step does not
    old = HealthWarning.from_json({"step": 7, "rule": "saturated_outputs", "layer": None, "value": 31.0})
    assert (old.step, old.rule, old.layer, old.value, old.message) == (7, "saturated_outputs", None, 31.0, "")
    assert math.isnan(old.threshold)
    with pytest.raises(ValueError, match="integer 'step'"):
        HealthWarning.from_json({"rule": "x"})
