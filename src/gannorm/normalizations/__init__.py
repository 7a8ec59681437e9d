"""Weight normalizations as ``torch.nn.utils.parametrize`` parametrizations, and their registry.

Use :func:`normalize` to apply a named method to every Conv/ConvTranspose/Linear layer of a model,
or the per-layer functions (:func:`spectral_norm`, :func:`bidirectional_spectral_norm`,
:func:`strict_spectral_norm`) directly.
"""
from .base import UPDATE_POLICIES, PowerIterationNorm
from .bidirectional import BidirectionalSpectralNorm, bidirectional_spectral_norm
from .convert import convert_state_dict
from .gamma import GammaScale
from .model import (METHODS, NORMALIZABLE, normalize, normalized_layers, remove, reset_power_iteration, sigmas,
                    update_after_step, update_power_iteration)
from .spectral import SpectralNorm, spectral_norm
from .strict import ConvOperatorNorm, strict_spectral_norm

__all__ = [
    "UPDATE_POLICIES", "PowerIterationNorm", "SpectralNorm", "BidirectionalSpectralNorm", "ConvOperatorNorm",
    "GammaScale", "METHODS", "NORMALIZABLE", "normalize", "normalized_layers", "remove", "reset_power_iteration",
    "sigmas", "update_after_step", "update_power_iteration", "spectral_norm", "bidirectional_spectral_norm",
    "strict_spectral_norm", "convert_state_dict",
]
