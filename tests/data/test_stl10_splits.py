"""STL-10's labelled splits (``split=train|test|train+test``): images, labels 1..10 -> 0..9, class names,
the archive and the extracted folder alike, lazily too."""
import tarfile

import numpy as np
import pytest
import torch
from data_fakes import add_tar_member, stl_bytes, stl_images

from gannorm.data import Dataset, DatasetError, LazyDataset, load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

N_TRAIN, N_TEST, N_UNLAB = 4, 3, 2
NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


@pytest.fixture
def files():
    """name -> bytes of a fake stl10_binary/ (labels as stored: 1..10)."""
    train, test = stl_images(N_TRAIN, seed=1), stl_images(N_TEST, seed=2)
    return {"train_X.bin": stl_bytes(train), "train_y.bin": bytes([1, 10, 3, 3]),
            "test_X.bin": stl_bytes(test), "test_y.bin": bytes([7, 1, 2]),
            "unlabeled_X.bin": stl_bytes(stl_images(N_UNLAB, seed=3)),
            "class_names.txt": ("\n".join(NAMES) + "\n\n").encode(),
            "_train": train, "_test": test}


@pytest.fixture
def folder(tmp_path, files):
    d = tmp_path / "stl10_binary"
    d.mkdir()
    for name, payload in files.items():
        if not name.startswith("_"):
            (d / name).write_bytes(payload)
    return tmp_path


def _tar(path, files, skip=()):
    with tarfile.open(path, "w:gz") as tar:
        for name in ("test_X.bin", "test_y.bin", "train_X.bin", "train_y.bin", "unlabeled_X.bin", "class_names.txt"):
            if name not in skip:
                add_tar_member(tar, f"stl10_binary/{name}", files[name])
    return path


def _expected(files, split):
    parts = {"train": ([files["_train"]], [0, 9, 2, 2]), "test": ([files["_test"]], [6, 0, 1]),
             "train+test": ([files["_train"], files["_test"]], [0, 9, 2, 2, 6, 0, 1])}[split]
    return torch.from_numpy(np.concatenate(parts[0])), torch.tensor(parts[1])


@pytest.mark.parametrize("split", ["train", "test", "train+test"])
@pytest.mark.parametrize("source", ["folder", "archive"])
def test_labelled_splits(tmp_path, folder, files, split, source):
    root = folder if source == "folder" else _tar(tmp_path / "stl10_binary.tar.gz", files)
    ds = load_dataset("stl10", root, 96, split=split, in_memory=True)
    images, labels = _expected(files, split)
    assert torch.equal(ds.data, images) and torch.equal(ds.labels, labels)
    assert ds.class_names == tuple(NAMES) and ds.num_classes == 10
    assert ds.class_counts().tolist() == np.bincount(labels.numpy(), minlength=10).tolist()
    x, y = ds.sample_labelled(9, torch.Generator().manual_seed(0))
    idx = torch.randint(len(labels), (9,), generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, labels[idx]) and torch.equal(x, images[idx].float() / 127.5 - 1)


@pytest.mark.parametrize("source", ["folder", "archive"])
def test_limit_crosses_into_the_test_images(tmp_path, folder, files, source):
    root = folder if source == "folder" else _tar(tmp_path / "stl10_binary.tar.gz", files)
    ds = load_dataset("stl10", root, 96, split="train+test", limit=6, in_memory=True)
    images, labels = _expected(files, "train+test")
    assert torch.equal(ds.data, images[:6]) and torch.equal(ds.labels, labels[:6]) and ds.num_classes == 10


def test_unlabeled_default_is_unchanged(folder, files):
    ds = load_dataset("stl10", folder, 96)
    assert len(ds) == N_UNLAB and ds.labels is None and ds.class_names is None and ds.num_classes == 0


def test_without_class_names_the_labels_decide(folder):
    (folder / "stl10_binary" / "class_names.txt").unlink()
    ds = load_dataset("stl10", folder, 96, split="train")
    assert ds.class_names is None and ds.num_classes == 10  # largest label 9, + 1


def test_root_may_be_the_split_file(folder):
    ds = load_dataset("stl10", folder / "stl10_binary" / "test_X.bin", 96, split="test")
    assert len(ds) == N_TEST and ds.labels.tolist() == [6, 0, 1]
    with pytest.raises(DatasetError, match="test_X.bin is not the images of split=unlabeled.*choose the split"):
        load_dataset("stl10", folder / "stl10_binary" / "test_X.bin", 96)


def test_lazy_train_test_is_bitwise_in_memory(folder):
    mem = load_dataset("stl10", folder, 48, split="train+test", in_memory=True)
    with load_dataset("stl10", folder, 48, split="train+test", in_memory=False, workers=1) as ds:
        assert isinstance(mem, Dataset) and isinstance(ds, LazyDataset)
        assert torch.equal(ds.labels, mem.labels) and ds.class_names == mem.class_names
        assert torch.equal(ds.get(torch.arange(7)), mem.get(torch.arange(7)))  # both files, in order
        g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
        for _ in range(5):
            a, b = mem.sample_labelled(10, g1), ds.sample_labelled(10, g2)
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
            assert torch.equal(mem.sample_labels(5, g1), ds.sample_labels(5, g2))


@pytest.mark.parametrize("name, payload, match", [
    ("train_y.bin", bytes([1, 2, 11, 3]), r"labels outside 1..10"),
    ("train_y.bin", bytes([0, 2, 1, 3]), r"labels outside 1..10"),
    ("train_y.bin", bytes([1, 2, 3]), "3 labels for 4 images"),
    ("class_names.txt", b"a\nb\n", "lists 2 class names; expected 10"),
])
@pytest.mark.parametrize("source", ["folder", "archive"])
def test_malformed_label_files(tmp_path, folder, files, name, payload, match, source):
    files = {**files, name: payload}
    if source == "folder":
        (folder / "stl10_binary" / name).write_bytes(payload)
        root = folder
    else:
        root = _tar(tmp_path / "stl10_binary.tar.gz", files)
    with pytest.raises(DatasetError, match=match):
        load_dataset("stl10", root, 96, split="train", in_memory=True)


def test_missing_files_and_bad_split(tmp_path, folder, files):
    with pytest.raises(DatasetError, match="split must be one of unlabeled, train, test, train\\+test"):
        load_dataset("stl10", folder, split="labelled")
    (folder / "stl10_binary" / "train_y.bin").unlink()
    with pytest.raises(DatasetError, match="expected the labels .*train_y.bin next to"):
        load_dataset("stl10", folder, split="train")
    (folder / "stl10_binary" / "train_X.bin").unlink()
    with pytest.raises(DatasetError, match="expected stl10_binary/train_X.bin and stl10_binary/test_X.bin"):
        load_dataset("stl10", folder, split="train+test")
    (tmp_path / "a").mkdir()
    path = _tar(tmp_path / "a" / "stl10_binary.tar.gz", files, skip=("test_y.bin",))
    with pytest.raises(DatasetError, match="has no member stl10_binary/test_y.bin"):
        load_dataset("stl10", path, split="test")
