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

The schemes are the registry :data:`INIT_SCHEMES` (``gannorm.INIT_SCHEMES``), like every other family: each
entry is an :class:`InitScheme` carrying its ``init`` function, a description, the options it uses, the layer
types it draws and whether it reads the model's forward. A new scheme is one function and one
``INIT_SCHEMES.register(name, InitScheme(...))`` call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .errors import InputError, OptionError
from .normalizations.base import TRANSPOSED_CONVS
from .normalizations.model import NORMALIZABLE, reset_power_iteration
from .normalizations.spectral import default_dim
from .normalizations.weight_norm import WeightNorm, weight_norm_layers
from .registry import Registry

def raw_weight(module: nn.Module) -> Tensor:
    """The trainable weight of a layer: ``parametrizations.weight.original`` if it is normalized.

    Args:
        module: a layer with a ``weight``.

    Returns:
        the raw weight (a parameter of ``module``), not the effective one.

    Example::

        >>> from gannorm.normalizations import spectral_norm
        >>> layer = spectral_norm(nn.Linear(3, 2))
        >>> raw_weight(layer) is layer.parametrizations.weight.original
        True
    """
    if parametrize.is_parametrized(module, "weight"):
        return cast(Any, module).parametrizations.weight.original  # added by parametrize at run time
    return cast(Tensor, module.weight)


def fans(module: nn.Module) -> tuple[int, int]:
    """``(fan_in, fan_out)``: inputs feeding one output unit and outputs fed by one input unit.

    Conv ``[out, in/g, *k]``: ``(in/g * k, out/g * k)``; Linear ``[out, in]``: ``(in, out)``. A
    transposed conv ``[in, out/g, *k]`` is the adjoint of a conv, so its fans are swapped relative to
    torch's ``_calculate_fan_in_and_fan_out`` (which reads dim 1 as the input): ``(in/g * k, out/g * k)``
    as well, ignoring stride.

    Args:
        module: a Conv/ConvTranspose/Linear layer (normalized or not).

    Returns:
        ``(fan_in, fan_out)``.

    Example::

        >>> fans(nn.Conv2d(4, 8, 3)), fans(nn.ConvTranspose2d(8, 4, 3)), fans(nn.Linear(5, 7))
        ((36, 72), (72, 36), (5, 7))
    """
    w = raw_weight(module)
    if w.ndim < 2:
        raise InputError(f"fans need a weight with >= 2 dimensions, got shape {tuple(w.shape)} "
                         f"({type(module).__name__}); pass a Conv/ConvTranspose/Linear layer")
    k = w[0, 0].numel()
    groups = getattr(module, "groups", 1)
    if isinstance(module, TRANSPOSED_CONVS):
        return w.shape[0] // groups * k, w.shape[1] * k
    return w.shape[1] * k, w.shape[0] // groups * k


def leaky_relu_gain(slope: float) -> float:
    """Kaiming's gain ``sqrt(2 / (1 + slope^2))`` (``slope=0`` is ReLU).

    Args:
        slope: the negative slope of the LeakyReLU after the layer.

    Returns:
        the gain.

    Example::

        >>> round(leaky_relu_gain(0.0) ** 2, 6), round(leaky_relu_gain(1.0), 6)
        (2.0, 1.0)
    """
    return math.sqrt(2.0 / (1.0 + slope ** 2))


# ------------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class InitScheme:
    """One weight initialization: ``init(model, *, bias, **options) -> model`` and what a caller needs to know.

    ``options``: the keyword options of :func:`init_weights` the scheme uses (besides ``bias``, which every
    scheme takes); :func:`init_weights` refuses any other one set to a non-default value. ``layer_types``: the
    layers whose raw weight it draws (their biases are set to ``bias``). ``uses_forward``: the scheme reads the
    model's forward (``lipschitz_structure()``) to place its gains, so a model whose forward it cannot read is
    refused. ``reference``: where the scheme comes from.
    """

    init: Callable[..., nn.Module]
    description: str
    options: tuple[str, ...] = ()
    layer_types: tuple[type[nn.Module], ...] = NORMALIZABLE
    uses_forward: bool = False
    reference: str = ""


#: :func:`init_weights`'s options and their defaults (what a scheme that does not use an option must leave it at)
INIT_OPTIONS: dict[str, Any] = {"distribution": "normal", "gain": None, "slope": 0.0, "std": 0.02}
_DISTRIBUTIONS = ("normal", "uniform")


def _gaussian_(weight: Tensor, std: float, distribution: str) -> None:
    """N(0, std^2), or U(-b, b) with the same variance (``b = sqrt(3) * std``)."""
    if distribution == "uniform":
        nn.init.uniform_(weight, -math.sqrt(3.0) * std, math.sqrt(3.0) * std)
    else:
        nn.init.normal_(weight, 0.0, std)


def _lecun(m: nn.Module, w: Tensor, distribution: str, gain: float | None) -> None:
    _gaussian_(w, (1.0 if gain is None else gain) / math.sqrt(fans(m)[0]), distribution)


def _xavier(m: nn.Module, w: Tensor, distribution: str, gain: float | None) -> None:
    fan_in, fan_out = fans(m)
    _gaussian_(w, (1.0 if gain is None else gain) * math.sqrt(2.0 / (fan_in + fan_out)), distribution)


def _kaiming(m: nn.Module, w: Tensor, distribution: str, gain: float | None, slope: float) -> None:
    _gaussian_(w, (leaky_relu_gain(slope) if gain is None else gain) / math.sqrt(fans(m)[0]), distribution)


def _normal(m: nn.Module, w: Tensor, std: float) -> None:  # noqa: ARG001
    nn.init.normal_(w, 0.0, std)


def _trunc_normal(m: nn.Module, w: Tensor, std: float) -> None:  # noqa: ARG001
    nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std)


def _orthogonal(m: nn.Module, w: Tensor, gain: float | None) -> None:
    w.copy_(orthogonal_units(w, default_dim(m), 1.0 if gain is None else gain))


def _per_layer(draw: Callable[..., None]) -> Callable[..., nn.Module]:
    """An :attr:`InitScheme.init` that draws every layer's raw weight with ``draw(layer, weight, **options)``,
    sets the biases, gives weight-normalized layers ``g = ||v||`` and normalized layers fresh vectors."""
    def init(model: nn.Module, *, bias: float = 0.0, **options: Any) -> nn.Module:
        for m in model.modules():
            if isinstance(m, NORMALIZABLE):
                draw(m, raw_weight(m), **options)
                _init_bias(m, bias)
        for m, p in weight_norm_layers(model):
            p.reset_gain(raw_weight(m))
        reset_power_iteration(model)
        return model
    return init


INIT_SCHEMES: Registry[InitScheme] = Registry("init scheme")
INIT_SCHEMES.register("lecun", InitScheme(_per_layer(_lecun), "N(0, gain^2 / fan_in), gain 1",
                                          ("distribution", "gain"), reference="LeCun et al. 1998"))
INIT_SCHEMES.register("xavier", InitScheme(_per_layer(_xavier), "N(0, gain^2 * 2 / (fan_in + fan_out)), gain 1",
                                           ("distribution", "gain"), reference="Glorot and Bengio 2010"))
INIT_SCHEMES.register("kaiming", InitScheme(_per_layer(_kaiming), "N(0, gain^2 / fan_in), gain "
                                            "sqrt(2 / (1 + slope^2))", ("distribution", "gain", "slope"),
                                            reference="He et al. 2015"))
INIT_SCHEMES.register("normal", InitScheme(_per_layer(_normal), "N(0, std^2), std 0.02", ("std",),
                                           reference="the official DCGAN/SNGAN code"))
INIT_SCHEMES.register("trunc_normal", InitScheme(_per_layer(_trunc_normal), "N(0, std^2) truncated at +-2 std, std "
                                                 "0.02", ("std",), reference="TF's truncated_normal, the official D"))
INIT_SCHEMES.register("orthogonal", InitScheme(_per_layer(_orthogonal), "an orthogonal [units, fan_in] matrix times "
                                               "gain", ("gain",), reference="Saxe et al. 2014; BigGAN's default"))
# "wn_arpit" (init_wn_arpit) is registered at the end of this module

#: the former name of :data:`INIT_SCHEMES` (it was a tuple of names; ``name in SCHEMES`` still works)
SCHEMES = INIT_SCHEMES


def _check_init_options(scheme: str, spec: InitScheme, given: dict[str, Any]) -> None:
    """Refuse an option the scheme does not use (set to a non-default value) and an unknown distribution."""
    for option, value in given.items():
        if option not in spec.options and value != INIT_OPTIONS[option]:
            raise OptionError(option, f"init scheme {scheme!r} does not use {option}={value!r}; it takes "
                              f"{', '.join([*spec.options, 'bias'])}")
    if given["distribution"] not in _DISTRIBUTIONS:
        raise OptionError("distribution", f"distribution must be 'normal' or 'uniform', got {given['distribution']!r}")


@torch.no_grad()
def init_weights(model: nn.Module, scheme: str, *, distribution: str = "normal", gain: float | None = None,
                 slope: float = 0.0, std: float = 0.02, bias: float = 0.0) -> nn.Module:
    """Initialise every Conv/ConvTranspose/Linear layer of ``model`` with the :data:`INIT_SCHEMES` entry ``scheme``.

    Normalized layers get their raw weight drawn and fresh power-iteration vectors. ``"wn_arpit"`` is
    :func:`init_wn_arpit` (the LeakyReLU slopes are read from the model). An option the scheme does not use
    (``INIT_SCHEMES.get(scheme).options``) set to a non-default value is a one-line
    :class:`~gannorm.errors.OptionError`, as is an unknown ``scheme`` (:class:`~gannorm.registry.UnknownNameError`).

    Args:
        model: the network, changed in place.
        scheme: a name of :data:`INIT_SCHEMES`.
        distribution: ``"normal"`` or ``"uniform"`` (same variance; lecun, xavier, kaiming).
        gain: the gain (lecun, xavier: 1; kaiming: ``leaky_relu_gain(slope)``; orthogonal: 1).
        slope: the LeakyReLU slope of kaiming's default gain.
        std: the standard deviation of normal and trunc_normal.
        bias: the value of every bias.

    Returns:
        ``model``.

    Example::

        >>> _ = torch.manual_seed(0)
        >>> layer = init_weights(nn.Linear(400, 300), "kaiming", slope=0.2)
        >>> round(float(layer.weight.var() * 400 * (1 + 0.2 ** 2) / 2), 1), float(layer.bias.abs().max())
        (1.0, 0.0)
    """
    spec = INIT_SCHEMES.get(scheme)
    given = {"distribution": distribution, "gain": gain, "slope": slope, "std": std}
    _check_init_options(scheme, spec, given)
    return spec.init(model, bias=bias, **{k: v for k, v in given.items() if k in spec.options})


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

    Why: with orthogonal unit-norm directions this gain preserves the norm of the hidden activations
    ``||h_l|| = ||h_{l-1}||`` in a plain ReLU network at any depth (a unit-norm random direction keeps
    ``||h||^2 / fan_in`` of ``E<v, h>^2``, ``fan_out`` units add up, and the ReLU halves it).
    ``fan_in``/``fan_out`` are :func:`fans` (``in*k*k`` and ``out*k*k`` for a conv, so their ratio is
    ``in / out``). In a residual network ``h_b = h_{b-1} + F_b(h_{b-1})`` the last layer of each residual
    branch gets ``c = 1 / B`` with ``B`` the number of residual blocks, so ``||F_b(h)||^2 = ||h||^2 / B``
    and the norm grows at most by ``(1 + 1/B)^B < e`` over the whole network; a shortcut's 1x1 conv gets
    ``c = 1`` (norm-preserving), as in the authors' code. (Their wide ResNet counts ``B`` per stage;
    gannorm's discriminators have no stages, so ``B`` counts every residual block of the model.)

    Args:
        fan_in: the layer's fan-in (:func:`fans`).
        fan_out: its fan-out.
        activation_gain: ``c``.
        residual_blocks: ``B`` (for the last layer of a residual branch).

    Returns:
        the gain ``g``.

    Example::

        >>> arpit_g(64, 128), arpit_g(100, 100, activation_gain=1.0, residual_blocks=4)
        (1.0, 0.5)
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

    (:func:`arpit_g`, which says why this keeps the activations' norm), with ``c = 1 / B`` for the last layer
    of each of a residual network's ``B`` branches and ``c = 1`` for a shortcut's 1x1 conv.

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

    Args:
        model: the network, changed in place.
        bias: the value of every bias.

    Returns:
        ``model``.

    Example::

        >>> from gannorm.normalizations import normalize
        >>> net = normalize(nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 1)), "weight_norm")
        >>> net = init_wn_arpit(net)
        >>> round(float(net[0].parametrizations.weight[0].g[0]), 4), float(net[2].parametrizations.weight[0].g[0])
        (2.0, 1.0)
    """
    walk = _ForwardWalk()
    walk.chain([model])
    missing = [name for name, m in model.named_modules() if isinstance(m, NORMALIZABLE) and m not in walk.gains]
    if missing:
        raise InputError(f"wn_arpit: layer {missing[0]!r} is not in the forward the model describes "
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


INIT_SCHEMES.register("wn_arpit", InitScheme(
    init_wn_arpit, "orthogonal directions with the weight-norm gains g = sqrt(c fan_in / fan_out), LeakyReLU slopes "
    "and residual blocks read from the model", uses_forward=True,
    reference="Arpit, Campos and Bengio 2019 (for weight normalization)"))
