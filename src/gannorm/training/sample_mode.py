"""How a generator draws samples (``train.sample_mode``): in eval mode or in training mode.

- ``eval`` (the default): BatchNorm normalizes with its running statistics; a sample depends on its z only.
- ``train``: BatchNorm normalizes with the statistics of the batch being generated, as the GN-GAN code
  samples (it never calls ``.eval()``). A sample then depends on the whole batch it is drawn in: the
  sample grid is one batch of the fixed z, ``gannorm sample`` and the evaluations draw batches of 256.

Drawing samples never changes the generator, in either mode: the train/eval flag of every submodule and
every buffer (running statistics, ``num_batches_tracked``, power-iteration vectors) are as before,
bit for bit. (The GN-GAN code lets its sampling move the running statistics, which it never reads.)
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

from ..metrics.evaluate import EvalOptions, evaluate

SAMPLE_MODES = ("eval", "train")


@contextlib.contextmanager
def sampling(generator: nn.Module, mode: str) -> Iterator[nn.Module]:
    """``generator`` set up to draw samples in ``mode``, without gradients; restored afterwards."""
    if mode not in SAMPLE_MODES:
        raise ValueError(f"sample mode must be one of {', '.join(SAMPLE_MODES)}, got {mode!r}")
    flags = [(m, m.training) for m in generator.modules()]
    saved = [b.clone() for b in generator.buffers()] if mode == "train" else []
    generator.train(mode == "train")
    try:
        with torch.no_grad():
            yield generator
    finally:
        for m, training in flags:
            m.training = training
        with torch.no_grad():
            for b, s in zip(generator.buffers(), saved):
                b.copy_(s)


class SamplingView(nn.Module):
    """``generator`` drawing samples in ``mode``, whatever this view's own train/eval flag.

    The generator is held, not registered as a submodule, so ``.eval()`` on the view (what
    :func:`gannorm.metrics.evaluate.generate` calls) does not reach it.
    """

    generator: nn.Module  # held, not registered (set with object.__setattr__)

    def __init__(self, generator: nn.Module, mode: str) -> None:
        super().__init__()
        object.__setattr__(self, "generator", generator)
        self.mode = mode
        self.num_classes = getattr(generator, "num_classes", 0)  # a class-conditional G's classes (0: none)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        with sampling(self.generator, self.mode):
            return self.generator(z) if y is None else self.generator(z, y)


def evaluate_generator(generator: nn.Module, mode: str, data: Any, z_dim: int, options: EvalOptions,
                       device: torch.device | str = "cpu") -> dict[str, Any]:
    """:func:`gannorm.metrics.evaluate.evaluate` of ``generator`` sampling in ``mode``; the protocol says which."""
    result = evaluate(SamplingView(generator, mode), data, z_dim, options, device=device)
    result["protocol"]["generator_mode"] = mode
    return result
