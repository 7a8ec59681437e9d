"""``model.g_init``: G's initialisation, chosen like ``model.d_init``; the default leaves every preset's G as it was."""
import math

import pytest
import torch
from torch import nn

from gannorm import config as C
from gannorm.errors import ConfigError
from gannorm.init import SCHEMES
from gannorm.networks import build_generator
from gannorm.training import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_DIGITS = ["data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125", "train.progress=false",
               "train.tensorboard=false"]


def data_shape(cfg):
    if cfg.data.name in ("digits", "mnist5k"):
        return (1, cfg.data.resolution, cfg.data.resolution)
    return (3, cfg.data.resolution, cfg.data.resolution) if cfg.data.resolution else (2,)


def preset_g(cfg, seed, **init):
    """The preset's G at a tiny width, built from ``seed``; ``init`` passed on only when given."""
    m = cfg.model
    torch.manual_seed(seed)
    return build_generator(m.arch, data_shape(cfg), z_dim=m.z_dim, width=1 / 16, num_classes=m.num_classes,
                           normalization=cfg.normalization.g_method,
                           normalization_options=dict(cfg.normalization.g_options), **init, **m.g_options)


def same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", C.preset_names())
def test_the_default_builds_every_presets_g_bitwise_as_before(name):
    cfg = C.load(name, ["model.g_init=official"])
    assert C.Config().model.g_init == "official"
    before = preset_g(cfg, 7)                                  # the builder's call as it was: no init argument
    assert same_state(before, preset_g(cfg, 7, init=cfg.model.g_init))
    preset = C.load(name)
    if preset.model.g_init == "official":
        return
    changed = preset_g(preset, 7, init=preset.model.g_init)
    assert not same_state(before, changed)  # a preset that sets a scheme does get another G


def _fan_in(m: nn.Module) -> int:
    """By hand: a conv's inputs per output unit; a transposed conv's ``in_channels`` feed each output position."""
    k = math.prod(m.kernel_size) if hasattr(m, "kernel_size") else 1
    if isinstance(m, nn.Linear):
        return m.in_features
    return m.in_channels // m.groups * k


@pytest.mark.parametrize("arch", ["resnet", "cnn"])
def test_kaiming_gives_g_the_variance_of_kaiming_normal(arch):
    torch.manual_seed(0)
    G = build_generator(arch, (3, 32, 32), width=0.5, init="kaiming")
    layers = [m for m in G.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    assert len(layers) >= 4
    for m in layers:
        n = m.weight.numel()
        var = float(m.weight.detach().double().pow(2).mean())
        assert var == pytest.approx(2.0 / _fan_in(m), rel=6 * math.sqrt(2 / n)), m
        if n >= 1000:  # normal, not the official uniform of the same variance (bounded by sqrt(3) std)
            tail = float((m.weight.detach().abs() > 1.8 * math.sqrt(2.0 / _fan_in(m))).double().mean())
            assert tail == pytest.approx(0.0719, abs=6 * math.sqrt(0.0719 / n)), m
        if m.bias is not None:
            assert float(m.bias.detach().abs().max()) == 0.0
    bns = [m for m in G.modules() if isinstance(m, nn.BatchNorm2d)]
    # the batch norms keep their default weight 1 and bias 0
    assert bns and all(float(b.weight.detach().min()) == 1.0 and float(b.bias.detach().abs().max()) == 0.0 for b in bns)


def test_g_init_is_applied_before_g_normalization():
    """With ``normalization.g_method``, the scheme draws the raw weight: SN then divides it by its sigma."""
    torch.manual_seed(1)
    plain = build_generator("mlp", (2,), init="orthogonal")
    torch.manual_seed(1)
    normalized = build_generator("mlp", (2,), init="orthogonal", normalization="sn")
    layers = dict(normalized.named_modules())
    linears = [(name, m) for name, m in plain.named_modules() if isinstance(m, nn.Linear)]
    assert len(linears) >= 2
    for name, m in linears:
        assert torch.equal(m.weight, layers[name].parametrizations.weight.original), name


def test_an_unknown_g_init_is_one_line():
    bad = C.load(None, TINY_DIGITS + ["model.g_init=he"])
    with pytest.raises(ConfigError) as err:
        C.validate(bad)
    assert str(err.value) == f"config key model.g_init: 'he' is not one of official, {', '.join(SCHEMES.names())}"
    with pytest.raises(ConfigError, match=r"^unknown G init 'he'; known: official, lecun, ") as err:
        build_generator("cnn", (3, 32, 32), init="he")
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("scheme", ["official", "kaiming"])
def test_the_trainer_builds_g_with_model_g_init(tmp_path, scheme):
    cfg = C.load(None, TINY_DIGITS + [f"train.out_dir={tmp_path}", f"model.g_init={scheme}", "train.seed=5"])
    trainer = Trainer(cfg)
    try:
        torch.manual_seed(5)  # the trainer builds G first from train.seed
        expected = build_generator("cnn", (1, 8, 8), z_dim=cfg.model.z_dim, width=0.125, init=scheme)
        assert same_state(trainer.G, expected)
    finally:
        trainer.close()
