"""Weight initialisations the BSSN paper compares spectral normalization against.

``init_weights(model, scheme)`` re-initialises the raw weight of every Conv/ConvTranspose/Linear
layer (``parametrizations.weight.original`` for normalized layers) and zeroes the biases:

=================  =====================================================================
scheme             weight distribution (``fan_in``/``fan_out`` from :func:`fans`)
=================  =====================================================================
``lecun``          N(0, gain^2 / fan_in)                       (LeCun 1998; gain 1)
``xavier``         N(0, gain^2 * 2 / (fan_in + fan_out))       (Glorot & Bengio 2010)
``kaiming``        N(0, gain^2 / fan_in), gain = sqrt(2 / (1 + a^2)) for leaky slope ``a``
``normal``         N(0, std^2), std 0.02                       (the official DCGAN/SNGAN code)
``trunc_normal``   N(0, std^2) truncated at +-2 std, std 0.02  (TF's truncated_normal, official D)
=================  =====================================================================

``distribution="uniform"`` draws the first three from U(-b, b) with the same variance
(``b = sqrt(3) * std``), e.g. ``init_weights(G, "xavier", distribution="uniform", gain=2 ** 0.5)`` is
TF's ``variance_scaling(2.0, fan_avg, uniform)`` used by the official ResNet. Normalized layers get
fresh power-iteration vectors afterwards (see :func:`gannorm.reset_power_iteration`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .normalizations.base import TRANSPOSED_CONVS
from .normalizations.model import NORMALIZABLE, reset_power_iteration

SCHEMES = ("lecun", "xavier", "kaiming", "normal", "trunc_normal")


def raw_weight(module: nn.Module) -> Tensor:
    """The trainable weight of a layer: ``parametrizations.weight.original`` if it is normalized."""
    if parametrize.is_parametrized(module, "weight"):
        return module.parametrizations.weight.original
    return module.weight


def fans(module: nn.Module) -> tuple[int, int]:
    """``(fan_in, fan_out)``: inputs feeding one output unit and outputs fed by one input unit.

    Conv ``[out, in/g, *k]``: ``(in/g * k, out/g * k)``; Linear ``[out, in]``: ``(in, out)``. A
    transposed conv ``[in, out/g, *k]`` is the adjoint of a conv, so its fans are swapped relative to
    torch's ``_calculate_fan_in_and_fan_out`` (which reads dim 1 as the input): ``(in/g * k, out/g * k)``
    as well, ignoring stride.
    """
    w = raw_weight(module)
    if w.ndim < 2:
        raise ValueError(f"fans need a weight with >= 2 dimensions, got shape {tuple(w.shape)}")
    k = w[0, 0].numel()
    groups = getattr(module, "groups", 1)
    if isinstance(module, TRANSPOSED_CONVS):
        return w.shape[0] // groups * k, w.shape[1] * k
    return w.shape[1] * k, w.shape[0] // groups * k


def leaky_relu_gain(slope: float) -> float:
    """Kaiming's gain ``sqrt(2 / (1 + slope^2))`` (``slope=0`` is ReLU)."""
    return math.sqrt(2.0 / (1.0 + slope ** 2))


def _std(scheme: str, fan_in: int, fan_out: int, gain: float | None, slope: float, std: float) -> float:
    if scheme == "lecun":
        return (1.0 if gain is None else gain) / math.sqrt(fan_in)
    if scheme == "xavier":
        return (1.0 if gain is None else gain) * math.sqrt(2.0 / (fan_in + fan_out))
    if scheme == "kaiming":
        return (leaky_relu_gain(slope) if gain is None else gain) / math.sqrt(fan_in)
    return std


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str, *, distribution: str = "normal", gain: float | None = None,
                 slope: float = 0.0, std: float = 0.02, bias: float = 0.0) -> nn.Module:
    """Initialise every Conv/ConvTranspose/Linear layer of ``model`` with ``scheme``; returns the model."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"distribution must be 'normal' or 'uniform', got {distribution!r}")
    if distribution == "uniform" and scheme in ("normal", "trunc_normal"):
        raise ValueError(f"scheme {scheme!r} is a normal distribution; distribution='uniform' applies to "
                         "lecun, xavier and kaiming")
    for m in model.modules():
        if not isinstance(m, NORMALIZABLE):
            continue
        w = raw_weight(m)
        s = _std(scheme, *fans(m), gain, slope, std)
        if scheme == "trunc_normal":
            nn.init.trunc_normal_(w, 0.0, s, -2 * s, 2 * s)
        elif distribution == "uniform":
            nn.init.uniform_(w, -math.sqrt(3.0) * s, math.sqrt(3.0) * s)
        else:
            nn.init.normal_(w, 0.0, s)
        b = m.parametrizations.bias.original if parametrize.is_parametrized(m, "bias") else m.bias
        if b is not None:
            nn.init.constant_(b, bias)
    reset_power_iteration(model)
    return model
