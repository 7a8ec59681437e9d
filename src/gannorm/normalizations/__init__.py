"""Weight normalizations as ``torch.nn.utils.parametrize`` parametrizations, and their registry.

Use :func:`normalize` to apply a named method to every Conv/ConvTranspose/Linear layer and
``nn.Embedding`` of a model (a class embedding's ``[num_embeddings, dim]`` weight is normalized as a
matrix, BigGAN's ``SNEmbedding``), or the per-layer functions directly. Those share one signature::

    fn(module, name="weight", *, scale=1.0, n_power_iterations=1, eps=1e-12, update="forward",
       grad_through_vectors=False, warmup=15)

(:func:`spectral_norm` also takes ``dim``; :func:`strict_spectral_norm` and
:func:`depthwise_separable_spectral_norm` require ``input_shape=(C, H, W)``). Every option is range
checked (:mod:`.options`): a bad value is a one-line :class:`gannorm.errors.OptionError`.
:func:`remove_normalization` undoes :func:`normalize` (``remove`` is its deprecated former name).

The SNGAN paper's baselines are registered too: :func:`weight_norm` (a parametrization,
:mod:`.weight_norm`) and batch/layer normalization after the layers (:mod:`.feature_norms`).
"""
from .base import PowerIterationNorm
from .bidirectional import BidirectionalSpectralNorm, bidirectional_spectral_norm
from .convert import convert_state_dict
from .depthwise import DepthwiseSeparableSpectralNorm, depthwise_separable_spectral_norm
from .feature_norms import ChannelBatchNorm
from .gamma import GammaScale
from .layers import EMBEDDINGS, WEIGHT_LAYERS
from .methods import MethodSpec
from .options import OPTION_CHECKS, UPDATE_POLICIES, OptionCheck
from .model import (METHODS, NORMALIZABLE, is_normalized, method_options, normalize, normalized_layers, remove,
                    remove_normalization, reset_power_iteration, sigmas, update_after_step, update_power_iteration)
from .spectral import SpectralNorm, spectral_norm
from .strict import ConvOperatorNorm, StrictSpectralNorm, strict_spectral_norm
from .weight_norm import WeightNorm, weight_norm

__all__ = [
    "UPDATE_POLICIES", "OPTION_CHECKS", "OptionCheck", "PowerIterationNorm", "SpectralNorm",
    "BidirectionalSpectralNorm", "StrictSpectralNorm", "DepthwiseSeparableSpectralNorm", "ConvOperatorNorm",
    "GammaScale", "METHODS", "MethodSpec", "method_options", "NORMALIZABLE", "normalize", "normalized_layers",
    "remove_normalization", "remove", "reset_power_iteration", "sigmas", "update_after_step", "update_power_iteration",
    "spectral_norm", "bidirectional_spectral_norm", "strict_spectral_norm", "depthwise_separable_spectral_norm",
    "convert_state_dict", "weight_norm", "WeightNorm", "ChannelBatchNorm", "is_normalized", "EMBEDDINGS",
    "WEIGHT_LAYERS",
]
