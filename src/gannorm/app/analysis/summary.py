"""The Markdown summary of ``gannorm analyze``: what was run, per-layer tables, bounds, mean drift,
warnings, scores."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

from ...diagnostics.probes import SPARSITY_TAU
from ...diagnostics.records import ProbeRecord
from ...runfolder import DIAGNOSTICS, HEALTH, MetricsRow, RunRecords
from .reading import NO_DIAGNOSTICS_HINT, run_name
from .series import describe_run, gradient_ratio, last_eval, layer_names

_TABLE_KEYS = ("grad_raw", "grad_effective", "var_ratio", "sigma")


def fmt(value: float | None) -> str:
    """A number for a table: 4 significant digits, ``nan``/``inf``, ``-`` for none."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"


def _step_range(records: Sequence[ProbeRecord] | Sequence[MetricsRow]) -> str:
    steps = [r.step for r in records]
    if not steps:
        return "none"
    text = f"{len(steps)} records, generator steps {steps[0]} to {steps[-1]}"
    gaps = {b - a for a, b in zip(steps, steps[1:])}
    if len(gaps) == 1:
        text += f" (every {gaps.pop()})"
    return text


def _layer_table(record: ProbeRecord) -> list[str]:
    layers = record.layers
    extra = [k for k in ("sigma1", "sigma2") if any(v.value(k) is not None for v in layers.values())]
    keys = [*_TABLE_KEYS, *extra]
    lines = ["| # | layer | kind | " + " | ".join(keys) + " |", "|---|---|---|" + "---|" * len(keys)]
    for i, (name, layer) in enumerate(layers.items()):
        lines.append(f"| {i} | {name} | {layer.kind or '-'} | " + " | ".join(fmt(layer.value(k)) for k in keys) + " |")
    return lines


def _header(run: RunRecords) -> list[str]:
    lines = [f"# Analysis of {run_name(run)}", "", f"- run folder: {run.path}"]
    if run.status is not None:
        lines.append(f"- status: {run.status.status} at generator step {run.status.step}"
                     + (f" ({run.status.reason})" if run.status.reason else ""))
    if run.config:
        info = describe_run(run.config)
        lines.append(f"- method: {info.method}; function normalization: {info.function}")
        lines.append(f"- network: {info.network}; dataset: {info.dataset}"
                     + (f"; loss: {info.loss}" if info.loss is not None else ""))
    else:
        lines.append("- no config.yaml: method, network and dataset unknown")
    lines.append(f"- diagnostics probes: {_step_range(run.diagnostics)}")
    lines.append(f"- training-log rows (metrics.jsonl): {_step_range(run.metrics)}")
    for name, n in run.skipped.items():
        lines.append(f"- {name}: skipped {n} unreadable line{'s' if n != 1 else ''} (e.g. a truncated last line)")
    return lines + [""]


def _probes(run: RunRecords) -> list[str]:
    diag = run.diagnostics
    if not diag:
        if (Path(run.path) / DIAGNOSTICS).is_file():
            return [f"{DIAGNOSTICS} has no complete record yet (the first probe is written at "
                    "diagnostics.every steps).", ""]
        return [f"No {DIAGNOSTICS}: {NO_DIAGNOSTICS_HINT}.", ""]
    first, last = diag[0], diag[-1]
    probes = [("first", first)] if first is last else [("first", first), ("last", last)]
    lines: list[str] = []
    for which, rec in probes:
        lines += [f"## Layers at the {which} probe (generator step {rec.step})", "", *_layer_table(rec), ""]
    lines += ["## Gradient norm, first layer / last layer", "",
              "| probe | generator step | layers | grad_raw ratio | grad_effective ratio |", "|---|---|---|---|---|"]
    for which, rec in probes:
        raw, eff = gradient_ratio(rec, "grad_raw"), gradient_ratio(rec, "grad_effective")
        pair = f"{raw.first} / {raw.last}" if raw else "-"
        lines.append(f"| {which} | {rec.step} | {pair} | {fmt(raw.ratio if raw else None)} | "
                     f"{fmt(eff.ratio if eff else None)} |")
    note = f" ({last.lipschitz_upper_note})" if last.lipschitz_upper is None and last.lipschitz_upper_note else ""
    return lines + ["", f"## Lipschitz bounds at the last probe (generator step {last.step})", "",
                    f"- upper bound (product of layer norms): {fmt(last.lipschitz_upper)}{note}",
                    f"- lower bound (largest input-gradient norm): {fmt(last.lipschitz_lower)}", ""]


def _drift_row(name: str, first: ProbeRecord, last: ProbeRecord) -> str:
    a, b = first.layers.get(name), last.layers.get(name)
    d0, d1 = (None if e is None else e.drift for e in (a, b))
    change = d1 - d0 if d0 is not None and d1 is not None else None
    cells = [d0, d1, change] + [None if e is None else e.value(k) for k in ("act_mean", "act_std")
                                for e in (a, b)] + [None if e is None else e.grad_sparsity for e in (a, b)]
    return f"| {name} | " + " | ".join(fmt(v) for v in cells) + " |"


def _mean_drift(run: RunRecords) -> list[str]:
    """Each layer's mean drift (act_mean / act_std) and gradient sparsity at the first and last probe."""
    diag = run.diagnostics
    if not diag:
        return []
    lines = ["## Mean drift and gradient sparsity (first probe -> last probe)", ""]
    if not any(e.act_mean is not None or e.grad_sparsity is not None for r in diag for e in r.layers.values()):
        return lines + ["not recorded (diagnostics written before gannorm measured them)", ""]
    first, last = diag[0], diag[-1]
    lines += [f"Drift = act_mean / act_std: the mean |channel mean| of the layer's output over its within-channel "
              f"standard deviation; sparsity: fraction of the raw-weight gradient's entries with "
              f"|g| <= {SPARSITY_TAU:g} RMS(g). First probe: step {first.step}; last: step {last.step}.", "",
              "| layer | drift first | drift last | change | act_mean first | act_mean last | act_std first | "
              "act_std last | grad sparsity first | grad sparsity last |", "|---|---|---|---|---|---|---|---|---|---|"]
    lines += [_drift_row(name, first, last) for name in layer_names(diag)]
    return lines + [""]


def _health(run: RunRecords) -> list[str]:
    lines = [f"## Health warnings ({len(run.health)})", ""]
    for w in run.health:
        where = f" on {w.layer}" if w.layer else ""
        detail = ", ".join(f"{k} {fmt(v)}" for k, v in (("value", w.value), ("threshold", w.threshold)))
        lines.append(f"- step {w.step}: {w.rule}{where} ({detail})" + (f": {w.message}" if w.message else ""))
    if not run.health:
        lines.append("none" if (Path(run.path) / HEALTH).is_file() or run.diagnostics else "none recorded")
    return lines + [""]


def _scores(run: RunRecords) -> list[str]:
    scores = last_eval(run.metrics)
    lines = ["## Last evaluation (metrics.jsonl)", ""]
    if scores:
        lines += ["| metric | generator step | value |", "|---|---|---|"]
        lines += [f"| {k[5:]} | {s} | {fmt(v)} |" for k, (s, v) in scores.items()]
    else:
        lines.append("no eval/ entries")
    return lines + [""]


def summarize(run: RunRecords, figures: Sequence[str | os.PathLike] = ()) -> str:
    """The run's analysis as Markdown: what was run, per-layer tables at the first and last probe,
    the first/last-layer gradient ratio, the Lipschitz bounds, each layer's mean drift and gradient
    sparsity from the first to the last probe, health warnings and the last evaluation."""
    lines = [*_header(run), *_probes(run), *_mean_drift(run), *_health(run), *_scores(run)]
    if figures:
        lines += ["## Figures", "", *[f"- {Path(f).name}" for f in figures], ""]
    return "\n".join(lines)
