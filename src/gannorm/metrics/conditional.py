"""Metrics of a class-conditional generator: intra-class Fréchet distance and class accuracy.

Pure functions (numpy only, float64), features and labels in, numbers out::

    out = intra_fid(real_features, real_labels, fake_features, fake_labels, num_classes=10)
    out["intra_fid"]        # the mean over classes of the per-class Fréchet distance
    out["per_class"]        # [num_classes] per-class distances
    acc = class_accuracy(classifier_probs_of_fakes, fake_labels)   # fraction of G(z, y) classified as y

Intra-class FID (Miyato and Koyama 2018, "cGANs with Projection Discriminator"; StudioGAN's iFID): for
each class k, the Fréchet distance (:func:`gannorm.metrics.frechet.frechet_distance`, unbiased
covariances) between the features of the real samples of class k and those of the samples generated
for class k, then the unweighted mean over the classes. It is biased upward for few samples per class,
as FID is for few samples: only compare numbers computed with the same per-class counts.

Class accuracy: the fraction of generated samples that a classifier trained on the real data assigns to
the class they were generated for (the argmax of its probabilities or logits, which are the same).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..validate import require
from .frechet import _to_numpy, feature_statistics, frechet_distance

__all__ = ["intra_fid", "class_accuracy", "check_labels", "MIN_PER_CLASS"]

#: the fewest samples of one class a per-class covariance can be estimated from (divisor N - 1)
MIN_PER_CLASS = 2


def check_labels(labels: Any, rows: int, num_classes: int, which: str) -> np.ndarray:
    """``labels`` as an int64 array ``[rows]`` of class indices in ``[0, num_classes)``; a one-line
    :class:`InputError` naming ``which`` (e.g. ``"real"``) otherwise.

    Args:
        labels: numpy, list or torch class indices.
        rows: how many there must be.
        num_classes: the classes they must lie in.
        which: what they are, for the message.

    Returns:
        The labels as an int64 numpy array.

    Example::

        >>> check_labels([0, 2, 1], 3, 3, "real")
        array([0, 2, 1])
    """
    y = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if y.shape != (rows,):
        raise InputError(f"{which} labels must be one class index per sample ({rows}), got shape {y.shape}")
    if y.dtype.kind not in "iu":
        raise InputError(f"{which} labels must be integer class indices, got dtype {y.dtype}")
    if rows and (y.min() < 0 or y.max() >= num_classes):
        raise InputError(f"{which} labels must lie in 0..{num_classes - 1} (num_classes {num_classes}), got "
                         f"{int(y.min())}..{int(y.max())}")
    return y.astype(np.int64)


def _class_rows(features: np.ndarray, labels: np.ndarray, k: int, which: str) -> np.ndarray:
    rows = features[labels == k]
    if len(rows) < MIN_PER_CLASS:
        raise InputError(f"intra-class FID: class {k} has {len(rows)} {which} sample(s), it needs at least "
                         f"{MIN_PER_CLASS}; raise the sample counts (num_samples, num_real)")
    return rows


def intra_fid(real_features: Any, real_labels: Any, fake_features: Any, fake_labels: Any,
              num_classes: int) -> dict[str, Any]:
    """The intra-class Fréchet distance: the per-class distance between real and generated features, averaged
    over the ``num_classes`` classes (each class weighs the same, whatever its count).

    Args:
        real_features: ``[N_real, D]`` features of real samples (numpy or torch, any float dtype).
        real_labels: ``[N_real]`` their class indices in ``[0, num_classes)``.
        fake_features: ``[N_fake, D]`` features of generated samples.
        fake_labels: ``[N_fake]`` the classes they were generated for.
        num_classes: the number of classes; every class needs at least 2 real and 2 generated samples.

    Returns:
        ``{"intra_fid": mean, "per_class": [num_classes] float64 array, "num_real": [num_classes] int64
        counts, "num_fake": [num_classes] int64 counts}``.

    Raises a one-line :class:`InputError` for a class with fewer than 2 samples (naming it), labels out of
    range or of the wrong shape; a ``ValueError`` for malformed features (as :func:`feature_statistics`).

    Example::

        >>> rng = np.random.default_rng(0)
        >>> f, y = rng.standard_normal((40, 3)), np.arange(40) % 2
        >>> intra_fid(f, y, f, y, 2)["intra_fid"] < 1e-9
        True
    """
    require(num_classes, name="num_classes", kind="int", min=1, error=InputError)
    real, fake = _to_numpy(real_features), _to_numpy(fake_features)
    for f, which in ((real, "real"), (fake, "generated")):
        if f.ndim != 2:
            raise ValueError(f"{which} features must be a 2-D array [N, D], got shape {f.shape}")
    yr = check_labels(real_labels, len(real), num_classes, "real")
    yf = check_labels(fake_labels, len(fake), num_classes, "generated")
    per_class = np.empty(num_classes, dtype=np.float64)
    for k in range(num_classes):
        mu_r, s_r = feature_statistics(_class_rows(real, yr, k, "real"))
        mu_f, s_f = feature_statistics(_class_rows(fake, yf, k, "generated"))
        per_class[k] = frechet_distance(mu_f, s_f, mu_r, s_r)
    return {"intra_fid": float(per_class.mean()), "per_class": per_class,
            "num_real": np.bincount(yr, minlength=num_classes), "num_fake": np.bincount(yf, minlength=num_classes)}


def class_accuracy(probs_or_logits: Any, labels: Any) -> float:
    """The fraction of rows whose largest entry (the classifier's predicted class) is the row's label.

    Args:
        probs_or_logits: ``[N, C]`` class probabilities or logits of a classifier (the argmax is the same).
        labels: ``[N]`` the classes the samples should be (for G(z, y): y), in ``[0, C)``.

    Returns:
        The accuracy, a float in [0, 1].

    Example::

        >>> class_accuracy([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [0, 1, 1])
        0.6666666666666666
    """
    p = _to_numpy(probs_or_logits)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"probs_or_logits must be a non-empty 2-D array [N, C], got shape {p.shape}")
    if np.isnan(p).any():
        raise ValueError("probs_or_logits contain NaN")
    y = check_labels(labels, p.shape[0], p.shape[1], "class")
    return float((p.argmax(axis=1) == y).mean())
