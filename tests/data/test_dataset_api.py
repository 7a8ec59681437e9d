import numpy as np
import pytest
import torch

from gannorm.data import DATASETS, Dataset, DatasetError, load_dataset
from gannorm.data.base import resize_uint8
from gannorm.registry import Registry, UnknownNameError

NAMES = ["digits", "mnist5k", "ring8", "grid25", "cifar10", "stl10", "celeba", "celebahq", "imagefolder", "npy"]


def _images(n=10):
    data = torch.arange(n * 3 * 4 * 4).reshape(n, 3, 4, 4).remainder(256).to(torch.uint8)
    data[0, 0, 0, 0], data[0, 0, 0, 1] = 0, 255
    return Dataset("toy", data, "image", labels=torch.arange(n))


def test_registry():
    assert isinstance(DATASETS, Registry) and DATASETS.names() == NAMES
    for entry in DATASETS.entries():
        assert entry.description and "\n" not in entry.description
        assert callable(entry.obj) and entry.obj.dataset_name == entry.name


def test_unknown_name_uses_the_registry_error():
    with pytest.raises(UnknownNameError, match="unknown dataset 'mnist'; known: digits, mnist5k"):
        load_dataset("mnist")


def test_unknown_option_lists_the_allowed_ones(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("celeba", tmp_path, limt=3)
    assert str(e.value) == "celeba: unknown option(s) limt; allowed: limit"
    with pytest.raises(DatasetError, match="allowed: channels, limit"):
        load_dataset("imagefolder", tmp_path, resolution=8, chanels=1)


@pytest.mark.parametrize("res", [32.0, "32", True, -4])
def test_bad_resolution_values(res, tmp_path):
    with pytest.raises(DatasetError, match="resolution"):
        load_dataset("cifar10" if res != -4 else "imagefolder", tmp_path, resolution=res)


def test_resolution_checked_before_files(tmp_path):
    with pytest.raises(DatasetError, match="allowed: 48, 96"):
        load_dataset("stl10", tmp_path / "nowhere", resolution=64)


def test_error_is_a_one_line_value_error():
    e = DatasetError("a\nb   c")
    assert isinstance(e, ValueError) and str(e) == "a b c"


def test_image_get_maps_to_minus_one_one():
    ds = _images()
    assert ds.shape == (3, 4, 4) and len(ds) == 10 and ds.kind == "image"
    x = ds.get(torch.tensor([0]))
    assert x.dtype == torch.float32 and x[0, 0, 0, 0] == -1 and x[0, 0, 0, 1] == 1
    assert torch.equal(ds.get([2, 3]), ds.data[2:4].float() / 127.5 - 1)
    assert ds.get(torch.tensor(5)).shape == (1, 3, 4, 4)


def test_sample_is_deterministic_and_with_replacement():
    ds = _images(3)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    a, b = ds.sample(64, g1), ds.sample(64, g2)
    assert torch.equal(a, b) and a.shape == (64, 3, 4, 4)  # 64 draws from 3 samples: with replacement
    assert not torch.equal(ds.sample(64, g1), a)  # the generator advances
    # uniform: the draw is exactly torch.randint(N, (n,), generator=g)
    idx = torch.randint(3, (64,), generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, ds.get(idx))


def test_dataset_validates_its_data():
    with pytest.raises(DatasetError, match="uint8"):
        Dataset("x", torch.zeros(2, 1, 4, 4), "image")
    with pytest.raises(DatasetError, match="float32"):
        Dataset("x", torch.zeros(2, 2, dtype=torch.float64), "vector")
    with pytest.raises(DatasetError, match="empty"):
        Dataset("x", torch.zeros(0, 2), "vector")
    with pytest.raises(DatasetError, match="labels"):
        Dataset("x", torch.zeros(3, 2), "vector", labels=torch.zeros(2))
    with pytest.raises(DatasetError, match="kind"):
        Dataset("x", torch.zeros(3, 2), "audio")


def test_resize_uint8_exact_half_is_block_mean_rounded_half_up():
    x = torch.tensor([[[[0, 1], [0, 1]]]], dtype=torch.uint8)  # mean 0.5 -> 1 (half up)
    assert resize_uint8(x, 1, antialias=False).item() == 1
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(3, 2, 6, 6), dtype=np.uint8)
    want = np.floor(a.reshape(3, 2, 3, 2, 3, 2).mean(axis=(3, 5)) + 0.5)
    assert np.array_equal(resize_uint8(a, 3, antialias=False).numpy(), want)
