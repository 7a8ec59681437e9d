"""Residual blocks of the SNGAN ResNets and the official initialisations, as small helpers.

Blocks (``docs/networks.md``; attribute names follow
mimicry: ``c1``/``c2`` residual 3x3 convs, ``c_sc`` the 1x1 shortcut conv, ``b1``/``b2`` BN):

* :class:`GBlock`: ``BN-ReLU-Upsample(nearest x2)-conv3-BN-ReLU-conv3``; shortcut ``Upsample-conv1x1``.
* :class:`DBlockOptimized` (first D block): ``conv3-ReLU-conv3-AvgPool2``; shortcut ``AvgPool2-conv1x1``.
* :class:`DBlock`: ``ReLU-conv3-ReLU-conv3[-AvgPool2]``; shortcut ``conv1x1[-AvgPool2]``.

The shortcut is learnable (has the 1x1 conv) when the channels change or the block resamples,
unless ``learnable_shortcut`` says otherwise (the official BSN 128-px D has a 1x1 shortcut in its
last, non-downsampling 1024 -> 1024 block too). Initialisation (TF ``variance_scaling(scale,
fan_avg, uniform)``, i.e. Xavier-uniform with ``gain = sqrt(scale)``): scale 2 for the residual
3x3 convs, 1 for the shortcut 1x1 convs; biases 0. BatchNorm: torch defaults (momentum 0.1 = TF
decay 0.9, eps 1e-5, gamma 1, beta 0). No ReLU is in-place, so the blocks are safe for
double backward (gradient penalties, GN).
"""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

from ..init import init_weights
from .conditional import class_norm, with_labels


def channels(c: int, width: float) -> int:
    """``c * width`` rounded, at least 1: how ``width`` scales every channel count."""
    return max(1, int(round(c * width)))


def variance_scaling_(module: nn.Module, scale: float) -> nn.Module:
    """TF ``variance_scaling(scale, mode="fan_avg", distribution="uniform")`` on every Conv/Linear of ``module``.

    ``Var(W) = scale / fan_avg`` with ``fan_avg = (fan_in + fan_out) / 2``; biases 0.
    """
    return init_weights(module, "xavier", distribution="uniform", gain=math.sqrt(scale))


def trunc_normal_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """TF ``truncated_normal(stddev=std)`` (redrawn outside +-2 std) on every Conv/Linear; biases 0."""
    return init_weights(module, "trunc_normal", std=std)


def normal_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """``N(0, std^2)`` on every Conv/ConvTranspose/Linear of ``module``; biases 0."""
    return init_weights(module, "normal", std=std)


class GBlock(nn.Module):
    """Generator up-block ``BN-ReLU-Up-conv3-BN-ReLU-conv3`` + shortcut ``Up-conv1x1``; hidden = out channels.

    ``num_classes > 0``: both BNs are class-conditional (``ConditionalBatchNorm2d``) and the forward takes
    ``(x, y)``.
    """

    def __init__(self, in_channels: int, out_channels: int, upsample: bool = True,
                 learnable_shortcut: bool | None = None, num_classes: int = 0) -> None:
        super().__init__()
        self.upsample = upsample
        self.b1 = class_norm(in_channels, num_classes)
        self.c1 = nn.Conv2d(in_channels, out_channels, 3, 1, padding=1)
        self.b2 = class_norm(out_channels, num_classes)
        self.c2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1)
        if learnable_shortcut is None:
            learnable_shortcut = in_channels != out_channels or upsample
        self.c_sc = nn.Conv2d(in_channels, out_channels, 1, 1, padding=0) if learnable_shortcut else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        variance_scaling_(self.c1, 2.0)
        variance_scaling_(self.c2, 2.0)
        if self.c_sc is not None:
            variance_scaling_(self.c_sc, 1.0)
        for bn in (self.b1, self.b2):
            bn.reset_parameters()

    def _up(self, x: Tensor) -> Tensor:
        # nearest x2 == the official "unpooling" (a transposed conv with a ones x identity kernel)
        return F.interpolate(x, scale_factor=2, mode="nearest") if self.upsample else x

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        h = self.c1(self._up(F.relu(with_labels(self.b1, x, y))))
        h = self.c2(F.relu(with_labels(self.b2, h, y)))
        s = self._up(x)
        if self.c_sc is not None:
            s = self.c_sc(s)
        return h + s


class DBlockOptimized(nn.Module):
    """First D block ``conv3-ReLU-conv3-AvgPool2`` + shortcut ``AvgPool2-conv1x1`` (no ReLU on the input)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(in_channels, out_channels, 3, 1, padding=1)
        self.c2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1)
        self.c_sc = nn.Conv2d(in_channels, out_channels, 1, 1, padding=0)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        variance_scaling_(self.c1, 2.0)
        variance_scaling_(self.c2, 2.0)
        variance_scaling_(self.c_sc, 1.0)

    def forward(self, x: Tensor) -> Tensor:
        h = F.avg_pool2d(self.c2(F.relu(self.c1(x))), 2)
        return h + self.c_sc(F.avg_pool2d(x, 2))

    def lipschitz_structure(self) -> list[list[tuple[str, nn.Module]]]:
        """The forward as summed branches of ``(name, module)`` chains (see :mod:`gannorm.diagnostics.lipschitz`)."""
        return [[("c1", self.c1), (":relu", nn.ReLU()), ("c2", self.c2), (":avg_pool2d", nn.AvgPool2d(2))],
                [(":avg_pool2d", nn.AvgPool2d(2)), ("c_sc", self.c_sc)]]


class DBlock(nn.Module):
    """D block ``ReLU-conv3-ReLU-conv3[-AvgPool2]`` + shortcut ``conv1x1[-AvgPool2]``.

    ``hidden_channels`` (the output of ``c1``) defaults to ``out_channels`` (official BSN code,
    pytorch-gan-collections); mimicry and the Chainer SNGAN code use ``in_channels``.
    """

    def __init__(self, in_channels: int, out_channels: int, downsample: bool = False,
                 hidden_channels: int | None = None, learnable_shortcut: bool | None = None) -> None:
        super().__init__()
        hidden = out_channels if hidden_channels is None else hidden_channels
        self.downsample = downsample
        self.c1 = nn.Conv2d(in_channels, hidden, 3, 1, padding=1)
        self.c2 = nn.Conv2d(hidden, out_channels, 3, 1, padding=1)
        if learnable_shortcut is None:
            learnable_shortcut = in_channels != out_channels or downsample
        if not learnable_shortcut and in_channels != out_channels:
            raise ValueError(f"an identity shortcut needs in_channels == out_channels, got {in_channels} -> "
                             f"{out_channels}")
        self.c_sc = nn.Conv2d(in_channels, out_channels, 1, 1, padding=0) if learnable_shortcut else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        variance_scaling_(self.c1, 2.0)
        variance_scaling_(self.c2, 2.0)
        if self.c_sc is not None:
            variance_scaling_(self.c_sc, 1.0)

    def _down(self, x: Tensor) -> Tensor:
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: Tensor) -> Tensor:
        h = self._down(self.c2(F.relu(self.c1(F.relu(x)))))
        s = x if self.c_sc is None else self.c_sc(x)
        return h + self._down(s)

    def lipschitz_structure(self) -> list[list[tuple[str, nn.Module]]]:
        """The forward as summed branches of ``(name, module)`` chains (see :mod:`gannorm.diagnostics.lipschitz`)."""
        down = [(":avg_pool2d", nn.AvgPool2d(2))] if self.downsample else []
        shortcut = [(":identity", nn.Identity())] if self.c_sc is None else [("c_sc", self.c_sc)]
        return [[(":relu", nn.ReLU()), ("c1", self.c1), (":relu", nn.ReLU()), ("c2", self.c2), *down],
                [*shortcut, *down]]
