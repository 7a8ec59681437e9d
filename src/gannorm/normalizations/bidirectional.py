"""Bidirectional (scaled) spectral normalization, BSN/BSSN (Lin, Sekar and Fanti, NeurIPS 2021).

For a kernel ``W`` of shape ``[out, in, *k]``::

    sigma1 = ||W.reshape(out, -1)||_2                   (fan-in direction, SN's matrix)
    sigma2 = ||W.transpose(0, 1).reshape(in, -1)||_2    (fan-out direction)
    W_eff  = scale * W / ((sigma1 + sigma2) / 2)

each sigma with its own persistent ``(u, v)`` pair (``_u1/_v1`` and ``_u2/_v2``). The second
iteration works on views of ``W`` (see :func:`power_iteration.transposed_kernel_map`), never on a
transposed copy. A 2-D weight (a Linear, or an Embedding's ``[num_embeddings, dim]``) gets plain SN
times ``scale``, as in the official code (``docs/methods.md``): for a matrix the transposed reshaping
has the same singular values, so sigma2 = sigma1. The bias is not scaled. The formula is symmetric in the
first two dimensions, so it applies unchanged to a transposed convolution's ``[in, out, *k]`` kernel.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn.utils import parametrize

from . import power_iteration as pi
from ..errors import InputError
from .base import PowerIterationNorm
from .spectral import SpectralNorm, _get_weight


class BidirectionalSpectralNorm(PowerIterationNorm):
    """Parametrization ``W -> scale * W / mean(sigma1, sigma2)`` for weights with >= 3 dimensions."""

    vector_names = (("_u1", "_v1"), ("_u2", "_v2"))
    sigma_names = ("sigma1", "sigma2")

    def __init__(self, weight: Tensor, *, n_power_iterations: int = 1, eps: float = 1e-12, scale: float = 1.0,
                 update: str = "forward", grad_through_vectors: bool = False, warmup: int = 15) -> None:
        super().__init__(n_power_iterations=n_power_iterations, eps=eps, scale=scale, update=update,
                         grad_through_vectors=grad_through_vectors, warmup=warmup)
        if weight.ndim < 3:
            raise InputError("BidirectionalSpectralNorm needs a kernel with >= 3 dimensions; "
                             "use SpectralNorm for linear weights")
        self._init_buffers(weight)

    def initial_vectors(self, weight: Tensor) -> list[tuple[Tensor, Tensor]]:
        out, inp = weight.shape[0], weight.shape[1]
        s = weight[0, 0].numel()
        new = weight.new_empty
        return [(new(out).normal_(), new(inp * s).normal_()), (new(inp).normal_(), new(out * s).normal_())]

    def maps(self, weight: Tensor):
        return [pi.matrix_map(weight.reshape(weight.shape[0], -1)), pi.transposed_kernel_map(weight)]

    def combine(self, sigmas: list[Tensor]) -> Tensor:
        return (sigmas[0] + sigmas[1]) / 2

    def add_sigma_grad(self, out, alpha, vectors, weight) -> None:
        (u1, v1), (u2, v2) = vectors
        o, i = out.shape[0], out.shape[1]
        out.view(o, -1).addr_(u1, v1, alpha=alpha / 2)
        # d sigma2 / dW[o, i, j] = u2[i] * v2[o, j]: a broadcast rank-one update in W's own layout
        out.view(o, i, -1).addcmul_(u2.view(1, i, 1), v2.view(o, 1, -1) * (alpha / 2))


def bidirectional_spectral_norm(module: nn.Module, name: str = "weight", *, scale: float = 1.0,
                                n_power_iterations: int = 1, eps: float = 1e-12, update: str = "forward",
                                grad_through_vectors: bool = False, warmup: int = 15) -> nn.Module:
    """Register BSN (``scale == 1``) or BSSN on ``module.<name>``; linear weights get SN times ``scale``.

    Options (keyword-only) as in :func:`gannorm.spectral_norm`.

    Args:
        module: the layer, changed in place.
        name: the tensor to normalize.
        scale: ``c`` in ``c * W / ((sigma1 + sigma2) / 2)`` (BSSN when != 1).
        n_power_iterations: power iterations per update.
        eps: the floor of the vectors' norms.
        update: ``"forward"`` or ``"step"``.
        grad_through_vectors: let the gradient flow through the vectors.
        warmup: iterations at registration.

    Returns:
        ``module``.

    Example::

        >>> conv = bidirectional_spectral_norm(nn.Conv2d(3, 8, 3), warmup=200)
        >>> w = conv.parametrizations.weight.original.detach()
        >>> s1 = torch.linalg.matrix_norm(w.reshape(8, -1), 2)                  # the fan-in reshaping
        >>> s2 = torch.linalg.matrix_norm(w.transpose(0, 1).reshape(3, -1), 2)  # the fan-out reshaping
        >>> torch.allclose(conv.weight, w / ((s1 + s2) / 2), rtol=1e-3)
        True
    """
    weight = _get_weight(module, name)
    options: dict[str, Any] = dict(n_power_iterations=n_power_iterations, eps=eps, scale=scale, update=update,
                                   grad_through_vectors=grad_through_vectors, warmup=warmup)
    param: PowerIterationNorm
    if weight.ndim >= 3:
        param = BidirectionalSpectralNorm(weight, **options)
    else:
        param = SpectralNorm(weight, dim=0, **options)
    parametrize.register_parametrization(module, name, param)
    return module
