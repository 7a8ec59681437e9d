"""GAN losses, as pure functions of the discriminator's logits, and their registry.

Each loss is a pair ``d(real_logits, fake_logits) -> scalar`` and ``g(fake_logits) -> scalar``:

=================  ==============================================  ===========================
name               discriminator                                   generator
=================  ==============================================  ===========================
``hinge``          E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]        -E[D(G(z))]
``ns``             E[softplus(-D(x))] + E[softplus(D(G(z)))]       E[softplus(-D(G(z)))]  (BCE)
``wasserstein``    E[D(G(z))] - E[D(x)]                            -E[D(G(z))]
``ls``             (E[(D(x) - 1)^2] + E[D(G(z))^2]) / 2            E[(D(G(z)) - 1)^2] / 2
=================  ==============================================  ===========================

``ns`` is the non-saturating loss: binary cross-entropy with logits, real = 1, fake = 0, and the
generator maximising log D(G(z)). ``ls`` is LSGAN with targets a=0, b=c=1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch.nn.functional as F
from torch import Tensor

from .registry import Registry


@dataclass(frozen=True)
class GANLoss:
    d: Callable[[Tensor, Tensor], Tensor]
    g: Callable[[Tensor], Tensor]


LOSSES: Registry[GANLoss] = Registry("loss")

LOSSES.register("hinge", GANLoss(d=lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean(),
                                 g=lambda f: -f.mean()),
                "hinge loss (SNGAN, BSSN): relu(1 - D(x)) + relu(1 + D(G(z))); G: -D(G(z))")
LOSSES.register("ns", GANLoss(d=lambda r, f: F.softplus(-r).mean() + F.softplus(f).mean(),
                              g=lambda f: F.softplus(-f).mean()),
                "non-saturating BCE with logits (Goodfellow et al. 2014)")
LOSSES.register("wasserstein", GANLoss(d=lambda r, f: f.mean() - r.mean(), g=lambda f: -f.mean()),
                "Wasserstein critic loss: D(G(z)) - D(x); G: -D(G(z))")
LOSSES.register("ls", GANLoss(d=lambda r, f: ((r - 1).square().mean() + f.square().mean()) / 2,
                              g=lambda f: (f - 1).square().mean() / 2),
                "least squares (LSGAN, a=0, b=c=1)")
