"""The Fréchet distance between Gaussians fitted to feature sets (FID when the features are Inception pool3).

Pure functions (numpy/scipy only, no network), all in float64::

    mu1, sigma1 = feature_statistics(fake_features)    # [N, D] -> [D], [D, D]
    mu2, sigma2 = feature_statistics(real_features)
    fid = frechet_distance(mu1, sigma1, mu2, sigma2)

Protocol (as in pytorch-fid, TTUR, torch-fidelity, clean-fid): the mean and the *unbiased*
(``N - 1``) covariance ``np.cov(features, rowvar=False)`` of each feature set; the sample counts are
the caller's choice (50,000 generated images against the training set is the common standard for
Inception FID; FID is biased upward for small N, so only compare numbers computed with the same N).

The trace of the matrix square root uses the **eigenvalue form** of torch-fidelity and current
torchmetrics, ``tr sqrt(S1 S2) = sum_i sqrt(lambda_i(S1 S2))``: the eigenvalues of the (non-symmetric)
product are computed as complex numbers, tiny negative real parts left by rounding are clipped to 0,
and the real part of the complex square root is summed. It needs no ``eps`` retry (unlike the
``scipy.linalg.sqrtm`` form) and stays finite for rank-deficient covariances (fewer samples than
dimensions), where the sqrtm form can fail or return NaN.

Reference statistics are stored as TTUR-compatible ``.npz`` files with the keys ``mu`` and ``sigma``
(:func:`save_statistics` / :func:`load_statistics`).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..fileio import atomic_write, check_npz_member

__all__ = ["feature_statistics", "frechet_distance", "save_statistics", "load_statistics"]


def _to_numpy(x: Any) -> np.ndarray:
    """A float64 numpy copy of an array-like (numpy array, list, or a torch tensor on any device)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, without importing torch
        x = x.detach().cpu().numpy()
    return np.array(x, dtype=np.float64)


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (``np.cov(rowvar=False)``, divisor ``N - 1``) of
    ``features`` ``[N, D]`` (numpy or torch, any float dtype), both float64.

    Raises a one-line ``ValueError`` unless the features are a finite 2-D array with N >= 2 rows.

    Args:
        features: ``[N, D]``, N >= 2.

    Returns:
        ``(mu, sigma)``.

    Example::

        >>> mu, sigma = feature_statistics(np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [2.0, 2.0]]))
        >>> mu.tolist(), sigma.round(4).tolist()
        ([1.0, 1.0], [[1.3333, 0.0], [0.0, 1.3333]])
    """
    f = _to_numpy(features)
    if f.ndim != 2:
        raise ValueError(f"features must be a 2-D array [N, D], got shape {f.shape}")
    if f.shape[0] < 2 or f.shape[1] < 1:
        raise ValueError(f"features must have at least 2 samples and 1 dimension, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise ValueError("features contain NaN or infinite values")
    mu = f.mean(axis=0)
    sigma = np.atleast_2d(np.cov(f, rowvar=False))
    return mu, sigma


def _check_stats(mu: Any, sigma: Any, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu = _to_numpy(mu)
    sigma = _to_numpy(sigma)
    if mu.ndim != 1 or mu.shape[0] < 1:
        raise ValueError(f"mu{which} must be a 1-D array [D], got shape {mu.shape}")
    d = mu.shape[0]
    if sigma.shape != (d, d):
        raise ValueError(f"sigma{which} must have shape ({d}, {d}) to match mu{which}, got {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"mu{which} or sigma{which} contains NaN or infinite values")
    return mu, sigma


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet (2-Wasserstein squared) distance between N(mu1, sigma1) and N(mu2, sigma2), float64::

        |mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 * sum_i sqrt(lambda_i(sigma1 @ sigma2))

    with complex eigenvalues whose negative real parts (rounding) are clipped to 0 before the square
    root, and the real part of the square roots summed. Round-off can make the total a tiny negative
    number when the two Gaussians are (almost) equal; it is clipped to 0, so the result is always
    finite and ``>= 0`` for finite positive semi-definite inputs, rank-deficient ones included.

    Raises a one-line ``ValueError`` for mismatched shapes (mu ``[D]``, sigma ``[D, D]``, the same D on
    both sides) or non-finite inputs.

    Args:
        mu1: the first mean ``[D]``.
        sigma1: the first covariance ``[D, D]``.
        mu2: the second mean ``[D]``.
        sigma2: the second covariance ``[D, D]``.

    Returns:
        the distance (float, >= 0).

    Example::

        >>> frechet_distance(np.zeros(2), np.eye(2), np.array([3.0, 4.0]), np.eye(2))   # |mu1 - mu2|^2
        25.0
    """
    mu1, sigma1 = _check_stats(mu1, sigma1, "1")
    mu2, sigma2 = _check_stats(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"the two statistics have different dimensions: {mu1.shape[0]} and {mu2.shape[0]}")
    diff = mu1 - mu2
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2).astype(np.complex128)
    eigenvalues = np.where(eigenvalues.real < 0, 1j * eigenvalues.imag, eigenvalues)  # rounding: clip to 0
    tr_covmean = float(np.sqrt(eigenvalues).real.sum())
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(value, 0.0)


# ------------------------------------------------------------------------------------------ npz I/O

def save_statistics(path: str | os.PathLike, mu: Any, sigma: Any) -> None:
    """Write ``mu`` ``[D]`` and ``sigma`` ``[D, D]`` (as float64) to a TTUR-compatible ``.npz`` at exactly
    ``path`` (no extension is added), atomically: a temporary file in the same folder, then ``os.replace``.

    Args:
        path: the file to write.
        mu: the mean ``[D]``.
        sigma: the covariance ``[D, D]``.

    Example::

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     save_statistics(os.path.join(folder, "stats.npz"), np.zeros(2), np.eye(2))
        ...     mu, sigma = load_statistics(os.path.join(folder, "stats.npz"))
        >>> mu.tolist(), sigma.tolist()
        ([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
    """
    mu, sigma = _check_stats(mu, sigma, "")
    path = Path(path).expanduser()
    atomic_write(path, lambda f: np.savez(f, mu=mu, sigma=sigma))


def load_statistics(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """``(mu, sigma)`` as float64 from a TTUR-style ``.npz`` with keys ``mu`` and ``sigma``.

    Loaded with ``allow_pickle=False``. A missing file raises ``FileNotFoundError``; a file that is
    not an npz, lacks a key or holds arrays of the wrong shape raises a one-line ``ValueError``.

    Args:
        path: an ``.npz`` file (as :func:`save_statistics` writes, or TTUR's).

    Returns:
        ``(mu, sigma)``.

    Example::

        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     np.savez(os.path.join(folder, "ttur.npz"), mu=np.ones(3), sigma=np.eye(3))
        ...     mu, sigma = load_statistics(os.path.join(folder, "ttur.npz"))
        >>> mu.dtype, sigma.shape
        (dtype('float64'), (3, 3))
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no statistics file at {path}")
    expected = "expected an npz with keys 'mu' and 'sigma'"
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise InputError(f"{path}: not an npz archive (a single {type(data).__name__}); {expected}")
        with data:
            missing = [k for k in ("mu", "sigma") if k not in data.files]
            if missing:
                raise InputError(f"{path}: missing key(s) {', '.join(missing)} (found: "
                                 f"{', '.join(data.files) or 'none'}); {expected}")
            for key in ("mu", "sigma"):
                check_npz_member(path, key)
            mu, sigma = data["mu"], data["sigma"]
    except ValueError as e:
        msg = " ".join(str(e).split())
        if msg.startswith(f"{path}: "):
            raise InputError(msg) from None
        raise InputError(f"{path}: cannot read statistics ({msg}); {expected}") from None
    except (OSError, EOFError, KeyError, zipfile.BadZipFile) as e:
        raise InputError(f"{path}: cannot read statistics ({type(e).__name__}: {e}); {expected}") from None
    except MemoryError:
        raise InputError(f"{path}: its statistics do not fit in memory; {expected}") from None
    try:
        return _check_stats(mu, sigma, "")
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None
