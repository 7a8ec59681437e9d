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
from .validate import require


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

        >>> D = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = D.weight.copy_(torch.tensor([[3.0, 4.0]]))
        >>> input_gradient_norms(D, torch.zeros(2, 2), create_graph=False)
        tensor([5., 5.])
    """
    x = x.detach().requires_grad_(True)
    with fast_conv_grads(create_graph):
        out = call_d(D, x, y)
    (g,) = torch.autograd.grad(out.sum(), x, create_graph=create_graph)
    return torch.linalg.vector_norm(g.flatten(1), dim=1)


def interpolates(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``t * real + (1 - t) * fake`` with one ``t ~ U[0, 1]`` per sample.

    Args:
        real: real samples ``[B, ...]``.
        fake: generated samples, shaped like ``real``.
        generator: the CPU generator of ``t``.

    Returns:
        the interpolates, detached from ``real`` and ``fake``.

    Example::

        >>> x = interpolates(torch.ones(4, 3), torch.zeros(4, 3), torch.Generator().manual_seed(0))
        >>> bool(((x >= 0) & (x <= 1)).all()), bool((x == x[:, :1]).all())   # one t per sample
        (True, True)
    """
    t = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), generator=generator).to(real)
    return t * real.detach() + (1 - t) * fake.detach()


def wgan_gp(D: nn.Module, real: Tensor, fake: Tensor, weight: float, *, generator: torch.Generator | None = None,
            y_real: Tensor | None = None, y_fake: Tensor | None = None) -> Tensor:  # noqa: ARG001
    """``weight * E[(||grad D(x_hat)|| - 1)^2]`` on interpolates (WGAN-GP); a conditional D gets ``y_real``.

    Args:
        D: the discriminator.
        real: real samples.
        fake: generated samples.
        weight: the penalty's weight (lambda).
        generator: the CPU generator of the interpolation weights.
        y_real: labels of a conditional D (used on the interpolates), or None.
        y_fake: unused (the shared signature).

    Returns:
        the scalar term.

    Example::

        >>> D = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = D.weight.copy_(torch.tensor([[3.0, 4.0]]))       # ||grad D|| = 5 everywhere
        >>> wgan_gp(D, torch.ones(4, 2), torch.zeros(4, 2), 10.0)   # 10 * (5 - 1)^2
        tensor(160., grad_fn=<MulBackward0>)
    """
    return weight * (input_gradient_norms(D, interpolates(real, fake, generator), y=y_real) - 1).square().mean()


def lipschitz_penalty(D: nn.Module, real: Tensor, fake: Tensor, weight: float, *,
                      generator: torch.Generator | None = None, y_real: Tensor | None = None,
                      y_fake: Tensor | None = None) -> Tensor:  # noqa: ARG001
    """``weight * E[max(0, ||grad D(x_hat)|| - 1)^2]`` on interpolates (the one-sided LP); labels ``y_real``.

    Args:
        D: the discriminator.
        real: real samples.
        fake: generated samples.
        weight: the penalty's weight.
        generator: the CPU generator of the interpolation weights.
        y_real: labels of a conditional D (used on the interpolates), or None.
        y_fake: unused (the shared signature).

    Returns:
        the scalar term.

    Example::

        >>> D = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = D.weight.copy_(torch.tensor([[0.3, 0.4]]))       # ||grad D|| = 0.5 < 1: no penalty
        >>> lipschitz_penalty(D, torch.ones(4, 2), torch.zeros(4, 2), 10.0)
        tensor(0., grad_fn=<MulBackward0>)
    """
    norms = input_gradient_norms(D, interpolates(real, fake, generator), y=y_real)
    return weight * torch.relu(norms - 1).square().mean()


def zero_gp(D: nn.Module, real: Tensor, fake: Tensor, weight: float, *, generator: torch.Generator | None = None,
            y_real: Tensor | None = None, y_fake: Tensor | None = None) -> Tensor:  # noqa: ARG001
    """``weight * E[||grad D(x_hat)||^2]`` on interpolates (0-GP); a conditional D gets ``y_real``.

    Args:
        D: the discriminator.
        real: real samples.
        fake: generated samples.
        weight: the penalty's weight.
        generator: the CPU generator of the interpolation weights.
        y_real: labels of a conditional D (used on the interpolates), or None.
        y_fake: unused (the shared signature).

    Returns:
        the scalar term.

    Example::

        >>> D = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = D.weight.copy_(torch.tensor([[3.0, 4.0]]))
        >>> zero_gp(D, torch.ones(4, 2), torch.zeros(4, 2), 0.1)      # 0.1 * 5^2
        tensor(2.5000, grad_fn=<MulBackward0>)
    """
    return weight * input_gradient_norms(D, interpolates(real, fake, generator), y=y_real).square().mean()


def r1(D: nn.Module, real: Tensor, fake: Tensor, weight: float, *,  # noqa: ARG001
       generator: torch.Generator | None = None, y_real: Tensor | None = None,
       y_fake: Tensor | None = None) -> Tensor:
    """``weight / 2 * E[||grad D(real)||^2]`` (R1, at ``(real, y_real)``; ``fake``, ``y_fake``, ``generator`` unused).

    Args:
        D: the discriminator.
        real: real samples (the penalty's points).
        fake: unused.
        weight: gamma.
        generator: unused.
        y_real: labels of a conditional D, or None.
        y_fake: unused.

    Returns:
        the scalar term.

    Example::

        >>> D = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = D.weight.copy_(torch.tensor([[3.0, 4.0]]))
        >>> r1(D, torch.ones(4, 2), torch.zeros(4, 2), 10.0)          # 10 / 2 * 5^2
        tensor(125., grad_fn=<MulBackward0>)
    """
    return weight / 2 * input_gradient_norms(D, real, y=y_real).square().mean()


def r2(D: nn.Module, real: Tensor, fake: Tensor, weight: float, *,  # noqa: ARG001
       generator: torch.Generator | None = None, y_real: Tensor | None = None,
       y_fake: Tensor | None = None) -> Tensor:
    """``weight / 2 * E[||grad D(fake)||^2]`` (R2, at ``(fake, y_fake)``; ``real``, ``y_real``, ``generator`` unused).

    Args:
        D: the discriminator.
        real: unused.
        fake: generated samples (the penalty's points).
        weight: gamma.
        generator: unused.
        y_real: unused.
        y_fake: labels of a conditional D, or None.

    Returns:
        the scalar term.

    Example::

        >>> D = nn.Linear(2, 1, bias=False)
        >>> with torch.no_grad():
        ...     _ = D.weight.copy_(torch.tensor([[3.0, 4.0]]))
        >>> r2(D, torch.ones(4, 2), torch.zeros(4, 2), 1.0)           # 1 / 2 * 5^2
        tensor(12.5000, grad_fn=<MulBackward0>)
    """
    return weight / 2 * input_gradient_norms(D, fake, y=y_fake).square().mean()


def _check_nonnegative(option: str, value: float, why: str) -> None:
    require(value, name=option, min=0, error=OptionError, why=why)


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

    Args:
        D: the discriminator, changed in place.
        c: the bound (> 0).

    Example::

        >>> D = nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = D.weight.copy_(torch.tensor([[0.5, -0.001]]))
        >>> weight_clip_(D, 0.01)
        >>> D.weight
        Parameter containing:
        tensor([[ 0.0100, -0.0010]], requires_grad=True)
    """
    require(c, name="c", min=0, min_exclusive=True, error=OptionError,
            why="weights are clipped to [-c, c]; 0 would zero the discriminator")
    for p in D.parameters():
        p.clamp_(-c, c)


def orthogonal_regularization(D: nn.Module, weight: float = 1e-4, off_diagonal: bool = True) -> Tensor:
    """``weight * sum_W ||W W^T (1 - I)||_F^2`` (BigGAN, ``off_diagonal``) or ``||W W^T - I||_F^2``.

    ``W`` is each Conv/Linear weight reshaped to ``[out, -1]`` (the raw weight of normalized layers),
    with the Gram matrix taken over output units. ``weight`` is the paper's beta (1e-4 in BigGAN).

    Args:
        D: the discriminator.
        weight: beta (>= 0).
        off_diagonal: BigGAN's form (only the off-diagonal of the Gram matrix) or the full ``W W^T - I``.

    Returns:
        the scalar term (differentiable with respect to the raw weights).

    Example::

        >>> D = nn.Linear(2, 2, bias=False)
        >>> with torch.no_grad():
        ...     _ = D.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 1.0]]))   # W W^T = [[2, 1], [1, 1]]
        >>> orthogonal_regularization(D, 1.0), orthogonal_regularization(D, 1.0, off_diagonal=False)
        (tensor(2., grad_fn=<MulBackward0>), tensor(3., grad_fn=<MulBackward0>))
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
