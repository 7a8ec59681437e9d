"""Pure power-iteration steps for the largest singular value of a linear map.

Every function here takes the map as a pair of callables ``(apply, apply_adjoint)`` or as a
matrix, plus the current left/right vectors, and returns new tensors. Nothing is written in
place: the parametrizations decide what to persist (see ``base.py``).

The iteration order is the one of ``torch.nn.utils.parametrizations.spectral_norm``::

    u <- normalize(A v)
    v <- normalize(A^T u)
    sigma = <u, A v>

so that, given the same starting vectors, our SN equals torch's to rounding.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

LinearMap = Callable[[Tensor], Tensor]


def normalize(x: Tensor, eps: float) -> Tensor:
    """``x / max(||x||_2, eps)`` over all elements (a flat vector or a feature map)."""
    return x / torch.clamp(torch.linalg.vector_norm(x), min=eps)


def iterate(apply: LinearMap, adjoint: LinearMap, u: Tensor, v: Tensor, n: int, eps: float) -> tuple[Tensor, Tensor]:
    """Run ``n`` power iterations from ``(u, v)``; returns the new ``(u, v)``."""
    for _ in range(n):
        u = normalize(apply(v), eps)
        v = normalize(adjoint(u), eps)
    return u, v


def rayleigh_sigma(apply: LinearMap, u: Tensor, v: Tensor) -> Tensor:
    """The sigma estimate ``<u, A v>``; differentiable with respect to the map."""
    return torch.vdot(u.reshape(-1), apply(v).reshape(-1))


def matrix_map(mat: Tensor) -> tuple[LinearMap, LinearMap]:
    """``(x -> M x, y -> M^T y)`` for a 2-D matrix ``M``."""
    return (lambda x: torch.mv(mat, x)), (lambda y: torch.mv(mat.t(), y))


def transposed_kernel_map(kernel: Tensor) -> tuple[LinearMap, LinearMap]:
    """The map of ``kernel.transpose(0, 1).reshape(in, -1)`` without materialising that copy.

    ``kernel`` has shape ``[out, in, *k]``. Writing ``K = kernel.reshape(out, in, s)`` (a view),
    the matrix ``M2[i, (o, j)] = K[o, i, j]`` acts as::

        M2 x   = sum_o K[o] @ x[o]          (x viewed as [out, s])  -> [in]
        M2^T y = (y @ K[o]) for every o      (y of length in)         -> [out * s]

    Both are batched mat-vecs on contiguous slices of the kernel.
    """
    out, inp = kernel.shape[0], kernel.shape[1]
    k3 = kernel.reshape(out, inp, -1)

    def apply(x: Tensor) -> Tensor:
        return torch.bmm(k3, x.view(out, -1, 1)).sum(dim=0).view(inp)

    def adjoint(y: Tensor) -> Tensor:
        return torch.matmul(y, k3).reshape(-1)

    return apply, adjoint
