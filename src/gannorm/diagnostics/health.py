"""Health warnings: rules over diagnostics records that flag exploding and vanishing gradients.

The rules (thresholds in :class:`HealthRules`, set from the ``diagnostics`` config section):

``non_finite``          a layer's gradient norm is NaN or Inf.
``exploding_gradient``  a layer's raw-weight gradient norm ``||dL/dW||_F`` is above ``explode_abs`` (default
                        1e3), or is ``explode_growth`` (default 1e3: three orders of magnitude) times the
                        median of that layer's previous five probes after initialisation. (Not against the
                        value at initialisation: from a small-output init, such as normal(0, 0.02), healthy
                        gradients grew 2.7e4-1.3e6x in the first 25 steps; and healthy probes 25 steps apart
                        differ by up to ~50x, in the runs of ``gannorm experiment gradients``.)
``vanishing_gradient``  the first layer's effective-weight gradient norm is below ``vanish_ratio``
                        (default 1e-3) times the last layer's: the signal that reaches the first layers
                        is orders of magnitude weaker than at the output (what the paper shows for strict
                        SN). Effective weights, so the ratio does not depend on the normalization's scale.
``saturated_outputs``   ``mean D(real) - mean D(fake)`` above ``saturate_gap`` (default 30 logits): a
                        sigmoid-based loss (NS, BCE) then passes gradients of about ``exp(-gap)``.

There is no rule for mean drift (``act_mean / act_std``, see :mod:`gannorm.diagnostics.probes`): healthy
runs of ``gannorm experiment mean_drift`` start at 0.2-0.7 (inputs after a LeakyReLU have positive means)
and have transient one-probe spikes (hidden layers to 2-4, the output layer to 8-40) that settle again; an
unnormalized D from the official small init, whose learned biases outweigh its tiny activations, reads
10-18 at step 4 and about 1 at step 300. No run we have seen failed with a drift that a bound would have
separated from those.

Each rule fires at most once per layer (the first step it holds): :class:`HealthMonitor` returns each
warning once, and the training engine prints it and keeps it in the run's ``health.jsonl``.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .records import LayerProbe, ProbeRecord, json_step, number


@dataclass(frozen=True)
class HealthRules:
    explode_growth: float = 1e3
    explode_abs: float = 1e3
    vanish_ratio: float = 1e-3
    saturate_gap: float = 30.0


@dataclass(frozen=True)
class HealthWarning:
    """One rule that fired: at ``step``, on ``layer`` (None for whole-model rules), with ``value`` against
    ``threshold``; ``message`` is the one line printed. One line of ``health.jsonl``."""

    step: int
    rule: str
    layer: str | None
    value: float
    threshold: float
    message: str

    def to_json(self) -> dict[str, Any]:
        """The JSON object (a non-finite value or threshold is written as a string, ``"inf"``/``"nan"``)."""
        return {"step": self.step, "rule": self.rule, "layer": self.layer, "value": _json_float(self.value),
                "threshold": _json_float(self.threshold), "message": self.message}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> HealthWarning:
        """Read a ``health.jsonl`` line; missing fields become ``"?"``/None/NaN/``""``; ``ValueError``
        without an integer ``step``."""
        step = json_step(d, "health")
        value, threshold, layer = number(d.get("value")), number(d.get("threshold")), d.get("layer")
        return cls(step, str(d.get("rule", "?")), None if layer is None else str(layer),
                   math.nan if value is None else value, math.nan if threshold is None else threshold,
                   str(d.get("message") or ""))


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


def _non_finite(step: int, name: str, entry: LayerProbe) -> HealthWarning | None:
    for v in (entry.grad_raw, entry.grad_effective):
        if v is not None and not math.isfinite(v):
            return HealthWarning(step, "non_finite", name, v, math.inf,
                                 f"step {step}: layer {name}: the loss gradient w.r.t. its weight is {v}")
    return None


def _exploding(step: int, name: str, g: float | None, rules: HealthRules, baseline: float | None
               ) -> HealthWarning | None:
    if g is None or not math.isfinite(g):
        return None
    if g > rules.explode_abs:
        return HealthWarning(step, "exploding_gradient", name, g, rules.explode_abs,
                             f"step {step}: exploding gradient in layer {name}: ||dL/dW||_F = {g:.3g} > "
                             f"{rules.explode_abs:.3g} (diagnostics.explode_abs)")
    if baseline and g > rules.explode_growth * baseline:
        return HealthWarning(step, "exploding_gradient", name, g / baseline, rules.explode_growth,
                             f"step {step}: exploding gradient in layer {name}: ||dL/dW||_F = {g:.3g}, "
                             f"{g / baseline:.3g}x the median of its previous probes ({baseline:.3g}; threshold "
                             f"{rules.explode_growth:.3g}x, diagnostics.explode_growth)")
    return None


def _vanishing(record: ProbeRecord, rules: HealthRules) -> HealthWarning | None:
    names = list(record.layers)
    if len(names) < 2:
        return None
    step, first, last = record.step, names[0], names[-1]
    g0, gl = record.layers[first].grad_effective, record.layers[last].grad_effective
    if g0 is None or not gl or not math.isfinite(g0) or not math.isfinite(gl) or not g0 < rules.vanish_ratio * gl:
        return None
    ratio = g0 / gl
    return HealthWarning(step, "vanishing_gradient", first, ratio, rules.vanish_ratio,
                         f"step {step}: vanishing gradient: the first layer {first} gets {ratio:.3g}x the "
                         f"gradient of the last layer {last} (||dL/dW_eff||_F {g0:.3g} vs {gl:.3g}; threshold "
                         f"{rules.vanish_ratio:.3g}, diagnostics.vanish_ratio)")


def _saturated(record: ProbeRecord, rules: HealthRules) -> HealthWarning | None:
    if record.d_real is None or record.d_fake is None:
        return None
    gap, step = record.d_real - record.d_fake, record.step
    if not gap > rules.saturate_gap:
        return None
    return HealthWarning(step, "saturated_outputs", None, gap, rules.saturate_gap,
                         f"step {step}: saturated discriminator: mean D(real) - mean D(fake) = {gap:.3g} logits > "
                         f"{rules.saturate_gap:.3g} (diagnostics.saturate_gap); sigmoid losses pass almost no "
                         "gradient")


def check(record: ProbeRecord, rules: HealthRules, baseline: Mapping[str, float] | None = None
          ) -> list[HealthWarning]:
    """All rule violations in one record (``baseline``: each layer's recent median raw-gradient norm)."""
    baseline = baseline or {}
    out: list[HealthWarning | None] = []
    for name, entry in record.layers.items():
        out.append(_non_finite(record.step, name, entry))
        out.append(_exploding(record.step, name, entry.grad_raw, rules, baseline.get(name)))
    out += [_vanishing(record, rules), _saturated(record, rules)]
    return [w for w in out if w is not None]


class HealthMonitor:
    """Applies :func:`check` to successive records and returns each (rule, layer) the first time it fires.

    It keeps each layer's last :attr:`WINDOW` raw-gradient norms after step 0 (the growth rule's
    baseline). It reads and writes no file and prints nothing: a resumed run hands it its earlier
    records and warnings through :meth:`prime`.
    """

    WINDOW = 5

    def __init__(self, rules: HealthRules | None = None) -> None:
        self.rules = rules or HealthRules()
        self.history: dict[str, list[float]] = {}  # per layer, raw-gradient norms after step 0
        self.fired: set[tuple[str, str | None]] = set()

    def prime(self, records: Sequence[ProbeRecord], warnings: Sequence[HealthWarning] = ()) -> None:
        """Continue from a resumed run's earlier ``records`` (gradient history) and ``warnings`` (not repeated)."""
        for record in records:
            self._remember(record)
        self.fired.update((w.rule, w.layer) for w in warnings)

    def _remember(self, record: ProbeRecord) -> None:
        if record.step == 0:
            return
        for name, entry in record.layers.items():
            g = entry.grad_raw
            if g is not None and math.isfinite(g) and g > 0:
                self.history.setdefault(name, []).append(g)
                del self.history[name][:-self.WINDOW]

    def baseline(self) -> dict[str, float]:
        return {name: statistics.median(values) for name, values in self.history.items() if values}

    def __call__(self, record: ProbeRecord) -> list[HealthWarning]:
        """The warnings of ``record`` that have not fired before (each rule once per layer)."""
        new = [w for w in check(record, self.rules, self.baseline()) if (w.rule, w.layer) not in self.fired]
        self._remember(record)
        self.fired.update((w.rule, w.layer) for w in new)
        return new
