"""gannorm: GAN training that does not blow up.

Spectral normalization and its successors as PyTorch parametrizations, behind one API::

    import gannorm
    gannorm.normalize(D, "bssn", scale=1.4)     # every Conv/Linear of D
    gannorm.sigmas(D)                           # per-layer sigma estimates, for logging
    D_gn = gannorm.GradientNormalized(D, "gn")  # function-level: f / (||grad f|| + |f|)
    spec = gannorm.PENALTIES.get("r1")          # a gradient penalty: spec.fn(D, real, fake, spec.default_weight)
"""
from .errors import ConfigError, GannormError
from .gradnorm import GradientNormalized, gradient_normalize, penalty_gradient_normalize
from .init import SCHEMES as INIT_SCHEMES
from .init import fans, init_weights, leaky_relu_gain, raw_weight
from .normalizations import (METHODS, UPDATE_POLICIES, BidirectionalSpectralNorm, ConvOperatorNorm, GammaScale,
                             PowerIterationNorm, SpectralNorm, bidirectional_spectral_norm, convert_state_dict,
                             depthwise_separable_spectral_norm, normalize, normalized_layers, remove,
                             reset_power_iteration, sigmas, spectral_norm, strict_spectral_norm, update_after_step,
                             update_power_iteration)
from .penalties import PENALTIES

__version__ = "0.1.0"


def train(config=None, overrides=()):
    """Train a GAN: ``config`` is a preset name, a YAML path, a dict or a :class:`gannorm.config.Config`.

    The same as ``gannorm train`` on the command line; returns a
    :class:`gannorm.training.trainer.RunResult` (run folder, status, step).
    """
    from .training.trainer import train as _train
    return _train(config, overrides)


def resume(run_dir, overrides=()):
    """Continue the run in ``run_dir`` exactly where its checkpoint left it."""
    from .training.trainer import resume as _resume
    return _resume(run_dir, overrides)

__all__ = [
    "METHODS", "UPDATE_POLICIES", "INIT_SCHEMES", "PENALTIES", "BidirectionalSpectralNorm", "ConvOperatorNorm",
    "GammaScale", "PowerIterationNorm", "SpectralNorm", "GradientNormalized", "ConfigError", "GannormError",
    "bidirectional_spectral_norm", "convert_state_dict", "depthwise_separable_spectral_norm", "fans",
    "gradient_normalize", "init_weights", "leaky_relu_gain", "normalize", "normalized_layers",
    "penalty_gradient_normalize", "raw_weight", "remove", "reset_power_iteration", "sigmas", "spectral_norm",
    "strict_spectral_norm", "update_after_step", "update_power_iteration", "train", "resume", "__version__",
]
