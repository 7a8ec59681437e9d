"""The Kernel Inception Distance from two feature sets (pure numpy, float64, no network).

KID is the squared maximum mean discrepancy (MMD^2) with the cubic polynomial kernel
``k(x, y) = (x . y / d + 1) ** 3`` (d = feature dimension), estimated without bias on random subsets.

Protocol (torch-fidelity's ``metric_kid.py``, ``kid_subsets=100``, ``kid_subset_size=1000``):
for each of ``subsets`` rounds, ``subset_size`` rows are drawn *without replacement* from each feature
set (``RandomState(seed).choice(n, subset_size, replace=False)``, first from ``f1``, then from ``f2``;
the two sets may have different sizes) and the unbiased estimator

    MMD^2 = sum_{i != j} k(x_i, x_j) / (m (m - 1)) + sum_{i != j} k(y_i, y_j) / (m (m - 1))
            - 2 sum_{i, j} k(x_i, y_j) / m^2

is computed; the mean and the population standard deviation (``ddof=0``) over the subsets are
returned. The estimate can be slightly negative when the distributions are equal.

When ``subset_size`` equals the size of both sets, every subset is the whole of both (in another order,
which the estimator ignores): there is one distinct subset, the estimate is computed once and the spread
is ``None`` (not a standard deviation of ~1e-16 made of rounding).

Fewer samples than ``subset_size`` is an **error** (as in torch-fidelity), not a silent shrink:
pass ``subset_size=min(1000, n1, n2)`` explicitly if you want that (what
:func:`gannorm.metrics.classifier.classifier_metrics` does), since KID values computed with different
subset sizes have different variances and should be reported with the size.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..validate import require

__all__ = ["kernel_inception_distance", "polynomial_kernel", "mmd2_unbiased"]


def _features(x: Any, name: str) -> np.ndarray:
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    f = np.array(x, dtype=np.float64)
    if f.ndim != 2 or f.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return f


def _positive_int(value: Any, name: str, minimum: int) -> int:
    return int(require(value, name=name, kind="int", min=minimum))


def polynomial_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The KID kernel matrix ``(x @ y.T / d + 1) ** 3`` for ``x`` ``[n, d]`` and ``y`` ``[m, d]``.

    Args:
        x: ``[n, d]``.
        y: ``[m, d]``.

    Returns:
        the kernel matrix ``[n, m]``.

    Example::

        >>> polynomial_kernel(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[1.0, 0.0]]))   # (1/2 + 1)^3, (0 + 1)^3
        array([[3.375],
               [1.   ]])
    """
    k = x @ y.T
    k /= x.shape[1]
    k += 1.0
    return k * k * k  # ~7x faster than ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased MMD^2 estimate between equally sized samples ``x``, ``y`` ``[m, d]`` (m >= 2) with
    :func:`polynomial_kernel` (torch-fidelity's ``mmd2(..., mmd_est='unbiased')``).

    Args:
        x: ``[m, d]``.
        y: ``[m, d]``.

    Returns:
        the estimate (it can be slightly negative).

    Example::

        >>> round(mmd2_unbiased(np.array([[0.0, 0.0], [1.0, 0.0]]), np.array([[0.0, 1.0], [1.0, 1.0]])), 4)
        1.1875
    """
    m = x.shape[0]
    k_xx = polynomial_kernel(x, x)
    k_yy = polynomial_kernel(y, y)
    k_xy = polynomial_kernel(x, y)
    sum_xx = k_xx.sum() - np.trace(k_xx)
    sum_yy = k_yy.sum() - np.trace(k_yy)
    return float((sum_xx + sum_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(f1: Any, f2: Any, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float | None]:
    """``(mean, std)`` of the unbiased polynomial-kernel MMD^2 over ``subsets`` random subsets.

    Each subset takes ``subset_size`` distinct rows of each set, drawn with ``numpy.random.RandomState(seed)``,
    so the result is reproducible for a given seed. When ``subset_size`` is the size of both sets there is one
    distinct subset (both whole sets): the estimate on them is returned with ``std`` None; so is the estimate
    of a single round (``subsets=1``), which has no spread to report.

    Args:
        f1: ``[n1, d]`` features (numpy or torch; float64 inside).
        f2: ``[n2, d]`` features.
        subsets: rounds of the estimator (>= 1).
        subset_size: rows of each set per round (>= 2, at most ``min(n1, n2)``).
        seed: the seed of the ``RandomState`` that draws the rows.

    Returns:
        ``(mean, std)``: the mean and population standard deviation over the rounds; ``std`` is None when
        there is a single distinct subset or a single round. A one-line ``ValueError`` if either set has fewer than
        ``subset_size`` rows, if the dimensions differ, or for invalid arguments.

    Example::

        >>> x = np.random.RandomState(0).randn(50, 4)
        >>> kernel_inception_distance(x, x + 1, subsets=10, subset_size=20)[0] > 0
        True
    """
    f1 = _features(f1, "f1")
    f2 = _features(f2, "f2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"f1 and f2 have different feature dimensions: {f1.shape[1]} and {f2.shape[1]}")
    subsets = _positive_int(subsets, "subsets", 1)
    subset_size = _positive_int(subset_size, "subset_size", 2)
    require(seed, name="seed", kind="int", min=0, max=2**32, max_exclusive=True)
    n1, n2 = f1.shape[0], f2.shape[0]
    if min(n1, n2) < subset_size:
        raise ValueError(f"KID needs at least subset_size={subset_size} samples in each set, got {n1} and {n2}; "
                         f"pass a smaller subset_size (e.g. subset_size={max(2, min(n1, n2))})")
    if subset_size == n1 == n2:  # every subset is both whole sets
        return mmd2_unbiased(f1, f2), None
    rng = np.random.RandomState(int(seed))
    mmds = np.empty(subsets, dtype=np.float64)
    for i in range(subsets):
        x = f1[rng.choice(n1, subset_size, replace=False)]
        y = f2[rng.choice(n2, subset_size, replace=False)]
        mmds[i] = mmd2_unbiased(x, y)
    return float(mmds.mean()), (float(mmds.std()) if subsets > 1 else None)
