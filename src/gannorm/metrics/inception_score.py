"""The Inception Score from a table of class probabilities (pure numpy, float64, no network).

``IS = exp(E_x KL(p(y|x) || p(y)))`` where ``p(y)`` is the mean prediction over the samples of the
split. With the Inception network's softmax this is the Inception Score; with a small dataset
classifier it is the "classifier score" (:func:`gannorm.metrics.classifier.classifier_metrics`).

Protocol (the original ``improved-gan`` code): the N rows are cut, **in the given order (no
shuffling)**, into ``splits`` consecutive parts with boundaries ``i * N // splits`` (sizes differ by
at most one when ``splits`` does not divide N; every sample is used); the score is computed per part
and the mean and the population standard deviation (``ddof=0``) over the parts are returned.
torch-fidelity shuffles first (seed 2020); we do not, so shuffle the rows yourself if they are ordered
(e.g. by class). The standard is 50,000 samples and 10 splits.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import xlogy

from ..validate import require

__all__ = ["inception_score"]

ROW_SUM_ATOL = 1e-3  # rows must sum to 1 within this (float32 softmax over 1008 classes is far closer)


def inception_score(probs: Any, splits: int = 10) -> tuple[float, float]:
    """``(mean, std)`` of ``exp(mean_x KL(p(y|x) || p(y)))`` over ``splits`` consecutive parts of ``probs``.

    ``probs`` is ``[N, K]`` (numpy or torch, any float dtype; computed in float64) with non-negative
    rows summing to 1 (within ``1e-3``); ``0 * log 0`` counts as 0. ``splits`` must be an integer in
    ``[1, N]``. Every failure is a one-line ``ValueError``.

    Args:
        probs: class probabilities ``[N, K]``.
        splits: the number of parts.

    Returns:
        ``(mean, std)`` over the parts.

    Example::

        >>> inception_score(np.eye(4), splits=1)                 # confident and diverse: IS = K
        (4.0, 0.0)
        >>> inception_score(np.full((4, 4), 0.25), splits=2)     # uninformative: IS = 1
        (1.0, 0.0)
    """
    if hasattr(probs, "detach") and hasattr(probs, "cpu"):  # torch tensor, without importing torch
        probs = probs.detach().cpu().numpy()
    p = np.array(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"probs must be a non-empty 2-D array [N, K], got shape {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError("probs contain NaN or infinite values")
    if (p < 0).any():
        raise ValueError(f"probs must be non-negative, got a minimum of {p.min():.3g}")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > ROW_SUM_ATOL:
        raise ValueError(f"every row of probs must sum to 1 (a softmax output); row {worst} sums to "
                         f"{sums[worst]:.6g}")
    n = p.shape[0]
    require(splits, name="splits", kind="int", min=1, max=n, why=f"at most the number of samples, {n}")
    splits = int(splits)
    scores = np.empty(splits, dtype=np.float64)
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        py = part.mean(axis=0, keepdims=True)
        kl = (xlogy(part, part) - xlogy(part, py)).sum(axis=1)  # p > 0 implies p(y) > 0
        scores[i] = np.exp(kl.mean())
    return float(scores.mean()), float(scores.std())
