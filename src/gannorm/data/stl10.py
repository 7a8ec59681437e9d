"""``stl10``: the 100,000 unlabelled STL-10 images (``stl10_binary/unlabeled_X.bin``), 96x96 RGB.

The file is a flat uint8 array; each image is 3 planes (R, G, B) of 96x96 stored *column-major*.
Read as (N, 3, 96, 96) it is (N, C, W, H), so it is transposed (0, 1, 3, 2) to (N, C, H, W)
(the official preprocess transposes (0, 3, 2, 1) to NHWC: the same pixels). It is then shrunk to
48x48 (default) with bilinear interpolation *without* antialiasing, like the official
``cv2.resize(..., INTER_LINEAR)`` (for this exact 2x reduction: the mean of each 2x2 block,
rounded half up), or kept at 96.

``root`` may be the folder holding ``stl10_binary/``, the ``stl10_binary/`` folder itself, a
folder holding ``stl10_binary.tar.gz``, or that archive (its member is streamed, never extracted).
The file is read in chunks (``np.memmap`` for the extracted file), so no full-resolution copy of
all images is ever held in memory. Option ``limit`` reads only the first ``limit`` images. The
extracted file can also be read lazily (``data.in_memory``; fixed-size records, read when drawn);
the archive is always read whole (a gzip stream has no random access).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .archives import iter_tar, read_errors
from .base import Dataset, DatasetError, check_limit, loader, need_root, resize_uint8
from .lazy import ImageReader

FILE = "unlabeled_X.bin"
FOLDER = "stl10_binary"
ARCHIVE = "stl10_binary.tar.gz"
URL = "https://cs.stanford.edu/~acoates/stl10/"
HINT = f"download {ARCHIVE} from {URL}"
SIDE = 96
IMAGE_BYTES = 3 * SIDE * SIDE
_CHUNK = 2048  # images per read of the archive


def locate(root: Path) -> tuple[str, Path]:
    """``("file", unlabeled_X.bin)`` or ``("archive", stl10_binary.tar.gz)``."""
    if root.is_file():
        if root.name == FILE:
            return "file", root
        return "archive", root
    for cand in (root / FOLDER / FILE, root / FILE):
        if cand.is_file():
            return "file", cand
    if (root / ARCHIVE).is_file():
        return "archive", root / ARCHIVE
    raise DatasetError(f"stl10: expected {FOLDER}/{FILE} or {ARCHIVE} in {root} ({HINT} and pass data.root=DIR)")


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


class STL10Reader(ImageReader):
    """Images of the extracted ``unlabeled_X.bin``: fixed-size records read through a fresh memory map
    (unmapped after each read, so nothing stays resident), converted by :func:`_convert`."""

    def __init__(self, path: Path, count: int, resolution: int) -> None:
        self.name, self.source, self.path = "stl10", str(path), path
        self.count, self.shape = count, (3, resolution, resolution)

    def read(self, indices: np.ndarray) -> torch.Tensor:
        out = torch.empty((len(indices), *self.shape), dtype=torch.uint8)
        with read_errors("stl10", self.path):
            raw = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(self.count, IMAGE_BYTES))
            records = raw[np.asarray(indices, dtype=np.int64)]  # a copy
            del raw
            _convert(records, self.shape[-1], out)
        return out


def _read_archive(path: Path, limit: int | None, resolution: int) -> torch.Tensor:
    for name, size, f in iter_tar(path, lambda n: n in (f"{FOLDER}/{FILE}", FILE), "stl10"):
        source = f"{path}:{name}"
        n = _count(size, source)
        n = n if limit is None else min(n, limit)
        out = torch.empty((n, 3, resolution, resolution), dtype=torch.uint8)
        with read_errors("stl10", source):
            for i in range(0, n, _CHUNK):
                want = min(_CHUNK, n - i)
                buf = bytearray(want * IMAGE_BYTES)  # writable, so torch.from_numpy does not warn
                if f.readinto(buf) != len(buf):
                    raise DatasetError(f"stl10: {source} is truncated ({HINT})")
                _convert(np.frombuffer(buf, dtype=np.uint8), resolution, out[i:i + want])
        return out
    raise DatasetError(f"stl10: {path} has no member {FOLDER}/{FILE} ({HINT})")


@loader("stl10", resolutions=(48, 96), default=48)
def load_stl10(root: Path | None, resolution: int, *, limit: int | None = None) -> Dataset | STL10Reader:
    limit = check_limit("stl10", limit)
    kind, path = locate(need_root("stl10", root, f"{FOLDER}/{FILE} or {ARCHIVE}", HINT))
    if kind == "file":
        n = _count(path.stat().st_size, path)
        return STL10Reader(path, n if limit is None else min(n, limit), resolution)
    return Dataset("stl10", _read_archive(path, limit, resolution), "image", source=str(path))
