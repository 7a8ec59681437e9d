"""Inception score on constructed probability tables with closed-form values."""
import math

import numpy as np
import pytest
import torch

from gannorm.metrics.inception_score import inception_score


@pytest.mark.parametrize("k", [2, 5, 10])
def test_one_hot_spread_uniformly_over_k_classes_gives_k(k):
    probs = np.eye(k)[np.arange(10 * k) % k]  # every split of k consecutive rows holds each class once
    mean, std = inception_score(probs, splits=10)
    assert mean == pytest.approx(k, rel=1e-12)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_identical_rows_give_one():
    row = np.array([0.1, 0.2, 0.3, 0.4])
    mean, std = inception_score(np.tile(row, (50, 1)), splits=5)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_hand_computed_tables():
    # p(y) = (3/4, 1/4); KL rows: log(4/3) and (1/2) log(4/3) -> IS = (4/3)^(3/4)
    mean, std = inception_score(np.array([[1.0, 0.0], [0.5, 0.5]]), splits=1)
    assert mean == pytest.approx((4 / 3) ** 0.75, rel=1e-12) and std == 0.0
    # three rows, three classes
    p = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    py = p.mean(0)
    kl = [sum(p[i, j] * math.log(p[i, j] / py[j]) for j in range(3)) for i in range(3)]
    assert inception_score(p, splits=1)[0] == pytest.approx(math.exp(sum(kl) / 3), rel=1e-12)


def test_uneven_splits_use_floor_boundaries_without_shuffling():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((7, 4))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    # boundaries i * 7 // 3 -> [0:2], [2:4], [4:7]
    parts = [inception_score(p[a:b], splits=1)[0] for a, b in [(0, 2), (2, 4), (4, 7)]]
    mean, std = inception_score(p, splits=3)
    assert mean == pytest.approx(np.mean(parts), rel=1e-12)
    assert std == pytest.approx(np.std(parts), rel=1e-12)


def test_order_matters_no_shuffling():
    sorted_by_class = np.eye(10)[np.repeat(np.arange(10), 10)]  # each split is one class
    assert inception_score(sorted_by_class, splits=10)[0] == pytest.approx(1.0)
    assert inception_score(sorted_by_class, splits=1)[0] == pytest.approx(10.0)


def test_accepts_float32_torch_softmax():
    probs = torch.softmax(torch.randn(200, 10, generator=torch.Generator().manual_seed(0)), dim=1)
    mean, std = inception_score(probs)
    ref = inception_score(probs.double().numpy())
    assert isinstance(mean, float) and mean == pytest.approx(ref[0], rel=1e-6)
    assert std == pytest.approx(ref[1], rel=1e-4)


@pytest.mark.parametrize("probs, splits, match", [
    (np.full((4, 2), 0.6), 1, "sum to 1"),
    (np.array([[1.2, -0.2], [0.5, 0.5]]), 1, "non-negative"),
    (np.full((4, 2), np.nan), 1, "NaN"),
    (np.full((4, 2), 0.5), 5, "splits must be"),
    (np.full((4, 2), 0.5), 0, "splits must be"),
    (np.full(4, 0.25), 1, "2-D"),
])
def test_invalid_inputs(probs, splits, match):
    with pytest.raises(ValueError, match=match) as err:
        inception_score(probs, splits=splits)
    assert "\n" not in str(err.value)
