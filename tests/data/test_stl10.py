import tarfile

import numpy as np
import pytest
import torch
from data_fakes import add_tar_member, stl_bytes, stl_images

from gannorm.data import DatasetError, load_dataset

N = 5


def _half(images: np.ndarray) -> np.ndarray:
    """cv2.resize INTER_LINEAR for an exact 2x reduction: the 2x2 block mean, rounded half up."""
    x = images.astype(np.float64).reshape(*images.shape[:2], 48, 2, 48, 2).mean(axis=(3, 5))
    return np.floor(x + 0.5).astype(np.uint8)


@pytest.fixture
def images():
    return stl_images(N)


@pytest.fixture
def stl_root(tmp_path, images):
    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    (folder / "unlabeled_X.bin").write_bytes(stl_bytes(images))
    return tmp_path


def test_column_major_file_comes_out_upright(stl_root, images):
    ds = load_dataset("stl10", stl_root, resolution=96)
    assert ds.shape == (3, 96, 96) and len(ds) == N and ds.kind == "image" and ds.labels is None
    assert torch.equal(ds.data, torch.from_numpy(images))
    img = ds.data[0]
    assert img[0, 80, 90] == 7  # row 80, column 90: not transposed
    assert (img[:, 2:6, 4:60] == 250).all()  # the bar is horizontal and near the top
    assert not (img[:, 4:60, 2:6] == 250).all()


def test_default_48_matches_cv2_linear(stl_root, images):
    ds = load_dataset("stl10", stl_root)
    assert ds.shape == (3, 48, 48)
    assert torch.equal(ds.data, torch.from_numpy(_half(images)))
    assert (ds.data[:, :, 1:3, 2:30] == 250).all()  # the bar survives, still upright


def test_root_may_be_the_binary_folder_or_the_file(stl_root, images):
    for root in (stl_root / "stl10_binary", stl_root / "stl10_binary" / "unlabeled_X.bin"):
        assert torch.equal(load_dataset("stl10", root, resolution=96).data, torch.from_numpy(images))


def test_limit(stl_root, images):
    ds = load_dataset("stl10", stl_root, limit=2)
    assert len(ds) == 2 and torch.equal(ds.data, torch.from_numpy(_half(images[:2])))
    assert len(load_dataset("stl10", stl_root, limit=100)) == N


def _tar(path, images, first=()):
    with tarfile.open(path, "w:gz") as tar:
        for name in first:
            add_tar_member(tar, name, b"x")
        add_tar_member(tar, "stl10_binary/class_names.txt", b"airplane\n")
        add_tar_member(tar, "stl10_binary/unlabeled_X.bin", stl_bytes(images))
    return path


@pytest.mark.parametrize("limit", [None, 3])
def test_reads_the_member_from_the_archive(tmp_path, images, limit):
    path = _tar(tmp_path / "stl10_binary.tar.gz", images)
    for root in (tmp_path, path):
        ds = load_dataset("stl10", root, limit=limit)
        assert torch.equal(ds.data, torch.from_numpy(_half(images[:limit])))
    assert torch.equal(load_dataset("stl10", path, resolution=96).data, torch.from_numpy(images))


def test_archive_with_evil_member_is_refused(tmp_path, images):
    path = _tar(tmp_path / "stl10_binary.tar.gz", images, first=("../evil",))
    with pytest.raises(DatasetError, match="refusing archive member"):
        load_dataset("stl10", path)


def test_archive_without_the_member(tmp_path):
    path = tmp_path / "stl10_binary.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add_tar_member(tar, "stl10_binary/train_X.bin", b"x")
    with pytest.raises(DatasetError, match="no member stl10_binary/unlabeled_X.bin"):
        load_dataset("stl10", path)


def test_truncated_file(tmp_path, images):
    (tmp_path / "unlabeled_X.bin").write_bytes(stl_bytes(images)[:-10])
    with pytest.raises(DatasetError, match="not a positive multiple of 27648"):
        load_dataset("stl10", tmp_path)


def test_missing_names_the_file(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("stl10", tmp_path)
    msg = str(e.value)
    assert "stl10_binary/unlabeled_X.bin" in msg and "stl10_binary.tar.gz" in msg and "stanford.edu" in msg


def test_resolution_and_options(stl_root):
    with pytest.raises(DatasetError, match="allowed: 48, 96"):
        load_dataset("stl10", stl_root, resolution=32)
    with pytest.raises(DatasetError, match="unknown option.*allowed: limit"):
        load_dataset("stl10", stl_root, size=3)
    with pytest.raises(DatasetError, match="limit must be a positive integer"):
        load_dataset("stl10", stl_root, limit=0)
