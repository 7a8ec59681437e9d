"""``imagefolder`` (any folder of image files) and ``npy`` (an image array saved with numpy).

``imagefolder``: every ``.png/.jpg/.jpeg/.bmp/.webp`` file (case-insensitive) under ``root``,
recursively, sorted by relative path. Each is EXIF-rotated, converted to RGB (``channels=3``,
default) or to Pillow's "L" luma (``channels=1``), centre-cropped to a square of its shorter side
(``left = (W - s) // 2``, ``top = (H - s) // 2``) and resized to ``resolution`` (required) with
Pillow's bilinear filter (antialiased when shrinking). Option ``limit``.

Option ``labels`` (default False): with ``labels=True`` each sub-folder directly under ``root`` is a
class (an ImageNet-style train folder: ``root/n01440764/*.JPEG``, ...). The classes are the
sub-folder names sorted (``class_names``; label k is the k-th name, as torchvision's ``ImageFolder``
numbers them), the images of a class are found recursively under its folder, and the images are
ordered class by class (so ``limit`` keeps the first classes' images; ``num_classes`` still counts
every class folder). An image directly under ``root``, or a class folder without images, is an error.

``npy``: ``root`` is a ``.npy`` file of images [N, H, W, C] (C = 1 or 3) or [N, H, W] (one channel),
loaded with ``np.load(allow_pickle=False, mmap_mode="r")``. Values are detected from the dtype and
range (option ``value_range`` overrides the detection):

- an integer dtype (uint8, or any integers within 0..255): pixels 0-255, used as they are;
- floats with a negative minimum and all values in [-1, 1]: ``"[-1,1]"``, mapped by ``(x + 1) * 127.5``;
- floats within [0, 1] otherwise: ``"[0,1]"``, mapped by ``x * 255`` (so a [-1, 1] array that happens
  to hold no negative value would be read as [0, 1]; pass ``value_range="[-1,1]"`` then).

Floats are rounded to 8 bits (storage is uint8). With ``resolution`` given, images are centre-cropped
to a square and resized (bilinear, antialiased when shrinking); without it they keep their size.
Option ``limit`` keeps the first ``limit`` images. Only the value scan reads the whole file (a slice
at a time; skipped for uint8 data read as 0-255); the images are read when decoded.

Both return an :class:`~gannorm.data.lazy.ImageReader`, so both can be read lazily
(``data.in_memory``); a file that cannot be decoded is then reported when it is drawn.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, ImageOps

from .archives import read_errors
from .base import ANY, DatasetError, center_crop_box, check_limit, loader, need_root, quantize, resize_uint8
from .lazy import ImageReader, StringTable
from ..validate import require

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VALUE_RANGES = ("auto", "[0,255]", "[0,1]", "[-1,1]")
NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file
_SCAN_BYTES = 64 << 20  # bytes of an .npy array mapped at a time when scanning its values


# ------------------------------------------------------------------------------------- imagefolder

def list_images(root: Path) -> StringTable:
    """Image files under ``root`` (recursive, not into linked folders; unreadable folders skipped), as
    paths relative to it (``/``-separated), sorted (by their bytes: for UTF-8 names, by code point).
    Listed as bytes into a :class:`~gannorm.data.lazy.StringTable`: a million files cost some 100 MB
    less than as ``Path`` objects."""
    return StringTable(_scan(root))


def _is_image_name(name: str | bytes) -> bool:
    return os.fsdecode(os.path.splitext(name)[1]).lower() in EXTENSIONS


def _scan(root: Path) -> list[bytes]:
    """The sorted relative paths (bytes) of :func:`list_images`."""
    top, suffixes = os.fsencode(root), tuple(os.fsencode(e) for e in EXTENSIONS)
    found, folders = [], [b""]
    while folders:
        rel = folders.pop()
        try:
            with os.scandir(os.path.join(top, rel) if rel else top) as entries:
                for e in entries:
                    name = rel + b"/" + e.name if rel else e.name
                    if e.is_dir(follow_symlinks=False):
                        folders.append(name)
                    elif os.path.splitext(e.name)[1].lower() in suffixes and e.is_file():
                        found.append(name)
        except OSError:
            if not rel:
                raise
    found.sort()
    return found


def list_classes(root: Path) -> tuple[StringTable, torch.Tensor, tuple[str, ...]]:
    """The images of a folder with one sub-folder per class.

    Args:
        root: the folder; each sub-folder directly under it is a class, its images found recursively.

    Returns:
        ``(files, labels, class_names)``: the files relative to ``root`` class by class (classes sorted
        by name, each class's images as :func:`list_images` sorts them), labels int64 [N], the names.

    Raises:
        DatasetError: an image directly under ``root``, a class folder without images, or no class folder.

    Example:
        >>> files, labels, names = list_classes(Path("~/imagenet/train").expanduser())
        >>> names[:2], labels[:3]
        (('n01440764', 'n01443537'), tensor([0, 0, 0]))
    """
    with os.scandir(root) as entries:
        items = list(entries)
    loose = sorted(e.name for e in items if e.is_file() and _is_image_name(e.name))
    if loose:
        raise DatasetError(f"imagefolder: labels=true expects one sub-folder per class under {root}, but {loose[0]} "
                           "lies directly in it (move it into its class folder, or set labels=false)")
    classes = sorted(e.name for e in items if e.is_dir())
    if not classes:
        raise DatasetError(f"imagefolder: labels=true expects one sub-folder per class under {root}, found none "
                           "(set labels=false for an unlabelled folder)")
    files: list[bytes] = []
    counts: list[int] = []
    for name in classes:
        found = _scan(root / name)
        if not found:
            raise DatasetError(f"imagefolder: class folder {root / name} holds no image files "
                               f"({', '.join(EXTENSIONS)}); remove it or add its images")
        prefix = os.fsencode(name) + b"/"
        files.extend(prefix + f for f in found)
        counts.append(len(found))
    labels = torch.repeat_interleave(torch.arange(len(classes)), torch.tensor(counts))
    return StringTable(files), labels, tuple(classes)


def decode_image(file: Path, channels: int, resolution: int, what: str = "imagefolder",
                 check: Callable[[Image.Image, Path], None] | None = None) -> np.ndarray:
    """One image file -> uint8 [channels, resolution, resolution]: EXIF-rotated, converted to RGB or L,
    centre-cropped to a square and resized with Pillow's bilinear filter (antialiased when shrinking).

    Args:
        file: the image file.
        channels: 3 (RGB) or 1 (Pillow's "L").
        resolution: the side of the square result.
        what: the dataset named in errors.
        check: called with the EXIF-rotated image and ``file`` before cropping; raises a
            :class:`DatasetError` for an image the dataset refuses.

    Returns:
        uint8 numpy array [channels, resolution, resolution].

    Example:
        >>> decode_image(Path("cat.png"), 3, 64).shape
        (3, 64, 64)
    """
    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    with read_errors(what, file, "a readable image"), Image.open(file) as im:
        im = ImageOps.exif_transpose(im)
        if check is not None:
            check(im, file)
        im = im.convert("RGB" if channels == 3 else "L")
        im = im.crop(center_crop_box(*im.size)).resize((resolution, resolution), bilinear)
        arr = np.asarray(im)
    return arr.reshape(resolution, resolution, channels).transpose(2, 0, 1)


class FolderReader(ImageReader):
    """The image files of an ``imagefolder``, decoded one by one with :func:`decode_image`."""

    def __init__(self, root: Path, files: StringTable, channels: int, resolution: int,
                 labels: torch.Tensor | None = None, class_names: tuple[str, ...] | None = None) -> None:
        self.name, self.source, self.root = "imagefolder", str(root), root
        self.files = files
        self.count, self.shape = len(self.files), (channels, resolution, resolution)
        self.labels, self.class_names = labels, class_names

    def check(self, image: Image.Image, file: Path) -> None:
        """Refuse an image (a subclass's rule; here every readable image is taken)."""

    def read(self, indices: np.ndarray) -> torch.Tensor:
        out = torch.empty((len(indices), *self.shape), dtype=torch.uint8)
        for k, i in enumerate(indices):
            arr = decode_image(self.root / self.files[int(i)], *self.shape[:2], self.name, self.check)
            out[k] = torch.from_numpy(arr.copy())
        return out


@loader("imagefolder", resolutions=ANY, default=None, required=True, labels="labels=true")
def load_imagefolder(root: Path | None, resolution: int, *, channels: int = 3, limit: int | None = None,
                     labels: bool = False) -> FolderReader:
    limit = check_limit("imagefolder", limit)
    require(channels, name="imagefolder: option channels", kind="int", choices=(1, 3), error=DatasetError)
    if not isinstance(labels, bool):
        raise DatasetError(f"imagefolder: option labels must be true or false, got {labels!r}")
    root = need_root("imagefolder", root, "a folder of image files", "put .png/.jpg/... files in a folder")
    if not root.is_dir():
        raise DatasetError(f"imagefolder: expected a folder of image files at {root} (pass data.root=DIR)")
    if labels:
        with read_errors("imagefolder", root, "a readable folder"):
            files, targets, names = list_classes(root)
        files = files.head(limit)
        return FolderReader(root, files, channels, resolution, targets[:len(files)].clone(), names)
    files = list_images(root).head(limit)
    if not len(files):
        raise DatasetError(f"imagefolder: no image files ({', '.join(EXTENSIONS)}) under {root}")
    return FolderReader(root, files, channels, resolution)


# --------------------------------------------------------------------------------------------- npy

def _open(path: Path) -> np.ndarray:
    """The array of ``path`` memory-mapped (nothing read yet), as [N, H, W, C]."""
    with read_errors("npy", path, "a .npy file saved with numpy.save (no pickled objects)"):
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    return arr[..., None] if arr.ndim == 3 else arr


def _min_max(path: Path, count: int) -> tuple[float, float]:
    """The smallest and largest value of the first ``count`` images, read a slice at a time (each slice
    mapped afresh, so the pages read do not stay resident); NaN if there is one."""
    lo, hi, arr = np.inf, -np.inf, _open(path)
    rows = max(1, _SCAN_BYTES // (int(np.prod(arr.shape[1:])) * arr.itemsize))
    del arr
    for i in range(0, count, rows):
        part = _open(path)[i:min(i + rows, count)]
        lo, hi = np.minimum(lo, part.min()), np.maximum(hi, part.max())
        del part
    return float(lo), float(hi)


def _detect_range(name: str, path: Path, dtype: np.dtype, count: int, value_range: str) -> str:
    if value_range not in VALUE_RANGES:
        raise DatasetError(f"{name}: option value_range must be one of {', '.join(VALUE_RANGES)}, got {value_range!r}")
    kind = dtype.kind
    if kind not in "uif":
        raise DatasetError(f"{name}: {path} has dtype {dtype}; expected uint8 or float images")
    if dtype == np.uint8 and value_range in ("auto", "[0,255]"):
        return "[0,255]"  # always in range: no need to read the file
    lo, hi = _min_max(path, count)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise DatasetError(f"{name}: {path} holds NaN or infinite values")
    detected = value_range
    if value_range == "auto":
        if kind in "ui":
            detected = "[0,255]"
        elif lo < 0:
            detected = "[-1,1]"
        else:
            detected = "[0,1]"
    bounds = {"[0,255]": (0, 255), "[0,1]": (0, 1), "[-1,1]": (-1, 1)}[detected]
    if lo < bounds[0] or hi > bounds[1]:
        how = "detected" if value_range == "auto" else "given"
        raise DatasetError(f"{name}: {path} has values in [{lo:g}, {hi:g}], outside the {how} range {detected} "
                           "(expected uint8 0-255, or floats in [0, 1] or [-1, 1])")
    return detected


def _to_uint8(chunk: np.ndarray, value_range: str) -> torch.Tensor:
    if value_range == "[0,255]" and chunk.dtype.kind in "ui":
        return torch.from_numpy(np.asarray(chunk).astype(np.uint8))
    x = torch.from_numpy(np.array(chunk, dtype=np.float32))  # a writable copy
    scaled = {"[0,255]": x, "[0,1]": x * 255.0, "[-1,1]": (x + 1.0) * 127.5}[value_range]
    return quantize(scaled)


class NpyReader(ImageReader):
    """Images of a ``.npy`` array: the records asked for are read through a fresh memory map, cropped to
    the centre square, converted to 8 bits and resized (bilinear, antialiased when shrinking)."""

    def __init__(self, path: Path, count: int, height: int, width: int, channels: int, value_range: str,
                 resolution: int | None) -> None:
        self.name, self.source, self.path = "npy", str(path), path
        self.count, self.value_range = count, value_range
        if resolution is None:
            self.size, self.box = (height, width), (0, 0, width, height)
        else:
            self.size, self.box = (resolution, resolution), center_crop_box(width, height)
        self.shape = (channels, *self.size)

    def read(self, indices: np.ndarray) -> torch.Tensor:
        left, top, right, bottom = self.box
        out = torch.empty((len(indices), *self.shape), dtype=torch.uint8)
        with read_errors("npy", self.path):
            arr = _open(self.path)
            records = arr[np.asarray(indices, dtype=np.int64), top:bottom, left:right]  # a copy, then unmapped
            del arr
            resize_uint8(_to_uint8(records, self.value_range).permute(0, 3, 1, 2), self.size, antialias=True, out=out)
        return out


@loader("npy", resolutions=ANY, default=None)
def load_npy(root: Path | None, resolution: int | None, *, value_range: str = "auto",
             limit: int | None = None) -> NpyReader:
    limit = check_limit("npy", limit)
    path = need_root("npy", root, "a .npy file of images [N, H, W, C]", "save one with numpy.save")
    if not path.is_file():
        raise DatasetError(f"npy: expected a .npy file of images [N, H, W, C] at {path} (save one with numpy.save "
                           "and pass data.root=FILE)")
    with read_errors("npy", path, "a .npy file saved with numpy.save (no pickled objects)"):
        with open(path, "rb") as fh:
            magic = fh.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:  # numpy would call any other file "pickled data"
        kind = "an .npz archive" if magic.startswith(b"PK") else "some other file"
        raise DatasetError(f"npy: {path} is {kind}, not a single .npy array (save one with numpy.save)")
    arr = _open(path)
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or 0 in arr.shape:
        chw = arr.ndim == 4 and arr.shape[1] in (1, 3)
        hint = " (it looks channels-first; transpose to [N, H, W, C])" if chw else ""
        raise DatasetError(f"npy: {path} has shape {arr.shape}; expected [N, H, W, C] with C = 1 or 3, "
                           f"or [N, H, W]{hint}")
    n, h, w, c = arr.shape
    count = n if limit is None else min(n, limit)
    with read_errors("npy", path):
        value_range = _detect_range("npy", path, arr.dtype, count, value_range)
    return NpyReader(path, count, h, w, c, value_range, resolution)
