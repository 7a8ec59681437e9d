import os
import pickle

import numpy as np
import pytest
import torch
from data_fakes import cifar_batches, write_cifar_tar

from gannorm.data import DatasetError, load_dataset

PER = 4


def _expected(batches):
    data = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
    labels = np.concatenate([b[b"labels"] for b in batches])
    return torch.from_numpy(data), torch.from_numpy(labels).long()


@pytest.fixture
def batches():
    return cifar_batches(PER)


@pytest.mark.parametrize("as_file", [False, True])
def test_reads_the_five_training_batches_from_the_tar(tmp_path, batches, as_file):
    path = write_cifar_tar(tmp_path / "cifar-10-python.tar.gz", batches)
    ds = load_dataset("cifar10", str(path if as_file else tmp_path))
    data, labels = _expected(batches)
    assert ds.kind == "image" and ds.shape == (3, 32, 32) and len(ds) == 5 * PER
    assert ds.data.dtype == torch.uint8
    assert torch.equal(ds.data, data)  # test_batch is not included
    assert torch.equal(ds.labels, labels) and ds.labels.dtype == torch.int64
    x = ds.get(torch.arange(3))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, data[:3].float() / 127.5 - 1)


def test_planes_are_rgb_and_row_major(tmp_path, batches):
    batches[0][b"data"][0] = 0
    batches[0][b"data"][0, 0 * 1024 + 1 * 32 + 5] = 200  # red, row 1, column 5
    batches[0][b"data"][0, 2 * 1024 + 30 * 32 + 2] = 100  # blue, row 30, column 2
    ds = load_dataset("cifar10", write_cifar_tar(tmp_path / "c.tar.gz", batches))
    img = ds.data[0]
    assert img[0, 1, 5] == 200 and img[2, 30, 2] == 100 and int(img.sum()) == 300


def test_reads_an_extracted_folder(tmp_path, batches):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i, b in enumerate(batches, 1):
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps(b, protocol=2))
    data, labels = _expected(batches)
    for root in (tmp_path, folder):
        ds = load_dataset("cifar10", root)
        assert torch.equal(ds.data, data) and torch.equal(ds.labels, labels)


def test_limit(tmp_path, batches):
    ds = load_dataset("cifar10", write_cifar_tar(tmp_path / "c.tar.gz", batches), limit=6)
    assert len(ds) == 6 and torch.equal(ds.data, _expected(batches)[0][:6])


def test_missing_archive_names_the_file_and_the_url(tmp_path):
    with pytest.raises(DatasetError) as e:
        load_dataset("cifar10", tmp_path)
    msg = str(e.value)
    assert "cifar-10-python.tar.gz" in msg and str(tmp_path) in msg and "cs.toronto.edu" in msg
    assert "\n" not in msg
    with pytest.raises(DatasetError, match="no data root"):
        load_dataset("cifar10")


def test_missing_batch_is_named(tmp_path, batches):
    with pytest.raises(DatasetError, match="data_batch_5"):
        load_dataset("cifar10", write_cifar_tar(tmp_path / "c.tar.gz", batches, skip=(5,)))


def test_malformed_batch(tmp_path, batches):
    batches[2] = {b"data": np.zeros((3, 100), np.uint8), b"labels": [0, 1, 2]}
    with pytest.raises(DatasetError, match=r"uint8 \[N, 3072\]"):
        load_dataset("cifar10", write_cifar_tar(tmp_path / "c.tar.gz", batches))
    batches[2] = [1, 2, 3]
    with pytest.raises(DatasetError, match="not a CIFAR batch"):
        load_dataset("cifar10", write_cifar_tar(tmp_path / "d.tar.gz", batches))


def test_not_a_tar(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"not a tar at all")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset("cifar10", tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_hostile_pickle_is_refused(tmp_path, batches):
    batches[1] = {b"data": _Evil(), b"labels": []}
    with pytest.raises(DatasetError, match="refusing to unpickle"):
        load_dataset("cifar10", write_cifar_tar(tmp_path / "c.tar.gz", batches))


def test_evil_member_is_refused(tmp_path, batches):
    path = write_cifar_tar(tmp_path / "c.tar.gz", batches, first={"../evil": b"x"})
    with pytest.raises(DatasetError, match=r"refusing archive member '\.\./evil'"):
        load_dataset("cifar10", path)


def test_resolution(tmp_path, batches):
    path = write_cifar_tar(tmp_path / "c.tar.gz", batches)
    assert load_dataset("cifar10", path, resolution=32).shape == (3, 32, 32)
    with pytest.raises(DatasetError, match="unsupported resolution 64; allowed: 32"):
        load_dataset("cifar10", path, resolution=64)
