"""Gradient penalties and weight constraints for the discriminator (``docs/methods.md``).

Each penalty is a pure function returning a scalar to add to the D loss (already multiplied by its
weight), composable with any normalization:

==================  =======================================================  =================
function            term                                                     standard weight
==================  =======================================================  =================
``wgan_gp``         lam * E[(||grad D(x_hat)|| - 1)^2], x_hat = t x_r + (1-t) x_f   lam = 10
``lipschitz_penalty``  lam * E[max(0, ||grad D(x_hat)|| - 1)^2] (one-sided LP)   lam = 10
``zero_gp``         lam * E[||grad D(x_hat)||^2] on interpolates (0-GP)       lam = 10 .. 100
``r1`` / ``r2``     gamma/2 * E[||grad D(x)||^2] on reals (R1) / fakes (R2)   gamma = 10
==================  =======================================================  =================

``t ~ U[0, 1]`` per sample. ``weight_clip_`` clips D's raw weights in place after each D step (WGAN,
c = 0.01); ``orthogonal_regularization`` is beta * ||W^T W - I||_F^2 (Brock et al. 2017) or its
BigGAN off-diagonal form.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .fastgrad import fast_conv_grads


def input_gradient_norms(D: nn.Module, x: Tensor, create_graph: bool = True) -> Tensor:
    """Per-sample ``||grad_x D(x)||_2`` (flattened over the input), with the graph for a penalty."""
    x = x.detach().requires_grad_(True)
    with fast_conv_grads(create_graph):
        out = D(x)
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=create_graph)
    return torch.linalg.vector_norm(g.flatten(1), dim=1)


def interpolates(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``t * real + (1 - t) * fake`` with one ``t ~ U[0, 1]`` per sample."""
    t = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), generator=generator).to(real)
    return t * real.detach() + (1 - t) * fake.detach()


def wgan_gp(D: nn.Module, real: Tensor, fake: Tensor, lam: float = 10.0,
            generator: torch.Generator | None = None) -> Tensor:
    return lam * (input_gradient_norms(D, interpolates(real, fake, generator)) - 1).square().mean()


def lipschitz_penalty(D: nn.Module, real: Tensor, fake: Tensor, lam: float = 10.0,
                      generator: torch.Generator | None = None) -> Tensor:
    return lam * torch.relu(input_gradient_norms(D, interpolates(real, fake, generator)) - 1).square().mean()


def zero_gp(D: nn.Module, real: Tensor, fake: Tensor, lam: float = 10.0,
            generator: torch.Generator | None = None) -> Tensor:
    return lam * input_gradient_norms(D, interpolates(real, fake, generator)).square().mean()


def r1(D: nn.Module, real: Tensor, gamma: float = 10.0) -> Tensor:
    return gamma / 2 * input_gradient_norms(D, real).square().mean()


def r2(D: nn.Module, fake: Tensor, gamma: float = 10.0) -> Tensor:
    return gamma / 2 * input_gradient_norms(D, fake).square().mean()


@torch.no_grad()
def weight_clip_(D: nn.Module, c: float = 0.01) -> None:
    """Clip every parameter of ``D`` to ``[-c, c]`` in place (the raw weights of normalized layers)."""
    for p in D.parameters():
        p.clamp_(-c, c)


def orthogonal_regularization(D: nn.Module, beta: float = 1e-4, off_diagonal: bool = True) -> Tensor:
    """``beta * sum_W ||W^T W (1 - I)||_F^2`` (BigGAN, ``off_diagonal``) or ``||W^T W - I||_F^2``.

    ``W`` is each Conv/Linear weight reshaped to ``[out, -1]`` (the raw weight of normalized layers),
    with the Gram matrix taken over output units.
    """
    from .init import raw_weight
    from .normalizations.model import NORMALIZABLE
    total = torch.zeros(())
    for m in D.modules():
        if isinstance(m, NORMALIZABLE):
            w = raw_weight(m).flatten(1)
            gram = w @ w.t()
            eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
            total = total.to(gram) + ((gram * (1 - eye)) if off_diagonal else (gram - eye)).square().sum()
    return beta * total
