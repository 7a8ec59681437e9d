"""Fréchet distance: eigenvalue form against scipy's sqrtm form and closed forms; npz statistics I/O."""
import os

import numpy as np
import pytest
import scipy.linalg
import torch

from gannorm.metrics.frechet import feature_statistics, frechet_distance, load_statistics, save_statistics


def _spd(rng, d, k=None):
    a = rng.standard_normal((d, k or 2 * d))
    return a @ a.T / a.shape[1] + 0.1 * np.eye(d)


def _sqrtm_reference(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


@pytest.mark.parametrize("d", [16, 32, 64])
def test_matches_scipy_sqrtm_on_well_conditioned_inputs(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _spd(rng, d), _spd(rng, d)
    ref = _sqrtm_reference(mu1, s1, mu2, s2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-6)


def test_diagonal_gaussians_closed_form():
    rng = np.random.default_rng(1)
    d = 20
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    expected = float(((m1 - m2) ** 2).sum() + ((np.sqrt(v1) - np.sqrt(v2)) ** 2).sum())
    assert frechet_distance(m1, np.diag(v1), m2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_rank_deficient_covariances_are_finite_and_correct():
    rng = np.random.default_rng(2)
    f1 = rng.standard_normal((10, 64))            # 10 samples in 64-d: rank 9
    f2 = 0.5 * rng.standard_normal((10, 64)) + 0.3
    mu1, s1 = feature_statistics(f1)
    mu2, s2 = feature_statistics(f2)
    assert np.linalg.matrix_rank(s1) == 9
    value = frechet_distance(mu1, s1, mu2, s2)
    assert np.isfinite(value) and value >= 0
    # independent reference for PSD inputs: tr sqrt(S1 S2) = tr sqrt(S1^1/2 S2 S1^1/2) (symmetric, eigh)
    w, v = np.linalg.eigh(s1)
    r1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr = np.sqrt(np.clip(np.linalg.eigvalsh(r1 @ s2 @ r1), 0, None)).sum()
    ref = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr
    assert value == pytest.approx(ref, rel=1e-6)
    # a singular (zero) covariance on one side: FD = |dmu|^2 + tr S2
    zero = np.zeros((64, 64))
    assert frechet_distance(mu1, zero, mu2, s2) == pytest.approx(((mu1 - mu2) ** 2).sum() + np.trace(s2), rel=1e-12)


def test_symmetric_and_zero_for_identical_statistics():
    rng = np.random.default_rng(3)
    d = 48
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _spd(rng, d), _spd(rng, d, k=10)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-9 * np.trace(s1))
    assert frechet_distance(mu1, s1, mu1, s1) >= 0.0
    mu, s = feature_statistics(rng.standard_normal((5, 32)))  # rank-deficient, identical
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)


def test_feature_statistics_is_float64_unbiased_and_accepts_torch():
    f = torch.randn(100, 7, generator=torch.Generator().manual_seed(0))
    mu, sigma = feature_statistics(f)
    x = f.double().numpy()
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma, (x - x.mean(0)).T @ (x - x.mean(0)) / 99, rtol=1e-10)
    _, s1 = feature_statistics(np.ones((3, 1)))
    assert s1.shape == (1, 1)


@pytest.mark.parametrize("args, match", [
    ((np.zeros(3), np.eye(3), np.zeros(4), np.eye(4)), "different dimensions"),
    ((np.zeros(3), np.eye(4), np.zeros(3), np.eye(3)), "sigma1 must have shape"),
    ((np.zeros((3, 1)), np.eye(3), np.zeros(3), np.eye(3)), "mu1 must be a 1-D"),
    ((np.zeros(3), np.eye(3), np.zeros(3), np.full((3, 3), np.nan)), "NaN"),
])
def test_invalid_statistics_raise_one_line_errors(args, match):
    with pytest.raises(ValueError, match=match) as err:
        frechet_distance(*args)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("features", [np.zeros(5), np.zeros((1, 4)), np.full((3, 2), np.inf)])
def test_feature_statistics_rejects_bad_input(features):
    with pytest.raises(ValueError):
        feature_statistics(features)


def test_npz_round_trip_uses_ttur_keys_and_is_atomic(tmp_path):
    rng = np.random.default_rng(4)
    mu, sigma = rng.standard_normal(16), _spd(rng, 16)
    path = tmp_path / "sub" / "stats.npz"
    save_statistics(path, mu, sigma)
    assert sorted(os.listdir(path.parent)) == ["stats.npz"]  # no temporary file left behind
    with np.load(path, allow_pickle=False) as data:              # TTUR layout: exactly mu and sigma
        assert sorted(data.files) == ["mu", "sigma"]
    mu2, sigma2 = load_statistics(path)
    assert np.array_equal(mu, mu2) and np.array_equal(sigma, sigma2)
    assert mu2.dtype == np.float64
    save_statistics(path, mu + 1, sigma)                       # overwrite in place
    assert np.array_equal(load_statistics(path)[0], mu + 1)


def test_loads_ttur_style_float32_files(tmp_path):
    path = tmp_path / "fid_stats_ttur.npz"
    np.savez_compressed(path, mu=np.zeros(8, np.float32), sigma=np.eye(8, dtype=np.float32))
    mu, sigma = load_statistics(path)
    assert mu.dtype == np.float64 and sigma.shape == (8, 8)
    assert frechet_distance(mu, sigma, mu, sigma) == 0.0


def test_load_statistics_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_statistics(tmp_path / "missing.npz")
    bad_keys = tmp_path / "keys.npz"
    np.savez(bad_keys, m=np.zeros(3), s=np.eye(3))
    with pytest.raises(ValueError, match="missing key.*mu, sigma") as err:
        load_statistics(bad_keys)
    assert "\n" not in str(err.value)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an npz at all")
    with pytest.raises(ValueError, match="cannot read statistics"):
        load_statistics(garbage)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match="not an npz"):
        load_statistics(single)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, mu=np.array([object()]), sigma=np.eye(1))
    with pytest.raises(ValueError, match="cannot read statistics"):
        load_statistics(pickled)
    shapes = tmp_path / "shapes.npz"
    np.savez(shapes, mu=np.zeros(3), sigma=np.eye(4))
    with pytest.raises(ValueError, match="sigma must have shape"):
        load_statistics(shapes)
