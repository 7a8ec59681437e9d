"""batch_norm and layer_norm: the SNGAN paper's feature-normalization baselines, after every layer but the first and
the last."""
import copy
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import gannorm
from gannorm import config as C
from gannorm.diagnostics.lipschitz import explain_upper_bound, lipschitz_lower_bound
from gannorm.errors import ConfigError, OptionError
from gannorm.gradnorm import GradientNormalized, check_per_sample
from gannorm.networks import build_discriminator
from gannorm.normalizations.feature_norms import (BATCH_NORM, ChannelBatchNorm, attach_post_norm, fold_post_norm,
                                                  post_norm)
from gannorm.normalizations.model import _layers
from gannorm.training import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")
FEATURE = ["batch_norm", "layer_norm"]
ARCHS = [("cnn", (3, 16, 16), 1 / 8), ("resnet", (3, 16, 16), 1 / 8), ("mlp", (2,), 1 / 4)]


def small_d():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.LeakyReLU(0.1), nn.Conv2d(8, 6, 4, 2, 1),
                         nn.LeakyReLU(0.1), nn.Conv2d(6, 5, 3, padding=1), nn.LeakyReLU(0.1), nn.Flatten(),
                         nn.Linear(5 * 4 * 4, 1))


def norms(model):
    return {name: type(found[1]) for name, m in model.named_modules() if (found := post_norm(m)) is not None}


@pytest.mark.parametrize("arch,shape,width", ARCHS)
@pytest.mark.parametrize("method", FEATURE)
def test_a_norm_follows_every_layer_but_the_first_and_the_last(arch, shape, width, method):
    d = build_discriminator(arch, shape, width=width, normalization=method)
    names = [n for n, _ in _layers(d, ())]  # the model's layer order
    expected = ChannelBatchNorm if method == "batch_norm" else nn.GroupNorm
    assert norms(d) == {n: expected for n in names[1:-1]}
    assert not any(parametrize.is_parametrized(m) for m in d.modules())
    if arch == "resnet":  # the shortcut 1x1 convs count as layers too
        assert "blocks.0.c_sc" in norms(d) and "blocks.0.c1" not in norms(d) and "linear" not in norms(d)


def test_batch_norm_is_torch_batch_norm_over_the_channels_of_each_layer_output():
    torch.manual_seed(0)
    d = gannorm.normalize(small_d(), "batch_norm", momentum=0.3, eps=1e-3)
    conv, bn = d[2], d[2].bn
    assert (bn.momentum, bn.eps) == (0.3, 1e-3) and isinstance(bn, nn.modules.batchnorm._BatchNorm)
    with torch.no_grad():
        bn.weight.copy_(torch.randn(6))
        bn.bias.copy_(torch.randn(6))
    x = torch.randn(5, 8, 8, 8)
    h = conv.forward(x)  # the plain conv output (forward() skips the hook)
    mean, var = h.mean(dim=(0, 2, 3)), h.var(dim=(0, 2, 3), unbiased=False)
    ref = (h - mean.view(1, -1, 1, 1)) / torch.sqrt(var.view(1, -1, 1, 1) + 1e-3)
    ref = ref * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)
    n = h.numel() / 6
    torch.testing.assert_close(bn.running_mean, 0.3 * mean)
    torch.testing.assert_close(bn.running_var, 0.7 + 0.3 * var * n / (n - 1))  # torch: unbiased running var
    conv.eval()
    ref = (h - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + 1e-3)
    torch.testing.assert_close(conv(x), ref * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1))
    # a linear layer's output [N, F] is normalized per feature by the same module type
    lin = attach_post_norm(nn.Linear(4, 3), BATCH_NORM)
    y = lin(torch.randn(7, 4))
    torch.testing.assert_close(y.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(0, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)


def test_layer_norm_normalizes_each_sample_over_all_its_features_with_a_per_channel_affine():
    torch.manual_seed(0)
    d = gannorm.normalize(small_d(), "layer_norm", eps=1e-4)
    conv, ln = d[2], d[2].ln
    with torch.no_grad():
        ln.weight.copy_(torch.randn(6))
        ln.bias.copy_(torch.randn(6))
    x = torch.randn(5, 8, 8, 8)
    h = conv.forward(x)
    mean = h.mean(dim=(1, 2, 3), keepdim=True)
    var = h.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    ref = (h - mean) / torch.sqrt(var + 1e-4) * ln.weight.view(1, -1, 1, 1) + ln.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(conv(x), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.eval()(x), ref, rtol=1e-5, atol=1e-5)  # no batch statistics, no running state
    assert ln.weight.shape == (6,)  # per channel, not per element: any input size works


@pytest.mark.parametrize("method", FEATURE)
def test_only_batch_norm_mixes_the_samples_and_gn_pgn_refuse_it(method):
    torch.manual_seed(0)
    d = gannorm.normalize(small_d(), method)
    x = torch.randn(6, 3, 8, 8)
    alone = d(x[:1])
    together = d(x)[:1]
    assert torch.allclose(alone, together, atol=1e-5) == (method == "layer_norm")
    spec = gannorm.METHODS.get(method)
    assert spec.couples_samples == (method == "batch_norm")
    if spec.couples_samples:
        for kind in ("gn", "pgn"):
            with pytest.raises(ConfigError) as err:
                GradientNormalized(d, kind)
            assert "2.bn (ChannelBatchNorm) mixes samples" in str(err.value) and "\n" not in str(err.value)
    else:
        check_per_sample(d)
        out = GradientNormalized(d, "gn")(x)
        assert out.shape == (6, 1) and bool((out.abs() < 1).all())


def test_the_capabilities_of_every_method():
    coupling = {n for n in gannorm.METHODS.names() if gannorm.METHODS.get(n).couples_samples}
    assert coupling == {"msn", "batch_norm"}
    assert {n for n in gannorm.METHODS.names() if not gannorm.METHODS.get(n).removable} == {"layer_norm"}
    assert {n for n in gannorm.METHODS.names() if not gannorm.METHODS.get(n).normalizes_weights} == {
        "none", "batch_norm", "layer_norm"}


def test_remove_folds_the_eval_mode_batch_norm_into_the_layers():
    torch.manual_seed(0)
    d = gannorm.normalize(small_d(), "batch_norm")
    x = torch.randn(8, 3, 8, 8)
    with torch.no_grad():
        for p in d.parameters():
            if p.ndim == 1:
                p.add_(0.3 * torch.randn_like(p))
    for _ in range(3):
        d(x + torch.randn_like(x))  # the running statistics move
    y = d.eval()(x)
    gannorm.remove_normalization(d.train())
    assert not norms(d) and not any(m._forward_hooks for m in d.modules())
    assert set(d.state_dict()) == set(small_d().state_dict())
    torch.testing.assert_close(d(x), y, rtol=1e-5, atol=1e-6)  # in training mode too: no batch statistics left
    assert gannorm.normalize(d, "sn") is d  # a plain model can be normalized again


@pytest.mark.parametrize("layer", [nn.Linear(5, 4, bias=False), nn.Conv2d(4, 6, 3, groups=2),
                                   nn.ConvTranspose2d(4, 6, 3, stride=2, groups=2)])
def test_fold_post_norm_matches_the_eval_mode_layer(layer):
    torch.manual_seed(0)
    attach_post_norm(layer, BATCH_NORM, eps=1e-3)
    bn = layer.bn
    with torch.no_grad():
        for t in (bn.weight, bn.bias, bn.running_mean):
            t.copy_(torch.randn_like(t))
        bn.running_var.copy_(torch.rand_like(bn.running_var) + 0.5)
    x = torch.randn(3, 5) if isinstance(layer, nn.Linear) else torch.randn(3, 4, 6, 6)
    y = layer.eval()(x)
    fold_post_norm(layer)
    assert post_norm(layer) is None and not hasattr(layer, "bn") and not layer._forward_hooks
    torch.testing.assert_close(layer.train()(x), y, rtol=1e-5, atol=1e-5)


def test_layer_norm_cannot_be_removed_and_the_model_is_left_as_it_was():
    d = gannorm.normalize(small_d(), "layer_norm")
    before = {k: v.clone() for k, v in d.state_dict().items()}
    with pytest.raises(ValueError) as err:
        gannorm.remove_normalization(d)
    assert "layer '2'" in str(err.value) and "GroupNorm (layer_norm)" in str(err.value) and "\n" not in str(err.value)
    assert norms(d) == {"2": nn.GroupNorm, "4": nn.GroupNorm}
    assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())
    # ... even when other normalizations would have been removed first
    e = gannorm.spectral_norm(gannorm.normalize(small_d(), "layer_norm")[2])  # an SN layer with a layer norm
    with pytest.raises(ValueError, match="layer_norm"):
        gannorm.remove_normalization(nn.Sequential(e))
    assert parametrize.is_parametrized(e)


@pytest.mark.parametrize("first,second", [("batch_norm", "sn"), ("layer_norm", "batch_norm"), ("sn", "layer_norm"),
                                          ("msn", "batch_norm")])
def test_a_second_normalization_is_refused(first, second):
    d = gannorm.normalize(small_d(), first)
    with pytest.raises(ValueError, match="already normalized; call gannorm.remove_normalization"):
        gannorm.normalize(d, second)


@pytest.mark.parametrize("method", FEATURE)
def test_a_model_with_fewer_than_three_layers_is_refused_untouched(method):
    d = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1))
    with pytest.raises(ValueError, match=f"^{method} follows every layer but the first and the last.*only 2"):
        gannorm.normalize(d, method)
    assert not norms(d)


def test_bad_options_are_refused():
    with pytest.raises(OptionError, match="eps must be a finite number > 0, got 0 \\(added to the variance"):
        gannorm.normalize(small_d(), "layer_norm", eps=0)
    with pytest.raises(OptionError, match="momentum must be a number in \\(0, 1\\]"):
        gannorm.normalize(small_d(), "batch_norm", momentum=1.5)
    with pytest.raises(OptionError, match="unknown option\\(s\\) momentum"):
        gannorm.normalize(small_d(), "layer_norm", momentum=0.1)


@pytest.mark.parametrize("method", [*FEATURE, "weight_norm"])
def test_the_config_accepts_the_new_methods(method):
    cfg = C.load(None, [f"normalization.method={method}", "normalization.options={}"])
    C.validate(cfg)
    assert cfg.normalization.method == method


@pytest.mark.parametrize("arch,shape,width", ARCHS)
@pytest.mark.parametrize("method", FEATURE)
def test_the_discriminators_train(arch, shape, width, method):
    torch.manual_seed(0)
    d = build_discriminator(arch, shape, width=width, normalization=method)
    start = copy.deepcopy(d.state_dict())
    opt = torch.optim.Adam(d.parameters(), lr=1e-3, betas=(0.0, 0.9))
    real, fake = torch.randn(16, *shape), torch.randn(16, *shape) * 0.5 + 0.3
    losses = []
    for _ in range(5):
        loss = torch.relu(1 - d(real)).mean() + torch.relu(1 + d(fake)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]
    moved = {k for k, v in d.state_dict().items() if v.is_floating_point() and not torch.equal(v, start[k])}
    norm_params = {k for k, _ in d.named_parameters() if k.split(".")[-2] in ("bn", "ln")}
    assert norm_params and norm_params <= moved
    assert {k for k, _ in d.named_parameters()} <= moved
    assert gannorm.sigmas(d) == {} and list(gannorm.normalized_layers(d)) == []


@pytest.mark.parametrize("method", [*FEATURE, "weight_norm"])
def test_the_lipschitz_bound_handles_the_new_layers(method):
    torch.manual_seed(0)
    d = build_discriminator("cnn", (3, 16, 16), width=1 / 8, normalization=method)
    x = torch.randn(8, 3, 16, 16)
    d(x)  # running statistics
    report = explain_upper_bound(d, (3, 16, 16), n_iter=60)
    assert report.reason == "ok" and report.value is not None
    assert lipschitz_lower_bound(d, x, torch.randn(8, 3, 16, 16)) <= report.value * (1 + 1e-4)
    parts = dict(report.parts)
    if method == "layer_norm":  # each layer norm is bounded by max |gamma| / sqrt(eps) = 1 / sqrt(1e-5)
        ln_parts = {k: v for k, v in parts.items() if k.endswith(".ln")}
        assert set(ln_parts) == {f"features.{i}.ln" for i in (2, 4, 6, 8, 10, 12)}
        assert all(v == pytest.approx(1 / math.sqrt(1e-5)) for v in ln_parts.values())


def test_the_layer_norm_bound_is_its_lipschitz_constant():
    # max |gamma| / sqrt(eps) is attained on a constant input (the Jacobian there is gamma * P / sqrt(eps))
    torch.manual_seed(0)
    gn = nn.GroupNorm(1, 4, eps=1e-2)
    with torch.no_grad():
        gn.weight.fill_(1.5)
    report = explain_upper_bound(nn.Sequential(gn), (4, 3, 3))
    assert report.value == pytest.approx(1.5 / math.sqrt(1e-2))
    jac = torch.autograd.functional.jacobian(lambda t: gn(t), torch.full((1, 4, 3, 3), 0.7)).reshape(36, 36)
    assert float(torch.linalg.matrix_norm(jac, 2)) == pytest.approx(report.value, rel=1e-4)
    for _ in range(5):  # and nowhere larger
        jac = torch.autograd.functional.jacobian(lambda t: gn(t), torch.randn(1, 4, 3, 3)).reshape(36, 36)
        assert float(torch.linalg.matrix_norm(jac, 2)) <= report.value


@pytest.mark.parametrize("function", ["gn", "pgn"])
def test_the_trainer_refuses_batch_norm_under_gn_and_pgn_before_making_a_run_folder(tmp_path, function):
    cfg = C.load(None, ["data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125",
                        "normalization.method=batch_norm", "normalization.options={}",
                        f"normalization.function={function}", f"train.out_dir={tmp_path}", "train.progress=false",
                        "train.tensorboard=false"])
    with pytest.raises(ConfigError) as err:  # by the trainer's check_per_sample (or an equivalent config check)
        Trainer(cfg)
    assert function in str(err.value) and "batch" in str(err.value) and "\n" not in str(err.value)
    assert not list(tmp_path.iterdir())
    C.validate(C.load(None, ["normalization.method=layer_norm", "normalization.options={}",
                             f"normalization.function={function}"]))  # per-sample: accepted
