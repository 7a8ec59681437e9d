"""The registry of named normalization methods and the built-in entries.

Each entry is a :class:`MethodSpec`: a function ``apply(layers, **options)`` that normalizes each
``(name, module)`` in ``layers`` (every layer of a model whose type is in the entry's ``layer_types``,
in module order: Conv/ConvTranspose/Linear, plus ``nn.Embedding`` for the weight normalizations), whose
keyword arguments are the method's options, and what the method needs from the caller
(``needs_input_shapes``: ``apply(layers, input_shapes, **options)`` gets each layer's input shape,
recorded by :func:`gannorm.normalize` from ``input_shape=(C, H, W)``), and three capabilities callers
read instead of method names: ``couples_samples`` (it adds layers with batch statistics, so GN/PGN and
per-sample gradient penalties cannot use it), ``removable`` (:func:`gannorm.remove_normalization` can turn the model
back into a plain network) and ``normalizes_weights`` (every layer's weight becomes a parametrization,
as opposed to the feature normalizations, which add layers). Every option has a range check
(``checks``, by default :data:`gannorm.normalizations.options.OPTION_CHECKS`; a registration whose
``apply`` takes an option without one is refused), and :meth:`MethodSpec.check_options` -- called by
:func:`gannorm.normalize` before the model is touched, and by the config validation -- refuses unknown,
missing and out-of-range options with a one-line :class:`gannorm.errors.OptionError`. A new method is
one function plus one ``METHODS.register(name, MethodSpec(...))`` call.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence, cast

from torch import Tensor, nn

from ..errors import OptionError
from ..registry import Registry
from .bidirectional import bidirectional_spectral_norm
from .depthwise import apply_dssn
from .feature_norms import BATCH_NORM, LAYER_NORM, apply_post_norm
from .gamma import attach_gamma, new_gamma
from .layers import NORMALIZABLE, WEIGHT_LAYERS
from .mean_sn import attach_mean_norm, msn_targets
from .options import FEATURE_NORM_CHECKS, OPTION_CHECKS, OptionCheck, check_options
from .spectral import spectral_norm
from .strict import strict_spectral_norm
from .weight_norm import weight_norm

Layers = Sequence[tuple[str, nn.Module]]

_NOT_OPTIONS = ("layers", "input_shapes")


@dataclass(frozen=True)
class MethodSpec:
    """One normalization method: ``apply``, whether it needs per-layer input shapes, a one-line description,
    the range check of each option (``checks``: option name -> :class:`OptionCheck`) and its capabilities.

    ``couples_samples``: the method adds layers that use batch statistics in training (MSN's mean-only
    batch norm, batch norm), so a sample's output depends on the rest of the batch; function-level
    GN/PGN and per-sample gradient penalties need a discriminator without them. ``removable``:
    :func:`gannorm.remove_normalization` turns a model normalized by this method into a plain network computing its
    eval-mode function (layer norm is not affine and cannot be folded away). ``normalizes_weights``:
    every layer's ``weight`` becomes a parametrization (false for ``none`` and the feature
    normalizations, which add a normalization after the layers instead). ``layer_types``: the layer
    classes :func:`gannorm.normalize` hands to ``apply``. The weight normalizations take
    :data:`~gannorm.normalizations.layers.WEIGHT_LAYERS` (Conv/ConvTranspose/Linear and ``nn.Embedding``,
    whose ``[num_embeddings, dim]`` weight is a plain matrix: SN's ``W.view(W.size(0), -1)`` as in
    BigGAN's ``SNEmbedding``, the bidirectional and strict variants reduce to SN on it, weight
    normalization normalizes each embedding row). The feature normalizations take
    :data:`~gannorm.normalizations.layers.NORMALIZABLE` only: a batch or layer norm belongs after a layer of
    the feature path, and counting a class embedding among "every layer but the first and the last" would
    move the placement, so embeddings are left as they are.
    """

    apply: Callable[..., None]
    needs_input_shapes: bool = False
    description: str = ""
    checks: Mapping[str, OptionCheck] = field(default_factory=lambda: MappingProxyType(OPTION_CHECKS), compare=False,
                                              repr=False)
    couples_samples: bool = False
    removable: bool = True
    normalizes_weights: bool = True
    layer_types: tuple[type[nn.Module], ...] = WEIGHT_LAYERS

    def __post_init__(self) -> None:
        if self.needs_input_shapes != ("input_shapes" in inspect.signature(self.apply).parameters):
            raise ValueError("MethodSpec: apply takes an input_shapes argument exactly when needs_input_shapes=True")
        unchecked = [o for o in self.accepted_options() if o not in self.checks]
        if unchecked:
            raise ValueError(f"MethodSpec: option(s) {', '.join(unchecked)} of {self.apply.__name__} have no range "
                             "check; pass checks={**OPTION_CHECKS, name: OptionCheck(...)}")

    def options(self) -> list[str]:
        """The keyword options of ``apply`` (without ``layers``/``input_shapes``)."""
        return [p for p in inspect.signature(self.apply).parameters if p not in _NOT_OPTIONS]

    def accepted_options(self) -> list[str]:
        """:meth:`options`, plus ``input_shape`` for the methods that need input shapes."""
        return self.options() + (["input_shape"] if self.needs_input_shapes else [])

    def required_options(self) -> list[str]:
        """The options without a default (e.g. ``scale`` for ssn/bssn)."""
        params = inspect.signature(self.apply).parameters
        return [p for p in self.options() if params[p].default is inspect.Parameter.empty]

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse unknown or missing options and out-of-range values with a one-line :class:`OptionError`.

        ``input_shape`` may be left out here (the caller supplies it when building the model).
        """
        allowed = self.accepted_options()
        unknown = [k for k in options if k not in allowed]
        if unknown:
            raise OptionError(unknown[0], f"unknown option(s) {', '.join(sorted(unknown))}; allowed: "
                              f"{', '.join(allowed) or 'none'}")
        missing = [p for p in self.required_options() if p not in options]
        if missing:
            raise OptionError(missing[0], f"requires option(s) {', '.join(missing)} (e.g. {missing[0]}=...)")
        check_options(options, self.checks)


METHODS: Registry[MethodSpec] = Registry("normalization")


def _none(layers: Layers) -> None:
    """No normalization."""


def _sn(layers: Layers, n_power_iterations: int = 1, eps: float = 1e-12, update: str = "forward",
        grad_through_vectors: bool = False, warmup: int = 15) -> None:
    for _, m in layers:
        spectral_norm(m, n_power_iterations=n_power_iterations, eps=eps, update=update,
                      grad_through_vectors=grad_through_vectors, warmup=warmup)


def _ssn(layers: Layers, scale: float, n_power_iterations: int = 1, eps: float = 1e-12, update: str = "forward",
         grad_through_vectors: bool = False, warmup: int = 15) -> None:
    for _, m in layers:
        spectral_norm(m, scale=scale, n_power_iterations=n_power_iterations, eps=eps, update=update,
                      grad_through_vectors=grad_through_vectors, warmup=warmup)


def _bsn(layers: Layers, n_power_iterations: int = 1, eps: float = 1e-12, update: str = "forward",
         grad_through_vectors: bool = False, warmup: int = 15) -> None:
    _bssn(layers, 1.0, n_power_iterations, eps, update, grad_through_vectors, warmup)


def _bssn(layers: Layers, scale: float, n_power_iterations: int = 1, eps: float = 1e-12, update: str = "forward",
          grad_through_vectors: bool = False, warmup: int = 15) -> None:
    for _, m in layers:
        bidirectional_spectral_norm(m, scale=scale, n_power_iterations=n_power_iterations, eps=eps, update=update,
                                    grad_through_vectors=grad_through_vectors, warmup=warmup)


def _sn_gamma(shared: bool):
    def apply(layers: Layers, gamma_init: float = 1.0, n_power_iterations: int = 1, eps: float = 1e-12,
              update: str = "forward", grad_through_vectors: bool = False, warmup: int = 15) -> None:
        _sn(layers, n_power_iterations, eps, update, grad_through_vectors, warmup)
        gamma = new_gamma(cast(Tensor, layers[0][1].weight), gamma_init) if shared and layers else None
        for _, m in layers:
            attach_gamma(m, gamma if gamma is not None else new_gamma(cast(Tensor, m.weight), gamma_init))
    return apply


def _strict_sn(layers: Layers, input_shapes: dict[str, tuple[int, ...]], scale: float = 1.0,
               n_power_iterations: int = 1, eps: float = 1e-12, update: str = "forward",
               grad_through_vectors: bool = False, warmup: int = 15) -> None:
    for name, m in layers:
        strict_spectral_norm(m, input_shape=input_shapes.get(name, ()), scale=scale,
                             n_power_iterations=n_power_iterations, eps=eps, update=update,
                             grad_through_vectors=grad_through_vectors, warmup=warmup)


def _msn(layers: Layers, momentum: float = 0.1, n_power_iterations: int = 1, eps: float = 1e-12,
         update: str = "forward", grad_through_vectors: bool = False, warmup: int = 15) -> None:
    _sn(layers, n_power_iterations, eps, update, grad_through_vectors, warmup)
    modules = dict(layers)
    for name in msn_targets(list(layers)):
        attach_mean_norm(modules[name], momentum)


def _batch_norm(layers: Layers, momentum: float = 0.1, eps: float = 1e-5) -> None:
    apply_post_norm(layers, BATCH_NORM, "batch_norm", eps, momentum)


def _layer_norm(layers: Layers, eps: float = 1e-5) -> None:
    apply_post_norm(layers, LAYER_NORM, "layer_norm", eps)


def _weight_norm(layers: Layers) -> None:
    for _, m in layers:
        weight_norm(m)


METHODS.register("none", MethodSpec(_none, description="no normalization (the baseline)", normalizes_weights=False))
METHODS.register("sn", MethodSpec(_sn, description="spectral normalization of the [out, in*k*k] kernel "
                                  "(Miyato et al. 2018)"))
METHODS.register("ssn", MethodSpec(_ssn, description="scaled SN: scale * W / sigma (requires scale)"))
METHODS.register("bsn", MethodSpec(_bsn, description="bidirectional SN: W / mean(sigma_fan_in, sigma_fan_out) "
                                   "(Lin et al. 2021)"))
METHODS.register("bssn", MethodSpec(_bssn, description="bidirectional scaled SN: scale * W / mean(sigma1, sigma2) "
                                    "(requires scale)"))
METHODS.register("sn_gamma_shared", MethodSpec(_sn_gamma(True), description="SN times one learnable gamma shared "
                                               "by all layers"))
METHODS.register("sn_gamma_layer", MethodSpec(_sn_gamma(False), description="SN times a learnable gamma per layer"))
METHODS.register("msn", MethodSpec(_msn, description="mean spectral normalization: SN plus mean-only batch norm "
                                   "after the strided convs but the first and after the last conv (Subramanian "
                                   "and Chong 2019)", couples_samples=True))
METHODS.register("dssn", MethodSpec(apply_dssn, needs_input_shapes=True, description="depthwise-separable SN: "
                                    "exact DFT sigma for depthwise convs on their input shape, SN elsewhere "
                                    "(requires input_shape=(C, H, W))"))
METHODS.register("strict_sn", MethodSpec(_strict_sn, needs_input_shapes=True, description="operator norm of each "
                                         "convolution on its input shape (requires input_shape=(C, H, W))"))
METHODS.register("batch_norm", MethodSpec(_batch_norm, description="batch normalization (per channel, batch "
                                         "statistics) after every layer but the first and the last (the SNGAN paper's "
                                         "baseline; not per-sample: GN/PGN refuse it)", checks=FEATURE_NORM_CHECKS,
                                         couples_samples=True, normalizes_weights=False, layer_types=NORMALIZABLE))
METHODS.register("layer_norm", MethodSpec(_layer_norm, description="layer normalization (each sample over (C, H, W), "
                                          "per-channel gain and bias) after every layer but the first and the last "
                                          "(the SNGAN paper's baseline; gannorm.remove_normalization cannot fold it)",
                                          checks=FEATURE_NORM_CHECKS, removable=False, normalizes_weights=False,
                                          layer_types=NORMALIZABLE))
METHODS.register("weight_norm", MethodSpec(_weight_norm, description="weight normalization g * v / ||v|| per output "
                                           "unit, g learned (Salimans and Kingma 2016; the SNGAN paper's baseline)"))
