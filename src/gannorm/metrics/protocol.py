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
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Protocol

from ..errors import ConfigError

__all__ = ["ALL", "COUNT_SETTINGS", "MetricProtocol", "ProtocolError", "Setting", "resolve_metric"]


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
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


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
