"""gannorm: GAN training that does not blow up.

Spectral normalization and its successors as PyTorch parametrizations, behind one API::

    import gannorm
    gannorm.normalize(D, "bssn", scale=1.4)     # every Conv/Linear of D
    gannorm.sigmas(D)                           # per-layer sigma estimates, for logging
    D_gn = gannorm.GradientNormalized(D, "gn")  # function-level: f / (||grad f|| + |f|)
    spec = gannorm.PENALTIES.get("r1")          # a gradient penalty: spec.fn(D, real, fake, spec.default_weight)
    gannorm.METHODS.names()                     # every family's registry: METHODS, FUNCTIONS, PENALTIES,
                                                # INIT_SCHEMES, LOSSES, NETWORKS, DATASETS, METRICS, ...
    result = gannorm.train("digits", ["train.steps=500"])    # what `gannorm train digits train.steps=500` does
    gannorm.RunFolder.open(result.run_dir).load()             # its logs as typed records
"""
import importlib

from .errors import ConfigError, GannormError
from .gradnorm import FUNCTIONS, GradientNormalized, gradient_normalize, penalty_gradient_normalize
from .init import INIT_SCHEMES, fans, init_weights, leaky_relu_gain, raw_weight
from .normalizations import (METHODS, UPDATE_POLICIES, BidirectionalSpectralNorm, ConvOperatorNorm,
                             DepthwiseSeparableSpectralNorm, GammaScale, PowerIterationNorm, SpectralNorm,
                             StrictSpectralNorm, bidirectional_spectral_norm, convert_state_dict,
                             depthwise_separable_spectral_norm, normalize, normalized_layers, remove,
                             remove_normalization, reset_power_iteration, sigmas, spectral_norm, strict_spectral_norm,
                             update_after_step, update_power_iteration)
from .penalties import PENALTIES

__version__ = "0.1.0"  # the one place (pyproject.toml reads it)

#: the application layer's names, imported on first use so that ``import gannorm`` (and every library module under
#: it) loads no trainer, config, run folder, data or metrics: gannorm.train / gannorm.resume are `gannorm train` and
#: `--resume` in Python
_LAZY = {"train": ("gannorm.app.training", "train"), "resume": ("gannorm.app.training", "resume"),
         "RunFolder": ("gannorm.runfolder", "RunFolder"), "RunFolderError": ("gannorm.errors", "RunFolderError"),
         "RunResult": ("gannorm.training", "RunResult"),
         # the registries of the families whose modules are heavier than the normalizations (the eager ones above:
         # METHODS, FUNCTIONS, PENALTIES, INIT_SCHEMES); each is the module's own object
         "LOSSES": ("gannorm.losses", "LOSSES"), "NETWORKS": ("gannorm.networks", "NETWORKS"),
         "DIFFAUG_OPS": ("gannorm.augment", "DIFFAUG_OPS"), "DATASETS": ("gannorm.data", "DATASETS"),
         "METRICS": ("gannorm.metrics.evaluate", "METRICS"), "EXTRACTORS": ("gannorm.metrics.evaluate", "EXTRACTORS"),
         "RESIZE_MODES": ("gannorm.metrics.resize", "RESIZE_MODES"),
         "EVAL_PROTOCOLS": ("gannorm.metrics.protocol", "EVAL_PROTOCOLS")}

#: every family's registry, by the name ``gannorm.<NAME>`` gives it
REGISTRIES = ("METHODS", "FUNCTIONS", "PENALTIES", "INIT_SCHEMES", "LOSSES", "NETWORKS", "DIFFAUG_OPS", "DATASETS",
              "METRICS", "EXTRACTORS", "RESIZE_MODES", "EVAL_PROTOCOLS")


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
    "METHODS", "FUNCTIONS", "PENALTIES", "INIT_SCHEMES", "LOSSES", "NETWORKS", "DIFFAUG_OPS", "DATASETS", "METRICS",
    "EXTRACTORS", "RESIZE_MODES", "EVAL_PROTOCOLS", "REGISTRIES",
    "UPDATE_POLICIES", "BidirectionalSpectralNorm", "StrictSpectralNorm",
    "DepthwiseSeparableSpectralNorm", "ConvOperatorNorm", "GammaScale", "PowerIterationNorm", "SpectralNorm",
    "GradientNormalized", "ConfigError", "GannormError", "bidirectional_spectral_norm", "convert_state_dict",
    "depthwise_separable_spectral_norm", "fans", "gradient_normalize", "init_weights", "leaky_relu_gain", "normalize",
    "normalized_layers", "penalty_gradient_normalize", "raw_weight", "remove_normalization", "remove",
    "reset_power_iteration", "sigmas", "spectral_norm", "strict_spectral_norm", "update_after_step",
    "update_power_iteration", "train", "resume", "RunFolder", "RunFolderError", "RunResult", "__version__",
]
