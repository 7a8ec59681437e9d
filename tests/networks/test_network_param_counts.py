"""Parameter counts of the full-size networks against layer lists copied from the official code bases.

The expected counts are computed here, independently of the model code, from literal layer lists
(the official BSN code for the CNN and the 128-px ResNet, see docs/networks.md;
and the mimicry/pytorch-gan-collections sources for the 32/48-px ResNets):
conv ``k*k*cin*cout + cout``, linear ``in*out (+ out)``, BatchNorm ``2*c``.
"""
import pytest

import gannorm
from torch import nn
from gannorm.normalizations import ChannelBatchNorm, WeightNorm
from gannorm.normalizations.mean_sn import MeanOnlyBatchNorm
from gannorm.networks import build_discriminator, build_generator


def count(layers):
    n = 0
    for kind, *a in layers:
        if kind in ("conv", "deconv"):
            k, cin, cout = a
            n += k * k * cin * cout + cout
        elif kind == "linear":
            fin, fout = a
            n += fin * fout + fout
        elif kind == "linear_nobias":
            fin, fout = a
            n += fin * fout
        elif kind == "bn":
            n += 2 * a[0]
        else:
            raise AssertionError(kind)
    return n


def expand(blocks):
    """ResNet blocks -> layers. gblock: BN(in) conv3 in->out BN(out) conv3 out->out, shortcut conv1 in->out.
    opt: conv3 in->out conv3 out->out, shortcut conv1 in->out. dblock(in, hidden, out, shortcut): conv3 in->hidden,
    conv3 hidden->out, [conv1 in->out]."""
    layers = []
    for kind, *a in blocks:
        if kind == "gblock":
            cin, cout = a
            layers += [("bn", cin), ("conv", 3, cin, cout), ("bn", cout), ("conv", 3, cout, cout),
                       ("conv", 1, cin, cout)]
        elif kind == "opt":
            cin, cout = a
            layers += [("conv", 3, cin, cout), ("conv", 3, cout, cout), ("conv", 1, cin, cout)]
        elif kind == "dblock":
            cin, hidden, cout, shortcut = a
            layers += [("conv", 3, cin, hidden), ("conv", 3, hidden, cout)]
            layers += [("conv", 1, cin, cout)] if shortcut else []
        else:
            layers.append((kind, *a))
    return layers


# --- SNGAN standard CNN (docs/networks.md): flatten sizes 8192 / 18432 / 32768 -------------------------------
CNN_D_CONVS = [("conv", 3, 3, 64), ("conv", 4, 64, 64), ("conv", 3, 64, 128), ("conv", 4, 128, 128),
               ("conv", 3, 128, 256), ("conv", 4, 256, 256), ("conv", 3, 256, 512)]
CNN_D = {32: CNN_D_CONVS + [("linear", 8192, 1)],
         48: CNN_D_CONVS + [("linear", 18432, 1)],
         64: CNN_D_CONVS + [("linear", 32768, 1)]}
CNN_G_TAIL = [("deconv", 4, 512, 256), ("bn", 256), ("deconv", 4, 256, 128), ("bn", 128),
              ("deconv", 4, 128, 64), ("bn", 64), ("deconv", 3, 64, 3)]
CNN_G = {32: [("linear", 128, 8192), ("bn", 8192)] + CNN_G_TAIL,  # BatchNorm1d on the flat 4*4*512 vector
         48: [("linear", 128, 18432), ("bn", 18432)] + CNN_G_TAIL,
         64: [("linear", 128, 32768), ("bn", 32768)] + CNN_G_TAIL}

# --- SNGAN ResNets -------------------------------------------------------------------------------------
RESNET_G = {
    # docs/networks.md / collections ResGenerator32: linear 128 -> 4*4*256, 3 up-blocks 256, BN-ReLU-conv3 256->3
    32: [("linear", 128, 4096), ("gblock", 256, 256), ("gblock", 256, 256), ("gblock", 256, 256),
         ("bn", 256), ("conv", 3, 256, 3)],
    # mimicry sngan_48: linear -> 6*6*512, GBlocks 512->256->128->64, BN-ReLU-conv3 64->3
    48: [("linear", 128, 18432), ("gblock", 512, 256), ("gblock", 256, 128), ("gblock", 128, 64),
         ("bn", 64), ("conv", 3, 64, 3)],
    # docs/networks.md (official BSN 128): linear 4*4*1024 (no BN), up-blocks 1024, 512, 256, 128, 64, BN-ReLU-conv3
    128: [("linear", 128, 16384), ("gblock", 1024, 1024), ("gblock", 1024, 512), ("gblock", 512, 256),
          ("gblock", 256, 128), ("gblock", 128, 64), ("bn", 64), ("conv", 3, 64, 3)],
}
RESNET_D = {
    # docs/networks.md / collections ResDiscriminator32: Opt 3->128, 128->128 down, 128->128, 128->128,
    # Linear 128->1 no bias
    32: [("opt", 3, 128), ("dblock", 128, 128, 128, True), ("dblock", 128, 128, 128, False),
         ("dblock", 128, 128, 128, False), ("linear_nobias", 128, 1)],
    # mimicry sngan_48 (DBlock hidden = in channels): Opt 3->64, 64->128, 128->256, 256->512 down, 512->1024
    48: [("opt", 3, 64), ("dblock", 64, 64, 128, True), ("dblock", 128, 128, 256, True),
         ("dblock", 256, 256, 512, True), ("dblock", 512, 512, 1024, True), ("linear", 1024, 1)],
    # docs/networks.md (official BSN 128): channels 64, 128, 256, 512, 1024, 1024, every block with a 1x1 shortcut
    128: [("opt", 3, 64), ("dblock", 64, 128, 128, True), ("dblock", 128, 256, 256, True),
          ("dblock", 256, 512, 512, True), ("dblock", 512, 1024, 1024, True), ("dblock", 1024, 1024, 1024, True),
          ("linear", 1024, 1)],
}


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_the_helper_reproduces_the_known_cnn_counts():
    assert count(CNN_D[32]) == 2_935_873
    assert count(CNN_G[32]) == 3_828_739


@pytest.mark.parametrize("res", [32, 48, 64])
def test_cnn(res):
    assert n_params(build_discriminator("cnn", (3, res, res))) == count(CNN_D[res])
    assert n_params(build_generator("cnn", (3, res, res))) == count(CNN_G[res])


def test_cnn_channel_bn_variant():
    layers = [("linear", 128, 8192), ("bn", 512)] + CNN_G_TAIL
    assert n_params(build_generator("cnn", (3, 32, 32), bottom_bn="channel")) == count(layers)


@pytest.mark.parametrize("res", [32, 48, 128])
def test_resnet(res):
    assert n_params(build_discriminator("resnet", (3, res, res))) == count(expand(RESNET_D[res]))
    assert n_params(build_generator("resnet", (3, res, res))) == count(expand(RESNET_G[res]))


def test_known_totals():
    """The totals, written out (also a guard against the helper and the lists changing together)."""
    totals = {(k, r): count(expand(v[r])) for k, v in (("G", RESNET_G), ("D", RESNET_D)) for r in v}
    assert totals == {("G", 32): 4_276_739, ("G", 48): 4_878_083, ("G", 128): 32_150_787,
                      ("D", 32): 1_053_824, ("D", 48): 10_141_441, ("D", 128): 39_468_737}


def test_grayscale_changes_only_the_io_layers():
    d3, d1 = build_discriminator("cnn", (3, 32, 32)), build_discriminator("cnn", (1, 32, 32))
    assert n_params(d3) - n_params(d1) == 2 * 9 * 64
    g3, g1 = build_generator("cnn", (3, 32, 32)), build_generator("cnn", (1, 32, 32))
    assert n_params(g3) - n_params(g1) == 2 * 9 * 64 + 2


def _layer_count(model):
    return sum(isinstance(m, gannorm.normalizations.NORMALIZABLE) for m in model.modules())


NORM_OPTIONS = {"ssn": {"scale": 1.4}, "bssn": {"scale": 1.4}}


@pytest.mark.parametrize("arch,shape", [("cnn", (3, 32, 32)), ("resnet", (3, 32, 32)), ("resnet", (3, 48, 48)),
                                        ("mlp", (2,))])
@pytest.mark.parametrize("method", gannorm.METHODS.names())
def test_normalization_keeps_the_parameter_count(arch, shape, method):
    width = 1 / 8 if arch != "mlp" else 1.0
    base = build_discriminator(arch, shape, width=width)
    d = build_discriminator(arch, shape, width=width, normalization=method,
                            normalization_options=NORM_OPTIONS.get(method))
    extra = {"sn_gamma_shared": 1, "sn_gamma_layer": _layer_count(base)}.get(method, 0)
    # a gain and a bias per channel of every added feature norm; a gain per output unit of weight norm
    added = [m for m in d.modules() if isinstance(m, (MeanOnlyBatchNorm, ChannelBatchNorm, nn.GroupNorm))]
    if added:
        extra = sum(2 * m.weight.numel() for m in added)
    extra += sum(m.g.numel() for m in d.modules() if isinstance(m, WeightNorm))
    if method in ("msn", "batch_norm", "layer_norm", "weight_norm"):
        assert extra > 0 or (arch == "mlp" and method == "msn")
    assert n_params(d) == n_params(base) + extra


def test_full_size_sn_keeps_the_count():
    d = build_discriminator("cnn", (3, 32, 32), normalization="sn")
    assert n_params(d) == 2_935_873
