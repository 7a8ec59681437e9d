import sys

import numpy as np
import pytest
import sklearn.datasets as sklearn_datasets
import torch

from gannorm.data import DatasetError, load_dataset


def test_real_digits_default_32():
    ds = load_dataset("digits")
    assert ds.data.shape == (1797, 1, 32, 32) and ds.data.dtype == torch.uint8
    assert ds.shape == (1, 32, 32) and len(ds) == 1797 and ds.kind == "image"
    assert ds.labels.dtype == torch.int64 and ds.labels.shape == (1797,)
    assert sorted(ds.labels.unique().tolist()) == list(range(10))
    assert ds.data.min() == 0 and ds.data.max() == 255
    assert ds.modes is None and ds.mode_std is None
    x = ds.sample(64, torch.Generator().manual_seed(0))
    assert x.shape == (64, 1, 32, 32) and x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1


def test_native_8_is_the_rescaled_source():
    ds = load_dataset("digits", resolution=8)
    src = sklearn_datasets.load_digits()
    expected = np.floor(src.images * 255.0 / 16.0 + 0.5).astype(np.uint8)
    assert np.array_equal(ds.data[:, 0].numpy(), expected)
    assert np.array_equal(ds.labels.numpy(), src.target)


def test_16_is_bilinear():
    ds16 = load_dataset("digits", resolution=16)
    ds8 = load_dataset("digits", resolution=8)
    assert ds16.shape == (1, 16, 16)
    # enlarging by 2 keeps the mean intensity up to border effects
    assert abs(ds16.data.float().mean() - ds8.data.float().mean()) < 3


def test_resolution_error_lists_the_allowed_values():
    with pytest.raises(DatasetError) as e:
        load_dataset("digits", resolution=28)
    assert str(e.value) == "digits: unsupported resolution 28; allowed: 8, 16, 32 (default 32)"


def test_missing_sklearn_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DatasetError, match="needs scikit-learn.*pip install"):
        load_dataset("digits")
