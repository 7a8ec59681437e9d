"""``cifar10``: the 50,000 CIFAR-10 training images (data_batch_1..5), 32x32 RGB, labels kept.

Read from ``cifar-10-python.tar.gz`` without extracting it (members streamed with ``tarfile``),
or from an already extracted ``cifar-10-batches-py/`` folder. ``root`` may be the folder holding
either, the archive itself, or the ``cifar-10-batches-py`` folder. Each batch is a Python 2
pickle of a dict with ``b"data"`` (uint8 [10000, 3072]: the R, G and B planes, each row-major 32x32)
and ``b"labels"``; it is loaded with :class:`~gannorm.data.archives.SafeUnpickler`, which refuses
anything but numpy array reconstruction. No augmentation (as in the official code). The 10 class
names are those of ``batches.meta`` (:data:`CLASS_NAMES`; labels 0-9 index them).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import IO, cast

import numpy as np
import torch

from .archives import iter_tar, read_errors, safe_unpickle
from .base import Dataset, DatasetError, check_limit, loader, need_root

ARCHIVE = "cifar-10-python.tar.gz"
FOLDER = "cifar-10-batches-py"
URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
HINT = f"download it from {URL}"
BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_BATCH = re.compile(r"(?:^|/)(data_batch_[1-5])$")
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _parse_batch(f: IO[bytes], source: str) -> tuple[np.ndarray, np.ndarray]:
    with read_errors("cifar10", source, "a pickled dict with b'data' uint8 [N, 3072] and b'labels'"):
        d = safe_unpickle(f, f"cifar10: {source}")
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DatasetError(f"cifar10: {source} is not a CIFAR batch (expected a dict with b'data' and b'labels')")
    data, labels = d[b"data"], np.asarray(d[b"labels"])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"cifar10: {source}: b'data' must be uint8 [N, 3072], got "
                           f"{getattr(data, 'dtype', type(data).__name__)} {getattr(data, 'shape', '')}")
    if labels.shape != (len(data),) or labels.dtype.kind not in "iu":
        raise DatasetError(f"cifar10: {source}: b'labels' must be {len(data)} integers")
    return data, labels.astype(np.int64)


def _read_archive(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    found = {}
    for name, _, f in iter_tar(path, lambda n: _BATCH.search(n) is not None, "cifar10"):
        batch = cast(re.Match, _BATCH.search(name)).group(1)  # the filter above matched it
        found[batch] = _parse_batch(f, f"{path}:{name}")
        if len(found) == len(BATCHES):
            break
    return found


def _read_folder(folder: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    found = {}
    for batch in BATCHES:
        file = folder / batch
        if file.is_file():
            with read_errors("cifar10", file), open(file, "rb") as f:
                found[batch] = _parse_batch(f, str(file))
    return found


def locate(root: Path) -> tuple[str, Path]:
    """``("archive", path)`` or ``("folder", path)``."""
    if root.is_file():
        return "archive", root
    if (root / FOLDER).is_dir():
        return "folder", root / FOLDER
    if (root / BATCHES[0]).is_file():
        return "folder", root
    if (root / ARCHIVE).is_file():
        return "archive", root / ARCHIVE
    raise DatasetError(f"cifar10: expected {ARCHIVE} or {FOLDER}/ in {root} ({HINT} and pass data.root=DIR)")


@loader("cifar10", resolutions=(32,), default=32, labels="")
def load_cifar10(root: Path | None, resolution: int, *, limit: int | None = None) -> Dataset:
    limit = check_limit("cifar10", limit)
    kind, path = locate(need_root("cifar10", root, f"{ARCHIVE} or {FOLDER}/", HINT))
    found = _read_archive(path) if kind == "archive" else _read_folder(path)
    missing = [b for b in BATCHES if b not in found]
    if missing:
        raise DatasetError(f"cifar10: {path} lacks {', '.join(missing)} (expected the 5 training batches "
                           f"of {ARCHIVE}; {HINT})")
    data = np.concatenate([found[b][0] for b in BATCHES])[:limit]
    labels = np.concatenate([found[b][1] for b in BATCHES])[:limit]
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return Dataset("cifar10", images, "image", labels=torch.from_numpy(labels), source=str(path),
                   class_names=CLASS_NAMES)
