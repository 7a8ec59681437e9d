"""Series for the figures and the summary: pure functions over typed records.

Null, missing and non-finite values are left out of series (and so out of the plots).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from ...diagnostics.records import ProbeRecord
from ...runfolder import MetricsRow

Series = tuple[list[int], list[float]]

#: the whole-model numbers of a probe that :func:`probe_series` follows
PROBE_SCALARS = ("d_real", "d_fake", "loss_d", "lipschitz_upper", "lipschitz_lower")


def finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def layer_names(records: Iterable[ProbeRecord]) -> list[str]:
    """D's layers in forward order: the order of each record's ``layers``, new names appended."""
    seen: dict[str, None] = {}
    for rec in records:
        for name in rec.layers:
            seen.setdefault(name, None)
    return list(seen)


def layer_series(records: Iterable[ProbeRecord], key: str) -> dict[str, Series]:
    """``{layer: (steps, values)}`` of a per-layer quantity (``grad_raw``, ``sigma1``, ...), in forward
    layer order; layers without any finite value are left out."""
    records = list(records)
    out: dict[str, Series] = {}
    for name in layer_names(records):
        points = [(rec.step, v) for rec in records
                  if name in rec.layers and (v := finite(rec.layers[name].value(key))) is not None]
        if points:
            out[name] = ([s for s, _ in points], [v for _, v in points])
    return out


def probe_series(records: Iterable[ProbeRecord], key: str) -> Series:
    """``(steps, values)`` of a whole-model number of the probes (one of :data:`PROBE_SCALARS`)."""
    if key not in PROBE_SCALARS:
        raise ValueError(f"unknown probe quantity {key!r}; known: {', '.join(PROBE_SCALARS)}")
    points = [(rec.step, v) for rec in records if (v := finite(getattr(rec, key))) is not None]
    return [s for s, _ in points], [v for _, v in points]


def metric_series(rows: Iterable[MetricsRow], key: str) -> Series:
    """``(steps, values)`` of a ``metrics.jsonl`` scalar (``loss_d``, ``eval/cfd``, ...)."""
    points = [(row.step, v) for row in rows if (v := finite(row.values.get(key))) is not None]
    return [s for s, _ in points], [v for _, v in points]


def input_grad_series(records: Iterable[ProbeRecord], which: str
                      ) -> tuple[list[int], list[float], list[float], list[float]]:
    """``(steps, mean, min, max)`` of ``input_grad[which]`` (``real``, ``fake``, ``interpolated``).

    A step is kept when its mean is finite; a missing min or max is NaN (a gap in the band).
    """
    steps, mean = [], []
    lo: list[float] = []
    hi: list[float] = []
    for rec in records:
        stats = rec.input_grad.get(which)
        m = None if stats is None else finite(stats.mean)
        if m is None or stats is None:
            continue
        steps.append(rec.step)
        mean.append(m)
        for out, v in ((lo, stats.min), (hi, stats.max)):
            v = finite(v)
            out.append(math.nan if v is None else v)
    return steps, mean, lo, hi


def latest_layer_values(records: Sequence[ProbeRecord], key: str) -> dict[str, tuple[int, float]]:
    """``{layer: (step, value)}``: each layer's last finite value of ``key``, in forward layer order."""
    return {name: (s[-1], v[-1]) for name, (s, v) in layer_series(records, key).items()}


@dataclass(frozen=True)
class GradientRatio:
    """The first layer's gradient norm over the last layer's in one probe (None when not defined)."""
    first: str
    last: str
    ratio: float | None


def gradient_ratio(record: ProbeRecord, key: str = "grad_raw") -> GradientRatio | None:
    """First layer's ``key`` over the last layer's (the ends of ``layers`` in forward order).

    The ratio is None when either value is null or non-finite or the last one is zero; the result is
    None when the record has fewer than two layers.
    """
    if len(record.layers) < 2:
        return None
    (first, a), *_, (last, b) = record.layers.items()
    num, den = finite(a.value(key)), finite(b.value(key))
    return GradientRatio(first, last, num / den if num is not None and den not in (None, 0.0) else None)


def last_eval(rows: Iterable[MetricsRow]) -> dict[str, tuple[int, float]]:
    """``{key: (step, value)}``: the last finite value of each ``eval/...`` key in ``metrics.jsonl``."""
    out: dict[str, tuple[int, float]] = {}
    for row in rows:
        for key, value in row.values.items():
            if key.startswith("eval/") and finite(value) is not None:
                out[key] = (row.step, value)
    return out


@dataclass(frozen=True)
class RunDescription:
    """Method, network and dataset of a run as short strings (``?`` where unknown); ``loss`` if set."""
    method: str
    function: str
    network: str
    dataset: str
    loss: str | None = None


def describe_run(config: dict[str, Any]) -> RunDescription:
    """What was run, from ``config.yaml`` read as plain YAML (old or partial configs included)."""
    def section(name: str) -> dict[str, Any]:
        sec = config.get(name)
        return sec if isinstance(sec, dict) else {}

    norm, model, data, train = section("normalization"), section("model"), section("data"), section("train")
    method = str(norm.get("method", "?"))
    options = norm.get("options") or {}
    if isinstance(options, dict) and options:
        method += " (" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")"
    network = str(model.get("arch", "?"))
    if model.get("width") is not None:
        network += f" (width {model['width']})"
    dataset = str(data.get("name", "?"))
    if data.get("resolution") is not None:
        dataset += f" ({data['resolution']}x{data['resolution']})"
    return RunDescription(method, str(norm.get("function", "none")), network, dataset,
                          None if train.get("loss") is None else str(train["loss"]))
