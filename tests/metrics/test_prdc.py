"""precision, recall, density, coverage: the blockwise computation against the authors' ``prdc`` package, a
float64 brute force over the full distance matrices, closed forms, the blocks' size and the one-line errors."""
from __future__ import annotations

import importlib

import joblib
import numpy as np
import prdc as prdc_package
import pytest
import torch

from gannorm.errors import InputError, OptionError
from gannorm.metrics import nearest_neighbour_radii, prdc

prdc_module = importlib.import_module("gannorm.metrics.prdc")  # the module (gannorm.metrics.prdc is the function)

pytestmark = pytest.mark.usefixtures("one_thread")
KEYS = ("precision", "recall", "density", "coverage")


def reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The ``prdc`` package's numbers (its scikit-learn distances on threads, not 8 processes)."""
    with joblib.parallel_config(backend="threading"):
        return {key: float(v) for key, v in prdc_package.compute_prdc(real, fake, k).items()}


def brute_force(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The definitions on the full float64 distance matrices, from coordinate differences (no |a|^2 - 2ab)."""
    def dist(a, b):
        return np.sqrt(((a[:, None, :].astype(np.float64) - b[None, :, :]) ** 2).sum(-1))

    r_rad = np.sort(dist(real, real), axis=1)[:, k]  # column 0 is the point itself
    f_rad = np.sort(dist(fake, fake), axis=1)[:, k]
    d = dist(real, fake)  # [N, M]
    inside = d < r_rad[:, None]
    return {"precision": inside.any(0).mean(), "recall": (d < f_rad[None, :]).any(1).mean(),
            "density": inside.sum(0).mean() / k, "coverage": (d.min(1) < r_rad).mean()}


def features(n: int, d: int, seed: int, shift: float = 0.0, scale: float = 1.0, dtype=np.float32) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=(n, d)) * scale + shift).astype(dtype)


@pytest.mark.parametrize("n, m, d, k, chunk", [(200, 150, 16, 5, 64), (150, 260, 32, 3, 50), (120, 90, 8, 1, 17),
                                               (100, 80, 64, 10, 7), (64, 64, 4, 2, 1000)])
def test_equals_the_prdc_package_and_a_brute_force(n, m, d, k, chunk):
    real = features(n, d, seed=n)
    fake = features(m, d, seed=m + 1, shift=0.3, scale=1.2)  # overlapping, not equal: every number in (0, 1)
    ours = prdc(real, fake, nearest_k=k, chunk_size=chunk)
    ref, brute = reference(real, fake, k), brute_force(real, fake, k)
    assert tuple(ours) == KEYS
    for key in KEYS:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key
        assert ours[key] == pytest.approx(brute[key], abs=1e-12), key
    assert 0 < ours["precision"] < 1 and 0 < ours["recall"] and 0 < ours["coverage"] < 1  # no trivial case


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_float64_and_tensors_give_the_reference_numbers(dtype):
    real, fake = features(90, 12, 0, dtype=dtype), features(110, 12, 1, shift=0.5, dtype=dtype)
    ref = reference(real, fake, 4)
    for r, f in ((real, fake), (torch.from_numpy(real), torch.from_numpy(fake))):
        ours = prdc(r, f, nearest_k=4, chunk_size=32)
        assert all(ours[key] == pytest.approx(ref[key], abs=1e-12) for key in KEYS)
    assert np.array_equal(real, features(90, 12, 0, dtype=dtype))  # the inputs are read, not changed


def test_the_result_does_not_depend_on_the_chunk_size():
    real, fake = features(70, 6, 3), features(50, 6, 4, shift=0.2)
    results = [prdc(real, fake, nearest_k=3, chunk_size=c) for c in (1, 2, 13, 49, 50, 70, 4096)]
    assert all(r == results[0] for r in results)


def test_duplicated_points_are_at_distance_zero_whatever_the_chunk_size():
    """A generator collapsed onto one real point (30 copies), real points repeated: each chunk size gives the
    numbers of the brute force from coordinate differences (the |a|^2 - 2ab + |b|^2 expansion leaves ~1e-6 of
    noise at duplicates that depended on the block shapes: recall 1/60 at chunk sizes 4 and 7, 0 at 64)."""
    for seed in (1, 4, 14):  # the old code gave recall 1/60 at chunk sizes 4 and 7 on each of these
        rng = np.random.default_rng(seed)
        real = rng.normal(size=(60, int(rng.integers(2, 300)))) * rng.uniform(0.1, 10) + rng.uniform(-5, 5)
        fake = np.repeat(real[30:31], 30, axis=0)
        want = brute_force(real, fake, 5)
        assert want["recall"] == 0.0  # a collapsed generator recalls nothing: its radii are all 0
        for chunk in (1, 4, 7, 13, 64, 1024):
            assert prdc(real, fake, nearest_k=5, chunk_size=chunk) == pytest.approx(want, abs=1e-12), (seed, chunk)
    real[40:50] = real[30]  # eleven copies of one real point: its radius is 0 too
    want = brute_force(real, fake, 5)
    assert all(prdc(real, fake, nearest_k=5, chunk_size=c) == pytest.approx(want, abs=1e-12) for c in (1, 4, 7, 64))
    radii = [nearest_neighbour_radii(fake, 5, chunk_size=c) for c in (1, 4, 7, 64)]
    assert all(torch.equal(r, torch.zeros(30, dtype=torch.float64)) for r in radii)


def test_reversed_and_big_endian_arrays_are_read():
    real, fake = features(40, 5, 1, dtype=np.float64), features(50, 5, 2, shift=0.3, dtype=np.float64)
    want = prdc(real, fake, nearest_k=3)
    assert prdc(real[::-1], fake[:, ::-1][:, ::-1], nearest_k=3) == want  # a row permutation changes nothing
    assert prdc(real.astype(">f8"), fake.astype(">f4"), nearest_k=3) == prdc(real, fake.astype("<f4"), nearest_k=3)


def test_no_block_is_larger_than_the_chunk_size(monkeypatch):
    """The N x M (or N x N) matrix never exists: every distance block is at most chunk_size x chunk_size."""
    shapes = []
    real_distances = prdc_module._distances

    def recording(a, a_sq, b, b_sq, itself=False):
        out = real_distances(a, a_sq, b, b_sq, itself)
        shapes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(prdc_module, "_distances", recording)
    prdc(features(100, 5, 0), features(70, 5, 1), nearest_k=3, chunk_size=16)
    assert max(max(s) for s in shapes) == 16
    # (real x real + fake x fake + real x fake) blocks: 7 * 7 + 5 * 5 + 7 * 5
    assert len(shapes) == 49 + 25 + 35


def test_radii_are_the_kth_neighbour_distances_without_the_point_itself():
    x = features(80, 7, 5, dtype=np.float64)
    full = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    for k in (1, 4, 79):
        got = nearest_neighbour_radii(x, nearest_k=k, chunk_size=9)
        assert got.dtype == torch.float64
        np.testing.assert_allclose(got.numpy(), np.sort(full, axis=1)[:, k], rtol=1e-12, atol=1e-12)
    # a duplicate is a neighbour at distance 0
    assert nearest_neighbour_radii(np.array([[0.0], [0.0], [5.0]]), nearest_k=1).tolist() == [0.0, 0.0, 5.0]


def test_a_case_by_hand():
    """real 0, 1, 2, 3 (k = 1: radius 1 each); fake 0.5, 10, 10.5 (radii 9.5, 0.5, 0.5).
    0.5 lies in the balls of 0 and 1 (density counts 2), 10 and 10.5 in none: precision 1/3, density 2/3;
    the balls of 0 and 1 hold a fake, those of 2 and 3 not: coverage 1/2; every real lies within 9.5 of 0.5.
    (The reference package needs k + 1 < M, so three fakes, not two.)"""
    real, fake = np.array([[0.0], [1.0], [2.0], [3.0]]), np.array([[0.5], [10.0], [10.5]])
    expected = {"precision": 1 / 3, "recall": 1.0, "density": 2 / 3, "coverage": 0.5}
    assert prdc(real, fake, nearest_k=1) == pytest.approx(expected, abs=1e-15)
    assert reference(real, fake, 1) == pytest.approx(expected, abs=1e-15)
    # k = M - 1 (the largest distance in the set): defined here, an error in the reference package
    assert prdc(real, fake[:2], nearest_k=1) == {"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.5}


@pytest.mark.parametrize("k", [1, 3, 5])
def test_identical_sets_score_one_on_everything(k):
    """Each point lies in its own ball and in no other's boundary: precision = recall = coverage = 1, and every
    real ball holds exactly its k nearest points (itself and k - 1 others, the k-th being on the boundary,
    which the strict < leaves out): density = k N / (k N) = 1, as the reference package gives."""
    x = features(150, 10, k)
    ours = prdc(x, x.copy(), nearest_k=k, chunk_size=40)
    assert ours == {"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0}
    assert reference(x, x.copy(), k) == ours


def test_far_apart_sets_score_zero_on_everything():
    real, fake = features(60, 5, 0), features(40, 5, 1, shift=1000.0)
    assert prdc(real, fake, nearest_k=5, chunk_size=16) == dict.fromkeys(KEYS, 0.0)
    assert reference(real, fake, 5) == dict.fromkeys(KEYS, 0.0)


def test_generated_samples_crowding_at_one_real_point():
    """Every generated sample (next to) one real point p: each lies in exactly the real balls that hold p, c of
    them, so precision = 1, density = c / k (above 1 for a p in many balls) and coverage = c / N."""
    real = features(100, 3, 0, dtype=np.float64)
    d = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    holding = (d < np.sort(d, axis=1)[:, 5:6]).sum(0)  # per point p: the real balls (k = 5) that hold it
    p = int(holding.argmax())
    fake = np.repeat(real[p:p + 1], 20, axis=0) + 1e-9
    ours = prdc(real, fake, nearest_k=5)
    assert ours["precision"] == 1.0 and holding[p] > 5
    assert ours["density"] == pytest.approx(holding[p] / 5, abs=1e-12) and ours["coverage"] == holding[p] / 100
    assert reference(real, fake, 5) == pytest.approx(ours, abs=1e-12)


def one_line(err: pytest.ExceptionInfo) -> str:
    text = str(err.value)
    assert "\n" not in text and text
    return text


@pytest.mark.parametrize("real_n, fake_n, k, which", [(5, 10, 5, "real_features"), (10, 3, 3, "fake_features"),
                                                      (10, 10, 12, "real_features")])
def test_k_at_least_a_set_size_is_an_input_error(real_n, fake_n, k, which):
    with pytest.raises(InputError) as err:
        prdc(features(real_n, 4, 0), features(fake_n, 4, 1), nearest_k=k)
    assert f"nearest_k={k}" in one_line(err) and which in one_line(err) and "lower nearest_k" in one_line(err)
    with pytest.raises(InputError, match="nearest_k=3 needs more than 3 feature rows, got 3"):
        nearest_neighbour_radii(features(3, 2, 0), nearest_k=3)


@pytest.mark.parametrize("bad, match", [(np.nan, "real_features has NaN or infinite values \\(row 17\\)"),
                                        (np.inf, "row 17"), (-np.inf, "row 17")])
def test_non_finite_features_are_an_input_error_naming_the_row(bad, match):
    real = features(40, 6, 0)
    real[17, 3] = bad
    with pytest.raises(InputError, match=match) as err:
        prdc(real, features(40, 6, 1), chunk_size=8)
    one_line(err)
    fake = features(40, 6, 1)
    fake[39, 0] = bad
    with pytest.raises(InputError, match="fake_features has NaN or infinite values \\(row 39\\)"):
        prdc(features(40, 6, 0), fake, chunk_size=8)


@pytest.mark.parametrize("real, fake, match", [
    (np.zeros((10, 4)), np.zeros((10, 5)), "different dimensions \\(4 and 5\\)"),
    (np.zeros(10), np.zeros((10, 1)), "real_features must be a 2-D array of features \\[N, D\\]"),
    (np.zeros((10, 2)), np.zeros((0, 2)), "fake_features must be a 2-D array .* got shape \\(0, 2\\)"),
    (np.array([["a", "b"]] * 8), np.zeros((8, 2)), "real_features must hold numbers"),
])
def test_malformed_sets_are_input_errors(real, fake, match):
    with pytest.raises(InputError, match=match) as err:
        prdc(real, fake, nearest_k=2)
    one_line(err)


@pytest.mark.parametrize("kwargs, option", [({"nearest_k": 0}, "nearest_k"), ({"nearest_k": True}, "nearest_k"),
                                            ({"nearest_k": 2.5}, "nearest_k"), ({"chunk_size": 0}, "chunk_size"),
                                            ({"chunk_size": "64"}, "chunk_size")])
def test_bad_options_are_option_errors(kwargs, option):
    with pytest.raises(OptionError, match=f"{option} must be an integer >= 1") as err:
        prdc(features(10, 2, 0), features(10, 2, 1), **kwargs)
    assert err.value.option == option
    one_line(err)


def test_integer_features_are_read_as_numbers():
    real, fake = np.arange(20).reshape(10, 2), np.arange(20).reshape(10, 2) + 1
    assert prdc(real, fake, nearest_k=2) == prdc(real.astype(np.float64), fake.astype(np.float64), nearest_k=2)
