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
``orthogonal``     orthogonal ``[units, fan_in]`` matrix times gain (Saxe et al. 2014; BigGAN's default)
``wn_arpit``       orthogonal directions, gains ``g = sqrt(c fan_in / fan_out)``  (Arpit et al. 2019,
                   for weight normalization; see :func:`init_wn_arpit`)
=================  =====================================================================

``distribution="uniform"`` draws the first three from U(-b, b) with the same variance
(``b = sqrt(3) * std``), e.g. ``init_weights(G, "xavier", distribution="uniform", gain=2 ** 0.5)`` is
TF's ``variance_scaling(2.0, fan_avg, uniform)`` used by the official ResNet. Normalized layers get
fresh power-iteration vectors afterwards (see :func:`gannorm.reset_power_iteration`); a
weight-normalized layer gets ``g = ||v||`` per unit, so its effective weight is the drawn weight.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .normalizations.base import TRANSPOSED_CONVS
from .normalizations.model import NORMALIZABLE, reset_power_iteration
from .normalizations.spectral import default_dim
from .normalizations.weight_norm import WeightNorm, weight_norm_layers

SCHEMES = ("lecun", "xavier", "kaiming", "normal", "trunc_normal", "orthogonal", "wn_arpit")


def raw_weight(module: nn.Module) -> Tensor:
    """The trainable weight of a layer: ``parametrizations.weight.original`` if it is normalized."""
    if parametrize.is_parametrized(module, "weight"):
        return cast(Any, module).parametrizations.weight.original  # added by parametrize at run time
    return cast(Tensor, module.weight)


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
    """Initialise every Conv/ConvTranspose/Linear layer of ``model`` with ``scheme``; returns the model.

    ``"wn_arpit"`` is :func:`init_wn_arpit` (it takes no ``distribution``, ``gain`` or ``std``; the
    LeakyReLU slopes are read from the model).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    if scheme == "wn_arpit":
        if distribution != "normal" or gain is not None:
            raise ValueError("scheme 'wn_arpit' draws orthogonal directions with the gains of Arpit et al.; it takes "
                             "no distribution or gain")
        return init_wn_arpit(model, bias=bias)
    if distribution not in ("normal", "uniform"):
        raise ValueError(f"distribution must be 'normal' or 'uniform', got {distribution!r}")
    if distribution == "uniform" and scheme in ("normal", "trunc_normal", "orthogonal"):
        raise ValueError(f"scheme {scheme!r} has its own distribution; distribution='uniform' applies to "
                         "lecun, xavier and kaiming")
    for m in model.modules():
        if not isinstance(m, NORMALIZABLE):
            continue
        w = raw_weight(m)
        s = _std(scheme, *fans(m), gain, slope, std)
        if scheme == "orthogonal":
            w.copy_(orthogonal_units(w, default_dim(m), 1.0 if gain is None else gain))
        elif scheme == "trunc_normal":
            nn.init.trunc_normal_(w, 0.0, s, -2 * s, 2 * s)
        elif distribution == "uniform":
            nn.init.uniform_(w, -math.sqrt(3.0) * s, math.sqrt(3.0) * s)
        else:
            nn.init.normal_(w, 0.0, s)
        _init_bias(m, bias)
    for m, p in weight_norm_layers(model):
        p.reset_gain(raw_weight(m))
    reset_power_iteration(model)
    return model


def orthogonal_units(weight: Tensor, dim: int, gain: float = 1.0) -> Tensor:
    """A random (semi-)orthogonal matrix times ``gain`` in the layout of ``weight``, ``dim`` the units' dim.

    The ``[units, rest]`` matrix ``Q`` (``torch.nn.init.orthogonal_``) has orthonormal rows when
    ``units <= rest`` (``Q Q^T = I``) and orthonormal columns otherwise (``Q^T Q = I``). For a Conv or
    Linear (``dim=0``) this is exactly ``torch.nn.init.orthogonal_(weight, gain)``; for a transposed
    conv (``dim=1``) its output channels are the units.

    Args:
        weight: the tensor whose shape, dtype and device to use (it is not changed).
        dim: the dim of the output units.
        gain: the scale.

    Returns:
        A new tensor shaped like ``weight``.

    Example::

        >>> w = orthogonal_units(torch.empty(3, 8), 0)
        >>> torch.allclose(w @ w.T, torch.eye(3), atol=1e-5)
        True
    """
    moved = weight.movedim(dim, 0)
    q = torch.empty(moved.shape[0], moved[0].numel(), dtype=torch.float32, device=weight.device)
    nn.init.orthogonal_(q, gain)
    return q.reshape(moved.shape).movedim(0, dim).to(weight.dtype)


def _init_bias(module: nn.Module, value: float) -> None:
    layer = cast(Any, module)  # ``parametrizations`` is added by parametrize at run time
    b = layer.parametrizations.bias.original if parametrize.is_parametrized(module, "bias") else layer.bias
    if b is not None:
        nn.init.constant_(b, value)



# ------------------------------------------------------------------------------- Arpit et al. (2019)
def arpit_g(fan_in: int, fan_out: int, activation_gain: float = 2.0, residual_blocks: int = 1) -> float:
    """The weight-norm gain ``g = sqrt(c * fan_in / fan_out / B)`` of :func:`init_wn_arpit`.

    ``c`` is ``activation_gain`` (2 for a ReLU after the layer, ``2 / (1 + a^2)`` for a LeakyReLU(a),
    1 for none) and ``B`` is ``residual_blocks`` for the last layer of a residual branch (else 1).
    """
    return math.sqrt(activation_gain * fan_in / fan_out / residual_blocks)


def _activation_gain(module: nn.Module) -> float | None:
    """``2 / (1 + a^2)`` for ReLU (a = 0) or LeakyReLU(a): the inverse of what it keeps of E[h^2]; else None."""
    if isinstance(module, nn.ReLU):
        return 2.0
    if isinstance(module, nn.LeakyReLU):
        return leaky_relu_gain(float(module.negative_slope)) ** 2
    return None


def _flatten(modules: Iterable[nn.Module]) -> Iterable[nn.Module]:
    for m in modules:
        if type(m) is nn.Sequential:
            yield from _flatten(m.children())
        else:
            yield m


class _ForwardWalk:
    """What the rule needs, read from a model's description of its forward (``lipschitz_structure()``,
    see :mod:`gannorm.diagnostics.lipschitz`; a module without one is read as its children in order).

    ``order``: the layers in forward order. ``gains[layer]``: the activation gain ``c`` of the ReLU or
    LeakyReLU that follows the layer in its chain (1 if none does before the next layer or a branch
    sum). ``residual_last``: the last layer of every branch with an activation in a module whose
    forward sums several branches (a residual block; a branch without activation is a shortcut).
    ``blocks``: the number of such residual blocks, ``B``.
    """

    def __init__(self) -> None:
        self.order: list[nn.Module] = []
        self.gains: dict[nn.Module, float] = {}
        self.residual_last: set[nn.Module] = set()
        self.blocks = 0

    def module(self, module: nn.Module) -> bool:
        """Walk a container; returns whether it has an activation (is nonlinear)."""
        structure = getattr(module, "lipschitz_structure", None)
        if not callable(structure):
            return self.chain(module.children())
        branches = structure()
        if len(branches) == 1:
            return self.chain(m for _, m in branches[0])
        nonlinear = False
        for branch in branches:
            start = len(self.order)
            if self.chain(m for _, m in branch):
                nonlinear = True
                if len(self.order) > start:
                    self.residual_last.add(self.order[-1])
        self.blocks += nonlinear
        return nonlinear

    def chain(self, modules: Iterable[nn.Module]) -> bool:
        pending, nonlinear = None, False
        for m in _flatten(modules):
            gain = _activation_gain(m)
            if isinstance(m, NORMALIZABLE):
                self.order.append(m)
                self.gains[m] = 1.0
                pending = m
            elif gain is not None:
                nonlinear = True
                if pending is not None:
                    self.gains[pending] = gain
                pending = None
            elif callable(getattr(m, "lipschitz_structure", None)) or next(m.children(), None) is not None:
                nonlinear = self.module(m) or nonlinear
                pending = None
            # anything else (pooling, flatten, identity, dropout) keeps the pending layer
        return nonlinear


def _orthogonal_rows(weight: Tensor, dim: int, g: float) -> Tensor:
    """Orthogonal rows (``torch.nn.init.orthogonal_`` of the ``[units, rest]`` matrix), each rescaled to norm
    ``g``, in the layout of ``weight`` (``dim``: the units' dim)."""
    moved = weight.movedim(dim, 0)
    q = torch.empty(moved.shape[0], moved[0].numel(), dtype=torch.float32, device=weight.device)
    nn.init.orthogonal_(q)
    q = q * (g / torch.linalg.vector_norm(q, dim=1, keepdim=True))
    return q.reshape(moved.shape).movedim(0, dim).to(weight.dtype)


def _weight_norm_of(module: nn.Module) -> WeightNorm | None:
    if not parametrize.is_parametrized(module, "weight"):
        return None
    plist = cast(Any, module).parametrizations.weight  # added by parametrize at run time
    return next((p for p in plist if isinstance(p, WeightNorm)), None)


@torch.no_grad()
def _set_directions_and_gain(module: nn.Module, g: float) -> None:
    wn = _weight_norm_of(module)
    w = raw_weight(module)
    if wn is None:  # a plain (or otherwise normalized) layer: the weight is the effective g * v / ||v||
        w.copy_(_orthogonal_rows(w, default_dim(module), g))
    else:
        w.copy_(_orthogonal_rows(w, wn.dim, 1.0))
        wn.g.fill_(g)


@torch.no_grad()
def init_wn_arpit(model: nn.Module, bias: float = 0.0) -> nn.Module:
    """The initialization of Arpit, Campos and Bengio for weight-normalized ReLU networks (NeurIPS 2019,
    "How to Initialize your Network? Robust Initialization for WeightNorm & ResNets", arXiv 1906.02341).

    Every layer ``W_eff = g * v / ||v||`` (one gain per output unit) gets orthogonal directions ``v``
    (orthogonal rows of the ``[out, in*k*k]`` matrix; orthonormal columns when there are more rows than
    columns), zero biases and, as in the paper's proposed initialization (and ``proposed_init`` with
    ``orthogonal`` weights in the authors' code, victorcampos7/weightnorm-init)::

        g = sqrt(c * fan_in / fan_out)          c = 2 for a layer followed by a ReLU, 1 for none

    which preserves the norm of the hidden activations ``||h_l|| = ||h_{l-1}||`` in a plain ReLU network
    at any depth (a unit-norm random direction keeps ``||h||^2 / fan_in`` of ``E<v, h>^2``, ``fan_out``
    units add up, and the ReLU halves it). ``fan_in``/``fan_out`` are :func:`fans` (``in*k*k`` and
    ``out*k*k`` for a conv, so their ratio is ``in / out``). In a residual network ``h_b = h_{b-1} +
    F_b(h_{b-1})`` the last layer of each residual branch gets ``c = 1 / B`` with ``B`` the number of
    residual blocks, so ``||F_b(h)||^2 = ||h||^2 / B`` and the norm grows at most by ``(1 + 1/B)^B < e``
    over the whole network; a shortcut's 1x1 conv gets ``c = 1`` (norm-preserving), as in the authors'
    code. (Their wide ResNet counts ``B`` per stage; gannorm's discriminators have no stages, so ``B``
    counts every residual block of the model.)

    gannorm's adaptations: a LeakyReLU(a) after a layer gives ``c = 2 / (1 + a^2)``, Kaiming's factor
    (the fraction of ``E[h^2]`` it keeps is ``(1 + a^2) / 2``); the slopes are read from the model's
    ``nn.LeakyReLU`` modules, and a functional ReLU from the model's ``lipschitz_structure()``. In a
    pre-activation block (``ReLU -> conv -> ReLU -> conv``, the SNGAN ResNet D), the leading ReLU halves
    the branch input, so the growth is at most ``(1 + 1/(2B))^B < sqrt(e)``. The model's output layer
    (the last layer of its forward; the paper leaves its classifier out of the rule) gets ``g = 1``: a
    unit-norm projection. Which layer follows which is read from the model's ``lipschitz_structure()``
    (gannorm's networks have it), or, for a module without one, from its submodules in registration order.

    A weight-normalized layer (``normalization.method=weight_norm``) gets ``v`` and ``g``; any other layer
    gets the effective weight ``g * v / ||v||`` itself, so initializing and then normalizing gives the
    same weights as normalizing and then initializing. Returns the model.
    """
    walk = _ForwardWalk()
    walk.chain([model])
    missing = [name for name, m in model.named_modules() if isinstance(m, NORMALIZABLE) and m not in walk.gains]
    if missing:
        raise ValueError(f"wn_arpit: layer {missing[0]!r} is not in the forward the model describes "
                         "(lipschitz_structure()), so its gain is unknown; describe it or use another init")
    for m in walk.order:
        if m is walk.order[-1]:
            g = 1.0
        else:
            g = arpit_g(*fans(m), walk.gains[m], walk.blocks if m in walk.residual_last else 1)
        _set_directions_and_gain(m, g)
        _init_bias(m, bias)
    reset_power_iteration(model)
    return model
