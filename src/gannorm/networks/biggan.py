"""BigGAN (Brock, Donahue & Simonyan 2019) at 32, 64 and 128 px, as the BigGAN-PyTorch reference builds it.

Channel tables (multiples of ``ch``; ``ch = 64 * width``, so ``width=1.5`` is the reference's ch 96):

=====  ===============================  =====================================  ==============================
px     G blocks (in -> out, each x2)    D blocks (out; down?)                  attention (default 64)
=====  ===============================  =====================================  ==============================
32     4->4, 4->4, 4->4                 4 d, 4 d, 4, 4                         none
64     16->16, 16->8, 8->4, 4->2        1 d, 2 d, 4 d, 8 d, 16                 G after its last block (64 px)
128    16->16, 16->8, 8->4, 4->2, 2->1  1 d, 2 d, 4 d, 8 d, 16 d, 16           G after block 4, D after block 1
=====  ===============================  =====================================  ==============================

**G**: ``z -> linear (4 x 4 x in_0) -> GBlocks -> BN-ReLU-conv3 -> tanh``. A GBlock is
``cBN-ReLU-up-conv3-cBN-ReLU-conv3`` plus the shortcut ``up-conv1x1`` (nearest x2 upsampling; all
convs with biases). With ``hier`` (hierarchical latent) z is split into ``blocks + 1`` equal chunks:
the first feeds the linear layer and each block's batch norms are conditioned on the shared class
embedding concatenated with its own chunk (:class:`SharedConditionalBatchNorm`, ``cond_dim =
shared_dim + chunk``). As in the reference, the chunk size is ``z_dim // (blocks + 1)`` and trailing
entries of z beyond ``chunk * (blocks + 1)`` are not used (the reference shrinks ``dim_z`` to that;
z_dim 120 at 128 px, the reference's setting, splits evenly into 6 chunks of 20). ``shared_dim=0`` gives
every batch norm its own class-embedding tables (``gain = 1 + E_g[y]``, ``bias = E_b[y]``; the
reference without ``G_shared``, used by its CIFAR script); it needs ``hier=False``. The output batch
norm is unconditional. The reference also spectrally normalizes G; gannorm's builders leave G plain.

**D**: DBlocks ``[ReLU]-conv3-ReLU-conv3[-avgpool2]`` (no ReLU before the first block; hidden =
out channels) with a 1x1 shortcut when the channels change or the block downsamples (conv then pool
in pre-activation blocks, pool then conv in the first), then ReLU, global sum pool and a
:class:`ProjectionHead` (``linear`` with bias + class embedding ``embed``).

**Self-attention** (:class:`SelfAttention`) follows every block whose *output* resolution is listed in
``attention`` (an int, 0 for none, or a list of ints; the reference's ``G_attn``/``D_attn`` default
``'64'``; its CIFAR script uses 0). The reference's 32-px D table labels all four blocks 16 px; here the
blocks' actual output resolutions (16, 8, 8, 8) decide.

**Initialisation** (``weight_init``): ``orthogonal`` (the reference's default ``ortho``), ``normal``
(N(0, 0.02), ``N02``) or ``xavier`` (Glorot uniform, the CIFAR script's setting) for the weight of every
Conv2d, Linear and Embedding (class embeddings included); biases keep torch's default draw, batch norms
start at gain 1, bias 0 and attention gains at 0, as in the reference.

**Unconditional** (``num_classes=0``): no class embedding and no projection; with ``hier`` G's block
norms are conditioned on the z chunks alone, without it they are plain batch norms.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..init import raw_weight
from ..validate import is_int, require
from .blocks import channels as _ch
from .conditional import (ConditionalBatchNorm2d, ProjectionHead, SelfAttention, SharedConditionalBatchNorm,
                          check_num_classes, require_labels)
from .sngan_resnet import GlobalPool

BASE_CHANNELS = 64  # the reference's default ch; width multiplies it
BOTTOM = 4
#: G: (in multiples, out multiples) of ch per block
G_ARCH: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    32: ((4, 4, 4), (4, 4, 4)),
    64: ((16, 16, 8, 4), (16, 8, 4, 2)),
    128: ((16, 16, 8, 4, 2), (16, 8, 4, 2, 1)),
}
#: D: (out multiples of ch, downsample) per block; the first block's input is the image
D_ARCH: dict[int, tuple[tuple[int, ...], tuple[bool, ...]]] = {
    32: ((4, 4, 4, 4), (True, True, False, False)),
    64: ((1, 2, 4, 8, 16), (True, True, True, True, False)),
    128: ((1, 2, 4, 8, 16, 16), (True, True, True, True, True, False)),
}
WEIGHT_INITS = ("orthogonal", "normal", "xavier")
#: the arch options and their defaults (the reference's BigGAN settings at ch 64)
OPTIONS: Mapping[str, Any] = {"attention": 64, "shared_dim": 128, "hier": True, "weight_init": "orthogonal"}


def _attention_set(attention: Any) -> frozenset[int]:
    ok = is_int(attention) and attention >= 0
    if ok:
        return frozenset({attention} - {0})
    if isinstance(attention, (list, tuple)) and all(
            is_int(a) and a >= 1 for a in attention):
        return frozenset(attention)
    raise ConfigError(f"attention must be a resolution (0: none) or a list of resolutions, got {attention!r}")


def _check_init(weight_init: str) -> str:
    if weight_init not in WEIGHT_INITS:
        raise ConfigError(f"weight_init must be one of {', '.join(WEIGHT_INITS)}; got {weight_init!r}")
    return weight_init


def generator_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The generator's keyword arguments from the arch options (all of :data:`OPTIONS`), checked.

    Args:
        options: ``attention``, ``shared_dim``, ``hier``, ``weight_init``.

    Returns:
        The same keys, validated.

    Example::

        >>> generator_options(OPTIONS)["shared_dim"]
        128
    """
    shared_dim, hier = options["shared_dim"], options["hier"]
    require(shared_dim, name="shared_dim", kind="int", min=0, error=ConfigError,
            why="0: per-norm class embeddings")
    if not isinstance(hier, bool):
        raise ConfigError(f"hier must be true or false, got {hier!r}")
    _attention_set(options["attention"])
    return {"attention": options["attention"], "shared_dim": shared_dim, "hier": hier,
            "weight_init": _check_init(options["weight_init"])}


def discriminator_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The discriminator's keyword arguments (``attention``, ``weight_init``) from the arch options.

    Args:
        options: the arch options (all of :data:`OPTIONS`; G's own are ignored).

    Returns:
        ``{"attention": ..., "weight_init": ...}``, validated.

    Example::

        >>> discriminator_options(OPTIONS)
        {'attention': 64, 'weight_init': 'orthogonal'}
    """
    _attention_set(options["attention"])
    return {"attention": options["attention"], "weight_init": _check_init(options["weight_init"])}


@torch.no_grad()
def reset_biggan(net: nn.Module) -> None:
    """Torch's default draw for every sub-layer of a BigGAN ``net`` (biases and norms), the attention gains at 0,
    then its weight init (``net.weight_init``)."""
    for m in net.modules():
        reset = getattr(m, "reset_parameters", None)
        if m is not net and callable(reset):
            reset()
        if isinstance(m, SelfAttention):
            nn.init.zeros_(m.gamma)
    init_biggan_weights(net, cast(str, net.weight_init))


def init_biggan_weights(model: nn.Module, weight_init: str) -> nn.Module:
    """The reference's init: ``weight_init`` on the weight of every Conv2d, Linear and Embedding.

    Args:
        model: a network (normalized layers get their trainable weight drawn).
        weight_init: ``orthogonal`` (``torch.nn.init.orthogonal_`` on the ``[out, rest]`` matrix),
            ``normal`` (N(0, 0.02)) or ``xavier`` (Glorot uniform, gain 1).

    Returns:
        ``model``. Biases are left as they are.

    Example::

        >>> init_biggan_weights(nn.Linear(4, 3), "orthogonal").weight.shape
        torch.Size([3, 4])
    """
    draw: Callable[[Tensor], Any] = {"orthogonal": nn.init.orthogonal_,
                                     "normal": lambda w: nn.init.normal_(w, 0.0, 0.02),
                                     "xavier": nn.init.xavier_uniform_}[_check_init(weight_init)]
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            draw(raw_weight(m))
    return model


class BigGANGBlock(nn.Module):
    """``BN-ReLU-up-conv3-BN-ReLU-conv3`` + ``up-conv1x1``; ``norm(channels)`` builds the two batch norms.

    The forward is ``(x, cond)``: ``cond`` goes to the norms (a vector per sample for
    :class:`SharedConditionalBatchNorm`, labels for :class:`ConditionalBatchNorm2d`, unused by a plain one).
    """

    def __init__(self, in_channels: int, out_channels: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_sc = nn.Conv2d(in_channels, out_channels, 1)
        self.bn1, self.bn2 = norm(in_channels), norm(out_channels)

    @staticmethod
    def _norm(bn: nn.Module, x: Tensor, cond: Tensor | None) -> Tensor:
        return bn(x) if isinstance(bn, nn.modules.batchnorm._BatchNorm) else bn(x, cond)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        h = F.interpolate(F.relu(self._norm(self.bn1, x, cond)), scale_factor=2, mode="nearest")
        h = self.conv2(F.relu(self._norm(self.bn2, self.conv1(h), cond)))
        return h + self.conv_sc(F.interpolate(x, scale_factor=2, mode="nearest"))


class BigGANDBlock(nn.Module):
    """``[ReLU]-conv3-ReLU-conv3[-avgpool2]`` + shortcut (1x1 conv when the channels change or it downsamples)."""

    def __init__(self, in_channels: int, out_channels: int, preactivation: bool, downsample: bool) -> None:
        super().__init__()
        self.preactivation, self.downsample = preactivation, downsample
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        learnable = in_channels != out_channels or downsample
        self.conv_sc = nn.Conv2d(in_channels, out_channels, 1) if learnable else None

    def _down(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.conv_sc is None:
            return self._down(x)
        return self._down(self.conv_sc(x)) if self.preactivation else self.conv_sc(self._down(x))

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.relu(x) if self.preactivation else x)
        return self._down(self.conv2(F.relu(h))) + self._shortcut(x)

    def lipschitz_structure(self) -> list[list[tuple[str, nn.Module]]]:
        """The forward as summed branches of ``(name, module)`` chains (see :mod:`gannorm.diagnostics.lipschitz`)."""
        down: list[tuple[str, nn.Module]] = [(":avg_pool2d", nn.AvgPool2d(2))] if self.downsample else []
        pre = [(":relu", nn.ReLU())] if self.preactivation else []
        main = [*pre, ("conv1", self.conv1), (":relu", nn.ReLU()), ("conv2", self.conv2), *down]
        if self.conv_sc is None:
            return [main, [(":identity", nn.Identity()), *down]]
        sc: list[tuple[str, nn.Module]] = [("conv_sc", self.conv_sc)]
        return [main, sc + down if self.preactivation else down + sc]


def _arch(resolution: int, table: Mapping[int, Any]) -> Any:
    try:
        return table[resolution]
    except (KeyError, TypeError):
        raise ConfigError(f"BigGAN supports resolutions {', '.join(map(str, table))}; got {resolution}") from None


class BigGANGenerator(nn.Module):
    """BigGAN's G: ``G(z, y)`` (``G(z)`` when ``num_classes=0``) -> ``[B, channels, resolution, resolution]``.

    Args:
        resolution: 32, 64 or 128.
        channels: image channels.
        width: ``ch = round(64 * width)``.
        z_dim: latent size (with ``hier``, only the first ``chunk * (blocks + 1)`` entries are used).
        num_classes: 0 (unconditional) or the number of classes.
        attention: resolution(s) after whose block a self-attention block follows (0: none).
        shared_dim: size of the shared class embedding (0: per-norm class tables).
        hier: hierarchical latent.
        weight_init: ``orthogonal``, ``normal`` or ``xavier``.

    Example::

        >>> G = BigGANGenerator(32, width=0.125, z_dim=20, num_classes=10)
        >>> G(torch.randn(2, 20), torch.tensor([1, 2])).shape
        torch.Size([2, 3, 32, 32])
    """

    def __init__(self, resolution: int = 128, channels: int = 3, width: float = 1.0, z_dim: int = 128,
                 num_classes: int = 0, attention: Any = 64, shared_dim: int = 128, hier: bool = True,
                 weight_init: str = "orthogonal") -> None:
        super().__init__()
        ins, outs = _arch(resolution, G_ARCH)
        attend = _attention_set(attention)
        self.num_classes, self.weight_init = check_num_classes(num_classes), _check_init(weight_init)
        self.hier, self.z_dim = hier, z_dim
        slots = len(ins) + 1 if hier else 1
        self.chunk = z_dim // slots if hier else 0
        if hier and self.chunk < 1:
            raise ConfigError(f"hier splits z into {slots} chunks at {resolution} px: z_dim must be >= {slots}, "
                              f"got {z_dim}")
        if self.num_classes and not shared_dim and hier:
            raise ConfigError("hier needs the shared class embedding (shared_dim > 0): set shared_dim or hier=false")
        self.shared_dim = shared_dim if self.num_classes else 0
        if self.shared_dim:
            self.shared = nn.Embedding(self.num_classes, self.shared_dim)
            # plain in the reference (SN acts on the linears it feeds); a plain attribute, as in conditional.py
            self.shared.skip_normalization = True  # type: ignore[assignment]
        c_in = [_ch(BASE_CHANNELS * m, width) for m in ins]
        c_out = [_ch(BASE_CHANNELS * m, width) for m in outs]
        self.c0 = c_in[0]
        self.linear = nn.Linear(self.chunk if hier else z_dim, BOTTOM * BOTTOM * self.c0)
        blocks = []
        for i, (cin, cout) in enumerate(zip(c_in, c_out)):
            block: list[nn.Module] = [BigGANGBlock(cin, cout, self._norm_factory())]
            if BOTTOM * 2 ** (i + 1) in attend:
                block.append(SelfAttention(cout))
            blocks.append(nn.ModuleList(block))
        self.blocks = nn.ModuleList(blocks)
        self.output_layer = nn.Sequential(nn.BatchNorm2d(c_out[-1]), nn.ReLU(),
                                          nn.Conv2d(c_out[-1], channels, 3, padding=1))
        self.resolution, self.channels = resolution, channels
        self.data_shape = (channels, resolution, resolution)
        init_biggan_weights(self, self.weight_init)

    def _norm_factory(self) -> Callable[[int], nn.Module]:
        cond_dim = self.shared_dim + self.chunk
        if cond_dim:
            return lambda c: SharedConditionalBatchNorm(c, cond_dim)
        if self.num_classes:
            return lambda c: ConditionalBatchNorm2d(c, self.num_classes, gain_offset=True)
        return nn.BatchNorm2d

    def reset_parameters(self) -> None:
        """Torch's default draw for every layer (biases), then the weight init; norms and attention gains reset."""
        reset_biggan(self)

    def _conditions(self, z: Tensor, y: Tensor | None) -> tuple[Tensor, list[Tensor | None]]:
        """The linear layer's input and each block's conditioning (vector, labels or None)."""
        n = len(self.blocks)
        if self.hier:
            chunks = list(z[:, :self.chunk * (n + 1)].split(self.chunk, dim=1))
            z, zs = chunks[0], chunks[1:]
        else:
            zs = [None] * n
        if self.shared_dim:
            e = self.shared(y)
            return z, [e if c is None else torch.cat([e, c], dim=1) for c in zs]
        if self.hier:
            return z, zs
        return z, [y] * n

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            y = require_labels(self, y, z.shape[0])
        z0, conds = self._conditions(z, y)
        h = self.linear(z0).view(z.shape[0], self.c0, BOTTOM, BOTTOM)
        for blocklist, cond in zip(self.blocks, conds):
            for block in cast(nn.ModuleList, blocklist):
                h = block(h, cond) if isinstance(block, BigGANGBlock) else block(h)
        return torch.tanh(self.output_layer(h))


class BigGANDiscriminator(nn.Module):
    """BigGAN's D: ``D(x, y)`` (``D(x)`` when ``num_classes=0``) -> ``[B, 1]`` logits.

    Args:
        resolution: 32, 64 or 128.
        channels: image channels.
        width: ``ch = round(64 * width)``.
        num_classes: 0 (no projection: ``linear`` only) or the number of classes (``head``).
        attention: resolution(s) after whose block a self-attention block follows (0: none).
        weight_init: ``orthogonal``, ``normal`` or ``xavier``.

    Example::

        >>> D = BigGANDiscriminator(32, width=0.125, num_classes=10)
        >>> D(torch.randn(2, 3, 32, 32), torch.tensor([1, 2])).shape
        torch.Size([2, 1])
    """

    def __init__(self, resolution: int = 128, channels: int = 3, width: float = 1.0, num_classes: int = 0,
                 attention: Any = 64, weight_init: str = "orthogonal") -> None:
        super().__init__()
        outs, downs = _arch(resolution, D_ARCH)
        attend = _attention_set(attention)
        self.num_classes, self.weight_init = check_num_classes(num_classes), _check_init(weight_init)
        c_out = [_ch(BASE_CHANNELS * m, width) for m in outs]
        blocks, size = [], resolution
        for i, (cin, cout, down) in enumerate(zip([channels] + c_out[:-1], c_out, downs)):
            size //= 2 if down else 1
            block: list[nn.Module] = [BigGANDBlock(cin, cout, preactivation=i > 0, downsample=down)]
            if size in attend:
                block.append(SelfAttention(cout))
            blocks.append(nn.ModuleList(block))
        self.blocks = nn.ModuleList(blocks)
        if self.num_classes:
            self.head = ProjectionHead(c_out[-1], self.num_classes)
        else:
            self.linear = nn.Linear(c_out[-1], 1)
        self.resolution, self.channels = resolution, channels
        self.data_shape = (channels, resolution, resolution)
        init_biggan_weights(self, self.weight_init)

    def reset_parameters(self) -> None:
        """Torch's default draw for every layer (biases), then the weight init; attention gains reset to 0."""
        reset_biggan(self)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            y = require_labels(self, y, x.shape[0])
        h = x
        for blocklist in self.blocks:
            for block in cast(nn.ModuleList, blocklist):
                h = block(h)
        h = F.relu(h).sum(dim=(2, 3))
        return self.head(h, y) if self.num_classes else self.linear(h)

    def lipschitz_structure(self) -> list[list[tuple[str, nn.Module]]]:
        """The forward as one ``(name, module)`` chain (see :mod:`gannorm.diagnostics.lipschitz`); attention
        blocks and a conditional D's ``head`` have no rule, so no bound is reported for them."""
        chain = [(f"blocks.{i}.{j}", block) for i, blocklist in enumerate(self.blocks)
                 for j, block in enumerate(cast(nn.ModuleList, blocklist))]
        last = ("head", self.head) if self.num_classes else ("linear", self.linear)
        return [chain + [(":relu", nn.ReLU()), (":sum_pool", GlobalPool("sum")), last]]
