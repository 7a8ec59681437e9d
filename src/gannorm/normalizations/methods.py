"""The registry of named normalization methods and the built-in entries.

A method is a function ``apply(layers, **options)`` that normalizes each ``(name, module)`` in
``layers`` (every Conv/ConvTranspose/Linear of a model, in module order) and whose keyword
arguments are its options. :func:`gannorm.normalize` validates the options against that signature,
so a new method is one function plus one ``METHODS.register`` call.
"""
from __future__ import annotations

from typing import Sequence

from torch import nn

from ..registry import Registry
from .bidirectional import bidirectional_spectral_norm
from .depthwise import apply_dssn
from .gamma import attach_gamma, new_gamma
from .mean_sn import attach_mean_norm, msn_targets
from .spectral import spectral_norm
from .strict import strict_spectral_norm

METHODS: Registry = Registry("normalization")

Layers = Sequence[tuple[str, nn.Module]]


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
        spectral_norm(m, n_power_iterations=n_power_iterations, eps=eps, scale=scale, update=update,
                      grad_through_vectors=grad_through_vectors, warmup=warmup)


def _bsn(layers: Layers, n_power_iterations: int = 1, eps: float = 1e-12, update: str = "forward",
         grad_through_vectors: bool = False, warmup: int = 15) -> None:
    _bssn(layers, 1.0, n_power_iterations, eps, update, grad_through_vectors, warmup)


def _bssn(layers: Layers, scale: float, n_power_iterations: int = 1, eps: float = 1e-12, update: str = "forward",
          grad_through_vectors: bool = False, warmup: int = 15) -> None:
    for _, m in layers:
        bidirectional_spectral_norm(m, n_power_iterations=n_power_iterations, eps=eps, scale=scale, update=update,
                                    grad_through_vectors=grad_through_vectors, warmup=warmup)


def _sn_gamma(shared: bool):
    def apply(layers: Layers, gamma_init: float = 1.0, n_power_iterations: int = 1, eps: float = 1e-12,
              update: str = "forward", grad_through_vectors: bool = False, warmup: int = 15) -> None:
        _sn(layers, n_power_iterations, eps, update, grad_through_vectors, warmup)
        gamma = new_gamma(layers[0][1].weight, gamma_init) if shared and layers else None
        for _, m in layers:
            attach_gamma(m, gamma if shared else new_gamma(m.weight, gamma_init))
    return apply


def _strict_sn(layers: Layers, input_shapes: dict[str, tuple[int, ...]], scale: float = 1.0,
               n_power_iterations: int = 1, eps: float = 1e-12, update: str = "forward",
               grad_through_vectors: bool = False, warmup: int = 15) -> None:
    for name, m in layers:
        strict_spectral_norm(m, input_shapes.get(name, ()), n_power_iterations=n_power_iterations, eps=eps,
                             scale=scale, update=update, grad_through_vectors=grad_through_vectors, warmup=warmup)


def _msn(layers: Layers, momentum: float = 0.1, n_power_iterations: int = 1, eps: float = 1e-12,
         update: str = "forward", grad_through_vectors: bool = False, warmup: int = 15) -> None:
    _sn(layers, n_power_iterations, eps, update, grad_through_vectors, warmup)
    modules = dict(layers)
    for name in msn_targets(list(layers)):
        attach_mean_norm(modules[name], momentum)


METHODS.register("none", _none, "no normalization (the baseline)")
METHODS.register("sn", _sn, "spectral normalization of the [out, in*k*k] kernel (Miyato et al. 2018)")
METHODS.register("ssn", _ssn, "scaled SN: scale * W / sigma (requires scale)")
METHODS.register("bsn", _bsn, "bidirectional SN: W / mean(sigma_fan_in, sigma_fan_out) (Lin et al. 2021)")
METHODS.register("bssn", _bssn, "bidirectional scaled SN: scale * W / mean(sigma1, sigma2) (requires scale)")
METHODS.register("sn_gamma_shared", _sn_gamma(True), "SN times one learnable gamma shared by all layers")
METHODS.register("sn_gamma_layer", _sn_gamma(False), "SN times a learnable gamma per layer")
METHODS.register("msn", _msn, "mean spectral normalization: SN plus mean-only batch norm after the strided "
                 "convs but the first and after the last conv (Subramanian and Chong 2019)")
METHODS.register("dssn", apply_dssn,
                 "depthwise-separable SN: exact DFT sigma for depthwise convs on their input shape, SN elsewhere "
                 "(requires input_shape=(C, H, W))")
METHODS.register("strict_sn", _strict_sn,
                 "operator norm of each convolution on its input shape (requires input_shape=(C, H, W))")
