"""Typed diagnostics records: what :func:`gannorm.diagnostics.probe` returns and ``diagnostics.jsonl`` holds.

A :class:`ProbeRecord` is one probe of a discriminator: a :class:`LayerProbe` per Conv/Linear layer
(in forward order), :class:`GradStats` of the per-sample input-gradient norms for real, fake and
interpolated inputs, D's mean outputs and loss, and the Lipschitz bounds. In memory a value may be
NaN or Inf (a diverged run's gradient norm, which the health rules look for); ``to_json`` writes every
non-finite float as ``null``, the format of ``diagnostics.jsonl`` (see :mod:`gannorm.diagnostics`).

``from_json`` reads what any version of gannorm wrote: missing keys and nulls become ``None``, unknown
keys are ignored, numbers written as strings (``"nan"``, ``"inf"``) are read as floats. Only a record
without an integer ``step`` is refused (``ValueError``), so that a reader can skip and count it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Mapping


def number(value: Any) -> float | None:
    """A float from a JSON value: numbers and numeric strings (``"nan"``, ``"inf"``); None otherwise."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def finite_or_none(value: float | None) -> float | None:
    """``value`` if it is a finite number, else None (how JSON records store NaN and Inf)."""
    return value if value is not None and math.isfinite(value) else None


def json_step(d: Any, what: str) -> int:
    """The integer ``step`` of a JSON record; ``ValueError`` if ``d`` is not a dict with one."""
    step = d.get("step") if isinstance(d, Mapping) else None
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) \
            or step != int(step):
        raise ValueError(f"not a {what} record: it needs an integer 'step', got {step!r}")
    return int(step)


def _integer(value: Any) -> int | None:
    v = number(value)
    return int(v) if v is not None and math.isfinite(v) else None


@dataclass(frozen=True)
class LayerProbe:
    """One Conv/Linear layer of D at one probe (JSON keys = field names, in this order).

    ``sigma``/``sigma1``/``sigma2``: the normalization's estimates (None without one; BSN has two);
    ``strict_sigma``: the operator norm of W_eff on the layer's input shape (None unless requested);
    ``raw_spectral``/``raw_frobenius``: ``||W||_2``/``||W||_F`` of the trainable weight;
    ``var_ratio``: ``fan_in * Var(W_eff)`` (LeCun = 1); ``grad_raw``/``grad_effective``: ``||dL/dW||_F``
    w.r.t. the raw and the effective weight; ``ref_xavier``/``ref_kaiming``: the variance ratio that
    Xavier and Kaiming initialisation give this layer.

    Added later (:data:`OPTIONAL_QUANTITIES`: written only when measured, so older lines round-trip
    unchanged): ``act_mean``, the mean over output channels of ``|mu_c|``, ``mu_c`` the channel's mean
    over the probe batch (real and fake outputs pooled; all positions) of the layer's output after its
    own forward hooks (MSN's mean-only batch norm); ``act_std``, the root mean over channels of the
    within-channel variance of the same output; ``grad_sparsity``, the fraction of the raw-weight
    gradient's entries with ``|g| <= tau * RMS(g)`` (see :mod:`gannorm.diagnostics.probes`).
    :attr:`drift` is ``act_mean / act_std``.
    """

    kind: str | None = None
    fan_in: int | None = None
    fan_out: int | None = None
    sigma: float | None = None
    sigma1: float | None = None
    sigma2: float | None = None
    strict_sigma: float | None = None
    raw_spectral: float | None = None
    raw_frobenius: float | None = None
    var_ratio: float | None = None
    grad_raw: float | None = None
    grad_effective: float | None = None
    ref_xavier: float | None = None
    ref_kaiming: float | None = None
    act_mean: float | None = None
    act_std: float | None = None
    grad_sparsity: float | None = None

    @property
    def drift(self) -> float | None:
        """``act_mean / act_std``: how far the channel means sit from zero, in within-channel standard
        deviations (None when either is missing; NaN when not finite or ``act_std`` is 0)."""
        if self.act_mean is None or self.act_std is None:
            return None
        if not (math.isfinite(self.act_mean) and math.isfinite(self.act_std)) or self.act_std == 0:
            return math.nan
        return self.act_mean / self.act_std

    def value(self, key: str) -> float | None:
        """The float quantity ``key`` (``grad_raw``, ``sigma1``, ..., or the derived ``drift``);
        ``ValueError`` for a non-float key."""
        if key == "drift":
            return self.drift
        if key not in QUANTITIES:
            raise ValueError(f"unknown per-layer quantity {key!r}; known: {', '.join(QUANTITIES)}, drift")
        return getattr(self, key)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "fan_in": self.fan_in, "fan_out": self.fan_out}
        out.update({k: finite_or_none(getattr(self, k)) for k in QUANTITIES
                    if k not in OPTIONAL_QUANTITIES or getattr(self, k) is not None})
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> LayerProbe:
        kind = d.get("kind")
        return cls(kind=None if kind is None else str(kind), fan_in=_integer(d.get("fan_in")),
                   fan_out=_integer(d.get("fan_out")), **{k: number(d.get(k)) for k in QUANTITIES})


#: the float quantities of a :class:`LayerProbe`, in JSON order
QUANTITIES: tuple[str, ...] = tuple(f.name for f in fields(LayerProbe) if f.name not in ("kind", "fan_in", "fan_out"))

#: quantities added after the first format: a record writes them only when it has them (older lines,
#: read and written back, stay byte for byte the same)
OPTIONAL_QUANTITIES: tuple[str, ...] = ("act_mean", "act_std", "grad_sparsity")


@dataclass(frozen=True)
class GradStats:
    """Mean, min and max of the per-sample input-gradient norms ``||grad_x D(x)||_2`` of one batch."""

    mean: float | None = None
    min: float | None = None
    max: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"mean": finite_or_none(self.mean), "min": finite_or_none(self.min), "max": finite_or_none(self.max)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> GradStats:
        return cls(number(d.get("mean")), number(d.get("min")), number(d.get("max")))


@dataclass(frozen=True)
class ProbeRecord:
    """One probe of D at generator step ``step`` (one line of ``diagnostics.jsonl``).

    ``layers``: D's Conv/Linear layers by module name, in forward order; ``input_grad``: ``real``,
    ``fake`` and (when the shapes match) ``interpolated``; ``d_real``/``d_fake``: mean raw D outputs;
    ``loss_d``: the D loss on the probe batch; ``lipschitz_upper``: the compositional upper bound (None
    when no valid bound is known, ``lipschitz_upper_note`` then says why); ``lipschitz_lower``: the
    largest input-gradient norm seen.
    """

    step: int
    layers: dict[str, LayerProbe] = field(default_factory=dict)
    input_grad: dict[str, GradStats] = field(default_factory=dict)
    d_real: float | None = None
    d_fake: float | None = None
    loss_d: float | None = None
    lipschitz_upper: float | None = None
    lipschitz_upper_note: str | None = None
    lipschitz_lower: float | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.step, "layers": {k: v.to_json() for k, v in self.layers.items()},
            "input_grad": {k: v.to_json() for k, v in self.input_grad.items()},
            "d_real": finite_or_none(self.d_real), "d_fake": finite_or_none(self.d_fake),
            "loss_d": finite_or_none(self.loss_d), "lipschitz_upper": finite_or_none(self.lipschitz_upper)}
        if self.lipschitz_upper_note is not None:
            out["lipschitz_upper_note"] = self.lipschitz_upper_note
        out["lipschitz_lower"] = finite_or_none(self.lipschitz_lower)
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ProbeRecord:
        step = json_step(d, "diagnostics")
        note = d.get("lipschitz_upper_note")
        return cls(
            step=step,
            layers={str(k): LayerProbe.from_json(v) for k, v in _entries(d.get("layers"))},
            input_grad={str(k): GradStats.from_json(v) for k, v in _entries(d.get("input_grad"))},
            d_real=number(d.get("d_real")), d_fake=number(d.get("d_fake")), loss_d=number(d.get("loss_d")),
            lipschitz_upper=number(d.get("lipschitz_upper")),
            lipschitz_upper_note=None if note is None else str(note),
            lipschitz_lower=number(d.get("lipschitz_lower")))


def _entries(value: Any) -> list[tuple[Any, Mapping[str, Any]]]:
    """The ``(key, dict)`` items of a JSON object (nothing if it is not one; non-dict values skipped)."""
    if not isinstance(value, Mapping):
        return []
    return [(k, v) for k, v in value.items() if isinstance(v, Mapping)]
