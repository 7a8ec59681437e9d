"""KID: the subset estimator against a direct pairwise computation of the unbiased MMD^2."""
import numpy as np
import pytest
import torch
from sklearn.metrics.pairwise import polynomial_kernel as sk_polynomial_kernel

from gannorm.metrics.kid import kernel_inception_distance, mmd2_unbiased


def _direct_mmd2(x, y):
    """The unbiased MMD^2 with k(a, b) = (a.b / d + 1)^3, pair by pair."""
    n, d = x.shape
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    xx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(n) for j in range(n)) / (n * n)
    return xx + yy - 2 * xy


def test_matches_direct_computation_when_the_subset_is_everything():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6))
    y = rng.standard_normal((40, 6)) * 1.3 + 0.2
    ref = _direct_mmd2(x, y)
    mean, std = kernel_inception_distance(x, y, subsets=1, subset_size=40, seed=0)
    assert mean == pytest.approx(ref, rel=1e-10) and std is None
    # every subset would be both whole sets (permutations only): one distinct subset, no spread reported
    mean3, std3 = kernel_inception_distance(x, y, subsets=3, subset_size=40, seed=5)
    assert mean3 == pytest.approx(ref, rel=1e-10) and std3 is None


def test_spread_is_reported_when_the_subsets_differ():
    """Only one set whole: the subsets of the other differ, so the std is a real spread, matching a direct
    computation of the same draws."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((12, 4)), rng.standard_normal((20, 4)) + 0.3
    mean, std = kernel_inception_distance(x, y, subsets=5, subset_size=12, seed=1)
    rs = np.random.RandomState(1)
    ref = [_direct_mmd2(x[rs.choice(12, 12, replace=False)], y[rs.choice(20, 12, replace=False)]) for _ in range(5)]
    assert mean == pytest.approx(np.mean(ref), rel=1e-10) and std == pytest.approx(np.std(ref), rel=1e-8)
    assert std > 1e-3 * abs(mean)


def test_kernel_matches_sklearn_polynomial_kernel():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((30, 5)), rng.standard_normal((30, 5))
    kxx = sk_polynomial_kernel(x, x, degree=3, gamma=1 / 5, coef0=1)
    kyy = sk_polynomial_kernel(y, y, degree=3, gamma=1 / 5, coef0=1)
    kxy = sk_polynomial_kernel(x, y, degree=3, gamma=1 / 5, coef0=1)
    ref = ((kxx.sum() - np.trace(kxx)) + (kyy.sum() - np.trace(kyy))) / (30 * 29) - 2 * kxy.sum() / 900
    assert mmd2_unbiased(x, y) == pytest.approx(ref, rel=1e-10)


def test_subsets_are_seeded_and_drawn_without_replacement():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((300, 8)), rng.standard_normal((250, 8)) + 0.1
    a = kernel_inception_distance(x, y, subsets=20, subset_size=100, seed=7)
    assert a == kernel_inception_distance(x, y, subsets=20, subset_size=100, seed=7)
    assert a != kernel_inception_distance(x, y, subsets=20, subset_size=100, seed=8)
    # the same draws as torch-fidelity: RandomState(seed).choice(n, m, replace=False), f1 then f2
    rs = np.random.RandomState(7)
    ref = [mmd2_unbiased(x[rs.choice(300, 100, replace=False)], y[rs.choice(250, 100, replace=False)])
           for _ in range(20)]
    assert a[0] == pytest.approx(np.mean(ref), rel=1e-12) and a[1] == pytest.approx(np.std(ref), rel=1e-10)


def test_near_zero_for_the_same_distribution_and_large_for_a_shift():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2000, 16, generator=g), torch.randn(2000, 16, generator=g)
    same, same_std = kernel_inception_distance(x, y, subsets=20, subset_size=500)
    shifted, _ = kernel_inception_distance(x, y + 1.0, subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 100 * max(abs(same), same_std)


def test_errors():
    x = np.zeros((10, 4))
    with pytest.raises(ValueError, match="at least subset_size=1000 samples") as err:
        kernel_inception_distance(x, x)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="different feature dimensions"):
        kernel_inception_distance(x, np.zeros((10, 5)), subset_size=5)
    with pytest.raises(ValueError, match="subset_size must be"):
        kernel_inception_distance(x, x, subset_size=1)
    with pytest.raises(ValueError, match="subsets must be"):
        kernel_inception_distance(x, x, subsets=0, subset_size=5)
    with pytest.raises(ValueError, match="seed must be"):
        kernel_inception_distance(x, x, subset_size=5, seed=-1)
    with pytest.raises(ValueError, match="NaN"):
        kernel_inception_distance(np.full((10, 4), np.nan), x, subset_size=5)


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": -1}, "seed must be an integer in [0, 2**32), got -1"),
    ({"seed": 2 ** 32}, "seed must be an integer in [0, 2**32), got 4294967296"),
    ({"seed": 1.0}, "seed must be an integer in [0, 2**32), got 1.0"),
    ({"subsets": True}, "subsets must be an integer >= 1, got True"),
    ({"subset_size": 1}, "subset_size must be an integer >= 2, got 1"),
])
def test_bad_settings_are_one_line_errors(kwargs, message):
    f = np.random.default_rng(0).random((20, 4))
    with pytest.raises(ValueError) as err:
        kernel_inception_distance(f, f, **kwargs)
    assert str(err.value) == message


def test_one_round_reports_no_spread():
    """One round of subsets of a larger set: the estimate of that round, and std None (it was 0.0)."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((60, 5)), rng.standard_normal((50, 5)) + 0.3
    mean, std = kernel_inception_distance(x, y, subsets=1, subset_size=20, seed=4)
    state = np.random.RandomState(4)
    want = mmd2_unbiased(x[state.choice(60, 20, replace=False)], y[state.choice(50, 20, replace=False)])
    assert mean == pytest.approx(want, rel=1e-12) and std is None
    assert kernel_inception_distance(x, y, subsets=2, subset_size=20, seed=4)[1] > 0
