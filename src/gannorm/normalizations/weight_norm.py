"""Weight normalization (Salimans and Kingma 2016) as a ``torch.nn.utils.parametrize`` parametrization.

``W_eff = g * v / ||v||`` with one norm per output unit -- over every weight dim but ``dim`` -- and a
learned gain ``g`` per output unit. ``dim`` is the output-channel dim of the weight: 0 for Conv and
Linear (``[out, in, *k]``), 1 for ConvTranspose (``[in, out, *k]``), the rule spectral normalization
uses; 0 for an ``nn.Embedding`` (``[num_embeddings, dim]``: each embedding vector has its own gain).
(torch's ``weight_norm`` defaults to ``dim=0`` for every layer, which for a ConvTranspose
normalizes per *input* channel; pass ``dim=0`` to :func:`weight_norm` for that.) After registration
``layer.weight`` is ``W_eff``, ``layer.parametrizations.weight.original`` is the direction ``v`` and
the parametrization module holds ``g`` (``layer.parametrizations.weight[0].g``, shape ``[units]``).
At registration ``g = ||W||`` row by row and ``v = W``, so the layer computes what it computed
before. The forward is torch's formula (no epsilon): a zero row of ``v`` gives NaN, so a layer with a
zero row is refused at registration.
"""
from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..errors import InputError, OptionError
from .spectral import _get_weight, default_dim


def unit_norms(weight: Tensor, dim: int) -> Tensor:
    """The 2-norm of every slice ``weight.select(dim, i)``: a vector with ``weight.shape[dim]`` entries.

    Args:
        weight: a weight.
        dim: the units' dim.

    Returns:
        the norms, one per unit.

    Example::

        >>> unit_norms(torch.tensor([[3.0, 4.0], [0.0, 1.0]]), 0)
        tensor([5., 1.])
    """
    return torch.linalg.vector_norm(weight, dim=[d for d in range(weight.ndim) if d != dim])


class WeightNorm(nn.Module):
    """Parametrization ``v -> g * v / ||v||`` (norms over every dim but ``dim``) with a learned gain ``g``."""

    def __init__(self, weight: Tensor, dim: int = 0) -> None:
        super().__init__()
        if weight.ndim < 2:
            raise InputError(f"weight normalization needs a weight with >= 2 dimensions, got shape "
                             f"{tuple(weight.shape)}")
        if not -weight.ndim <= dim < weight.ndim:
            raise OptionError("dim", f"dim={dim} is out of range for a weight with {weight.ndim} dimensions")
        self.dim = dim % weight.ndim
        with torch.no_grad():
            norms = unit_norms(weight.detach(), self.dim)
        if not bool((norms > 0).all()):
            raise InputError(f"weight normalization divides each output unit's weights by their norm, but "
                             f"{int((norms == 0).sum())} unit(s) have all-zero weights; initialize the layer first")
        dtype = torch.promote_types(weight.dtype, torch.float32)
        self.g = nn.Parameter(norms.to(dtype).clone())

    def forward(self, v: Tensor) -> Tensor:
        shape = [1] * v.ndim
        shape[self.dim] = -1
        return v * (self.g.to(v.dtype) / unit_norms(v, self.dim)).view(shape)

    @torch.no_grad()
    def reset_gain(self, v: Tensor) -> None:
        """``g = ||v||`` per unit: the effective weight becomes ``v`` itself (after re-initialising ``v``)."""
        self.g.copy_(unit_norms(v.detach(), self.dim).to(self.g.dtype))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


def weight_norm(module: nn.Module, name: str = "weight", *, dim: int | None = None) -> nn.Module:
    """Register weight normalization on ``module.<name>`` and return the module.

    Afterwards ``module.<name>`` is ``g * v / ||v||`` (norms over every dim but ``dim``; default: the
    output-channel dim, 1 for ConvTranspose, else 0), ``module.parametrizations.<name>.original`` is
    ``v`` and ``module.parametrizations.<name>[0].g`` the gains, initialized so that the effective
    weight equals the weight the layer had.

    Args:
        module: the layer, changed in place.
        name: the tensor to normalize.
        dim: the units' dim (default: the output channels).

    Returns:
        ``module``.

    Example::

        >>> layer = nn.Linear(3, 2)
        >>> before = layer.weight.detach().clone()
        >>> layer = weight_norm(layer)
        >>> torch.allclose(layer.weight, before), tuple(layer.parametrizations.weight[0].g.shape)
        (True, (2,))
    """
    weight = _get_weight(module, name)
    param = WeightNorm(weight, default_dim(module) if dim is None else dim)
    parametrize.register_parametrization(module, name, param)
    return module


def weight_norm_layers(model: nn.Module):
    """``(layer, parametrization)`` for every weight-normalized ``weight`` of ``model``.

    Args:
        model: a network.

    Returns:
        an iterator of ``(layer, WeightNorm)``.

    Example::

        >>> net = nn.Sequential(weight_norm(nn.Linear(3, 2)), nn.Linear(2, 1))
        >>> [type(p).__name__ for _, p in weight_norm_layers(net)]
        ['WeightNorm']
    """
    for m in model.modules():
        if parametrize.is_parametrized(m, "weight"):
            for p in cast(nn.ModuleDict, m.parametrizations)["weight"].children():
                if isinstance(p, WeightNorm):
                    yield m, p
