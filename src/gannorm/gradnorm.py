"""Function-level normalization of the discriminator: GN (Wu et al. 2021) and PGN.

Both wrap a discriminator ``D`` and return normalized outputs with the graph attached, so the D
and the G losses are computed on them (``docs/methods.md``, function-level methods).

* **Gradient normalization** (GN-GAN, official basiclab/GNGAN-PyTorch ``normalize_gradient``)::

      f_hat(x) = f(x) / (||grad_x f(x)||_2 + |f(x)|)

  one L2 norm per sample over the flattened input, the input gradient taken with
  ``create_graph=True`` so D and G both train through it (double backprop). On every linear piece of a
  ReLU/LeakyReLU D, ``|f_hat| < 1`` and ``||grad f_hat|| <= 1`` (piecewise 1-Lipschitz), and
  ``f_hat`` is invariant to positive rescaling of ``f``.
* **Penalty gradient normalization** (PGN, sumorday/EDGAN-PyTorch ``penalty_normalize_gradient``),
  exactly as its code defines it::

      f_hat(x) = (1 - f(x)) / (||1 - grad_x f(x)||_2 + |1 - f(x)|)

  with ``1`` the all-ones tensor of the input's shape. Worked out by hand and checked numerically
  (``tests/test_gradnorm.py``): it is GN applied to ``g = 1 - f`` with the gradient norm taken of the
  gradient *shifted by the constant vector 1*. So it has **no hard 1-Lipschitz bound** (on a linear piece
  ``||grad f_hat|| <= ||grad f|| / ||1 - grad f||``, unbounded when ``grad f`` approaches 1), it is
  **not scale-invariant**, it flips the sign of f, and its outputs shrink to about
  ``1/sqrt(C*H*W)`` when ``||grad f|| << sqrt(C*H*W)`` (about 1/55 on CIFAR-10).

**Class-conditional discriminators.** Every function takes ``y`` (int64 labels ``[B]``, keyword-only):
``f = D(x, y)`` when ``y`` is given, else ``D(x)``, and the gradient is taken with respect to ``x`` only,
at fixed ``y`` (the labels are indices, not a differentiable input), as the GN-GAN code does for its
conditional models. With ``y=None`` the functions compute exactly what they computed without it.

Both refuse a discriminator with batch-coupling layers (BatchNorm, mean-only BN): the gradient of the
summed output is the per-sample gradient only when samples do not interact. The registry ``FUNCTIONS``
maps the config names (``none``, ``gn``, ``pgn``) to :class:`FunctionSpec` entries, which
:class:`GradientNormalized` calls through.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor, nn

from .errors import ConfigError, InputError, OptionError
from .fastgrad import fast_conv_grads
from .registry import Registry

_COUPLING = (nn.modules.batchnorm._BatchNorm,)


def check_per_sample(model: nn.Module, method: str = "gradient normalization") -> None:
    """Refuse models whose outputs couple samples (BatchNorm in training mode and friends).

    Args:
        model: the discriminator.
        method: the name to put in the message.

    Raises:
        ConfigError: a layer of ``model`` mixes the samples of a batch.

    Example::

        >>> check_per_sample(nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 1)))
        >>> check_per_sample(nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)))
        Traceback (most recent call last):
        ...
        gannorm.errors.ConfigError: gradient normalization needs a discriminator without batch-coupling layers, ...
    """
    for name, m in model.named_modules():
        if isinstance(m, _COUPLING) or getattr(m, "couples_samples", False):
            raise ConfigError(f"{method} needs a discriminator without batch-coupling layers, but "
                             f"{name or type(m).__name__} ({type(m).__name__}) mixes samples; remove it (or use "
                             "a per-sample normalization such as SN)")


def check_eps(eps: float) -> None:
    """Refuse an ``eps`` that is not a finite number >= 0 (a one-line :class:`~gannorm.errors.OptionError`).

    Args:
        eps: the constant added to GN's or PGN's denominator.

    Example::

        >>> check_eps(1e-8)
        >>> check_eps(-1.0)
        Traceback (most recent call last):
        ...
        gannorm.errors.OptionError: eps must be a finite number >= 0, got -1.0 (it is added to the denominator)
    """
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise OptionError("eps", f"eps must be a finite number >= 0, got {eps!r} (it is added to the denominator)")


def call_d(D: nn.Module, x: Tensor, y: Tensor | None = None) -> Tensor:
    """``D(x, y)`` for a class-conditional discriminator (``y`` given), else ``D(x)``.

    Args:
        D: the discriminator.
        x: a batch of inputs.
        y: int64 class labels ``[B]``, or None for an unconditional D.

    Returns:
        D's output.

    Example::

        >>> call_d(nn.Linear(3, 1), torch.zeros(2, 3)).shape
        torch.Size([2, 1])
    """
    return D(x) if y is None else D(x, y)


def _input(x: Tensor) -> Tensor:
    # do not mutate the caller's tensor (the official code calls x.requires_grad_() in place)
    return x if x.requires_grad else x.detach().requires_grad_(True)


def _per_sample_norm(g: Tensor) -> Tensor:
    return torch.linalg.vector_norm(g.flatten(1), dim=1, keepdim=True)


class _FirstOrderGN(torch.autograd.Function):
    """``f / (n + |f| + eps)`` as a function of x, with ``grad_x f = g`` and ``grad_x n = 0`` given.

    On a linear piece of D, ``d f_hat / d x = (n + eps) / (n + |f| + eps)^2 * g``: the input gradient
    ``g`` already computed for the norm is reused, so the G step needs no second backward through D.
    """

    @staticmethod
    def forward(ctx, x: Tensor, f: Tensor, g: Tensor, norm: Tensor, eps: float) -> Tensor:  # noqa: ARG004
        den = norm + f.abs() + eps
        ctx.save_for_backward(g, (norm + eps) / den.square())
        return f / den

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        g, slope = ctx.saved_tensors
        scale = (grad_out * slope).reshape(-1, *([1] * (g.dim() - 1)))
        return scale * g, None, None, None, None


def gradient_normalize(D: nn.Module, x: Tensor, eps: float = 0.0, *, y: Tensor | None = None,
                       first_order: bool = False) -> Tensor:
    """GN outputs ``f / (||grad_x f|| + |f| + eps)`` of shape ``[B, 1]``, differentiable for D and G.

    ``f = D(x, y)`` for a class-conditional D (``y``: int64 labels ``[B]``), else ``D(x)``; the gradient
    is w.r.t. ``x`` at fixed ``y``.
    ``eps`` (default 0, the official code) avoids 0/0 where ``f = 0`` and ``grad f = 0``.
    ``first_order=True`` is the G step of Faster-GNGAN: the gradient norm is treated as a constant,
    which for a piecewise-linear D (zero Hessian almost everywhere) gives exactly the same G
    gradients without a second-order graph. Here it also reuses the input gradient ``g`` computed for
    the norm as ``grad_x f``, so the whole G step costs one forward and one backward of D, like an
    SN G step. It needs D's parameters frozen (``D.requires_grad_(False)``): it returns gradients for
    ``x`` only.

    Args:
        D: the discriminator (per-sample: no batch-coupling layers).
        x: inputs ``[B, ...]``.
        eps: added to the denominator.
        y: class labels ``[B]`` (int64) of a conditional D, or None.
        first_order: the Faster-GNGAN G step (D frozen).

    Returns:
        the normalized outputs ``[B, 1]`` with the graph attached.

    Example::

        >>> D = nn.Linear(3, 1, bias=False)          # f(x) = <w, x>, grad_x f = w
        >>> with torch.no_grad():
        ...     _ = D.weight.copy_(torch.tensor([[3.0, 0.0, 4.0]]))
        >>> gradient_normalize(D, torch.tensor([[1.0, 0.0, 0.0]]))    # 3 / (5 + 3)
        tensor([[0.3750]], grad_fn=<DivBackward0>)
    """
    check_eps(eps)
    check_per_sample(D)
    if first_order:
        trained = [n for n, p in D.named_parameters() if p.requires_grad]
        if trained:
            raise InputError(f"first_order=True is the G step and gives no gradients to D's parameters, but "
                             f"{trained[0]} requires grad; call D.requires_grad_(False) first (or use "
                             "first_order=False)")
        with torch.enable_grad():
            xd = x.detach().requires_grad_(True)
            f = call_d(D, xd, y).flatten(1)
            (g,) = torch.autograd.grad(f.sum(), xd)
        return _FirstOrderGN.apply(x, f.detach(), g, _per_sample_norm(g), eps)
    x = _input(x)
    with fast_conv_grads():
        f = call_d(D, x, y).flatten(1)
    (g,) = torch.autograd.grad(f.sum(), x, create_graph=True, retain_graph=True)
    return f / (_per_sample_norm(g) + f.abs() + eps)


def penalty_gradient_normalize(D: nn.Module, x: Tensor, eps: float = 0.0, *, y: Tensor | None = None) -> Tensor:
    """PGN outputs ``(1 - f) / (||1 - grad_x f|| + |1 - f| + eps)`` of shape ``[B, 1]`` (see module doc).

    Args:
        D: the discriminator (per-sample: no batch-coupling layers).
        x: inputs ``[B, ...]``.
        eps: added to the denominator.
        y: class labels ``[B]`` (int64) of a conditional D (``f = D(x, y)``, gradient at fixed y), or None.

    Returns:
        the normalized outputs ``[B, 1]`` with the graph attached.

    Example::

        >>> D = nn.Linear(2, 1, bias=False)          # f(x) = <w, x>, grad_x f = w
        >>> with torch.no_grad():
        ...     _ = D.weight.copy_(torch.tensor([[4.0, -3.0]]))
        >>> penalty_gradient_normalize(D, torch.tensor([[1.0, 1.0]]))  # (1 - 1) / ...: f = 1
        tensor([[0.]], grad_fn=<DivBackward0>)
        >>> penalty_gradient_normalize(D, torch.tensor([[0.0, 0.0]]))  # 1 / (||(1 - 4, 1 + 3)|| + 1) = 1 / 6
        tensor([[0.1667]], grad_fn=<DivBackward0>)
    """
    check_eps(eps)
    check_per_sample(D, "penalty gradient normalization")
    x = _input(x)
    with fast_conv_grads():
        f = call_d(D, x, y).flatten(1)
    (g,) = torch.autograd.grad(f.sum(), x, create_graph=True, retain_graph=True)
    shifted = _per_sample_norm(1.0 - g)
    one_minus_f = 1.0 - f
    return one_minus_f / (shifted + one_minus_f.abs() + eps)


def raw_output(D: nn.Module, x: Tensor, eps: float = 0.0, *, y: Tensor | None = None) -> Tensor:  # noqa: ARG001
    """The discriminator's own output ``D(x)`` or ``D(x, y)``, unchanged (the ``"none"`` entry).

    Args:
        D: the discriminator.
        x: inputs.
        eps: unused (the signature every entry of :data:`FUNCTIONS` shares).
        y: class labels of a conditional D, or None.

    Returns:
        ``D(x)`` or ``D(x, y)``.

    Example::

        >>> D = nn.Linear(2, 1)
        >>> x = torch.ones(3, 2)
        >>> torch.equal(raw_output(D, x), D(x))
        True
    """
    return call_d(D, x, y)


@dataclass(frozen=True)
class FunctionSpec:
    """One function-level normalization: ``fn(D, x, eps, *, y=None) -> [B, 1]`` outputs with the graph attached.

    ``y``: the int64 labels ``[B]`` of a class-conditional D (``f = D(x, y)``, gradients w.r.t. ``x`` at fixed
    ``y``); None for an unconditional D.
    ``first_order_g``: ``fn`` also takes ``first_order=True``, the G step without a second-order graph
    (used by :class:`GradientNormalized` when D's parameters are frozen). ``per_sample``: ``fn`` needs a
    discriminator without batch-coupling layers (checked by :class:`GradientNormalized`).
    """

    fn: Callable[..., Tensor]
    first_order_g: bool = False
    per_sample: bool = True
    description: str = ""


FUNCTIONS: Registry[FunctionSpec] = Registry("function-level normalization")
FUNCTIONS.register("none", FunctionSpec(raw_output, per_sample=False, description="the discriminator's raw output"))
FUNCTIONS.register("gn", FunctionSpec(gradient_normalize, first_order_g=True, description="gradient normalization "
                                      "f / (||grad f|| + |f|) (GN-GAN, Wu et al. 2021)"))
FUNCTIONS.register("pgn", FunctionSpec(penalty_gradient_normalize, description="penalty gradient normalization "
                                       "(1 - f) / (||1 - grad f|| + |1 - f|) (PGN; no hard Lipschitz bound)"))


class GradientNormalized(nn.Module):
    """A discriminator whose outputs are normalized by the ``FUNCTIONS`` entry ``kind``: ``forward(x, y=None) =
    fn(D, x, y=y)`` (``y``: the labels of a class-conditional D, which is then called ``D(x, y)``).

    The wrapped network is ``self.inner``; weight normalizations on it still apply (and show in
    :func:`gannorm.sigmas` under ``inner.``). ``first_order_g`` uses the Faster-GNGAN first-order form
    whenever D's parameters are frozen (the trainer's G step), which is exact for piecewise-linear D;
    it is ignored by entries without a first-order form (PGN).
    """

    def __init__(self, inner: nn.Module, kind: str = "gn", eps: float = 0.0, first_order_g: bool = False) -> None:
        super().__init__()
        self.spec = FUNCTIONS.get(kind)
        check_eps(eps)
        if self.spec.per_sample:
            check_per_sample(inner, kind)
        self.inner, self.kind, self.eps, self.first_order_g = inner, kind, eps, first_order_g

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.first_order_g and self.spec.first_order_g:
            frozen = not any(p.requires_grad for p in self.inner.parameters())
            return self.spec.fn(self.inner, x, self.eps, y=y, first_order=frozen)
        return self.spec.fn(self.inner, x, self.eps, y=y)
