"""Gradient penalties and weight constraints for the discriminator (``docs/methods.md``).

The gradient penalties live in the registry :data:`PENALTIES`; each entry is a :class:`PenaltySpec`
whose ``fn`` has one signature, ``fn(D, real, fake, weight, *, generator=None, y_real=None, y_fake=None)
-> Tensor``, and returns the scalar to add to the D loss, already multiplied by ``weight``::

    spec = PENALTIES.get("r1")
    loss_d = loss_d + spec.fn(D, real, fake, spec.default_weight)

===========  ===============================================================================
name         term added to the D loss
===========  ===============================================================================
``wgan_gp``  ``weight * E[(||grad D(x_hat)|| - 1)^2]`` (WGAN-GP, Gulrajani et al. 2017)
``lp``       ``weight * E[max(0, ||grad D(x_hat)|| - 1)^2]`` (one-sided, Petzka et al. 2018)
``zero_gp``  ``weight * E[||grad D(x_hat)||^2]`` (0-GP, Thanh-Tung et al. 2019)
``r1``       ``weight / 2 * E[||grad D(real)||^2]`` (R1, Mescheder et al. 2018)
``r2``       ``weight / 2 * E[||grad D(fake)||^2]`` (R2, Mescheder et al. 2018)
===========  ===============================================================================

``x_hat = t x_r + (1 - t) x_f`` with one ``t ~ U[0, 1]`` per sample, drawn from ``generator``. R1 and
R2 keep the conventional factor 1/2 of their definition (``weight`` is the paper's gamma), so
``r1(..., weight=10)`` is 5 E[||grad D||^2]; ``r1`` ignores ``fake`` and ``r2`` ignores ``real``.
Every term is differentiable with respect to D's parameters (double backprop).

**Class-conditional discriminators** are called ``D(x, y)``: pass the labels as ``y_real`` and ``y_fake``
(int64 ``[B]``). The gradient is taken with respect to ``x`` only, at fixed labels. R1 uses
``(real, y_real)``, R2 ``(fake, y_fake)``; WGAN-GP, LP and 0-GP evaluate D on the interpolates with the
*real* labels ``y_real`` (the convention of StudioGAN: an interpolate between an image of class a and one
of class b is scored as class a; ``y_fake`` is not used). With the labels left at None every term is
exactly the unconditional one. Each entry's
``default_weight`` is the standard weight from the literature (10 for all five);
``PenaltySpec.check_weight(weight)`` refuses a weight that is negative or not finite (a one-line
:class:`gannorm.errors.OptionError`), as do the two constraints below for their own numbers.

Two weight constraints stay plain functions: :func:`weight_clip_` clips D's raw weights in place
after each D step (WGAN, ``c = 0.01``), and :func:`orthogonal_regularization` is
``weight * ||W W^T - I||_F^2`` (Brock et al. 2017) or its BigGAN off-diagonal form.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .errors import OptionError
from .fastgrad import fast_conv_grads
from .gradnorm import call_d
from .init import raw_weight
from .normalizations.model import NORMALIZABLE
from .registry import Registry


def input_gradient_norms(D: nn.Module, x: Tensor, create_graph: bool = True, *, y: Tensor | None = None) -> Tensor:
    """Per-sample ``||grad_x D(x)||_2`` (flattened over the input), with the graph for a penalty.

    Args:
        D: the discriminator.
        x: inputs ``[B, ...]`` (detached here; the gradient is w.r.t. this copy).
        create_graph: keep the graph so the result trains D (double backprop).
        y: int64 labels ``[B]`` of a class-conditional D (``D(x, y)``, gradient at fixed y), or None.

    Returns:
        the norms ``[B]``.

    Example::

        norms = input_gradient_norms(D, real, y=labels)
    """
    x = x.detach().requires_grad_(True)
    with fast_conv_grads(create_graph):
        out = call_d(D, x, y)
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=create_graph)
    return torch.linalg.vector_norm(g.flatten(1), dim=1)


def interpolates(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``t * real + (1 - t) * fake`` with one ``t ~ U[0, 1]`` per sample."""
    t = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), generator=generator).to(real)
    return t * real.detach() + (1 - t) * fake.detach()


def wgan_gp(D: nn.Module, real: Tensor, fake: Tensor, weight: float, *, generator: torch.Generator | None = None,
            y_real: Tensor | None = None, y_fake: Tensor | None = None) -> Tensor:  # noqa: ARG001
    """``weight * E[(||grad D(x_hat)|| - 1)^2]`` on interpolates (WGAN-GP); a conditional D gets ``y_real``."""
    return weight * (input_gradient_norms(D, interpolates(real, fake, generator), y=y_real) - 1).square().mean()


def lipschitz_penalty(D: nn.Module, real: Tensor, fake: Tensor, weight: float, *,
                      generator: torch.Generator | None = None, y_real: Tensor | None = None,
                      y_fake: Tensor | None = None) -> Tensor:  # noqa: ARG001
    """``weight * E[max(0, ||grad D(x_hat)|| - 1)^2]`` on interpolates (the one-sided LP); labels ``y_real``."""
    norms = input_gradient_norms(D, interpolates(real, fake, generator), y=y_real)
    return weight * torch.relu(norms - 1).square().mean()


def zero_gp(D: nn.Module, real: Tensor, fake: Tensor, weight: float, *, generator: torch.Generator | None = None,
            y_real: Tensor | None = None, y_fake: Tensor | None = None) -> Tensor:  # noqa: ARG001
    """``weight * E[||grad D(x_hat)||^2]`` on interpolates (0-GP); a conditional D gets ``y_real``."""
    return weight * input_gradient_norms(D, interpolates(real, fake, generator), y=y_real).square().mean()


def r1(D: nn.Module, real: Tensor, fake: Tensor, weight: float, *,  # noqa: ARG001
       generator: torch.Generator | None = None, y_real: Tensor | None = None,
       y_fake: Tensor | None = None) -> Tensor:
    """``weight / 2 * E[||grad D(real)||^2]`` (R1, at ``(real, y_real)``; ``fake``, ``y_fake``, ``generator``
    unused)."""
    return weight / 2 * input_gradient_norms(D, real, y=y_real).square().mean()


def r2(D: nn.Module, real: Tensor, fake: Tensor, weight: float, *,  # noqa: ARG001
       generator: torch.Generator | None = None, y_real: Tensor | None = None,
       y_fake: Tensor | None = None) -> Tensor:
    """``weight / 2 * E[||grad D(fake)||^2]`` (R2, at ``(fake, y_fake)``; ``real``, ``y_real``, ``generator``
    unused)."""
    return weight / 2 * input_gradient_norms(D, fake, y=y_fake).square().mean()


def _check_nonnegative(option: str, value: float, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise OptionError(option, f"{option} must be a finite number >= 0, got {value!r} ({why})")


@dataclass(frozen=True)
class PenaltySpec:
    """A gradient penalty: ``fn(D, real, fake, weight, *, generator=None, y_real=None, y_fake=None)`` (the labels
    of a class-conditional D, see the module doc), its standard weight, a description."""

    fn: Callable[..., Tensor]
    default_weight: float
    description: str

    def check_weight(self, weight: float) -> None:
        """Refuse a weight that is not a finite number >= 0 (a one-line :class:`OptionError` naming ``weight``)."""
        _check_nonnegative("weight", weight, "the penalty term is multiplied by it; 0 turns it off, a negative "
                           "weight rewards large gradients")


PENALTIES: Registry[PenaltySpec] = Registry("penalty")
PENALTIES.register("wgan_gp", PenaltySpec(wgan_gp, 10.0, "WGAN-GP: weight * E[(||grad D(x_hat)|| - 1)^2] on "
                                          "interpolates (Gulrajani et al. 2017)"))
PENALTIES.register("lp", PenaltySpec(lipschitz_penalty, 10.0, "one-sided Lipschitz penalty: weight * "
                                     "E[max(0, ||grad D(x_hat)|| - 1)^2] on interpolates (Petzka et al. 2018)"))
PENALTIES.register("zero_gp", PenaltySpec(zero_gp, 10.0, "0-GP: weight * E[||grad D(x_hat)||^2] on interpolates "
                                          "(Thanh-Tung et al. 2019)"))
PENALTIES.register("r1", PenaltySpec(r1, 10.0, "R1: weight / 2 * E[||grad D(x)||^2] on reals "
                                     "(Mescheder et al. 2018)"))
PENALTIES.register("r2", PenaltySpec(r2, 10.0, "R2: weight / 2 * E[||grad D(x)||^2] on fakes"))


@torch.no_grad()
def weight_clip_(D: nn.Module, c: float = 0.01) -> None:
    """Clip every parameter of ``D`` to ``[-c, c]`` in place (the raw weights of normalized layers).

    ``c`` is a bound on the weights, not a loss weight (WGAN's clipping constant).
    """
    if isinstance(c, bool) or not isinstance(c, numbers.Real) or not math.isfinite(c) or c <= 0:
        raise OptionError("c", f"c must be a finite number > 0, got {c!r} (weights are clipped to [-c, c]; "
                          "0 would zero the discriminator)")
    for p in D.parameters():
        p.clamp_(-c, c)


def orthogonal_regularization(D: nn.Module, weight: float = 1e-4, off_diagonal: bool = True) -> Tensor:
    """``weight * sum_W ||W W^T (1 - I)||_F^2`` (BigGAN, ``off_diagonal``) or ``||W W^T - I||_F^2``.

    ``W`` is each Conv/Linear weight reshaped to ``[out, -1]`` (the raw weight of normalized layers),
    with the Gram matrix taken over output units. ``weight`` is the paper's beta (1e-4 in BigGAN).
    """
    _check_nonnegative("weight", weight, "the regularization term is multiplied by it")
    total = torch.zeros(())
    for m in D.modules():
        if isinstance(m, NORMALIZABLE):
            w = raw_weight(m).flatten(1)
            gram = w @ w.t()
            eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
            total = total.to(gram) + ((gram * (1 - eye)) if off_diagonal else (gram - eye)).square().sum()
    return weight * total
