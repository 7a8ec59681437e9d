"""Labelled datasets: num_classes, class_names, class_counts, sample_labelled, sample_labels (in memory, lazily),
and imagefolder's ``labels`` option."""
from collections import Counter

import numpy as np
import pytest
import torch

from gannorm.data import DATASETS, LABELLED, Dataset, DatasetError, LazyDataset, labelled_datasets, load_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = {"ant": (255, 0, 0), "bee": (0, 255, 0), "cat": (0, 0, 255), "cat-b": (255, 255, 0)}


def _toy(labels, class_names=None, n_pixels=4):
    labels = torch.as_tensor(labels)
    data = torch.arange(len(labels) * n_pixels).reshape(len(labels), 1, 2, n_pixels // 2).remainder(256)
    return Dataset("toy", data.to(torch.uint8), "image", labels=labels, class_names=class_names)


def _save(path, size, colour):
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def classes(tmp_path):
    """One folder per class (nested images too), each class one solid colour; 'cat-b' sorts after 'cat'
    by name although 'cat-b/...' sorts before 'cat/...' as a path."""
    root = tmp_path / "train"
    counts = {"ant": 3, "bee": 1, "cat": 4, "cat-b": 2}
    for name, count in counts.items():
        for i in range(count):
            sub = root / name / ("deep" if i % 2 else "") / f"{name}_{i}.png"
            _save(sub, (9 + i, 12), COLOURS[name])
    return root


# ----------------------------------------------------------------------------------- the label API

def test_num_classes_class_names_and_counts():
    labels = [2, 0, 2, 2, 5, 0]
    ds = _toy(labels)
    assert ds.num_classes == 6 and ds.class_names is None  # largest label + 1
    counts = Counter(labels)
    assert ds.class_counts().tolist() == [counts[k] for k in range(6)] and ds.class_counts().dtype == torch.int64
    named = _toy(labels, class_names=[f"c{k}" for k in range(8)])
    assert named.num_classes == 8 and named.class_names == tuple(f"c{k}" for k in range(8))
    assert named.class_counts().tolist() == [counts[k] for k in range(8)]  # classes without samples count 0
    plain = Dataset("p", torch.zeros(3, 2), "vector")
    assert plain.num_classes == 0 and plain.class_names is None and plain.class_counts().shape == (0,)
    assert "6 classes" in repr(ds)


@pytest.mark.parametrize("labels, names, match", [([0, -1, 1], None, "non-negative"),
                                                  ([0, 3, 1], ["a", "b", "c"], "label 3 for 3 class names"),
                                                  (None, ["a"], "class_names given without labels"),
                                                  ([0, 1], None, "2 labels for 3 samples")])
def test_bad_labels_are_refused(labels, names, match):
    with pytest.raises(DatasetError, match=match):
        Dataset("x", torch.zeros(3, 2), "vector", labels=labels, class_names=names)


def test_sample_labelled_is_the_draw_of_sample():
    ds = _toy(torch.arange(50) % 7)
    for rows in (None, [1, 3]):
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        x, y = ds.sample_labelled(33, g1, rows=rows)
        assert torch.equal(x, ds.sample(33, g2, rows=rows))  # bitwise the same pixels
        assert torch.equal(g1.get_state(), g2.get_state())  # the same generator consumption
        idx = torch.randint(50, (33,), generator=torch.Generator().manual_seed(5))
        assert y.dtype == torch.int64 and y.shape == (33,)
        assert y.tolist() == [int(i) % 7 for i in idx]  # each label is its sample's
        assert torch.equal(x, ds.get(idx))


def test_sample_labels_follow_the_class_frequencies():
    labels = torch.tensor([0] * 70 + [1] * 20 + [3] * 10)
    ds = _toy(labels[torch.randperm(100, generator=torch.Generator().manual_seed(0))])
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    y = ds.sample_labels(20000, g1)
    ds.sample(20000, g2)
    assert torch.equal(g1.get_state(), g2.get_state())  # consumes what sample does
    freq = torch.bincount(y, minlength=4).double() / 20000
    expected = torch.tensor([0.7, 0.2, 0.0, 0.1], dtype=torch.float64)
    assert (freq - expected).abs().max() < 4 * (0.25 / 20000) ** 0.5  # 4 binomial standard deviations
    assert y.dtype == torch.int64 and y.shape == (20000,)


def test_an_unlabelled_dataset_says_which_are_labelled():
    ds = Dataset("plain", torch.zeros(4, 2), "vector")
    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    for call in (lambda: ds.sample_labelled(3, g), lambda: ds.sample_labels(3, g)):
        with pytest.raises(DatasetError) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg and "plain: this dataset has no labels" in msg
        for name in ("digits", "mnist5k", "cifar10", "ring8", "grid25", "imagefolder (labels=true)", "stl10 (split="):
            assert name in msg
    assert torch.equal(g.get_state(), before)  # nothing drawn


def test_the_registry_records_which_loaders_give_labels():
    expected = {"digits": "", "mnist5k": "", "ring8": "", "grid25": "", "cifar10": "",
                "imagefolder": "labels=true", "stl10": "split=train, test or train+test"}
    assert LABELLED == expected
    assert {e.name: e.obj.labels for e in DATASETS.entries() if e.obj.labels is not None} == expected
    assert labelled_datasets().startswith("cifar10, digits, grid25, mnist5k, ring8, imagefolder")


@pytest.mark.parametrize("name, k", [("ring8", 8), ("grid25", 25)])
def test_vector_mixtures_label_the_mode(name, k):
    ds = load_dataset(name, n=300)
    assert ds.num_classes == k and ds.class_names[0] == "mode 0" and int(ds.class_counts().sum()) == 300
    x, y = ds.sample_labelled(200, torch.Generator().manual_seed(0), rows=[0])
    assert x.shape == (200, 2) and y.shape == (200,)
    nearest = torch.cdist(x.double(), ds.modes.double()).argmin(dim=1)  # the closest centre is the label's
    assert torch.equal(nearest, y)
    assert load_dataset(name, n=3).num_classes == k  # the names fix it, even when few modes were drawn


def test_digits_classes():
    from sklearn.datasets import load_digits
    ds = load_dataset("digits", resolution=8)
    assert ds.class_names == tuple("0123456789") and ds.num_classes == 10
    assert ds.class_counts().tolist() == np.bincount(load_digits().target, minlength=10).tolist()


# ----------------------------------------------------------------------------- imagefolder labels

def test_imagefolder_labels_one_class_per_folder(classes):
    ds = load_dataset("imagefolder", classes, 6, labels=True)
    assert ds.class_names == ("ant", "bee", "cat", "cat-b") and ds.num_classes == 4
    assert ds.class_counts().tolist() == [3, 1, 4, 2] and len(ds) == 10
    means = ds.data.float().mean(dim=(2, 3))
    for i, label in enumerate(ds.labels.tolist()):  # every image carries its folder's class
        assert (means[i] - torch.tensor(COLOURS[ds.class_names[label]]).float()).abs().max() < 1
    x, y = ds.sample_labelled(40, torch.Generator().manual_seed(2))
    colours = torch.tensor([COLOURS[n] for n in ds.class_names]).float() / 127.5 - 1
    assert (x.mean(dim=(2, 3)) - colours[y]).abs().max() < 0.01
    plain = load_dataset("imagefolder", classes, 6)
    assert plain.labels is None and plain.num_classes == 0 and len(plain) == 10  # labels=false: as before


def test_imagefolder_labels_limit_keeps_every_class_name(classes):
    ds = load_dataset("imagefolder", classes, 6, labels=True, limit=5)
    assert ds.labels.tolist() == [0, 0, 0, 1, 2] and ds.num_classes == 4
    assert ds.class_counts().tolist() == [3, 1, 1, 0]


def test_imagefolder_labels_errors(classes, tmp_path):
    _save(classes / "stray.png", (8, 8), (1, 2, 3))
    with pytest.raises(DatasetError, match="stray.png lies directly in it.*labels=false"):
        load_dataset("imagefolder", classes, 6, labels=True)
    (classes / "stray.png").unlink()
    (classes / "dog" / "empty").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"class folder .*dog holds no image files"):
        load_dataset("imagefolder", classes, 6, labels=True)
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="one sub-folder per class .* found none"):
        load_dataset("imagefolder", flat, 6, labels=True)
    with pytest.raises(DatasetError, match="labels must be true or false"):
        load_dataset("imagefolder", classes, 6, labels="yes")


# ---------------------------------------------------------------------------------------- lazily

def _trainer_like(ds, gen, calls, n=6, rows=None):
    """What a class-conditional trainer does: labelled real batches and G's labels, with other draws between."""
    out = []
    for c in range(calls):
        out.append(ds.sample_labelled(n, gen, rows=rows))
        out.append((ds.sample_labels(n, gen),))
        torch.randn(n, 8 * (2 if c % 3 == 2 else 1), generator=gen)
    return out


@pytest.mark.parametrize("workers", [0, 1])
def test_lazy_labelled_is_bitwise_the_in_memory_dataset(classes, workers):
    mem = load_dataset("imagefolder", classes, 6, labels=True, in_memory=True)
    with load_dataset("imagefolder", classes, 6, labels=True, in_memory=False, workers=workers) as ds:
        assert isinstance(ds, LazyDataset) and ds.reader.labels is None  # the workers get no labels
        assert torch.equal(ds.labels, mem.labels) and ds.class_names == mem.class_names
        assert ds.num_classes == 4 and torch.equal(ds.class_counts(), mem.class_counts())
        g_mem, g_lazy = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
        for a, b in zip(_trainer_like(mem, g_mem, 8), _trainer_like(ds, g_lazy, 8)):
            assert all(torch.equal(u, v) for u, v in zip(a, b))
        assert torch.equal(g_mem.get_state(), g_lazy.get_state())
        if workers:
            assert ds.stats.prefetched >= 3  # the lookahead still learns the pattern
        assert "4 classes" in repr(ds)


def test_lazy_rows_decode_a_shard_but_give_every_label(classes):
    mem = load_dataset("imagefolder", classes, 6, labels=True)
    with load_dataset("imagefolder", classes, 6, labels=True, in_memory=False, workers=0) as ds:
        x_full, y_full = mem.sample_labelled(8, torch.Generator().manual_seed(4))
        x, y = ds.sample_labelled(8, torch.Generator().manual_seed(4), rows=torch.tensor([2, 3]))
        assert torch.equal(y, y_full)  # labels: all n rows
        assert torch.equal(x[2:4], x_full[2:4]) and (x[:2] == 0).all() and (x[4:] == 0).all()
        assert ds.stats.decoded == 2


def test_lazy_unlabelled_refuses_labelled_draws(classes):
    with load_dataset("imagefolder", classes, 6, in_memory=False, workers=0) as ds:
        assert ds.num_classes == 0 and ds.labels is None
        with pytest.raises(DatasetError, match="imagefolder: this dataset has no labels"):
            ds.sample_labelled(2, torch.Generator())
