"""``celeba``: the 202,599 aligned CelebA faces (``img_align_celeba``, 178 wide x 218 high JPEGs).

As the official preprocessing: a fixed 128x128 crop at row 45, column 25 (the centre:
(218 - 128) / 2 and (178 - 128) / 2), then bilinear resize to 64x64 (default) *without*
antialiasing like ``cv2.resize(..., INTER_LINEAR)`` (for this exact 2x reduction: the mean of each
2x2 block, rounded half up), or kept at 128. Pillow decodes to RGB directly (the official code
reads BGR with OpenCV and converts). Images not of size 178x218 are refused.

``root`` may be ``img_align_celeba.zip`` itself, a folder holding it, a folder holding the
extracted ``img_align_celeba/``, or that folder. Members are read from the zip without extracting
(names checked with :func:`~gannorm.data.archives.safe_member_name`), in sorted name order.
Option ``limit`` keeps the first ``limit`` images. Memory: 12 kB per image at 64 (2.5 GB for all),
49 kB at 128 (10 GB); read lazily (``data.in_memory``), from the zip or the folder alike, it is the
member index only (the zip's directory, some 100 MB, in each worker).
"""
from __future__ import annotations

import functools
import io
import os
import zipfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import Image

from .archives import read_errors, zip_names
from .base import DatasetError, check_limit, loader, need_root, resize_uint8
from .lazy import ImageReader, StringTable

ARCHIVE = "img_align_celeba.zip"
FOLDER = "img_align_celeba"
URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
HINT = f"download {ARCHIVE} ('Align&Cropped Images') from {URL}"
WIDTH, HEIGHT = 178, 218
CROP, TOP, LEFT = 128, 45, 25
EXTENSIONS = (".jpg", ".jpeg", ".png")
_CHUNK = 1024


def _is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return name.lower().endswith(EXTENSIONS) and not base.startswith("._") and "__MACOSX/" not in name


def locate(root: Path) -> tuple[str, Path]:
    """``("zip", path)`` or ``("folder", path)``."""
    if root.is_file():
        return "zip", root
    if (root / ARCHIVE).is_file():
        return "zip", root / ARCHIVE
    if (root / FOLDER).is_dir():
        return "folder", root / FOLDER
    if root.is_dir() and any(_is_image(p.name) for p in root.iterdir()):
        return "folder", root
    raise DatasetError(f"celeba: expected {ARCHIVE} or {FOLDER}/ in {root} ({HINT} and pass data.root=DIR)")


def crop(image, source: str) -> np.ndarray:
    """PIL image -> the uint8 [3, 128, 128] official crop."""
    if image.size != (WIDTH, HEIGHT):
        raise DatasetError(f"celeba: {source} is {image.size[0]}x{image.size[1]}, expected the aligned "
                           f"{WIDTH}x{HEIGHT} (width x height) images of {FOLDER}")
    arr = np.asarray(image.convert("RGB"))[TOP:TOP + CROP, LEFT:LEFT + CROP]
    return arr.transpose(2, 0, 1)


def _decode(items: list[tuple[str, Callable[[], bytes]]], resolution: int, path: Path) -> torch.Tensor:
    out = torch.empty((len(items), 3, resolution, resolution), dtype=torch.uint8)
    for i in range(0, len(items), _CHUNK):
        part = items[i:i + _CHUNK]
        chunk = np.empty((len(part), 3, CROP, CROP), dtype=np.uint8)
        for j, (name, read) in enumerate(part):
            with read_errors("celeba", f"{path}:{name}", "a JPEG/PNG image"):
                with Image.open(io.BytesIO(read())) as im:
                    chunk[j] = crop(im, f"{path}:{name}")
        resize_uint8(chunk, resolution, antialias=False, out=out[i:i + len(part)])
    return out


def _members(names: Iterable[str], limit: int | None) -> list[str]:
    return sorted(names)[:limit]


class CelebAReader(ImageReader):
    """The chosen members of the zip (or files of the folder), decoded with :func:`_decode`. Each
    process opens the zip once, when it first reads (an open zip is not passed to workers)."""

    def __init__(self, kind: str, path: Path, names: list[str], members: list[str], resolution: int) -> None:
        self.name, self.source, self.kind, self.path = "celeba", str(path), kind, path
        self.names, self.members = StringTable(names), StringTable(members)  # sorted clean names, stored names
        self.count, self.shape = len(self.names), (3, resolution, resolution)
        self._zip: tuple[int, zipfile.ZipFile] | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None}

    def _archive(self) -> zipfile.ZipFile:
        if self._zip is None or self._zip[0] != os.getpid():  # not one inherited by a forked worker
            with read_errors("celeba", self.path, f"a zip of {FOLDER}/*.jpg"):
                self._zip = (os.getpid(), zipfile.ZipFile(self.path))
        return self._zip[1]

    def _item(self, i: int) -> tuple[str, Callable[[], bytes]]:
        if self.kind == "zip":
            return self.names[i], functools.partial(self._archive().read, self.members[i])
        return self.names[i], (self.path / self.members[i]).read_bytes

    def read(self, indices: np.ndarray) -> torch.Tensor:
        return _decode([self._item(int(i)) for i in indices], self.shape[-1], self.path)


@loader("celeba", resolutions=(64, 128), default=64)
def load_celeba(root: Path | None, resolution: int, *, limit: int | None = None) -> CelebAReader:
    limit = check_limit("celeba", limit)
    kind, path = locate(need_root("celeba", root, f"{ARCHIVE} or {FOLDER}/", HINT))
    if kind == "zip":
        with read_errors("celeba", path, f"a zip of {FOLDER}/*.jpg"):
            with zipfile.ZipFile(path) as zf:
                stored = {clean: orig for orig, clean in zip_names(zf, path) if _is_image(clean)}
    else:
        stored = {p.name: p.name for p in path.iterdir() if p.is_file() and _is_image(p.name)}
    chosen = _members(stored, limit)
    if not chosen:
        raise DatasetError(f"celeba: {path} holds no .jpg images ({HINT})")
    return CelebAReader(kind, path, chosen, [stored[n] for n in chosen], resolution)
