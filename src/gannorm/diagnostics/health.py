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

Each rule fires at most once per layer (the first step it holds), is printed once, and is kept in
``health.jsonl`` by :class:`HealthMonitor`.
"""
from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO


@dataclass(frozen=True)
class HealthRules:
    explode_growth: float = 1e3
    explode_abs: float = 1e3
    vanish_ratio: float = 1e-3
    saturate_gap: float = 30.0


@dataclass(frozen=True)
class Warning_:
    step: int
    rule: str
    layer: str | None
    value: float
    threshold: float
    message: str

    def to_json(self) -> dict:
        d = asdict(self)
        d["value"] = d["value"] if math.isfinite(d["value"]) else str(d["value"])
        return d


def check(record: dict, rules: HealthRules, baseline: dict[str, float] | None = None) -> list[Warning_]:
    """All rule violations in one record (``baseline``: each layer's recent median raw-gradient norm)."""
    step = int(record.get("step", 0))
    layers = record.get("layers", {})
    out: list[Warning_] = []
    for name, entry in layers.items():
        for key in ("grad_raw", "grad_effective"):
            v = entry.get(key)
            if isinstance(v, (int, float)) and not math.isfinite(v):
                out.append(Warning_(step, "non_finite", name, float(v), math.inf,
                                    f"step {step}: layer {name}: the loss gradient w.r.t. its weight is {v}"))
                break
        g = entry.get("grad_raw")
        if g is None or not math.isfinite(g):
            continue
        if g > rules.explode_abs:
            out.append(Warning_(step, "exploding_gradient", name, g, rules.explode_abs,
                                f"step {step}: exploding gradient in layer {name}: ||dL/dW||_F = {g:.3g} > "
                                f"{rules.explode_abs:.3g} (diagnostics.explode_abs)"))
        elif baseline and baseline.get(name) and g > rules.explode_growth * baseline[name]:
            b = baseline[name]
            out.append(Warning_(step, "exploding_gradient", name, g / b, rules.explode_growth,
                                f"step {step}: exploding gradient in layer {name}: ||dL/dW||_F = {g:.3g}, "
                                f"{g / b:.3g}x the median of its previous probes ({b:.3g}; threshold "
                                f"{rules.explode_growth:.3g}x, diagnostics.explode_growth)"))
    names = list(layers)
    if len(names) >= 2:
        g0, gl = layers[names[0]].get("grad_effective"), layers[names[-1]].get("grad_effective")
        if g0 is not None and gl and math.isfinite(g0) and math.isfinite(gl) and g0 < rules.vanish_ratio * gl:
            ratio = g0 / gl
            out.append(Warning_(step, "vanishing_gradient", names[0], ratio, rules.vanish_ratio,
                                f"step {step}: vanishing gradient: the first layer {names[0]} gets "
                                f"{ratio:.3g}x the gradient of the last layer {names[-1]} (||dL/dW_eff||_F "
                                f"{g0:.3g} vs {gl:.3g}; threshold {rules.vanish_ratio:.3g}, "
                                "diagnostics.vanish_ratio)"))
    d_real, d_fake = record.get("d_real"), record.get("d_fake")
    if isinstance(d_real, (int, float)) and isinstance(d_fake, (int, float)):
        gap = d_real - d_fake
        if gap > rules.saturate_gap:
            out.append(Warning_(step, "saturated_outputs", None, gap, rules.saturate_gap,
                                f"step {step}: saturated discriminator: mean D(real) - mean D(fake) = {gap:.3g} "
                                f"logits > {rules.saturate_gap:.3g} (diagnostics.saturate_gap); sigmoid losses "
                                "pass almost no gradient"))
    return out


class HealthMonitor:
    """Applies :func:`check` to successive records; prints and records each (rule, layer) once."""

    def __init__(self, rules: HealthRules | None = None, path: Path | None = None,
                 stream: TextIO | None = sys.stderr) -> None:
        self.rules = rules or HealthRules()
        self.path = path
        self.stream = stream
        self.history: dict[str, list[float]] = {}  # per layer, raw-gradient norms after step 0
        self.fired: set[tuple[str, str | None]] = set()
        if path is not None and path.exists():  # a resumed run: do not repeat its warnings
            for line in path.read_text().splitlines():
                try:
                    w = json.loads(line)
                except json.JSONDecodeError:
                    continue
                self.fired.add((w.get("rule"), w.get("layer")))

    WINDOW = 5

    def prime(self, records: list[dict]) -> None:
        """Take the layers' recent gradient norms from earlier records (a resumed run)."""
        for record in records:
            self._remember(record)

    def _remember(self, record: dict) -> None:
        if int(record.get("step", 0)) == 0:
            return
        for name, entry in record.get("layers", {}).items():
            g = entry.get("grad_raw")
            if isinstance(g, (int, float)) and math.isfinite(g) and g > 0:
                self.history.setdefault(name, []).append(g)
                del self.history[name][:-self.WINDOW]

    def baseline(self) -> dict[str, float]:
        return {name: statistics.median(values) for name, values in self.history.items() if values}

    def __call__(self, record: dict) -> list[Warning_]:
        new = [w for w in check(record, self.rules, self.baseline()) if (w.rule, w.layer) not in self.fired]
        self._remember(record)
        for w in new:
            self.fired.add((w.rule, w.layer))
            if self.stream is not None:
                print(f"gannorm health warning: {w.message}", file=self.stream)
            if self.path is not None:
                with self.path.open("a") as fh:
                    fh.write(json.dumps(w.to_json()) + "\n")
        return new
