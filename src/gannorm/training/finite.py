"""Where a training run first went non-finite: a loss, a gradient, a weight, a sigma or a buffer.

The trainer checks the gradients before every optimizer step (a non-finite gradient is never applied)
and the losses of every step; when one is not finite, :func:`locate` names the first non-finite
quantity in the order the forward pass meets them, so the run's ``status.json`` says what blew up.
On several ranks the check is agreed (:func:`agreed_non_finite`), so that every rank skips the same
step and stops at the same one.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import torch
from torch import Tensor, nn

from ..normalizations import sigmas
from .distributed import Ranks


def first_non_finite(named: Sequence[tuple[str, Tensor]]) -> str | None:
    """The name of the first tensor with a NaN or Inf entry (one host sync for all of them), or None."""
    if not named:
        return None
    ok = torch.stack([torch.isfinite(t.detach()).all() for _, t in named])
    if bool(ok.all()):
        return None
    return named[int((~ok).nonzero()[0])][0]


def agreed_non_finite(named: Sequence[tuple[str, Tensor]], ranks: Ranks) -> str | None:
    """:func:`first_non_finite`, the same on every rank: None only if every rank's tensors are finite, else
    the first name found in rank order (one all-reduce of a flag; the names are exchanged only then)."""
    bad = first_non_finite(named)
    return ranks.first(bad) if ranks.any(bad is not None) else None


def named_grads(model: nn.Module, prefix: str) -> list[tuple[str, Tensor]]:
    return [(f"gradient of {prefix}.{n}", p.grad) for n, p in model.named_parameters() if p.grad is not None]


def _tensors(model: nn.Module, prefix: str) -> list[tuple[str, Tensor]]:
    out: list[tuple[str, Tensor]] = [(f"weight {prefix}.{n}", p) for n, p in model.named_parameters()]
    out += [(f"buffer {prefix}.{n}", b) for n, b in model.named_buffers() if b.is_floating_point()]
    return out


def _sigmas(model: nn.Module, prefix: str) -> Iterable[str]:
    for key, value in sigmas(model).items():
        if not math.isfinite(value) or (key.endswith("/sigma") and value == 0.0):
            yield f"sigma {prefix}.{key.rsplit('/', 1)[0]} = {value}"


def locate(models: Sequence[tuple[str, nn.Module]], losses: dict[str, float]) -> str:
    """The first non-finite quantity: each model's weights and buffers, then its sigmas, then the losses."""
    for prefix, model in models:
        name = first_non_finite(_tensors(model, prefix))
        if name is not None:
            return f"{name} is not finite"
        bad_sigma = next(iter(_sigmas(model, prefix)), None)
        if bad_sigma is not None:
            return bad_sigma
    bad = [f"{k}={v}" for k, v in losses.items() if not math.isfinite(v)]
    return ("loss " + ", ".join(bad)) if bad else "no non-finite quantity found"
