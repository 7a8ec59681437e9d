"""Mode coverage, energy distance and sliced Wasserstein on hand-constructed 2-D samples."""
import math

import numpy as np
import pytest
import scipy.stats
import torch

from gannorm.data import load_dataset, ring8_modes
from gannorm.metrics.mixtures import energy_distance, mode_counts, mode_statistics, sliced_wasserstein

MODES = ring8_modes().double().numpy()  # 8 centres on a circle of radius 2
STD = 0.02


def test_samples_at_the_centres_cover_every_mode():
    samples = np.repeat(MODES, 5, axis=0)
    stats = mode_statistics(samples, MODES, STD)
    assert stats == {"modes_covered": 8, "num_modes": 8, "high_quality_fraction": 1.0}
    assert mode_counts(samples, MODES, STD).tolist() == [5] * 8


def test_samples_near_three_modes_cover_three():
    rng = np.random.default_rng(0)
    samples = MODES[[0, 3, 5]][rng.integers(0, 3, 300)] + STD * 0.5 * rng.standard_normal((300, 2))
    stats = mode_statistics(torch.from_numpy(samples), torch.from_numpy(MODES), STD)
    assert stats["modes_covered"] == 3 and stats["high_quality_fraction"] == 1.0
    counts = mode_counts(samples, MODES, STD)
    assert counts.sum() == 300 and set(np.flatnonzero(counts)) == {0, 3, 5}


def test_far_away_samples_are_low_quality_and_cover_nothing():
    samples = np.array([[0.0, 0.0], [10.0, 10.0], [2.0 + 4 * STD, 0.0]])
    stats = mode_statistics(samples, MODES, STD)
    assert stats["modes_covered"] == 0 and stats["high_quality_fraction"] == 0.0


def test_threshold_and_min_count():
    samples = np.array([[2.0 + 2.9 * STD, 0.0], [2.0 + 3.1 * STD, 0.0], MODES[1], MODES[1], MODES[2]])
    stats = mode_statistics(samples, MODES, STD)
    assert stats["high_quality_fraction"] == pytest.approx(4 / 5) and stats["modes_covered"] == 3
    assert mode_statistics(samples, MODES, STD, min_count=2)["modes_covered"] == 1
    assert mode_statistics(samples, MODES, STD, threshold=4.0)["high_quality_fraction"] == 1.0


def test_real_ring8_data_is_covered_with_the_chi2_fraction():
    ds = load_dataset("ring8")
    stats = mode_statistics(ds.data, ds.modes, ds.mode_std)
    assert stats["modes_covered"] == 8
    # an isotropic 2-D Gaussian lies within 3 std with probability 1 - exp(-9/2) = 0.98889
    assert stats["high_quality_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=3e-3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(std=0.0), "std must be"), (dict(threshold=-1.0), "threshold must be"), (dict(min_count=0), "min_count"),
])
def test_mode_statistics_errors(kwargs, match):
    args = dict(samples=MODES, modes=MODES, std=STD) | kwargs
    with pytest.raises(ValueError, match=match):
        mode_statistics(**args)
    with pytest.raises(ValueError, match="dimension 3"):
        mode_statistics(np.zeros((4, 3)), MODES, STD)


def test_energy_distance_matches_scipy_in_1d():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal(300), rng.standard_normal(170) * 1.5 + 0.4
    assert energy_distance(x, y) == pytest.approx(scipy.stats.energy_distance(x, y), rel=1e-9)


def test_energy_distance_matches_the_direct_formula_in_2d():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((30, 2)), rng.standard_normal((20, 2)) + 0.5
    dist = lambda a, b: math.hypot(*(a - b))  # noqa: E731
    exy = sum(dist(a, b) for a in x for b in y) / (30 * 20)
    exx = sum(dist(a, b) for a in x for b in x) / (30 * 30)
    eyy = sum(dist(a, b) for a in y for b in y) / (20 * 20)
    assert energy_distance(x, y) == pytest.approx(math.sqrt(2 * exy - exx - eyy), rel=1e-10)
    assert energy_distance(x, y) == pytest.approx(energy_distance(y, x), rel=1e-12)


def test_energy_distance_zero_for_identical_and_grows_with_shift():
    x = np.random.default_rng(3).standard_normal((200, 2))
    assert energy_distance(x, x) == 0.0
    assert energy_distance(x, x[::-1]) == pytest.approx(0.0, abs=1e-6)
    assert 0 < energy_distance(x, x + 0.1) < energy_distance(x, x + 1.0)


def test_sliced_wasserstein():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal(250), rng.standard_normal(130) + 0.7
    # 1-D: every direction is +-1, so SW_1 is the exact W_1 (unequal sample sizes)
    assert sliced_wasserstein(x, y, projections=4, p=1) == pytest.approx(scipy.stats.wasserstein_distance(x, y),
                                                                         rel=1e-9)
    z = rng.standard_normal(250)
    assert sliced_wasserstein(x, z, projections=3, p=2) == pytest.approx(
        math.sqrt(np.mean((np.sort(x) - np.sort(z)) ** 2)), rel=1e-12)
    pts = rng.standard_normal((500, 2))
    assert sliced_wasserstein(pts, pts) == 0.0
    t = np.array([0.3, -0.4])  # a translation: each 1-D W_2 is |theta . t|, so SW_2^2 -> |t|^2 / 2 in 2-D
    sw = sliced_wasserstein(pts, pts + t, projections=2000, seed=1)
    assert sw == pytest.approx(0.5 / math.sqrt(2), rel=0.05)
    assert sw == sliced_wasserstein(pts, pts + t, projections=2000, seed=1)
    with pytest.raises(ValueError, match="projections"):
        sliced_wasserstein(pts, pts, projections=0)
    with pytest.raises(ValueError, match="p must be"):
        sliced_wasserstein(pts, pts, p=0.5)
