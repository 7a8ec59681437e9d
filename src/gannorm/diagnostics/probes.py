"""Probes of a discriminator's weights and gradients (the quantities of the BSSN paper's analysis).

:func:`probe` returns one ``diagnostics.jsonl`` record (see :mod:`gannorm.diagnostics`) for a
discriminator, a loss and a batch of real and fake samples. It leaves no trace on the model: the
gradients are taken with ``torch.autograd.grad`` (no ``.grad`` is written), the buffers (power-iteration
vectors, running means) are restored afterwards, and the training flag is kept, so the probe sees the
loss exactly as the training step does.

The per-layer quantities are pure functions of tensors (:func:`weight_statistics`,
:func:`reference_ratios`, :func:`summarize`) and are tested against direct computations.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..init import fans, raw_weight
from ..normalizations.base import TRANSPOSED_CONVS
from ..normalizations.model import NORMALIZABLE, recording_input_shapes, sigmas
from ..penalties import input_gradient_norms, interpolates

SIGMA_KEYS = ("sigma", "sigma1", "sigma2")


def layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every Conv / ConvTranspose / Linear layer, in registration order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, NORMALIZABLE)]


def matrix_view(weight: Tensor, transposed: bool = False) -> Tensor:
    """The weight as the ``[out, in * k]`` matrix SN normalizes (dim 1 of a ConvTranspose is its output)."""
    if transposed:
        weight = weight.transpose(0, 1)
    return weight.reshape(weight.shape[0], -1)


def weight_statistics(raw: Tensor, effective: Tensor, fan_in: int, transposed: bool = False) -> dict[str, float]:
    """``raw_spectral`` (||W||_2 of the reshaped raw weight), ``raw_frobenius`` and ``var_ratio``.

    ``var_ratio = fan_in * Var(W_eff)`` (population variance over all entries): 1 for a LeCun
    initialisation in expectation, the quantity SN keeps near 1 during training (the paper's argument).
    """
    raw = raw.detach().double()
    eff = effective.detach().double()
    return {"raw_spectral": float(torch.linalg.matrix_norm(matrix_view(raw, transposed), ord=2)),
            "raw_frobenius": float(torch.linalg.vector_norm(raw)),
            "var_ratio": float(fan_in * eff.var(unbiased=False))}


def reference_ratios(fan_in: int, fan_out: int, slope: float = 0.0) -> dict[str, float]:
    """``fan_in * Var(W)`` under Xavier (``2 fan_in / (fan_in + fan_out)``) and Kaiming
    (``2 / (1 + slope^2)``, the leaky-ReLU gain squared) initialisation; LeCun is 1 by definition."""
    return {"ref_xavier": 2.0 * fan_in / (fan_in + fan_out), "ref_kaiming": 2.0 / (1.0 + slope ** 2)}


def summarize(values: Tensor) -> dict[str, float]:
    """``{"mean", "min", "max"}`` of a 1-D tensor."""
    v = values.detach().double()
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())}


def activation_slope(model: nn.Module) -> float:
    """The negative slope of the model's first ``nn.LeakyReLU`` (0 -- ReLU -- if it has none)."""
    for m in model.modules():
        if isinstance(m, nn.LeakyReLU):
            return float(m.negative_slope)
    return 0.0


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Run a block on ``model`` and put its buffers and training flags back afterwards."""
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    flags = {m: m.training for m in model.modules()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                if k in buffers:
                    v.copy_(buffers[k])
        for m, flag in flags.items():
            m.training = flag


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def probe(D: nn.Module, loss_d: Callable[[Tensor, Tensor], Tensor], real: Tensor, fake: Tensor, *,
          strict: bool = False, bounds: bool = True, slope: float | None = None,
          generator: torch.Generator | None = None) -> dict:
    """One diagnostics record (without ``"step"``) for ``D`` on ``real`` and ``fake`` batches.

    ``loss_d(d_real, d_fake)`` is the discriminator loss (e.g. ``gannorm.losses.LOSSES.get("hinge").d``):
    its gradient w.r.t. each layer's raw (trainable) and effective (normalized) weight is reported.
    ``strict=True`` adds each conv's operator norm for its input shape (``strict_sigma``);
    ``bounds=True`` adds the Lipschitz upper bound (``lipschitz_upper``, null where no valid bound is
    known). ``slope`` is the leaky-ReLU slope for the Kaiming reference (default: read off D).
    """
    named = layers(D)
    if not named:
        raise ValueError("the discriminator has no Conv/Linear layers to probe")
    slope = activation_slope(D) if slope is None else slope
    fake = fake.detach()
    with preserved_state(D):
        with recording_input_shapes(named) as input_shapes, parametrize.cached():
            effective = [m.weight for _, m in named]  # the tensors the forward below uses
            raws = [raw_weight(m) for _, m in named]
            d_real, d_fake = D(real), D(fake)
            loss = loss_d(d_real.float(), d_fake.float())
            wanted = [t for t in effective + raws if t.requires_grad]
            grads = dict(zip(map(id, wanted), torch.autograd.grad(loss, wanted, allow_unused=True)))
        estimates = sigmas(D)
        record_layers: dict[str, dict] = {}
        for (name, m), eff, raw in zip(named, effective, raws):
            fan_in, fan_out = fans(m)
            entry: dict = {"kind": type(m).__name__.removeprefix("Parametrized"), "fan_in": fan_in,
                           "fan_out": fan_out}
            for k in SIGMA_KEYS:
                entry[k] = estimates.get(f"{name}/{k}")
            entry["strict_sigma"] = None
            if strict and name in input_shapes:
                from .lipschitz import operator_norm
                entry["strict_sigma"] = operator_norm(m, input_shapes[name])
            entry.update(weight_statistics(raw, eff, fan_in, isinstance(m, TRANSPOSED_CONVS)))
            for key, t in (("grad_raw", raw), ("grad_effective", eff)):
                g = grads.get(id(t))
                entry[key] = None if g is None else _finite(float(torch.linalg.vector_norm(g.double())))
            entry.update(reference_ratios(fan_in, fan_out, slope))
            record_layers[name] = entry
        norms = {"real": input_gradient_norms(D, real, create_graph=False),
                 "fake": input_gradient_norms(D, fake, create_graph=False)}
        n = min(len(real), len(fake))
        if real.shape[1:] == fake.shape[1:]:
            norms["interpolated"] = input_gradient_norms(
                D, interpolates(real[:n], fake[:n], generator), create_graph=False)
        upper, note = None, "not computed (diagnostics.bounds=false)"
        if bounds:
            from .lipschitz import lipschitz_upper_bound
            upper, note = lipschitz_upper_bound(D, tuple(real.shape[1:]), with_reason=True)
    return {"layers": record_layers,
            "input_grad": {k: summarize(v) for k, v in norms.items()},
            "d_real": float(d_real.detach().double().mean()), "d_fake": float(d_fake.detach().double().mean()),
            "loss_d": _finite(float(loss.detach())),
            "lipschitz_upper": None if upper is None else _finite(float(upper)),
            **({} if upper is not None else {"lipschitz_upper_note": note}),
            "lipschitz_lower": max(float(v.max()) for v in norms.values())}


def flat_scalars(record: dict, layers_: Sequence[str] | None = None) -> dict[str, float]:
    """A record flattened to ``"diag/<layer>/<key>"`` scalars (for TensorBoard), nulls dropped; the
    bounds are in :func:`headline_scalars`."""
    out: dict[str, float] = {}
    for name, entry in record.get("layers", {}).items():
        if layers_ is not None and name not in layers_:
            continue
        for k, v in entry.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("fan_in", "fan_out") \
                    and not k.startswith("ref_"):
                out[f"diag/{name}/{k}"] = float(v)
    for kind, stats in record.get("input_grad", {}).items():
        for k, v in stats.items():
            out[f"diag/input_grad_{kind}/{k}"] = float(v)
    for k in ("d_real", "d_fake"):
        if isinstance(record.get(k), (int, float)):
            out[f"diag/{k}"] = float(record[k])
    return out


def headline_scalars(record: dict) -> dict[str, float]:
    """A few whole-model numbers of a record for the run's ``metrics.jsonl`` (the rest stays in
    ``diagnostics.jsonl``): bounds, mean input-gradient norms, first/last-layer gradient ratio and the
    range of the variance ratios."""
    out: dict[str, float] = {}
    for k in ("lipschitz_upper", "lipschitz_lower"):
        if isinstance(record.get(k), (int, float)):
            out[f"diag/{k}"] = float(record[k])
    for kind, stats in record.get("input_grad", {}).items():
        out[f"diag/input_grad_{kind}_mean"] = float(stats["mean"])
    layers = list(record.get("layers", {}).values())
    if len(layers) >= 2:
        first, last = layers[0].get("grad_effective"), layers[-1].get("grad_effective")
        if first is not None and last:
            out["diag/grad_first_over_last"] = first / last
    ratios = [e["var_ratio"] for e in layers if isinstance(e.get("var_ratio"), (int, float))]
    if ratios:
        out["diag/var_ratio_min"], out["diag/var_ratio_max"] = min(ratios), max(ratios)
    return out
