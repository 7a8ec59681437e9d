"""Precision, recall, density and coverage of generated features against real ones (k-NN manifolds).

Every feature vector gets a radius: the distance to its ``nearest_k``-th nearest neighbour in its own set
(the ``(nearest_k + 1)``-th smallest distance of its row, the point itself being the first). A set's
*manifold* is the union of the balls of its points. With real features ``r_i`` (radii ``rad_i``) and
generated features ``f_j`` (radii ``rad'_j``), all distances Euclidean, all comparisons strict:

* precision (Kynkaenniemi et al. 2019): the fraction of ``f_j`` inside the real manifold,
  ``mean_j [exists i: d(r_i, f_j) < rad_i]``;
* recall: the fraction of ``r_i`` inside the generated manifold, ``mean_i [exists j: d(r_i, f_j) < rad'_j]``;
* density (Naeem et al. 2020): ``mean_j #{i: d(r_i, f_j) < rad_i} / nearest_k``, how many real balls hold a
  generated sample on average (1 when the two sets are one sample; above 1 when generated samples crowd
  where the real ones are dense);
* coverage: the fraction of real balls that hold at least one generated sample,
  ``mean_i [min_j d(r_i, f_j) < rad_i]``.

These are the definitions and conventions of the authors' ``prdc`` package (``compute_prdc``). Unlike it,
nothing here holds an N x N or N x M distance matrix: distances are computed block by block
(``chunk_size`` rows of one set against ``chunk_size`` rows of the other, both upcast to float64), the
radii keep a running ``nearest_k + 1`` smallest per row, and the comparisons add up into integer counts per
row. The working memory is ``O(chunk_size * (D + chunk_size) + (N + M) * nearest_k)`` besides the inputs,
which are read in place (not copied). Torch tensors are computed on their own device (a GPU computes
50,000 x 50,000 features in seconds); numpy arrays on the CPU.

Two deliberate differences from the package, both at the level of rounding: every distance is float64 (the
package computes float32 features in float32), and a pair whose expanded distance cancels (a duplicated or
near-duplicated point) is computed directly, so duplicates are exactly 0 apart whatever the block sizes.
The numbers can therefore differ from the package's only for a point within rounding of a ball's edge.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError, OptionError
from ..validate import require

__all__ = ["DEFAULT_CHUNK_SIZE", "PRDC_KEYS", "nearest_neighbour_radii", "prdc"]

#: rows per block of the distance computation (two float64 blocks of [chunk_size, D] and one of
#: [chunk_size, chunk_size] live at a time)
DEFAULT_CHUNK_SIZE = 1024
#: the keys of :func:`prdc`'s result, in order
PRDC_KEYS = ("precision", "recall", "density", "coverage")


def _features(x: Any, name: str, device: torch.device | None = None) -> Tensor:
    """``x`` as a 2-D floating tensor (numpy arrays are shared, not copied), on ``device`` if given."""
    if not isinstance(x, Tensor):
        x = np.asarray(x)
        if x.dtype.kind not in "fiu":
            raise InputError(f"{name} must hold numbers, got an array of {x.dtype}")
        if x.dtype.kind != "f":
            x = x.astype(np.float64)
        elif not x.dtype.isnative or any(step < 0 for step in x.strides):  # torch reads neither in place
            x = np.ascontiguousarray(x, dtype=x.dtype.newbyteorder("="))
        x = torch.from_numpy(x)
    x = x.detach()
    if not x.is_floating_point():
        x = x.double()
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise InputError(f"{name} must be a 2-D array of features [N, D] with N, D >= 1, got shape {tuple(x.shape)}")
    return x if device is None else x.to(device)


def _count(value: Any, name: str, low: int) -> int:
    return int(require(value, name=name, kind="int", min=low, error=OptionError))


def _blocks(x: Tensor, chunk_size: int) -> Iterator[tuple[int, Tensor, Tensor]]:
    """``(start, rows, squared norms)`` of consecutive row blocks of ``x``, upcast to float64."""
    for start in range(0, x.shape[0], chunk_size):
        rows = x[start:start + chunk_size].double()
        yield start, rows, torch.einsum("ij,ij->i", rows, rows)  # no [chunk_size, D] temporary


#: a squared distance below this fraction of ``|a|^2 + |b|^2`` is recomputed as ``|a - b|^2`` (the expansion's
#: rounding error is ~1e-16 of that sum, so below it the expansion is mostly noise: duplicates, near-duplicates)
CANCELLATION = 1e-9
#: elements of the ``a - b`` rows of one recomputation slice (16 MiB in float64)
_EXACT_SLICE = 2 ** 21


def _distances(a: Tensor, a_sq: Tensor, b: Tensor, b_sq: Tensor, itself: bool = False) -> Tensor:
    """Euclidean distances ``[len(a), len(b)]`` in float64: ``sqrt(max(-2 a.b + |a|^2 + |b|^2, 0))``, added in
    that order (scikit-learn's ``euclidean_distances``, which the ``prdc`` package calls), except where that
    expansion cancels (:data:`CANCELLATION`): those pairs are ``|a - b|`` computed directly, so a duplicated
    point is at distance exactly 0 whatever the blocks (the expansion leaves ~1e-6 of noise that depends on
    the block shapes). ``itself``: ``a`` is ``b``, whose diagonal (each row's distance to itself) is set to 0."""
    d = a @ b.T
    d *= -2.0
    d += a_sq.unsqueeze(1)
    d += b_sq.unsqueeze(0)
    if itself:
        d.diagonal().fill_(float("inf"))  # not a candidate below; 0 at the end
    # candidates against the block's largest |b|^2: a bool mask, no second [len(a), len(b)] float block
    rows = torch.nonzero(d.amin(dim=1) <= CANCELLATION * (a_sq + b_sq.max())).flatten()
    if len(rows):  # rare: a near-duplicate pair (no [len(a), len(b)] mask is made otherwise)
        _recompute_close(d, rows, a, a_sq, b, b_sq)
    d = d.clamp_(min=0.0).sqrt_()
    if itself:
        d.diagonal().zero_()
    return d


def _recompute_close(d: Tensor, rows: Tensor, a: Tensor, a_sq: Tensor, b: Tensor, b_sq: Tensor) -> None:
    """Set ``d[i, j] = |a_i - b_j|^2`` where the expansion cancels, for the rows ``rows`` of ``d`` that may hold
    such pairs; the differences are made :data:`_EXACT_SLICE` elements at a time."""
    sub = d[rows]
    i, j = torch.nonzero(sub <= CANCELLATION * (a_sq[rows].unsqueeze(1) + b_sq.unsqueeze(0)), as_tuple=True)
    i = rows[i]
    step = max(1, _EXACT_SLICE // max(1, a.shape[1]))
    for s in range(0, len(i), step):
        ii, jj = i[s:s + step], j[s:s + step]
        d[ii, jj] = (a[ii] - b[jj]).square_().sum(dim=1)


def _finite(x: Tensor, name: str, chunk_size: int) -> None:
    """Refuse NaN or infinite features, naming the first bad row (checked a block at a time)."""
    for start, _rows, sq in _blocks(x, chunk_size):
        bad = torch.nonzero(~torch.isfinite(sq))
        if len(bad):
            raise InputError(f"{name} has NaN or infinite values (row {start + int(bad[0, 0])}); drop or fix those "
                             "samples before computing precision/recall/density/coverage")


def nearest_neighbour_radii(features: Any, nearest_k: int = 5, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Tensor:
    """The distance of every row of ``features`` to its ``nearest_k``-th nearest neighbour in ``features``
    (the ``(nearest_k + 1)``-th smallest of its distances to all rows, its own 0 included), in float64.

    Args:
        features: ``[N, D]`` numpy array or tensor (read in place; a tensor's device is used).
        nearest_k: the neighbour, 1 <= nearest_k < N.
        chunk_size: rows per block; memory grows with ``chunk_size * (D + chunk_size)``, never with N^2.

    Returns:
        float64 tensor ``[N]`` of radii.

    Example::

        >>> nearest_neighbour_radii(np.array([[0.0], [1.0], [3.0]]), nearest_k=1)
        tensor([1., 1., 2.], dtype=torch.float64)
    """
    x = _features(features, "features")
    k = _count(nearest_k, "nearest_k", 1)
    chunk_size = _count(chunk_size, "chunk_size", 1)
    if k >= x.shape[0]:
        raise InputError(f"nearest_k={k} needs more than {k} feature rows, got {x.shape[0]}; lower nearest_k or "
                         "use more samples")
    return _radii(x, k, chunk_size)


def _radii(x: Tensor, k: int, chunk_size: int) -> Tensor:
    radii = torch.empty(x.shape[0], dtype=torch.float64, device=x.device)
    for start, rows, rows_sq in _blocks(x, chunk_size):
        smallest = None
        for other, cols, cols_sq in _blocks(x, chunk_size):
            d = _distances(rows, rows_sq, cols, cols_sq, itself=other == start)  # its own distance: exactly 0
            d = d if smallest is None else torch.cat([smallest, d], dim=1)
            smallest = torch.topk(d, min(k + 1, d.shape[1]), dim=1, largest=False).values
            del d  # before the next block is made
        assert smallest is not None, "the inner loop runs over the same blocks as the outer one, so at least once"
        radii[start:start + len(rows)] = smallest.max(dim=1).values
    return radii


def prdc(real_features: Any, fake_features: Any, nearest_k: int = 5,
         chunk_size: int = DEFAULT_CHUNK_SIZE) -> dict[str, float]:
    """Precision, recall, density and coverage of ``fake_features`` against ``real_features`` (the ``prdc``
    package's ``compute_prdc``, computed in blocks: no N x M matrix is ever held).

    Args:
        real_features: ``[N, D]`` numpy array or tensor (float32 or float64; read in place).
        fake_features: ``[M, D]``, the same D; moved to the real features' device if a tensor elsewhere.
        nearest_k: the neighbour whose distance is each point's radius; ``1 <= nearest_k < min(N, M)``.
        chunk_size: rows per block (>= 1); the working memory is about ``8 * chunk_size * (2 D + 3 chunk_size)``
            bytes besides the inputs.

    Returns:
        ``{"precision", "recall", "density", "coverage"}`` as floats; precision, recall and coverage lie in
        [0, 1], density in [0, N / nearest_k].

    Raises:
        InputError: a set that is not ``[n, D]``, different D, NaN or infinite values, ``nearest_k`` not
            below both set sizes.
        OptionError: ``nearest_k`` or ``chunk_size`` not an integer >= 1.

    Example::

        >>> x = np.random.default_rng(0).normal(size=(100, 8))
        >>> prdc(x, x, nearest_k=5)
        {'precision': 1.0, 'recall': 1.0, 'density': 1.0, 'coverage': 1.0}
    """
    real = _features(real_features, "real_features")
    fake = _features(fake_features, "fake_features", real.device)
    k = _count(nearest_k, "nearest_k", 1)
    chunk_size = _count(chunk_size, "chunk_size", 1)
    if real.shape[1] != fake.shape[1]:
        raise InputError(f"real and fake features have different dimensions ({real.shape[1]} and {fake.shape[1]}); "
                         "extract both with the same network")
    for x, name in ((real, "real_features"), (fake, "fake_features")):
        if k >= x.shape[0]:
            raise InputError(f"nearest_k={k} needs more than {k} rows in {name}, got {x.shape[0]}; lower "
                             "nearest_k or use more samples")
        _finite(x, name, chunk_size)
    return _compare(real, fake, _radii(real, k, chunk_size), _radii(fake, k, chunk_size), k, chunk_size)


def _compare(real: Tensor, fake: Tensor, real_radii: Tensor, fake_radii: Tensor, k: int,
             chunk_size: int) -> dict[str, float]:
    """The four numbers from one blockwise pass over the real-fake distances."""
    in_real_balls = torch.zeros(fake.shape[0], dtype=torch.int64, device=real.device)  # per fake: real balls
    covered = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)        # per real: a fake inside
    recalled = torch.zeros(real.shape[0], dtype=torch.bool, device=real.device)       # per real: in a fake ball
    for i, rows, rows_sq in _blocks(real, chunk_size):
        rad = real_radii[i:i + len(rows)].unsqueeze(1)
        for j, cols, cols_sq in _blocks(fake, chunk_size):
            d = _distances(rows, rows_sq, cols, cols_sq)
            inside = d < rad
            in_real_balls[j:j + len(cols)] += inside.sum(dim=0)
            covered[i:i + len(rows)] |= inside.any(dim=1)
            recalled[i:i + len(rows)] |= (d < fake_radii[j:j + len(cols)].unsqueeze(0)).any(dim=1)
            del d, inside  # before the next block is made
    n, m = real.shape[0], fake.shape[0]
    return {"precision": int((in_real_balls > 0).sum()) / m, "recall": int(recalled.sum()) / n,
            "density": (1.0 / k) * (int(in_real_balls.sum()) / m), "coverage": int(covered.sum()) / n}
