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
    """``x / max(||x||_2, eps)`` over all elements (a flat vector or a feature map).

    Args:
        x: a tensor.
        eps: the floor of the norm.

    Returns:
        ``x`` scaled to unit norm.

    Example::

        >>> normalize(torch.tensor([3.0, 4.0]), 1e-12), normalize(torch.zeros(2), 1e-12)
        (tensor([0.6000, 0.8000]), tensor([0., 0.]))
    """
    return x / torch.clamp(torch.linalg.vector_norm(x), min=eps)


def iterate(apply: LinearMap, adjoint: LinearMap, u: Tensor, v: Tensor, n: int, eps: float) -> tuple[Tensor, Tensor]:
    """Run ``n`` power iterations from ``(u, v)``; returns the new ``(u, v)``.

    Args:
        apply: ``v -> A v``.
        adjoint: ``u -> A^T u``.
        u: the left vector.
        v: the right vector.
        n: the number of iterations.
        eps: the floor of the norms.

    Returns:
        the new ``(u, v)``.

    Example::

        >>> u, v = iterate(*matrix_map(torch.diag(torch.tensor([3.0, 1.0]))), torch.ones(2), torch.ones(2), 20, 1e-12)
        >>> v.round(decimals=4)                                    # the top right singular vector
        tensor([1., 0.])
    """
    u, v, _ = iterate_with_sigma(apply, adjoint, u, v, n, eps)
    return u, v


def iterate_with_sigma(apply: LinearMap, adjoint: LinearMap, u: Tensor, v: Tensor, n: int,
                       eps: float) -> tuple[Tensor, Tensor, Tensor | None]:
    """``n`` iterations, plus the sigma estimate ``<u, A v>`` of the final pair (None when ``n == 0``).

    After ``v = A^T u / ||A^T u||`` the estimate ``<u, A v> = <A^T u, v> = ||A^T u||`` is the norm
    already computed for the last normalization, so no extra application of ``A`` is needed.
    Requires ``n >= 1``.

    Args:
        apply: ``v -> A v``.
        adjoint: ``u -> A^T u``.
        u: the left vector.
        v: the right vector.
        n: the number of iterations.
        eps: the floor of the norms.

    Returns:
        ``(u, v, sigma)``.

    Example::

        >>> A = torch.tensor([[2.0, 1.0], [1.0, 2.0]])           # singular values 3 and 1
        >>> _, _, sigma = iterate_with_sigma(*matrix_map(A), torch.ones(2), torch.tensor([1.0, 0.0]), 30, 1e-12)
        >>> round(float(sigma), 5)
        3.0
    """
    norm = None
    for _ in range(n):
        u = normalize(apply(v), eps)
        w = adjoint(u)
        norm = torch.linalg.vector_norm(w)
        v = w / torch.clamp(norm, min=eps)
    return u, v, norm


def rayleigh_sigma(apply: LinearMap, u: Tensor, v: Tensor) -> Tensor:
    """The sigma estimate ``<u, A v>``; differentiable with respect to the map.

    Args:
        apply: ``v -> A v``.
        u: the left vector.
        v: the right vector.

    Returns:
        ``<u, A v>``.

    Example::

        >>> apply, _ = matrix_map(torch.tensor([[2.0, 0.0], [0.0, 1.0]]))
        >>> rayleigh_sigma(apply, torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]))
        tensor(2.)
    """
    return torch.vdot(u.reshape(-1), apply(v).reshape(-1))


def matrix_map(mat: Tensor) -> tuple[LinearMap, LinearMap]:
    """``(x -> M x, y -> M^T y)`` for a 2-D matrix ``M``.

    Args:
        mat: a matrix ``[h, w]``.

    Returns:
        the map and its adjoint.

    Example::

        >>> apply, adjoint = matrix_map(torch.tensor([[1.0, 2.0]]))
        >>> apply(torch.tensor([1.0, 1.0])), adjoint(torch.tensor([1.0]))
        (tensor([3.]), tensor([1., 2.]))
    """
    return (lambda x: torch.mv(mat, x)), (lambda y: torch.mv(mat.t(), y))


def transposed_kernel_map(kernel: Tensor) -> tuple[LinearMap, LinearMap]:
    """The map of ``kernel.transpose(0, 1).reshape(in, -1)`` without materialising that copy.

    ``kernel`` has shape ``[out, in, *k]``. Writing ``K = kernel.reshape(out, in, s)`` (a view),
    the matrix ``M2[i, (o, j)] = K[o, i, j]`` acts as::

        M2 x   = sum_o K[o] @ x[o]          (x viewed as [out, s])  -> [in]
        M2^T y = (y @ K[o]) for every o      (y of length in)         -> [out * s]

    Both read the kernel in its own layout (see ``benchmarks/norm_overhead.py`` for the cost).

    Args:
        kernel: a convolution weight ``[out, in, *k]``.

    Returns:
        the map of its fan-out reshaping and its adjoint.

    Example::

        >>> kernel = torch.arange(12.0).reshape(2, 3, 2)
        >>> apply, _ = transposed_kernel_map(kernel)
        >>> v = torch.ones(4)
        >>> torch.equal(apply(v), kernel.transpose(0, 1).reshape(3, -1) @ v)
        True
    """
    out, inp = kernel.shape[0], kernel.shape[1]
    k3 = kernel.reshape(out, inp, -1)

    mat = kernel.reshape(out, -1)

    def apply(x: Tensor) -> Tensor:
        # R[j', (i, j)] = sum_o x[o, j'] K[o, i, j] is one GEMM that reads the kernel once in its own
        # layout; M2 x is the sum of its diagonal j' = j (s-fold FLOPs, but no copy and no tiny batches)
        s = x.numel() // out
        r = torch.mm(x.view(out, s).t(), mat).view(s, inp, s)
        return r.diagonal(dim1=0, dim2=2).sum(-1)

    def adjoint(y: Tensor) -> Tensor:
        return torch.matmul(y, k3).reshape(-1)

    return apply, adjoint
