"""``stl10``: the STL-10 images (``stl10_binary/*_X.bin``), 96x96 RGB, unlabelled or labelled.

Option ``split`` chooses the images:

- ``unlabeled`` (default): the 100,000 unlabelled images of ``unlabeled_X.bin`` (no labels);
- ``train``: the 5,000 labelled training images, ``train_X.bin`` with their labels ``train_y.bin``;
- ``test``: the 8,000 labelled test images, ``test_X.bin`` / ``test_y.bin``;
- ``train+test``: the 13,000 labelled images, train then test.

A ``*_y.bin`` file holds one byte per image, the class 1..10; the dataset's labels are 0..9. The
class names are read from ``class_names.txt`` (one per line) when it is there.

Each ``*_X.bin`` file is a flat uint8 array; each image is 3 planes (R, G, B) of 96x96 stored
*column-major*. Read as (N, 3, 96, 96) it is (N, C, W, H), so it is transposed (0, 1, 3, 2) to
(N, C, H, W) (the official preprocess transposes (0, 3, 2, 1) to NHWC: the same pixels). It is then
shrunk to 48x48 (default) with bilinear interpolation *without* antialiasing, like the official
``cv2.resize(..., INTER_LINEAR)`` (for this exact 2x reduction: the mean of each 2x2 block,
rounded half up), or kept at 96.

``root`` may be the folder holding ``stl10_binary/``, the ``stl10_binary/`` folder itself, a
folder holding ``stl10_binary.tar.gz``, that archive (its members are streamed, never extracted),
or the ``*_X.bin`` file of a one-file split. The files are read in chunks (``np.memmap`` for the
extracted files), so no full-resolution copy of all images is ever held in memory. Option ``limit``
reads only the first ``limit`` images. The extracted files can also be read lazily
(``data.in_memory``; fixed-size records, read when drawn); the archive is always read whole (a gzip
stream has no random access).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import IO, cast

import numpy as np
import torch

from .archives import iter_tar, read_errors
from .base import Dataset, DatasetError, check_limit, loader, need_root, resize_uint8
from .lazy import ImageReader

FILE = "unlabeled_X.bin"
FOLDER = "stl10_binary"
ARCHIVE = "stl10_binary.tar.gz"
CLASS_FILE = "class_names.txt"
URL = "https://cs.stanford.edu/~acoates/stl10/"
HINT = f"download {ARCHIVE} from {URL}"
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
NUM_CLASSES = 10
SPLITS: dict[str, tuple[tuple[str, str | None], ...]] = {  # split -> its (images, labels) files, in order
    "unlabeled": ((FILE, None),),
    "train": (("train_X.bin", "train_y.bin"),),
    "test": (("test_X.bin", "test_y.bin"),),
    "train+test": (("train_X.bin", "train_y.bin"), ("test_X.bin", "test_y.bin")),
}
_X_FILES = (FILE, "train_X.bin", "test_X.bin")
_CHUNK = 2048  # images per read of the archive


def check_split(split) -> tuple[tuple[str, str | None], ...]:
    """The (images, labels) files of ``split``, or a one-line error listing the splits."""
    if not isinstance(split, str) or split not in SPLITS:
        raise DatasetError(f"stl10: option split must be one of {', '.join(SPLITS)}, got {split!r}")
    return SPLITS[split]


def _expected(split: str) -> str:
    return " and ".join(f"{FOLDER}/{x}" for x, _ in SPLITS[split])


def locate(root: Path, split: str = "unlabeled") -> tuple[str, Path]:
    """``("folder", the folder holding the split's files)`` or ``("archive", stl10_binary.tar.gz)``."""
    names = [x for x, _ in SPLITS[split]]
    if root.is_file():
        if root.name in _X_FILES:
            if names != [root.name]:
                raise DatasetError(f"stl10: {root} is not the images of split={split} (which reads "
                                   f"{' and '.join(names)}); pass its folder as data.root, or choose the split")
            return "folder", root.parent
        return "archive", root
    for cand in (root / FOLDER, root):
        if all((cand / n).is_file() for n in names):
            return "folder", cand
    if (root / ARCHIVE).is_file():
        return "archive", root / ARCHIVE
    raise DatasetError(f"stl10: expected {_expected(split)} or {ARCHIVE} in {root} ({HINT} and pass data.root=DIR)")


def _convert(raw: np.ndarray, resolution: int, out: torch.Tensor) -> None:
    """Raw bytes of whole images -> ``out`` (uint8 [n, 3, r, r], upright: rows first).

    The file holds each plane as [column, row]; a square-to-square bilinear resize commutes with
    transposition, so the (cheaper) transpose is applied to the resized images.
    """
    planes = torch.from_numpy(np.ascontiguousarray(raw).reshape(-1, 3, SIDE, SIDE))  # [n, c, col, row]
    out.copy_(resize_uint8(planes, resolution, antialias=False).transpose(2, 3))


def _count(nbytes: int, source) -> int:
    if nbytes == 0 or nbytes % IMAGE_BYTES:
        raise DatasetError(f"stl10: {source} has {nbytes} bytes, not a positive multiple of {IMAGE_BYTES} "
                           f"(3x{SIDE}x{SIDE} uint8 images; {HINT})")
    return nbytes // IMAGE_BYTES


def parse_labels(payload: bytes, count: int, source) -> torch.Tensor:
    """A ``*_y.bin`` file (one byte per image, classes 1..10) -> int64 labels 0..9."""
    if len(payload) != count:
        raise DatasetError(f"stl10: {source} has {len(payload)} labels for {count} images (one byte per image; "
                           f"{HINT})")
    y = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(torch.int64)
    if count and (int(y.min()) < 1 or int(y.max()) > NUM_CLASSES):
        raise DatasetError(f"stl10: {source} holds labels outside 1..{NUM_CLASSES} ({HINT})")
    return y - 1


def parse_class_names(text: str, source) -> tuple[str, ...]:
    """``class_names.txt`` (one name a line, blank lines ignored) -> the 10 names."""
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != NUM_CLASSES:
        raise DatasetError(f"stl10: {source} lists {len(names)} class names; expected {NUM_CLASSES}, one a line")
    return names


class STL10Reader(ImageReader):
    """Images of extracted ``*_X.bin`` files (one after the other): fixed-size records read through a
    fresh memory map (unmapped after each read, so nothing stays resident), converted by :func:`_convert`."""

    def __init__(self, parts: list[tuple[Path, int]], count: int, resolution: int,
                 labels: torch.Tensor | None = None, class_names: tuple[str, ...] | None = None) -> None:
        self.name, self.parts = "stl10", parts
        self.source = ", ".join(str(path) for path, _ in parts)
        self.starts = np.cumsum([0] + [n for _, n in parts])
        self.count, self.shape = count, (3, resolution, resolution)
        self.labels, self.class_names = labels, class_names

    def read(self, indices: np.ndarray) -> torch.Tensor:
        indices = np.asarray(indices, dtype=np.int64)
        part = np.searchsorted(self.starts, indices, side="right") - 1
        raw = np.empty((len(indices), IMAGE_BYTES), dtype=np.uint8)
        for k, (path, n) in enumerate(self.parts):
            sel = np.flatnonzero(part == k)
            if len(sel):
                with read_errors("stl10", path):
                    records = np.memmap(path, dtype=np.uint8, mode="r", shape=(n, IMAGE_BYTES))
                    raw[sel] = records[indices[sel] - self.starts[k]]
                    del records
        out = torch.empty((len(indices), *self.shape), dtype=torch.uint8)
        _convert(raw, self.shape[-1], out)
        return out


def _read_folder(folder: Path, split: str, limit: int | None, resolution: int) -> STL10Reader:
    parts, labels = [], []
    for x, y in SPLITS[split]:
        path = folder / x
        n = _count(path.stat().st_size, path)
        parts.append((path, n))
        if y is not None:
            if not (folder / y).is_file():
                raise DatasetError(f"stl10: expected the labels {folder / y} next to {path} ({HINT})")
            with read_errors("stl10", folder / y):
                labels.append(parse_labels((folder / y).read_bytes(), n, folder / y))
    count = sum(n for _, n in parts) if limit is None else min(sum(n for _, n in parts), limit)
    if not labels:
        return STL10Reader(parts, count, resolution)
    names = None
    if (folder / CLASS_FILE).is_file():
        with read_errors("stl10", folder / CLASS_FILE, "a text file of class names"):
            names = parse_class_names((folder / CLASS_FILE).read_text(), folder / CLASS_FILE)
    return STL10Reader(parts, count, resolution, torch.cat(labels)[:count].clone(), names)


def _read_images(f: IO[bytes], n: int, resolution: int, source: str) -> torch.Tensor:
    out = torch.empty((n, 3, resolution, resolution), dtype=torch.uint8)
    with read_errors("stl10", source):
        for i in range(0, n, _CHUNK):
            want = min(_CHUNK, n - i)
            buf = bytearray(want * IMAGE_BYTES)  # writable, so torch.from_numpy does not warn
            if cast(io.BufferedIOBase, f).readinto(buf) != len(buf):  # a file or a tar member: both have it
                raise DatasetError(f"stl10: {source} is truncated ({HINT})")
            _convert(np.frombuffer(buf, dtype=np.uint8), resolution, out[i:i + want])
    return out


def _base(name: str) -> str:
    """An archive member's file name within ``stl10_binary/`` (members may also lie at the top)."""
    return name[len(FOLDER) + 1:] if name.startswith(FOLDER + "/") else name


def _archive_members(path: Path, split: str, limit: int | None, resolution: int) -> dict:
    """The split's members of the archive: ``{file name: (images, full count) | label bytes | text}``."""
    wanted = {n for pair in SPLITS[split] for n in pair if n is not None}
    if split != "unlabeled":
        wanted.add(CLASS_FILE)
    found: dict = {}
    for name, size, f in iter_tar(path, lambda n: _base(n) in wanted and _base(n) not in found, "stl10"):
        source, key = f"{path}:{name}", _base(name)
        with read_errors("stl10", source):
            if key.endswith("_X.bin"):
                n = _count(size, source)
                found[key] = (_read_images(f, n if limit is None else min(n, limit), resolution, source), n)
            else:
                found[key] = f.read()
        if len(found) == len(wanted):
            break
    return found


def _read_archive(path: Path, split: str, limit: int | None, resolution: int) -> Dataset:
    found = _archive_members(path, split, limit, resolution)
    images, labels = [], []
    for x, y in SPLITS[split]:
        for member in (x, y):
            if member is not None and member not in found:
                raise DatasetError(f"stl10: {path} has no member {FOLDER}/{member} ({HINT})")
        data, n = found[x]
        images.append(data)
        if y is not None:
            labels.append(parse_labels(found[y], n, f"{path}:{FOLDER}/{y}")[:len(data)])
    data = torch.cat(images)[:limit]
    names = None
    if labels and CLASS_FILE in found:
        names = parse_class_names(found[CLASS_FILE].decode("utf-8", "replace"), f"{path}:{FOLDER}/{CLASS_FILE}")
    return Dataset("stl10", data, "image", labels=torch.cat(labels)[:limit] if labels else None,
                   source=str(path), class_names=names)


@loader("stl10", resolutions=(48, 96), default=48, labels="split=train, test or train+test")
def load_stl10(root: Path | None, resolution: int, *, limit: int | None = None,
               split: str = "unlabeled") -> Dataset | STL10Reader:
    limit = check_limit("stl10", limit)
    check_split(split)
    kind, path = locate(need_root("stl10", root, f"{_expected(split)} or {ARCHIVE}", HINT), split)
    if kind == "folder":
        return _read_folder(path, split, limit, resolution)
    return _read_archive(path, split, limit, resolution)
