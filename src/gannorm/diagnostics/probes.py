"""Probes of a discriminator's weights and gradients (the quantities of the BSSN paper's analysis).

:func:`probe` returns one :class:`~gannorm.diagnostics.records.ProbeRecord` (a line of
``diagnostics.jsonl``, see :mod:`gannorm.diagnostics`) for a discriminator, a loss and a batch of real
and fake samples. It leaves no trace on the model: the gradients are taken with ``torch.autograd.grad``
(no ``.grad`` is written), the buffers (power-iteration vectors, running means) are restored
afterwards, and the training flag is kept, so the probe sees the loss exactly as the training step
does. Non-finite gradient norms are kept as NaN/Inf in the record (the health rules look for them) and
written as null.

The per-layer quantities are pure functions of tensors (:func:`weight_statistics`,
:func:`reference_ratios`, :func:`summarize`, :func:`activation_statistics`, :func:`gradient_sparsity`)
and are tested against direct computations.

Mean drift (``act_mean``, ``act_std``): forward hooks registered on each layer for the probe's
``D(real)``, ``D(fake)`` record the layer's output. They are registered after the layer's own hooks,
so they see what the layer passes on: for MSN that is the output of its mean-only batch norm (applied
by a forward hook on the layer). Channel ``c``'s mean ``mu_c`` and variance ``v_c`` are taken over the
real and fake outputs pooled (all samples and positions); ``act_mean = mean_c |mu_c|`` and
``act_std = sqrt(mean_c v_c)``. Gradient sparsity: the fraction of the raw-weight gradient's entries
with ``|g| <= SPARSITY_TAU * RMS(g)`` (scale-free; :data:`SPARSITY_TAU` = 1e-2, see docs/diagnostics.md).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence, TypeGuard, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..init import fans, raw_weight
from ..normalizations.base import TRANSPOSED_CONVS
from ..normalizations.model import NORMALIZABLE, recording_input_shapes, sigmas
from ..gradnorm import call_d
from ..penalties import input_gradient_norms, interpolates
from .lipschitz import explain_upper_bound, operator_norm
from .records import QUANTITIES, GradStats, LayerProbe, ProbeRecord

SIGMA_KEYS = ("sigma", "sigma1", "sigma2")

#: an entry of a weight gradient counts as (near) zero when ``|g| <= SPARSITY_TAU * RMS(g)``: 100x below
#: the typical entry, i.e. 1e-4 of the mean square; a dense Gaussian gradient has about 0.8% of its
#: entries there (``erf(0.01 / sqrt(2))``)
SPARSITY_TAU = 1e-2


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


def summarize(values: Tensor) -> GradStats:
    """Mean, min and max of a 1-D tensor."""
    v = values.detach().double()
    return GradStats(float(v.mean()), float(v.min()), float(v.max()))


@dataclass(frozen=True)
class ChannelMoments:
    """Per-channel count, mean and sum of squared deviations of some outputs (float64), combinable."""
    count: int
    mean: Tensor
    m2: Tensor

    def __add__(self, other: ChannelMoments) -> ChannelMoments:
        """The moments of both sets of outputs together (Chan et al.'s pairwise update)."""
        n = self.count + other.count
        delta = other.mean - self.mean
        return ChannelMoments(n, self.mean + delta * (other.count / n),
                              self.m2 + other.m2 + delta ** 2 * (self.count * other.count / n))


def channel_moments(output: Tensor, channel_dim: int) -> ChannelMoments:
    """The moments of each channel of ``output`` over every other dimension (samples, positions)."""
    x = output.detach().double().movedim(channel_dim, 0)
    x = x.reshape(x.shape[0], -1)
    mean = x.mean(dim=1)
    return ChannelMoments(x.shape[1], mean, ((x - mean[:, None]) ** 2).sum(dim=1))


def activation_statistics(moments: ChannelMoments) -> dict[str, float]:
    """``act_mean = mean_c |mu_c|`` and ``act_std = sqrt(mean_c Var_c)`` (population variances)."""
    var = moments.m2 / moments.count
    return {"act_mean": float(moments.mean.abs().mean()), "act_std": float(var.mean().sqrt())}


def gradient_sparsity(g: Tensor | None, tau: float = SPARSITY_TAU) -> float | None:
    """The fraction of ``g``'s entries with ``|g| <= tau * RMS(g)``; None for no gradient, NaN when it is
    not finite or all zero (no scale to compare with: a saturated hinge loss passes no gradient at all,
    which is not a sparse one)."""
    if g is None:
        return None
    a = g.detach().double().abs()
    rms = a.square().mean().sqrt()
    if not bool(torch.isfinite(a).all()) or rms == 0:
        return math.nan
    return float((a <= tau * rms).double().mean())


def _channel_dim(module: nn.Module) -> int:
    """Where a layer's output channels are: last for Linear, dim 1 for convolutions."""
    return -1 if isinstance(module, nn.Linear) else 1


@contextlib.contextmanager
def recording_outputs(named: Sequence[tuple[str, nn.Module]]) -> Iterator[dict[str, ChannelMoments]]:
    """Within the block, each call of a layer adds its output's :class:`ChannelMoments` to the dict.

    The hooks are appended to each layer's forward hooks, so they see the output after the layer's
    own hooks (MSN's mean-only batch norm); they are removed afterwards.
    """
    moments: dict[str, ChannelMoments] = {}

    def recorder(name: str, dim: int):
        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            new = channel_moments(output, dim)
            moments[name] = moments[name] + new if name in moments else new
        return hook

    handles = [m.register_forward_hook(recorder(name, _channel_dim(m))) for name, m in named]
    try:
        yield moments
    finally:
        for h in handles:
            h.remove()


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


def _norm(g: Tensor | None) -> float | None:
    """``||g||_F`` (NaN or Inf kept: the health rules look for them); None for no gradient."""
    return None if g is None else float(torch.linalg.vector_norm(g.double()))


def _layer_probe(name: str, m: nn.Module, eff: Tensor, raw: Tensor, grads: dict[int, Tensor | None],
                 estimates: dict[str, float], input_shape: tuple[int, ...] | None, slope: float,
                 moments: ChannelMoments | None) -> LayerProbe:
    fan_in, fan_out = fans(m)
    activations = activation_statistics(moments) if moments is not None else {}
    return LayerProbe(kind=type(m).__name__.removeprefix("Parametrized"), fan_in=fan_in, fan_out=fan_out,
                      **{k: estimates.get(f"{name}/{k}") for k in SIGMA_KEYS},
                      strict_sigma=None if input_shape is None else operator_norm(m, input_shape),
                      **weight_statistics(raw, eff, fan_in, isinstance(m, TRANSPOSED_CONVS)),
                      grad_raw=_norm(grads.get(id(raw))), grad_effective=_norm(grads.get(id(eff))),
                      **reference_ratios(fan_in, fan_out, slope), **activations,
                      grad_sparsity=gradient_sparsity(grads.get(id(raw))))


def _input_gradients(D: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None,
                     y_real: Tensor | None = None, y_fake: Tensor | None = None) -> dict[str, Tensor]:
    """Per-sample ``||grad_x D(x)||`` (at fixed labels for a conditional D) on the real, fake and (same shapes
    only) interpolated batches; the interpolates take the real labels."""
    norms = {"real": input_gradient_norms(D, real, create_graph=False, y=y_real),
             "fake": input_gradient_norms(D, fake, create_graph=False, y=y_fake)}
    if real.shape[1:] == fake.shape[1:]:
        n = min(len(real), len(fake))
        norms["interpolated"] = input_gradient_norms(D, interpolates(real[:n], fake[:n], generator),
                                                     create_graph=False, y=None if y_real is None else y_real[:n])
    return norms


def _upper_bound(D: nn.Module, input_shape: tuple[int, ...], bounds: bool) -> tuple[float | None, str | None]:
    """The Lipschitz upper bound, or None and the reason."""
    if not bounds:
        return None, "not computed (diagnostics.bounds=false)"
    report = explain_upper_bound(D, input_shape)
    return (report.value, None) if report.value is not None else (None, report.reason)


def probe(D: nn.Module, loss_d: Callable[[Tensor, Tensor], Tensor], real: Tensor, fake: Tensor, *,
          step: int = 0, strict: bool = False, bounds: bool = True, slope: float | None = None,
          generator: torch.Generator | None = None, y_real: Tensor | None = None,
          y_fake: Tensor | None = None) -> ProbeRecord:
    """The :class:`ProbeRecord` of ``D`` on ``real`` and ``fake`` batches at generator step ``step``.

    ``loss_d(d_real, d_fake)`` is the discriminator loss (e.g. ``gannorm.losses.LOSSES.get("hinge").d``):
    its gradient w.r.t. each layer's raw (trainable) and effective (normalized) weight is reported,
    with the raw gradient's sparsity; each layer's output channel means and spread on the two batches
    pooled give ``act_mean`` and ``act_std`` (mean drift).
    ``strict=True`` adds each conv's operator norm for its input shape (``strict_sigma``);
    ``bounds=True`` adds the Lipschitz upper bound (``lipschitz_upper``, None where no valid bound is
    known, with the reason in ``lipschitz_upper_note``). ``slope`` is the leaky-ReLU slope for the
    Kaiming reference (default: read off D). ``generator`` draws the interpolation weights. A class-conditional
    D is probed as ``D(real, y_real)`` and ``D(fake, y_fake)``, its input gradients at those fixed labels.
    """
    named = layers(D)
    if not named:
        raise ValueError("the discriminator has no Conv/Linear layers to probe")
    slope = activation_slope(D) if slope is None else slope
    fake = fake.detach()
    with preserved_state(D):
        with recording_input_shapes(named) as input_shapes, recording_outputs(named) as moments, \
                parametrize.cached():
            effective = [cast(Tensor, m.weight) for _, m in named]  # the tensors the forward below uses
            raws = [raw_weight(m) for _, m in named]
            d_real, d_fake = call_d(D, real, y_real), call_d(D, fake, y_fake)
            loss = loss_d(d_real.float(), d_fake.float())
            wanted = [t for t in effective + raws if t.requires_grad]
            grads: dict[int, Tensor | None] = dict(zip(map(id, wanted), torch.autograd.grad(loss, wanted,
                                                                                          allow_unused=True)))
        estimates = sigmas(D)
        record_layers = {name: _layer_probe(name, m, eff, raw, grads, estimates,
                                            input_shapes.get(name) if strict else None, slope, moments.get(name))
                         for (name, m), eff, raw in zip(named, effective, raws)}
        norms = _input_gradients(D, real, fake, generator, y_real, y_fake)
        upper, note = _upper_bound(D, tuple(real.shape[1:]), bounds and y_real is None)
        if y_real is not None and bounds:
            note = "not computed for a class-conditional D (its projection term depends on y)"
    return ProbeRecord(step=int(step), layers=record_layers, input_grad={k: summarize(v) for k, v in norms.items()},
                       d_real=float(d_real.detach().double().mean()), d_fake=float(d_fake.detach().double().mean()),
                       loss_d=float(loss.detach()), lipschitz_upper=upper, lipschitz_upper_note=note,
                       lipschitz_lower=max(float(v.max()) for v in norms.values()))


def _number(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def flat_scalars(record: ProbeRecord, layers_: Sequence[str] | None = None) -> dict[str, float]:
    """A record flattened to ``"diag/<layer>/<key>"`` scalars (for TensorBoard), nulls and non-finite
    values dropped; the bounds are in :func:`headline_scalars`."""
    out: dict[str, float] = {}
    for name, entry in record.layers.items():
        if layers_ is not None and name not in layers_:
            continue
        for k in (*QUANTITIES, "drift"):
            v = entry.value(k)
            if _number(v) and not k.startswith("ref_"):
                out[f"diag/{name}/{k}"] = v
    for kind, stats in record.input_grad.items():
        for k in ("mean", "min", "max"):
            if _number(getattr(stats, k)):
                out[f"diag/input_grad_{kind}/{k}"] = getattr(stats, k)
    for k in ("d_real", "d_fake"):
        if _number(getattr(record, k)):
            out[f"diag/{k}"] = getattr(record, k)
    return out


def headline_scalars(record: ProbeRecord) -> dict[str, float]:
    """A few whole-model numbers of a record for the run's ``metrics.jsonl`` (the rest stays in
    ``diagnostics.jsonl``): bounds, mean input-gradient norms, first/last-layer gradient ratio, the
    range of the variance ratios and the largest mean drift ``act_mean / act_std`` over the layers."""
    out: dict[str, float] = {}
    for k in ("lipschitz_upper", "lipschitz_lower"):
        if _number(getattr(record, k)):
            out[f"diag/{k}"] = getattr(record, k)
    for kind, stats in record.input_grad.items():
        if stats.mean is not None:
            out[f"diag/input_grad_{kind}_mean"] = stats.mean
    entries = list(record.layers.values())
    if len(entries) >= 2:
        first, last = entries[0].grad_effective, entries[-1].grad_effective
        if first is not None and last:
            out["diag/grad_first_over_last"] = first / last
    ratios = [e.var_ratio for e in entries if _number(e.var_ratio)]
    if ratios:
        out["diag/var_ratio_min"], out["diag/var_ratio_max"] = min(ratios), max(ratios)
    drifts = [d for e in entries if _number(d := e.drift)]
    if drifts:
        out["diag/drift_max"] = max(drifts)
    return out
