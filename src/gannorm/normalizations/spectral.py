"""Spectral normalization (Miyato et al. 2018) of the reshaped kernel, and its scaled variant (SSN).

``W_eff = scale * W / sigma(W_mat)`` where ``W_mat`` is the weight with dimension ``dim`` moved
first and the rest flattened: ``[out, in*kh*kw]`` for convolutions and linears (``dim=0``) and
``[out, in*kh*kw]`` of a transposed convolution's ``[in, out, kh, kw]`` weight (``dim=1``), exactly
as in ``torch.nn.utils.parametrizations.spectral_norm``. A 1-D weight is a ``[1, n]`` matrix, so
its sigma is its 2-norm. ``scale != 1`` is SSN (the same constant for every layer; bias unscaled).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from . import power_iteration as pi
from ..errors import InputError, OptionError
from .base import TRANSPOSED_CONVS, PowerIterationNorm


def default_dim(module: nn.Module) -> int:
    """1 for transposed convolutions (their output channels are dim 1), else 0 -- torch's rule.

    Args:
        module: a layer.

    Returns:
        the dim of the weight that indexes the layer's output units.

    Example::

        >>> default_dim(nn.Conv2d(3, 4, 3)), default_dim(nn.ConvTranspose2d(4, 3, 3))
        (0, 1)
    """
    return 1 if isinstance(module, TRANSPOSED_CONVS) else 0


def matricize(weight: Tensor, dim: int) -> Tensor:
    """The ``[h, w]`` matrix whose sigma SN estimates (a view when ``dim == 0``).

    Args:
        weight: a layer's weight (1-D weights become one row).
        dim: the output units' dim (:func:`default_dim`).

    Returns:
        the matrix ``[units, rest]``.

    Example::

        >>> matricize(torch.zeros(8, 3, 5, 5), 0).shape, matricize(torch.zeros(8, 3, 5, 5), 1).shape
        (torch.Size([8, 75]), torch.Size([3, 200]))
    """
    if weight.ndim == 1:
        return weight.reshape(1, -1)
    if dim != 0:
        weight = weight.movedim(dim, 0)
    return weight.reshape(weight.shape[0], -1)


class SpectralNorm(PowerIterationNorm):
    """Parametrization ``W -> scale * W / sigma(matricize(W, dim))`` with buffers ``_u`` and ``_v``."""

    vector_names = (("_u", "_v"),)

    def __init__(self, weight: Tensor, *, dim: int = 0, n_power_iterations: int = 1, eps: float = 1e-12,
                 scale: float = 1.0, update: str = "forward", grad_through_vectors: bool = False,
                 warmup: int = 15) -> None:
        super().__init__(n_power_iterations=n_power_iterations, eps=eps, scale=scale, update=update,
                         grad_through_vectors=grad_through_vectors, warmup=warmup)
        ndim = weight.ndim
        if not -ndim <= dim < max(ndim, 1):
            raise OptionError("dim", f"dim={dim} is out of range for a weight with {ndim} dimensions")
        self.dim = dim % ndim if ndim > 1 else 0
        self._init_buffers(weight)

    def initial_vectors(self, weight: Tensor) -> list[tuple[Tensor, Tensor]]:
        h, w = matricize(weight, self.dim).shape
        return [(weight.new_empty(h).normal_(0, 1), weight.new_empty(w).normal_(0, 1))]

    def maps(self, weight: Tensor):
        return [pi.matrix_map(matricize(weight, self.dim))]

    def add_sigma_grad(self, out, alpha, vectors, weight) -> None:
        if self.dim != 0 and out.ndim > 1:
            return super().add_sigma_grad(out, alpha, vectors, weight)
        (u, v), = vectors
        matricize(out, 0).addr_(u, v, alpha=alpha)  # a view of the contiguous gradient


def spectral_norm(module: nn.Module, name: str = "weight", *, scale: float = 1.0, n_power_iterations: int = 1,
                  eps: float = 1e-12, dim: int | None = None, update: str = "forward",
                  grad_through_vectors: bool = False, warmup: int = 15) -> nn.Module:
    """Register (scaled) spectral normalization on ``module.<name>`` and return the module.

    Afterwards ``module.<name>`` is the effective weight ``scale * W / sigma``; the raw weight lives
    in ``module.parametrizations.<name>.original``. Every option is keyword-only (the signature every
    per-layer function of :mod:`gannorm.normalizations` shares): ``scale`` (SSN when != 1),
    ``n_power_iterations``, ``eps`` and ``dim`` as in ``torch.nn.utils.parametrizations.spectral_norm``,
    ``update`` (``"forward"`` or ``"step"``, see :mod:`gannorm.normalizations.base`),
    ``grad_through_vectors`` (the TF behaviour) and ``warmup`` (iterations at registration; torch
    uses 15, the official BSN/SNGAN code 0).

    Args:
        module: the layer (Conv, ConvTranspose, Linear, Embedding, ...), changed in place.
        name: the tensor to normalize.
        scale: the constant ``c`` of ``c * W / sigma`` (SSN when != 1).
        n_power_iterations: power iterations per update.
        eps: the floor of the vectors' norms.
        dim: the output units' dim (default: :func:`default_dim`).
        update: ``"forward"`` (torch's cadence) or ``"step"`` (one iteration per optimizer step).
        grad_through_vectors: let the gradient flow through ``u`` and ``v`` (the TF code).
        warmup: iterations at registration.

    Returns:
        ``module``.

    Example::

        >>> layer = spectral_norm(nn.Linear(20, 40), scale=2.0, warmup=100)
        >>> round(float(torch.linalg.matrix_norm(layer.weight.detach(), 2)), 4)
        2.0
    """
    weight = _get_weight(module, name)
    if dim is None:
        dim = default_dim(module)
    param = SpectralNorm(weight, dim=dim, n_power_iterations=n_power_iterations, eps=eps, scale=scale,
                         update=update, grad_through_vectors=grad_through_vectors, warmup=warmup)
    parametrize.register_parametrization(module, name, param)
    return module


def _get_weight(module: nn.Module, name: str) -> Tensor:
    weight = getattr(module, name, None)
    if not isinstance(weight, torch.Tensor):
        raise InputError(f"module {type(module).__name__} has no tensor parameter or buffer named {name!r}; "
                         "pass the name of its weight (name='weight')")
    return weight
