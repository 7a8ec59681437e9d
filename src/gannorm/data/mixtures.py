"""``ring8`` and ``grid25``: the 2-D Gaussian mixtures used as GAN stability / mode-collapse benchmarks.

- ``ring8``: 8 equally weighted isotropic Gaussians with centres equally spaced on a circle,
  ``(radius * cos(2 pi k / 8), radius * sin(2 pi k / 8))``, k = 0..7; radius 2, std 0.02.
- ``grid25``: 25 Gaussians centred on the 5x5 grid ``{-2s, -s, 0, s, 2s}^2`` with spacing s = 2
  (i.e. {-4, -2, 0, 2, 4}^2), std 0.05.

The dataset is a *fixed* float32 sample of ``n`` points (default 50,000) drawn with a
``torch.Generator`` seeded by ``seed`` (default 0): each point picks a centre uniformly at random
and adds ``std * N(0, I)``. ``labels`` holds the index of the centre each point was drawn from,
``modes`` the centres [K, 2] and ``mode_std`` the std, for mode-coverage metrics. The classes are
the modes (``class_names`` "mode 0" .. "mode K-1", so ``num_classes`` is K even for a tiny ``n``).
"""
from __future__ import annotations

import math
import numbers
from pathlib import Path

import torch

from ..yamlsafe import summary
from .base import Dataset, DatasetError, loader

RING8_RADIUS, RING8_STD = 2.0, 0.02
GRID25_SPACING, GRID25_STD = 2.0, 0.05
DEFAULT_N = 50_000
#: the most points a mixture holds (80 MB of float32 points)
MAX_N = 10_000_000
#: the largest std, radius or spacing (the points stay far from float32's range)
MAX_SCALE = 1e6


def _positive(name: str, key: str, value, integer: bool = False):
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and float(value) > 0
    if integer:
        ok = ok and isinstance(value, numbers.Integral)
    high = MAX_N if integer else MAX_SCALE
    if not ok or value > high or not math.isfinite(value):
        kind = f"a positive integer <= {MAX_N:,}" if integer else f"a positive number <= {MAX_SCALE:g}"
        raise DatasetError(f"{name}: option {key} must be {kind}, got {summary(value)}")
    return int(value) if integer else float(value)


def _mixture(name: str, modes: torch.Tensor, n, std, seed) -> Dataset:
    n = _positive(name, "n", n, integer=True)
    std = _positive(name, "std", std)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) < 2**63:
        raise DatasetError(f"{name}: option seed must be an integer in [0, 2**63), got {summary(seed)}")
    g = torch.Generator().manual_seed(int(seed))
    labels = torch.randint(len(modes), (n,), generator=g)
    noise = torch.randn(n, modes.shape[1], generator=g, dtype=torch.float64)
    data = (modes.double()[labels] + std * noise).to(torch.float32)
    return Dataset(name, data, "vector", labels=labels, modes=modes, mode_std=std,
                   source=f"synthetic (seed {int(seed)})", class_names=[f"mode {k}" for k in range(len(modes))])


def ring8_modes(radius: float = RING8_RADIUS, k: int = 8) -> torch.Tensor:
    """The [k, 2] centres on a circle of ``radius`` (the first at angle 0)."""
    angles = torch.arange(k, dtype=torch.float64) * (2 * math.pi / k)
    return (radius * torch.stack([angles.cos(), angles.sin()], dim=1)).to(torch.float32)


def grid25_modes(spacing: float = GRID25_SPACING) -> torch.Tensor:
    """The [25, 2] centres of the 5x5 grid ``spacing * {-2..2}^2`` (row-major: x slowest)."""
    ticks = torch.arange(-2, 3, dtype=torch.float64) * spacing
    xx, yy = torch.meshgrid(ticks, ticks, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1).to(torch.float32)


@loader("ring8", labels="")
def load_ring8(root: Path | None, resolution: None, *, n: int = DEFAULT_N, std: float = RING8_STD,
               radius: float = RING8_RADIUS, seed: int = 0) -> Dataset:
    return _mixture("ring8", ring8_modes(_positive("ring8", "radius", radius)), n, std, seed)


@loader("grid25", labels="")
def load_grid25(root: Path | None, resolution: None, *, n: int = DEFAULT_N, std: float = GRID25_STD,
                spacing: float = GRID25_SPACING, seed: int = 0) -> Dataset:
    return _mixture("grid25", grid25_modes(_positive("grid25", "spacing", spacing)), n, std, seed)
