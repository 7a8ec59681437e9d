"""Exponential moving average of the generator (``train.ema_decay``, ``ema_start``, ``ema_buffers``).

After each G step the EMA copy folds G in: every parameter moves to ``decay * ema + (1 - decay) * G``
(a plain copy before ``ema_start``). Buffers follow ``train.ema_buffers``:

- ``copy`` (the default): every buffer is copied from the live G, BatchNorm running statistics included.
- ``average``: floating-point buffers (BatchNorm's running mean and variance) are averaged with the same
  decay as the parameters, as the GN-GAN code does (it averages G's whole state dict); integer buffers
  (``num_batches_tracked``) are copied.

Power-iteration vectors are copied in both modes. Averaging unit vectors shrinks them (the mean of two
different unit vectors is shorter than 1), so ``<u, W v>`` underestimates sigma and the EMA model's
effective weights come out too large, an error that compounds over layers (a 175-layer model's outputs
grew 50,000x in NCAR/miles-credit PR #394; ``docs/methods.md``). They
are found by what holds them, not by their names: every buffer of a :class:`gannorm.PowerIterationNorm`
(gannorm's SN, BSN, strict SN and the gamma methods), of torch's ``parametrizations.spectral_norm``, and
the ``<name>_u`` / ``<name>_v`` buffers of torch's older hook-based ``spectral_norm``.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils import parametrizations
from torch.nn.utils.spectral_norm import SpectralNorm as HookSpectralNorm

from ..normalizations import PowerIterationNorm

EMA_BUFFERS = ("copy", "average")

#: modules whose buffers are all power-iteration vectors (torch's parametrization class is private)
_VECTOR_MODULES = tuple(t for t in (PowerIterationNorm, getattr(parametrizations, "_SpectralNorm", None)) if t)


def power_iteration_buffers(model: nn.Module) -> set[str]:
    """The names (as in ``model.named_buffers()``) of the buffers holding power-iteration vectors."""
    names: set[str] = set()
    for prefix, module in model.named_modules():
        dot = f"{prefix}." if prefix else ""
        if isinstance(module, _VECTOR_MODULES):
            names.update(dot + name for name, _ in module.named_buffers())
        for hook in module._forward_pre_hooks.values():
            if isinstance(hook, HookSpectralNorm):
                names.update((f"{dot}{hook.name}_u", f"{dot}{hook.name}_v"))
    return names


class EMA:
    """The EMA copy of a model (``self.model``, in eval mode, without gradients); see the module docstring."""

    def __init__(self, model: nn.Module, decay: float, start: int = 0, buffers: str = "copy") -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        if buffers not in EMA_BUFFERS:
            raise ValueError(f"ema buffers must be one of {', '.join(EMA_BUFFERS)}, got {buffers!r}")
        self.decay, self.start, self.buffers = decay, start, buffers
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.vectors = frozenset(power_iteration_buffers(self.model))

    def averages(self, name: str, buffer: torch.Tensor) -> bool:
        """Whether the buffer ``name`` is averaged (else copied)."""
        return self.buffers == "average" and buffer.is_floating_point() and name not in self.vectors

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold ``model`` in after G step ``step`` (a plain copy before ``start``)."""
        decay = self.decay if step >= self.start else 0.0
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        live = dict(model.named_buffers())
        for name, ema_b in self.model.named_buffers():
            if self.averages(name, ema_b):
                ema_b.lerp_(live[name], 1.0 - decay)
            else:
                ema_b.copy_(live[name])

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
