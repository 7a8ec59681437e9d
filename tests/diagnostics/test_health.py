"""Health warnings fire on constructed exploding and vanishing discriminators, not on a healthy one."""
import io
import json

import torch
from torch import nn

import gannorm
from gannorm.diagnostics.health import HealthMonitor, HealthRules, check
from gannorm.diagnostics.probes import probe
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
    return {"step": step, **probe(net, WASSERSTEIN, real, fake, bounds=False)}


def rules_fired(monitor, *records):
    return [(w.rule, w.layer) for r in records for w in monitor(r)]


def test_silent_on_healthy_models():
    for net in (mlp(), gannorm.normalize(mlp(), "sn"), gannorm.normalize(mlp(), "bssn", scale=1.4)):
        monitor = HealthMonitor(stream=None)
        assert rules_fired(monitor, record_of(net, 0), record_of(net, 100)) == []


def test_exploding_by_size():
    net = mlp()
    with torch.no_grad():
        for m in linears(net):
            m.weight.mul_(20.0)  # every layer 20x its LeCun scale: the gradient grows like 20^(depth-1)
    fired = rules_fired(HealthMonitor(stream=None), record_of(net))
    assert ("exploding_gradient", "0") in fired


def test_exploding_by_growth():
    net = mlp()
    monitor = HealthMonitor(stream=None)
    assert rules_fired(monitor, record_of(net, 0), record_of(net, 10), record_of(net, 20)) == []
    with torch.no_grad():
        for m in linears(net):
            m.weight.mul_(7.0)  # 7^4 = 2401x larger gradients in the first layer: > 1e3x, still < 1e3 absolute
    rec = record_of(net, 30)
    fired = [(w.rule, w.layer, w.value) for w in monitor(rec)]
    assert any(rule == "exploding_gradient" and layer == "0" and value > 1e3 for rule, layer, value in fired)
    assert rec["layers"]["0"]["grad_raw"] < 1e3  # layer 0 fired for its growth, not its size


def test_growth_from_a_tiny_initialisation_is_not_explosion():
    net = mlp()
    with torch.no_grad():
        for m in linears(net):
            m.weight.mul_(0.1)  # a small-output init: the step-0 gradients are ~1e-4 of the later ones
    monitor = HealthMonitor(stream=None)
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
    ratio = rec["layers"]["0"]["grad_effective"] / rec["layers"][str(2 * 5)]["grad_effective"]
    assert ratio < 1e-3
    fired = rules_fired(HealthMonitor(stream=None), rec)
    assert ("vanishing_gradient", "0") in fired
    assert not any(rule == "exploding_gradient" for rule, _ in fired)


def test_saturation_and_non_finite_rules():
    rec = {"step": 3, "d_real": 40.0, "d_fake": -5.0,
           "layers": {"a": {"grad_raw": float("nan"), "grad_effective": 1.0}, "b": {"grad_raw": 1.0,
                                                                                     "grad_effective": 1.0}}}
    rules = {w.rule for w in check(rec, HealthRules())}
    assert rules == {"saturated_outputs", "non_finite"}
    assert check({**rec, "d_real": 20.0, "layers": {}}, HealthRules()) == []
    assert check({**rec, "layers": {}}, HealthRules(saturate_gap=100.0)) == []


def test_each_warning_is_printed_and_written_once(tmp_path):
    net = mlp()
    with torch.no_grad():
        for m in linears(net):
            m.weight.mul_(20.0)
    out, path = io.StringIO(), tmp_path / "health.jsonl"
    monitor = HealthMonitor(path=path, stream=out)
    first = monitor(record_of(net, 10))
    assert first and monitor(record_of(net, 20)) == []
    lines = out.getvalue().splitlines()
    assert len(lines) == len(first) and all(line.startswith("gannorm health warning: step 10") for line in lines)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["rule"], r["layer"], r["step"]) for r in rows] == [(w.rule, w.layer, 10) for w in first]
    # a monitor re-opened on the same file (a resumed run) does not repeat them
    assert HealthMonitor(path=path, stream=None)(record_of(net, 30)) == []
