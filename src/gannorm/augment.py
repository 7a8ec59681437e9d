"""Augmentation for consistency regularization (CR-GAN, Zhang et al. 2020).

``flip_translate(x, translate, generator)``: per image, a horizontal flip with probability 0.5 and an
integer translation by up to ``translate * size`` pixels in x and y, the uncovered border filled with
-1 (black in [-1, 1]). GN-GAN-CR uses ``translate=0.2`` (+-6 px at 32), CR-GAN 1/8 (+-4 px).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def flip_translate(x: Tensor, translate: float = 0.125, generator: torch.Generator | None = None) -> Tensor:
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    max_dy, max_dx = int(translate * h), int(translate * w)
    dy = torch.randint(-max_dy, max_dy + 1, (n,), generator=generator)
    dx = torch.randint(-max_dx, max_dx + 1, (n,), generator=generator)
    x = torch.where(flip.view(n, 1, 1, 1).to(x.device), x.flip(-1), x)
    padded = F.pad(x, (max_dx, max_dx, max_dy, max_dy), value=-1.0)
    out = torch.stack([padded[i, :, max_dy - int(dy[i]): max_dy - int(dy[i]) + h,
                              max_dx - int(dx[i]): max_dx - int(dx[i]) + w] for i in range(n)])
    return out


def consistency_loss(d_x: Tensor, d_tx: Tensor) -> Tensor:
    """``mean_i (D(T(x_i)) - D(x_i))^2`` on the discriminator outputs (no stop-gradient, as GN-GAN-CR)."""
    return (d_tx - d_x).square().mean()
