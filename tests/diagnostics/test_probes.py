"""Probes against direct computations; no side effects on the model; the LeCun variance ratio."""
import copy
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

import gannorm
from gannorm.diagnostics.probes import flat_scalars, headline_scalars, probe, reference_ratios
from gannorm.diagnostics.records import ProbeRecord
from gannorm.gradnorm import GradientNormalized
from gannorm.init import init_weights
from gannorm.losses import LOSSES

HINGE = LOSSES.get("hinge").d


def small_d(method="sn"):
    d = nn.Sequential(nn.Conv2d(2, 6, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(6, 8, 3, 1, 1), nn.LeakyReLU(0.2),
                      nn.Flatten(), nn.Linear(8 * 4 * 4, 1))
    options = {"scale": 1.4} if method == "bssn" else {}
    return d if method == "none" else gannorm.normalize(d, method, **options)


@pytest.mark.parametrize("method", ["none", "sn", "bssn"])
def test_probe_matches_direct_computations(method):
    d = small_d(method).eval()  # eval: SN divides by the stored estimate, so a copy sees the same function
    real, fake = torch.randn(5, 2, 8, 8), torch.randn(5, 2, 8, 8)
    rec = probe(d, HINGE, real, fake, bounds=False)
    assert list(rec.layers) == ["0", "2", "5"] and rec.step == 0

    # raw-weight gradients: an ordinary backward on a copy
    ref = copy.deepcopy(d)
    HINGE(ref(real), ref(fake)).backward()
    # effective-weight gradients: a copy with the normalized weights frozen in as plain parameters
    plain = gannorm.remove_normalization(copy.deepcopy(d)) if method != "none" else copy.deepcopy(d)
    HINGE(plain(real), plain(fake)).backward()
    est = gannorm.sigmas(d)
    for name in rec.layers:
        e = rec.layers[name]
        m, p = ref.get_submodule(name), plain.get_submodule(name)
        raw = gannorm.raw_weight(m)
        assert e.grad_raw == pytest.approx(float(raw.grad.norm()), rel=1e-5)
        g = raw.grad.double().numpy()
        assert e.grad_sparsity == float(np.mean(np.abs(g) <= 1e-2 * np.sqrt(np.mean(g ** 2))))
        assert e.grad_effective == pytest.approx(float(p.weight.grad.norm()), rel=1e-5)
        assert e.raw_spectral == pytest.approx(float(torch.linalg.svdvals(raw.detach().reshape(raw.shape[0], -1))[0]),
                                                  rel=1e-5)
        assert e.raw_frobenius == pytest.approx(float(raw.detach().norm()), rel=1e-5)
        w = p.weight.detach().double()
        assert e.var_ratio == pytest.approx(e.fan_in * float(((w - w.mean()) ** 2).mean()), rel=1e-9)
        assert e.fan_in == w[0].numel()
        for k in ("sigma", "sigma1", "sigma2"):
            assert e.value(k) == est.get(f"{name}/{k}")
    if method == "bssn":
        assert rec.layers["0"].sigma1 is not None and rec.layers["5"].sigma1 is None

    # input gradients and outputs, one sample at a time
    for kind, x in (("real", real), ("fake", fake)):
        norms = []
        for xi in x:
            xi = xi[None].clone().requires_grad_(True)
            (g,) = torch.autograd.grad(plain(xi).sum(), xi)
            norms.append(float(g.norm()))
        s = rec.input_grad[kind]
        assert s.mean == pytest.approx(sum(norms) / len(norms), rel=1e-5)
        assert s.min == pytest.approx(min(norms), rel=1e-5) and s.max == pytest.approx(max(norms), rel=1e-5)
    assert rec.d_real == pytest.approx(float(plain(real).detach().mean()), rel=1e-5, abs=1e-7)
    assert rec.d_fake == pytest.approx(float(plain(fake).detach().mean()), rel=1e-5, abs=1e-7)
    assert rec.lipschitz_lower >= max(rec.input_grad[k].max for k in ("real", "fake"))


def test_probe_leaves_no_trace_in_training_mode():
    d = small_d("sn").train()
    before = {k: v.clone() for k, v in d.state_dict().items()}
    probe(d, HINGE, torch.randn(4, 2, 8, 8), torch.randn(4, 2, 8, 8), bounds=False)
    assert d.training and all(m.training for m in d.modules())
    assert all(p.grad is None for p in d.parameters())
    for k, v in d.state_dict().items():
        assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("layer", [nn.Linear(512, 256), nn.Conv2d(64, 128, 3), nn.Conv2d(16, 32, 4, 2, 1)])
def test_variance_ratio_of_a_fresh_lecun_layer_is_one(layer):
    init_weights(layer, "lecun")
    d = nn.Sequential(layer, nn.Flatten(), nn.LazyLinear(1))
    x = torch.randn(2, *((512,) if isinstance(layer, nn.Linear) else (layer.in_channels, 8, 8)))
    d(x)
    rec = probe(d, HINGE, x, x.flip(0), bounds=False)
    n = layer.weight.numel()
    ratio = rec.layers["0"].var_ratio
    assert abs(ratio - 1) < 5 * math.sqrt(2 / n), ratio  # the sample variance's relative s.d. is sqrt(2/n)


def test_reference_ratios():
    r = reference_ratios(27, 576, slope=0.1)
    assert r["ref_xavier"] == pytest.approx(2 * 27 / 603)
    assert r["ref_kaiming"] == pytest.approx(2 / 1.01)


def test_probe_through_gradient_normalization():
    d = GradientNormalized(small_d("sn"), "gn")
    rec = probe(d, HINGE, torch.randn(4, 2, 8, 8), torch.randn(4, 2, 8, 8), bounds=False)
    assert list(rec.layers) == ["inner.0", "inner.2", "inner.5"]
    # GN outputs are bounded by 1 and GN is piecewise 1-Lipschitz
    assert abs(rec.d_real) < 1 and rec.lipschitz_lower <= 1 + 1e-4
    assert all(e.grad_raw > 0 for e in rec.layers.values())


def test_a_missing_upper_bound_says_why():
    x = torch.randn(4, 2, 8, 8)
    rec = probe(GradientNormalized(small_d("sn"), "gn"), HINGE, x, x.flip(0))
    assert rec.lipschitz_upper is None and "GradientNormalized" in rec.lipschitz_upper_note
    assert "GradientNormalized" in rec.to_json()["lipschitz_upper_note"]
    rec = probe(small_d("sn"), HINGE, x, x.flip(0))
    assert rec.lipschitz_upper >= rec.lipschitz_lower and rec.lipschitz_upper_note is None
    assert "lipschitz_upper_note" not in rec.to_json()
    rec = probe(small_d("sn"), HINGE, x, x.flip(0), bounds=False)
    assert rec.lipschitz_upper is None and "diagnostics.bounds=false" in rec.lipschitz_upper_note


def test_record_step_json_and_scalars():
    d = small_d("bssn").eval()
    x = torch.randn(4, 2, 8, 8)
    rec = probe(d, HINGE, x, x.flip(0), step=7)
    assert rec.step == 7 and ProbeRecord.from_json(json.loads(json.dumps(rec.to_json()))) == rec
    obj = rec.to_json()
    assert list(obj) == ["step", "layers", "input_grad", "d_real", "d_fake", "loss_d", "lipschitz_upper",
                         "lipschitz_lower"]
    assert list(obj["layers"]["0"]) == ["kind", "fan_in", "fan_out", "sigma", "sigma1", "sigma2", "strict_sigma",
                                        "raw_spectral", "raw_frobenius", "var_ratio", "grad_raw", "grad_effective",
                                        "ref_xavier", "ref_kaiming", "act_mean", "act_std", "grad_sparsity"]
    with torch.no_grad():
        assert obj["loss_d"] == pytest.approx(float(HINGE(d(x), d(x.flip(0)))), rel=1e-5)
    head = headline_scalars(rec)
    first, last = rec.layers["0"], rec.layers["5"]
    assert head["diag/grad_first_over_last"] == first.grad_effective / last.grad_effective
    assert head["diag/lipschitz_upper"] == rec.lipschitz_upper and head["diag/input_grad_real_mean"] == \
        rec.input_grad["real"].mean
    ratios = [e.var_ratio for e in rec.layers.values()]
    assert (head["diag/var_ratio_min"], head["diag/var_ratio_max"]) == (min(ratios), max(ratios))
    assert head["diag/drift_max"] == max(e.act_mean / e.act_std for e in rec.layers.values())
    flat = flat_scalars(rec)
    assert flat["diag/2/grad_raw"] == rec.layers["2"].grad_raw and flat["diag/0/sigma1"] == first.sigma1
    assert "diag/5/sigma1" not in flat and "diag/0/ref_xavier" not in flat and "diag/0/fan_in" not in flat
    assert flat["diag/2/drift"] == rec.layers["2"].act_mean / rec.layers["2"].act_std
    assert flat["diag/0/grad_sparsity"] == rec.layers["0"].grad_sparsity
    assert set(flat_scalars(rec, ["2"])) == {k for k in flat if not k.startswith(("diag/0/", "diag/5/"))}


def test_non_finite_gradients_are_kept_in_memory_and_null_in_json():
    d = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    with torch.no_grad():
        d[0].weight.fill_(1e37)  # the hidden layer overflows float32: the loss gradient is not finite
    x = torch.rand(3, 4) + 100
    rec = probe(d, LOSSES.get("wasserstein").d, x, x + 1, bounds=False)
    g = rec.layers["1"].grad_raw
    assert g is not None and not math.isfinite(g)
    assert rec.to_json()["layers"]["1"]["grad_raw"] is None
    assert "diag/1/grad_raw" not in flat_scalars(rec)
