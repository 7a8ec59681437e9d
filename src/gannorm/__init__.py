"""gannorm: GAN training that does not blow up.

Spectral normalization and its successors as PyTorch parametrizations, behind one API::

    import gannorm
    gannorm.normalize(D, "bssn", scale=1.4)     # every Conv/Linear of D
    gannorm.sigmas(D)                           # per-layer sigma estimates, for logging
    D_gn = gannorm.GradientNormalized(D, "gn")  # function-level: f / (||grad f|| + |f|)
    spec = gannorm.PENALTIES.get("r1")          # a gradient penalty: spec.fn(D, real, fake, spec.default_weight)
    result = gannorm.train("digits", ["train.steps=500"])    # what `gannorm train digits train.steps=500` does
    gannorm.RunFolder.open(result.run_dir).load()             # its logs as typed records
"""
import importlib

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

__version__ = "0.1.0"  # the one place (pyproject.toml reads it)

#: the application layer's names, imported on first use so that ``import gannorm`` (and every library module under
#: it) loads no trainer, config, run folder, data or metrics: gannorm.train / gannorm.resume are `gannorm train` and
#: `--resume` in Python
_LAZY = {"train": ("gannorm.app.training", "train"), "resume": ("gannorm.app.training", "resume"),
         "RunFolder": ("gannorm.runfolder", "RunFolder"), "RunFolderError": ("gannorm.errors", "RunFolderError"),
         "RunResult": ("gannorm.training", "RunResult")}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'gannorm' has no attribute {name!r}")
    module, attr = _LAZY[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "METHODS", "UPDATE_POLICIES", "INIT_SCHEMES", "PENALTIES", "BidirectionalSpectralNorm", "ConvOperatorNorm",
    "GammaScale", "PowerIterationNorm", "SpectralNorm", "GradientNormalized", "ConfigError", "GannormError",
    "bidirectional_spectral_norm", "convert_state_dict", "depthwise_separable_spectral_norm", "fans",
    "gradient_normalize", "init_weights", "leaky_relu_gain", "normalize", "normalized_layers",
    "penalty_gradient_normalize", "raw_weight", "remove", "reset_power_iteration", "sigmas", "spectral_norm",
    "strict_spectral_norm", "update_after_step", "update_power_iteration", "train", "resume", "RunFolder",
    "RunFolderError", "RunResult", "__version__",
]
