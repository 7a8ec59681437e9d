"""The pure conditional metrics (``gannorm.metrics.conditional``): intra-class FID against SciPy's ``sqrtm`` per
class and closed forms; class accuracy against hand counts."""
from __future__ import annotations

import re

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import torch

from gannorm.errors import InputError
from gannorm.metrics.conditional import class_accuracy, intra_fid


def fd_sqrtm(x: np.ndarray, y: np.ndarray) -> float:
    """The Fréchet distance of two feature sets with ``scipy.linalg.sqrtm`` (the TTUR form), independently of
    gannorm's eigenvalue form."""
    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.square(mu1 - mu2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def labelled_sets(rng, counts, dim=4, shift=0.0):
    """Features per class, each class its own Gaussian (mean k, a class-specific covariance), class k shifted by
    ``shift * k`` in every coordinate; the rows of all classes shuffled together."""
    feats, labels = [], []
    for k, n in enumerate(counts):
        a = rng.standard_normal((dim, dim)) * 0.5 + np.eye(dim)
        feats.append(rng.standard_normal((n, dim)) @ a + k + shift * k)
        labels.append(np.full(n, k))
    f, y = np.concatenate(feats), np.concatenate(labels)
    order = rng.permutation(len(y))
    return f[order], y[order]


def test_intra_fid_is_the_mean_of_the_per_class_sqrtm_distances():
    rng = np.random.default_rng(0)
    real, y_real = labelled_sets(rng, [60, 40, 80])
    fake, y_fake = labelled_sets(rng, [30, 90, 50], shift=0.3)
    out = intra_fid(real, y_real, fake, y_fake, 3)
    expected = [fd_sqrtm(fake[y_fake == k], real[y_real == k]) for k in range(3)]
    np.testing.assert_allclose(out["per_class"], expected, rtol=1e-8)
    assert out["intra_fid"] == pytest.approx(np.mean(expected), rel=1e-8)  # unweighted, whatever the counts
    assert out["num_real"].tolist() == [60, 40, 80] and out["num_fake"].tolist() == [30, 90, 50]
    # not the FID of the pooled sets: the class structure matters
    assert out["intra_fid"] != pytest.approx(fd_sqrtm(fake, real), rel=1e-3)


def test_identical_per_class_sets_give_zero_and_a_class_shift_its_squared_norm():
    rng = np.random.default_rng(1)
    real, y = labelled_sets(rng, [20, 30, 25, 40], dim=3)
    order = rng.permutation(len(y))  # the same sets in another row order
    same = intra_fid(real, y, real[order], y[order], 4)
    assert np.abs(same["per_class"]).max() < 1e-9 and same["intra_fid"] < 1e-9
    # shifting class k by c_k keeps its covariance: its distance is |c_k|^2, exactly
    shifts = np.array([[0.0, 0, 0], [1.0, 0, 0], [0, 2.0, -1.0], [0.5, 0.5, 0.5]])
    moved = real + shifts[y]
    out = intra_fid(real, y, moved, y, 4)
    np.testing.assert_allclose(out["per_class"], np.square(shifts).sum(1), atol=1e-9)
    # classes swapped: the pooled sets are identical, the per-class ones are not
    swapped = intra_fid(real, y, real, (y + 1) % 4, 4)
    assert swapped["intra_fid"] > 1.0


def test_torch_inputs_and_rank_deficient_classes():
    rng = np.random.default_rng(2)
    real = rng.standard_normal((12, 16))  # 6 per class in 16 dimensions: singular covariances
    y = np.arange(12) % 2
    out = intra_fid(torch.from_numpy(real).float(), torch.from_numpy(y), real, y, 2)
    assert np.isfinite(out["per_class"]).all() and out["intra_fid"] < 1e-4  # float32 copy of the same rows


@pytest.mark.parametrize("which, counts, message", [
    ("fake", [5, 1, 5], "class 1 has 1 generated sample(s), it needs at least 2"),
    ("real", [5, 5, 0], "class 2 has 0 real sample(s), it needs at least 2"),
])
def test_a_class_with_too_few_samples_is_a_one_line_error(which, counts, message):
    rng = np.random.default_rng(3)
    full, y_full = labelled_sets(rng, [5, 5, 5])
    few, y_few = labelled_sets(rng, counts)
    args = (full, y_full, few, y_few) if which == "fake" else (few, y_few, full, y_full)
    with pytest.raises(InputError, match=re.escape(message)) as err:
        intra_fid(*args, 3)
    assert "\n" not in str(err.value)


def test_labels_are_checked():
    f = np.zeros((4, 2))
    with pytest.raises(InputError, match=r"real labels must lie in 0\.\.1 \(num_classes 2\), got 0\.\.2"):
        intra_fid(f, [0, 1, 2, 1], f, [0, 1, 0, 1], 2)
    with pytest.raises(InputError, match=r"generated labels must be one class index per sample \(4\)"):
        intra_fid(f, [0, 1, 0, 1], f, [0, 1], 2)
    with pytest.raises(InputError, match="integer class indices"):
        intra_fid(f, [0.0, 1.0, 0.0, 1.0], f, [0, 1, 0, 1], 2)
    with pytest.raises(InputError, match="num_classes must be an integer >= 1"):
        intra_fid(f, [0, 0, 0, 0], f, [0, 0, 0, 0], 0)


def test_class_accuracy_counts_the_argmax_hits():
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((200, 10))
    labels = rng.integers(0, 10, 200)
    hits = sum(int(np.argmax(row) == lab) for row, lab in zip(logits, labels))  # by hand, row by row
    assert class_accuracy(logits, labels) == hits / 200
    assert class_accuracy(scipy.special.softmax(logits, axis=1), labels) == hits / 200  # probs: the same argmax
    assert class_accuracy(logits, logits.argmax(1)) == 1.0
    assert class_accuracy(torch.from_numpy(logits), torch.from_numpy((logits.argmax(1) + 1) % 10)) == 0.0
    assert class_accuracy([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [0, 1, 1]) == pytest.approx(2 / 3)


def test_class_accuracy_refuses_bad_input():
    with pytest.raises(InputError, match=r"class labels must lie in 0\.\.1"):
        class_accuracy([[0.9, 0.1]], [2])
    with pytest.raises(ValueError, match=r"\[N, C\]"):
        class_accuracy([0.9, 0.1], [0])
    with pytest.raises(InputError, match="one class index per sample"):
        class_accuracy([[0.9, 0.1], [0.1, 0.9]], [0])
