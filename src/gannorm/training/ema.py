"""Exponential moving average of the generator.

Parameters are averaged; buffers (BatchNorm running statistics, spectral-norm vectors) are
*copied*. Averaging SN's unit vectors shrinks their norm and underestimates sigma in eval, which
blew up a 175-layer model 50,000x (NCAR/miles-credit PR #394; ``docs/methods.md``).
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float, start: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema decay must be in [0, 1), got {decay}")
        self.decay, self.start = decay, start
        self.model = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold ``model`` in after G step ``step`` (a plain copy before ``start``)."""
        decay = self.decay if step >= self.start else 0.0
        for ema_p, p in zip(self.model.parameters(), model.parameters()):
            ema_p.lerp_(p.detach(), 1.0 - decay)
        for ema_b, b in zip(self.model.buffers(), model.buffers()):
            ema_b.copy_(b)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
