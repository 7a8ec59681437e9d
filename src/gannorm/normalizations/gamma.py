"""Spectral normalization with a learnable gain gamma (Miyato et al. 2018, Appendix E).

As in the official BSN code's ``same_gamma``/``diff_gamma`` baselines (``docs/official-code.md``)
the layer computes ``gamma * (W_bar x + b)``: gamma multiplies the normalized weight *and* the
bias. It is a second parametrization chained after SN on the weight, and one on the bias, both
holding the same ``nn.Parameter``. One gamma can be shared by every layer of a model
(``sn_gamma_shared``) or each layer can have its own (``sn_gamma_layer``); gamma starts at 1.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from .options import check_option


class GammaScale(nn.Module):
    """Parametrization ``x -> gamma * x`` with a (possibly shared) scalar parameter ``gamma``."""

    def __init__(self, gamma: nn.Parameter) -> None:
        super().__init__()
        self.gamma = gamma

    def forward(self, x: Tensor) -> Tensor:
        return self.gamma.to(x.dtype) * x


def new_gamma(like: Tensor, value: float = 1.0) -> nn.Parameter:
    """A scalar gain ``value`` (> 0) on ``like``'s device, in float32 or ``like``'s dtype if wider.

    Args:
        like: a tensor whose device and dtype to follow.
        value: the initial gain (> 0).

    Returns:
        a 0-dim parameter.

    Example::

        >>> new_gamma(torch.zeros(2, dtype=torch.float16), 2.0)
        Parameter containing:
        tensor(2., requires_grad=True)
    """
    check_option("gamma_init", value)
    dtype = torch.promote_types(like.dtype, torch.float32)
    return nn.Parameter(torch.full((), float(value), dtype=dtype, device=like.device))


def attach_gamma(module: nn.Module, gamma: nn.Parameter, name: str = "weight") -> nn.Module:
    """Multiply ``module.<name>`` (already normalized) and ``module.bias`` (if any) by ``gamma``.

    Args:
        module: the layer, changed in place.
        gamma: the gain (shared by several layers for ``sn_gamma_shared``).
        name: the tensor to scale.

    Returns:
        ``module``.

    Example::

        >>> layer = nn.Linear(2, 1)
        >>> w, b = layer.weight.detach().clone(), layer.bias.detach().clone()
        >>> layer = attach_gamma(layer, new_gamma(w, 3.0))
        >>> torch.allclose(layer.weight, 3 * w), torch.allclose(layer.bias, 3 * b)
        (True, True)
    """
    parametrize.register_parametrization(module, name, GammaScale(gamma))
    if getattr(module, "bias", None) is not None:
        parametrize.register_parametrization(module, "bias", GammaScale(gamma))
    return module
