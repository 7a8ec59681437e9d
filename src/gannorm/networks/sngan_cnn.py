"""The SNGAN "standard CNN" generator and discriminator (Miyato et al. 2018; official BSN code).

Layer lists as in the official BSN code (no_gamma-CNN/gan/network.py; ``docs/networks.md``). ``width``
multiplies every channel count (1.0 is the official network) so tiny versions train on a CPU;
``channels`` is the number of image channels (1 for grayscale). TF 'SAME' padding is
``padding=1`` for both the k3/s1 and the k4/s2 layers on even inputs.

Resolutions: the official ones are 32, 48 and 64 (bottom size ``mg`` = 4, 6, 8); any multiple of
8 works (e.g. 16 for tiny CPU runs).

Official initialisation (applied by the constructors, :meth:`reset_parameters`): D convs truncated
normal std 0.02 (redrawn outside +-2 std, so the actual std is 0.02 * 0.88); D linear, G linear and
G transposed convs normal std 0.02; biases 0; BatchNorm gamma 1, beta 0, momentum 0.1 (TF decay
0.9), eps 1e-5.

**BatchNorm after G's linear layer.** The official TF code applies ``batch_norm`` to the *flat*
``mg*mg*512`` output of the linear layer, before the reshape, so every one of the ``mg*mg*512``
units has its own statistics and affine parameters: a ``BatchNorm1d(mg*mg*512)`` (8192 features at
32 px). This is the default (``bottom_bn="flat"``). pytorch-gan-collections reshapes first and uses
``BatchNorm2d(512)`` (per channel); ``bottom_bn="channel"`` gives that variant. The parameter count
differs: 2*8192 vs 2*512 at 32 px.

**Class-conditional** (``num_classes > 0``; 0 keeps the unconditional network bit for bit): every
BatchNorm of G becomes a conditional one (:mod:`gannorm.networks.conditional`; the flat bottom norm a
``ConditionalBatchNorm1d``) and D's final linear becomes a :class:`ProjectionHead` ``head`` (the
linear, same init, plus a class embedding on the flattened features, Glorot uniform). Both then take
``(input, y)`` with int64 labels ``y``.

Differences from pytorch-gan-collections' ``sngan.py`` (the GN/PGN CNN, ``docs/official-code.md``):
its D widens at the stride-2 convs (3->64, 64->128, 128->128, 128->256, ...) and its G ends with a
Conv2d; here D widens at the 3x3 convs (3->64, 64->64, 64->128, 128->128, ...) and G ends with a
3x3 transposed conv, as in the official BSN/SNGAN code.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError
from ..validate import require
from .blocks import channels as _ch
from .blocks import normal_, trunc_normal_
from .conditional import (LABEL_NORMS, ProjectionHead, check_num_classes, class_norm, glorot_uniform_,
                          require_labels, run_with_labels, with_labels)

RESOLUTIONS = {32: 4, 48: 6, 64: 8}  # official image size -> bottom size mg (image = 8 * mg)
BOTTOM_BN = ("flat", "channel")


def _bottom(resolution: int) -> int:
    if not isinstance(resolution, int) or resolution % 8 or resolution < 8:
        raise ConfigError(f"the SNGAN CNN needs a resolution divisible by 8 (official: 32, 48, 64), got {resolution}")
    return resolution // 8


class SNGANCNNDiscriminator(nn.Module):
    """conv3 64 -> conv4/2 64 -> conv3 128 -> conv4/2 128 -> conv3 256 -> conv4/2 256 -> conv3 512 -> linear 1.

    LeakyReLU(``slope``, official 0.1) after every conv; no normalization here (apply one with
    :func:`gannorm.normalize`). Input ``[B, channels, resolution, resolution]``, output ``[B, 1]`` logits.
    ``extra_convs`` (not in the official network; for depth studies) adds that many 3x3 stride-1 convs
    with the same channels after each of the four 3x3 convs: ``extra_convs=2`` makes 15 convs.
    ``num_classes > 0``: a projection head ``head`` replaces ``linear``; forward ``(x, y)``.
    """

    def __init__(self, resolution: int = 32, channels: int = 3, width: float = 1.0, slope: float = 0.1,
                 extra_convs: int = 0, num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = check_num_classes(num_classes)
        require(extra_convs, name="extra_convs", kind="int", min=0, error=ConfigError)
        mg = _bottom(resolution)
        c = [_ch(n, width) for n in (64, 64, 128, 128, 256, 256, 512)]
        specs = [(channels, c[0], 3, 1), (c[0], c[1], 4, 2), (c[1], c[2], 3, 1), (c[2], c[3], 4, 2),
                 (c[3], c[4], 3, 1), (c[4], c[5], 4, 2), (c[5], c[6], 3, 1)]
        layers: list[nn.Module] = []
        for i, (cin, cout, k, s) in enumerate(specs):
            layers += self.block(i, cin, cout, k, s) + [nn.LeakyReLU(slope)]
            for _ in range(extra_convs if s == 1 else 0):
                layers += self.block(i, cout, cout, 3, 1) + [nn.LeakyReLU(slope)]
        self.features = nn.Sequential(*layers)
        if self.num_classes:
            self.head = ProjectionHead(mg * mg * c[6], self.num_classes)
        else:
            self.linear = nn.Linear(mg * mg * c[6], 1)
        self.resolution, self.channels = resolution, channels
        self.data_shape = (channels, resolution, resolution)
        self.reset_parameters()

    def block(self, index: int, cin: int, cout: int, k: int, stride: int) -> list[nn.Module]:
        """The layers of the ``index``-th conv of the list (one k x k conv here; see ``dscnn``)."""
        return [nn.Conv2d(cin, cout, k, stride, padding=1)]

    def reset_parameters(self) -> None:
        """The official init: convs truncated normal 0.02, the linear normal 0.02, biases 0 (a projection
        head's embedding: Glorot uniform)."""
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                trunc_normal_(m, 0.02)
        if self.num_classes:
            normal_(self.head.linear, 0.02)
            glorot_uniform_(self.head.embed)
        else:
            normal_(self.linear, 0.02)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            y = require_labels(self, y, x.shape[0])
            return self.head(self.features(x).flatten(1), y)
        return self.linear(self.features(x).flatten(1))

    def lipschitz_structure(self) -> list[list[tuple[str, nn.Module]]]:
        """The forward as one ``(name, module)`` chain (see :mod:`gannorm.diagnostics.lipschitz`); a conditional
        D ends with its ``head``, which takes the labels too (no rule bounds it)."""
        last = ("head", self.head) if self.num_classes else ("linear", self.linear)
        return [[("features", self.features), (":flatten", nn.Flatten()), last]]


class SNGANCNNGenerator(nn.Module):
    """z -> linear mg*mg*512 -> BN-ReLU -> 3 x (deconv4/2 -> BN-ReLU) (256, 128, 64) -> deconv3 -> tanh.

    ``bottom_bn="flat"`` (official TF): ``BatchNorm1d(mg*mg*512)`` on the linear output before the
    reshape; ``"channel"``: ``BatchNorm2d(512)`` after it (pytorch-gan-collections).
    Output ``[B, channels, resolution, resolution]`` in (-1, 1). ``num_classes > 0``: every BatchNorm is
    class-conditional (``ConditionalBatchNorm1d/2d``); forward ``(z, y)``.
    """

    def __init__(self, resolution: int = 32, channels: int = 3, width: float = 1.0, z_dim: int = 128,
                 bottom_bn: str = "flat", num_classes: int = 0) -> None:
        super().__init__()
        self.num_classes = k = check_num_classes(num_classes)
        if bottom_bn not in BOTTOM_BN:
            raise ConfigError(f"bottom_bn must be one of {', '.join(BOTTOM_BN)}; got {bottom_bn!r}")
        self.mg = _bottom(resolution)
        c = [_ch(n, width) for n in (512, 256, 128, 64)]
        self.c0, self.z_dim, self.bottom_bn = c[0], z_dim, bottom_bn
        self.linear = nn.Linear(z_dim, self.mg * self.mg * c[0])
        self.bn0 = class_norm(self.mg * self.mg * c[0], k, 1) if bottom_bn == "flat" else class_norm(c[0], k)
        blocks: list[nn.Module] = [nn.ReLU()]
        for cin, cout in zip(c[:-1], c[1:]):
            blocks += [nn.ConvTranspose2d(cin, cout, 4, 2, padding=1), class_norm(cout, k), nn.ReLU()]
        blocks += [nn.ConvTranspose2d(c[-1], channels, 3, 1, padding=1), nn.Tanh()]
        self.blocks = nn.Sequential(*blocks)
        self.resolution, self.channels = resolution, channels
        self.data_shape = (channels, resolution, resolution)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official init: linear and transposed convs normal 0.02, biases 0, BN gamma 1 beta 0."""
        normal_(self, 0.02)
        for m in self.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, *LABEL_NORMS)):
                m.reset_parameters()

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            y = require_labels(self, y, z.shape[0])
        h = self.linear(z)
        if self.bottom_bn == "flat":
            h = with_labels(self.bn0, h, y).view(-1, self.c0, self.mg, self.mg)
        else:
            h = with_labels(self.bn0, h.view(-1, self.c0, self.mg, self.mg), y)
        return run_with_labels(self.blocks, h, y)
