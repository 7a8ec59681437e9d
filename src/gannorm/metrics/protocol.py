"""Per-metric evaluation protocols: how many samples each metric reads and its own settings.

Papers measure each metric their own way: the BSSN code takes IS on 50,000 generated samples (10
splits, the first 1,000 logits) and FID on 10,000 generated against 5,000 real images; the GN-GAN code
takes FID on 50,000 against statistics of the whole training set. A protocol says this per metric::

    {"is": {"num_samples": 50000, "splits": 10, "logits": 1000},
     "fid": {"num_samples": 10000, "num_real": 5000}}

Every metric takes the counts of :data:`COUNT_SETTINGS` (``num_samples``, ``num_real``); its registry
entry (:class:`gannorm.metrics.evaluate.MetricSpec`) lists its own :class:`Setting` s (``splits``,
``logits``, ``reference``, ``subsets``, ``subset_size``), says whether it reads real images with the
given settings (``uses_real``) and checks settings against each other (``limits``).
:func:`resolve_metric` turns what a user wrote into a :class:`MetricProtocol` with every default
filled in, or raises a one-line :class:`ProtocolError` naming ``<where>.<metric>.<key>``.

A *named* protocol (:data:`EVAL_PROTOCOLS`, ``gannorm eval --protocol NAME``) bundles how one paper measures
its numbers: the real split and whether the real side is a seeded subset of its images or statistics of the
whole split, the numbers of generated and real samples, the feature extractor, the resize mode and each
metric's settings; :meth:`NamedProtocol.per_metric` turns it into the per-metric mapping above.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from ..errors import ConfigError
from ..registry import Registry
from .resize import RESIZE_MODES
from ..validate import is_int

__all__ = ["ALL", "COUNT_SETTINGS", "EVAL_PROTOCOLS", "MetricProtocol", "NamedProtocol", "ProtocolError", "Setting",
           "resolve_metric"]


@dataclass(frozen=True)
class Setting:
    """One per-metric protocol setting (``train.eval_protocol.<metric>.<key>``, ``EvalOptions.protocol``).

    ``valid(value)`` says whether a value is allowed, ``allowed`` says which in words (for the one-line
    error). ``default`` is used when the setting is not given, unless ``fallback`` names an evaluation
    option that is set (``fid``'s ``reference`` falls back to ``EvalOptions.reference_stats``, which
    ``gannorm eval --reference`` fills). A default of None means the evaluation decides and records
    what it decided in the protocol.
    """

    default: Any
    valid: Callable[[Any], bool]
    allowed: str
    description: str = ""
    fallback: str = ""


def integer_at_least(low: int) -> Callable[[Any], bool]:
    """``valid`` for an integer >= ``low`` (booleans refused)."""
    return lambda v: is_int(v) and v >= low


def one_of(*values: Any) -> Callable[[Any], bool]:
    """``valid`` for one of ``values`` (booleans refused, so that ``true`` is not ``1``)."""
    return lambda v: not isinstance(v, bool) and v in values


def nonempty_path(value: Any) -> bool:
    """``valid`` for a non-empty path string."""
    return isinstance(value, str) and value.strip() != ""


ALL = "all"  # num_real: every item of the dataset

#: the settings every metric takes: how many of the evaluation's samples it reads
COUNT_SETTINGS: dict[str, Setting] = {
    "num_samples": Setting(None, integer_at_least(2), "an integer >= 2",
                           "generated samples: the first of the evaluation's draw (default: the evaluation's "
                           "num_samples, train.eval_num_samples during training)"),
    "num_real": Setting(None, lambda v: v == ALL or integer_at_least(2)(v), "an integer >= 2 or all",
                        "real images: the first of a seeded permutation of the dataset (default: the evaluation's "
                        "num_real, else as many as generated; at most the dataset; all: every image)"),
}


@dataclass(frozen=True)
class MetricProtocol:
    """How one metric is measured: its sample counts and its own settings, every default filled in.

    ``num_real`` is None when the metric reads no real images (IS; FID against a statistics file).
    """

    num_samples: int
    num_real: int | None
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The record in ``eval.jsonl`` (``protocol.metrics.<name>``): ``num_generated``, ``num_real``, settings."""
        counts: dict[str, Any] = {"num_generated": self.num_samples}
        if self.num_real is not None:
            counts["num_real"] = self.num_real
        return {**counts, **self.settings}


class ProtocolError(ConfigError):
    """A per-metric protocol is wrong; the one-line message names ``<where>.<metric>.<key>`` and the fix."""


class MetricLike(Protocol):
    """What :func:`resolve_metric` reads of a metric's registry entry."""

    @property
    def settings(self) -> Mapping[str, Setting]: ...
    @property
    def uses_real(self) -> Callable[[dict[str, Any]], bool]: ...
    @property
    def limits(self) -> Callable[[MetricProtocol], "tuple[str, str] | None"]: ...


@dataclass(frozen=True)
class Defaults:
    """The evaluation-wide values a metric's protocol falls back to."""

    num_samples: int
    num_real: int | str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # evaluation options a Setting.fallback may name
    dataset_size: int | None = None  # None (checking a config): ``all`` and the cap at the dataset are unknown


def _check_given(name: str, spec: MetricLike, given: Any, where: str) -> dict[str, Any]:
    allowed = {**COUNT_SETTINGS, **spec.settings}
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise ProtocolError(f"{where}: expected a mapping of settings ({', '.join(allowed)}), got {given!r}")
    for key, value in given.items():
        if key not in allowed:
            raise ProtocolError(f"{where}: {key!r} is not a setting of {name} (allowed: {', '.join(allowed)})")
        if not allowed[key].valid(value):
            raise ProtocolError(f"{where}.{key}: must be {allowed[key].allowed}, got {value!r}")
    return dict(given)


def _real_count(requested: Any, num_samples: int, dataset_size: int | None) -> int:
    if requested == ALL:
        return dataset_size if dataset_size is not None else sys.maxsize
    n = requested or num_samples
    return n if dataset_size is None else min(n, dataset_size)


def resolve_metric(name: str, spec: MetricLike, given: Any, defaults: Defaults, where: str) -> MetricProtocol:
    """The protocol of metric ``name``: ``given`` (what the user wrote; None for nothing) checked, then
    completed from ``spec``'s defaults and ``defaults``. ``where`` prefixes every error (``config key
    train.eval_protocol.is``)."""
    given = _check_given(name, spec, given, where)
    settings = {}
    for key, setting in spec.settings.items():
        fallback = defaults.options.get(setting.fallback) if setting.fallback else None
        settings[key] = given.get(key, fallback if fallback is not None else setting.default)
    num_samples = given.get("num_samples", defaults.num_samples)
    num_real = None
    if spec.uses_real(settings):
        num_real = _real_count(given.get("num_real", defaults.num_real), num_samples, defaults.dataset_size)
    elif "num_real" in given and not spec.uses_real({k: s.default for k, s in spec.settings.items()}):
        raise ProtocolError(f"{where}.num_real: {name} reads no real images; drop num_real")
    # (a setting that replaces the real images, fid's reference, makes num_real unused, not wrong: a preset's
    # num_real and a reference given on the command line go together)
    protocol = MetricProtocol(num_samples, num_real, settings)
    problem = spec.limits(protocol)
    if problem is not None:
        key, text = problem
        raise ProtocolError(f"{where}.{key}: {text}")
    return protocol


# ------------------------------------------------------------------------------------------ named protocols
REAL_SPLITS = ("train", "test")
REAL_SOURCES = ("subset", "statistics")


@dataclass(frozen=True)
class NamedProtocol:
    """How a paper measures its IS and FID, by name (``gannorm eval --protocol NAME``).

    ``real_split`` is the split the real side comes from (``train``: the run's own dataset; ``test``: a
    statistics file of the test split, ``--reference``); ``real_source`` says whether it is a seeded
    ``subset`` of ``num_real`` images or ``statistics`` of the whole split (``num_real`` is then ``all``).
    ``num_fake`` samples are drawn; ``settings`` holds each metric's own settings beyond the counts
    (``{"is": {"splits": 10, "logits": 1008}}``). ``extractor`` names the feature network and ``resize`` the
    way images are resized to its input (a mode name; ``legacy_tensorflow`` is TF1's bilinear resize).

    Example::

        >>> EVAL_PROTOCOLS.get("sngan_10k_5k").per_metric(lambda m: m != "is")["fid"]
        {'num_samples': 5000, 'num_real': 10000}
    """

    paper: str
    real_split: str
    real_source: str
    num_fake: int
    num_real: int | str
    metrics: tuple[str, ...] = ("fid", "is")
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    extractor: str = "inception"
    resize: str = "legacy_tensorflow"
    description: str = ""

    def per_metric(self, uses_real: Callable[[str], bool]) -> dict[str, dict[str, Any]]:
        """``{metric: {"num_samples", "num_real" (for a metric that ``uses_real``), <settings>}}`` for every
        metric of the protocol, in the form of ``EvalOptions.protocol`` / ``train.eval_protocol``.

        Args:
            uses_real: whether a metric (by name) reads real images with its default settings.

        Returns:
            The per-metric settings.

        Example::

            >>> EVAL_PROTOCOLS.get("train_50k").per_metric(lambda m: m == "fid")["is"]
            {'num_samples': 50000, 'splits': 10, 'logits': 1008}
        """
        out = {}
        for name in self.metrics:
            counts: dict[str, Any] = {"num_samples": self.num_fake}
            if uses_real(name):
                counts["num_real"] = self.num_real
            out[name] = {**counts, **self.settings.get(name, {})}
        return out

    def to_json(self, name: str) -> dict[str, Any]:
        """The record of the protocol in an evaluation's result (``"protocol"``), under its ``name``."""
        return {"name": name, "paper": self.paper, "real_split": self.real_split, "real_source": self.real_source,
                "num_generated": self.num_fake, "num_real": self.num_real, "extractor": self.extractor,
                "resize": self.resize}


def check_named(name: str, entry: NamedProtocol) -> None:
    """Refuse an inconsistent named protocol at registration (EVAL_PROTOCOLS' check)."""
    if entry.real_split not in REAL_SPLITS or entry.real_source not in REAL_SOURCES:
        raise ValueError(f"protocol {name!r}: real_split must be one of {REAL_SPLITS} and real_source one of "
                         f"{REAL_SOURCES}")
    if entry.resize not in RESIZE_MODES.names():
        raise ValueError(f"protocol {name!r}: resize must be one of {', '.join(RESIZE_MODES.names())}, "
                         f"got {entry.resize!r}")
    if (entry.real_source == "statistics") != (entry.num_real == ALL):
        raise ValueError(f"protocol {name!r}: statistics of the whole split go with num_real 'all', a subset with a "
                         "count")
    if not integer_at_least(2)(entry.num_fake) or set(entry.settings) - set(entry.metrics):
        raise ValueError(f"protocol {name!r}: num_fake must be >= 2 and settings only for its metrics")


ORIGINAL_IS = {"splits": 10, "logits": 1008}  # the original Inception Score code: 10 splits, all 1008 logits
EVAL_PROTOCOLS: Registry[NamedProtocol] = Registry("evaluation protocol", check=check_named)
EVAL_PROTOCOLS.register("sngan_10k_5k", NamedProtocol(
    "Miyato et al., Spectral normalization for GANs (ICLR 2018)", "train", "subset", 5000, 10000,
    settings={"is": ORIGINAL_IS},
    description="the SNGAN paper's: 5,000 samples; FID against 10,000 real training images (a seeded subset); "
                "IS on the same samples"))
EVAL_PROTOCOLS.register("train_50k", NamedProtocol(
    "GN-GAN (Wu et al., ICCV 2021), PGN and pytorch-gan-collections' code", "train", "statistics", 50000, ALL,
    settings={"is": ORIGINAL_IS},
    description="50,000 samples; FID against the whole training set (or its statistics, --reference); IS with "
                "10 splits over all 1,008 logits"))
EVAL_PROTOCOLS.register("train_50k_pytorch", NamedProtocol(
    "the GN-GAN and PGN codes' own metric package (pytorch-gan-metrics)", "train", "statistics", 50000, ALL,
    settings={"is": ORIGINAL_IS}, resize="pytorch_bilinear",
    description="train_50k with the package's resize: PyTorch's bilinear interpolation (align_corners=False) "
                "instead of TF1's"))
EVAL_PROTOCOLS.register("test_10k", NamedProtocol(
    "the common test-set protocol (e.g. the GN-GAN metrics package's CIFAR-10 test statistics)", "test",
    "statistics", 10000, ALL, settings={"is": ORIGINAL_IS},
    description="10,000 samples; FID against the test split's statistics (--reference FILE); IS with 10 splits"))
EVAL_PROTOCOLS.register("bssn_10k_5k", NamedProtocol(
    "Lin, Sekar and Fanti, BSSN (NeurIPS 2021), as its code measures", "train", "subset", 10000, 5000,
    settings={"is": {"num_samples": 50000, "splits": 10, "logits": 1000}},
    description="the BSSN code's (and the bssn_* presets'): FID on 10,000 samples against 5,000 real training "
                "images (a seeded subset); IS on 50,000 samples, 10 splits, the first 1,000 logits"))
