"""Metrics for low-dimensional Gaussian mixtures (``ring8``, ``grid25``): mode coverage and sample distances.

Pure numpy/scipy, float64, no network::

    ds = load_dataset("ring8")
    stats = mode_statistics(fake, ds.modes, ds.mode_std)     # modes_covered, high_quality_fraction, ...
    ed = energy_distance(fake, real)                          # sample-based, V-statistic
    sw = sliced_wasserstein(fake, real, projections=128, seed=0)

Protocol of :func:`mode_statistics` (Metz et al. 2017 "Unrolled GANs", Srivastava et al. 2017
"VEEGAN"): each sample is assigned to its nearest mode centre; it is *high quality* if it lies within
``threshold`` (default 3) standard deviations of that centre; a mode is *covered* if at least
``min_count`` (default 1) high-quality samples are assigned to it. With the usual 2,500 generated
samples and 8 or 25 modes, stricter rules are sometimes used (PacGAN: a mode is lost with fewer than
20 of 2,500 samples); pass ``min_count`` accordingly and report it.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
from scipy.spatial.distance import cdist

__all__ = ["mode_statistics", "mode_counts", "energy_distance", "sliced_wasserstein"]

_BLOCK = 2048  # rows per block of pairwise distances (bounds memory at _BLOCK * m * 8 bytes)


def _points(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    """A finite float64 array [N, D] (a 1-D input is taken as N scalar samples, D = 1)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    a = np.array(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must be a non-empty array [N, D] (or [N]), got shape {np.shape(x)}")
    if dim is not None and a.shape[1] != dim:
        raise ValueError(f"{name} has dimension {a.shape[1]}, expected {dim}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _positive(value: Any, name: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not (math.isfinite(value) and float(value) > 0)):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _assign(samples: Any, modes: Any, std: float, threshold: float) -> tuple[np.ndarray, int, int]:
    """``(high-quality samples per mode [K], high-quality samples, all samples)``; validates the inputs."""
    modes = _points(modes, "modes")
    samples = _points(samples, "samples", dim=modes.shape[1])
    std = _positive(std, "std")
    threshold = _positive(threshold, "threshold")
    k = modes.shape[0]
    counts = np.zeros(k, dtype=np.int64)
    n_hq = 0
    for start in range(0, samples.shape[0], 8 * _BLOCK):
        d = cdist(samples[start:start + 8 * _BLOCK], modes)
        nearest = d.argmin(axis=1)
        hq = d[np.arange(len(nearest)), nearest] <= threshold * std
        n_hq += int(hq.sum())
        counts += np.bincount(nearest[hq], minlength=k)
    return counts, n_hq, samples.shape[0]


def mode_counts(samples: Any, modes: Any, std: float, threshold: float = 3.0) -> np.ndarray:
    """int64 ``[K]``: per mode, the samples whose nearest centre it is and that lie within
    ``threshold * std`` of it (the high-quality samples of :func:`mode_statistics`)."""
    return _assign(samples, modes, std, threshold)[0]


def mode_statistics(samples: Any, modes: Any, std: float, threshold: float = 3.0,
                    min_count: int = 1) -> dict[str, float]:
    """Mode coverage of ``samples`` ``[N, D]`` for a mixture with centres ``modes`` ``[K, D]`` and
    isotropic per-mode standard deviation ``std`` (numpy or torch inputs).

    Returns a dict of plain numbers:

    - ``modes_covered`` (int): modes with at least ``min_count`` high-quality samples assigned;
    - ``num_modes`` (int): K;
    - ``high_quality_fraction`` (float): fraction of samples within ``threshold * std`` (Euclidean) of
      their nearest centre.

    The per-mode counts are :func:`mode_counts`. Every failure is a one-line ``ValueError``.
    """
    if isinstance(min_count, bool) or not isinstance(min_count, numbers.Integral) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    counts, n_hq, n = _assign(samples, modes, std, threshold)
    return {
        "modes_covered": int((counts >= min_count).sum()),
        "num_modes": int(len(counts)),
        "high_quality_fraction": n_hq / n,
    }


def _mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Euclidean distance over all ``len(a) * len(b)`` pairs, blockwise (float64)."""
    total = 0.0
    for start in range(0, a.shape[0], _BLOCK):
        total += float(cdist(a[start:start + _BLOCK], b).sum())
    return total / (a.shape[0] * b.shape[0])


def energy_distance(x: Any, y: Any) -> float:
    """The energy distance between the empirical distributions of ``x`` ``[n, D]`` and ``y`` ``[m, D]``
    (a 1-D array is n scalar samples)::

        sqrt(2 E|X - Y| - E|X - X'| - E|Y - Y'|)

    with all expectations taken as plain means over **all** pairs, self-pairs included (the
    V-statistic). It is therefore ``>= 0`` (tiny negative round-off is clipped), exactly 0 for
    identical samples, and in 1-D equal to ``scipy.stats.energy_distance(x, y)``; its square is
    Székely's energy statistic. Costs O((n + m)^2 D) time and O(2048 * max(n, m)) memory: keep
    n, m to a few thousand.
    """
    x = _points(x, "x")
    y = _points(y, "y", dim=x.shape[1])
    value = 2.0 * _mean_distance(x, y) - _mean_distance(x, x) - _mean_distance(y, y)
    return math.sqrt(max(value, 0.0))


def _wasserstein_1d(u: np.ndarray, v: np.ndarray, p: float) -> np.ndarray:
    """``W_p^p`` between the empirical distributions of the columns of ``u`` ``[n, P]`` and ``v`` ``[m, P]``
    (one value per column), via the quantile functions on the merged grid of CDF steps."""
    u = np.sort(u, axis=0)
    v = np.sort(v, axis=0)
    n, m = u.shape[0], v.shape[0]
    if n == m:
        return (np.abs(u - v) ** p).mean(axis=0)
    grid = np.union1d(np.arange(1, n + 1) / n, np.arange(1, m + 1) / m)
    grid[-1] = 1.0
    lower = np.concatenate([[0.0], grid[:-1]])
    widths = grid - lower
    mid = (grid + lower) / 2.0  # strictly inside each step, so no boundary ambiguity
    iu = np.minimum((mid * n).astype(np.int64), n - 1)
    iv = np.minimum((mid * m).astype(np.int64), m - 1)
    return (widths[:, None] * np.abs(u[iu] - v[iv]) ** p).sum(axis=0)


def sliced_wasserstein(x: Any, y: Any, projections: int = 128, seed: int = 0, p: float = 2.0) -> float:
    """The sliced ``p``-Wasserstein distance ``(mean_theta W_p^p(theta . x, theta . y))^(1/p)``.

    ``projections`` directions ``theta`` are drawn uniformly on the unit sphere with
    ``numpy.random.default_rng(seed)`` (reproducible). Each 1-D ``W_p`` is exact for the empirical
    distributions (sample sizes may differ; for equal sizes it is the mean of ``|sorted - sorted|^p``).
    For 1-D inputs every direction is +-1, so with ``p=1`` the result equals
    ``scipy.stats.wasserstein_distance(x, y)``. Every failure is a one-line ``ValueError``.
    """
    x = _points(x, "x")
    y = _points(y, "y", dim=x.shape[1])
    if isinstance(projections, bool) or not isinstance(projections, numbers.Integral) or projections < 1:
        raise ValueError(f"projections must be an integer >= 1, got {projections!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    p = _positive(p, "p")
    if p < 1:
        raise ValueError(f"p must be >= 1, got {p!r}")
    theta = np.random.default_rng(int(seed)).standard_normal((int(projections), x.shape[1]))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    wpp = _wasserstein_1d(x @ theta.T, y @ theta.T, p)
    return float(wpp.mean() ** (1.0 / p))
