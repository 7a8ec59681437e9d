"""``imagefolder`` (any folder of image files) and ``npy`` (an image array saved with numpy).

``imagefolder``: every ``.png/.jpg/.jpeg/.bmp/.webp`` file (case-insensitive) under ``root``,
recursively, sorted by relative path. Each is EXIF-rotated, centre-cropped to a square of its
shorter side (``left = (W - s) // 2``, ``top = (H - s) // 2``) and resized to ``resolution``
(required) with Pillow's bilinear filter (antialiased when shrinking), then converted to RGB
(``channels=3``, default) or to Pillow's "L" luma (``channels=1``). Option ``limit``.

``npy``: ``root`` is a ``.npy`` file of images [N, H, W, C] (C = 1 or 3) or [N, H, W] (one channel),
loaded with ``np.load(allow_pickle=False, mmap_mode="r")``. Values are detected from the dtype and
range (option ``value_range`` overrides the detection):

- an integer dtype (uint8, or any integers within 0..255): pixels 0-255, used as they are;
- floats with a negative minimum and all values in [-1, 1]: ``"[-1,1]"``, mapped by ``(x + 1) * 127.5``;
- floats within [0, 1] otherwise: ``"[0,1]"``, mapped by ``x * 255`` (so a [-1, 1] array that happens
  to hold no negative value would be read as [0, 1]; pass ``value_range="[-1,1]"`` then).

Floats are rounded to 8 bits (storage is uint8). With ``resolution`` given, images are centre-cropped
to a square and resized (bilinear, antialiased when shrinking); without it they keep their size.
Option ``limit`` keeps the first ``limit`` images.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .archives import read_errors
from .base import (ANY, Dataset, DatasetError, center_crop_box, check_limit, loader, need_root,
                   quantize, resize_uint8)

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VALUE_RANGES = ("auto", "[0,255]", "[0,1]", "[-1,1]")
NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file
_CHUNK = 1024


# ------------------------------------------------------------------------------------- imagefolder

def list_images(root: Path) -> list[Path]:
    """Image files under ``root`` (recursive), sorted by relative path."""
    files = [p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


@loader("imagefolder", resolutions=ANY, default=None, required=True)
def load_imagefolder(root: Path | None, resolution: int, *, channels: int = 3, limit: int | None = None) -> Dataset:
    limit = check_limit("imagefolder", limit)
    if channels not in (1, 3) or isinstance(channels, bool):
        raise DatasetError(f"imagefolder: option channels must be 1 or 3, got {channels!r}")
    root = need_root("imagefolder", root, "a folder of image files", "put .png/.jpg/... files in a folder")
    if not root.is_dir():
        raise DatasetError(f"imagefolder: expected a folder of image files at {root} (pass data.root=DIR)")
    files = list_images(root)[:limit]
    if not files:
        raise DatasetError(f"imagefolder: no image files ({', '.join(EXTENSIONS)}) under {root}")
    bilinear = getattr(getattr(Image, "Resampling", Image), "BILINEAR")
    out = torch.empty((len(files), channels, resolution, resolution), dtype=torch.uint8)
    for i, file in enumerate(files):
        with read_errors("imagefolder", file, "a readable image"), Image.open(file) as im:
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB" if channels == 3 else "L")
            im = im.crop(center_crop_box(*im.size)).resize((resolution, resolution), bilinear)
            arr = np.asarray(im)
        out[i] = torch.from_numpy(arr.reshape(resolution, resolution, channels).transpose(2, 0, 1).copy())
    return Dataset("imagefolder", out, "image", source=str(root))


# --------------------------------------------------------------------------------------------- npy

def _detect_range(name: str, arr: np.ndarray, value_range: str, path: Path) -> str:
    if value_range not in VALUE_RANGES:
        raise DatasetError(f"{name}: option value_range must be one of {', '.join(VALUE_RANGES)}, got {value_range!r}")
    kind = arr.dtype.kind
    if kind not in "uif":
        raise DatasetError(f"{name}: {path} has dtype {arr.dtype}; expected uint8 or float images")
    lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
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


@loader("npy", resolutions=ANY, default=None)
def load_npy(root: Path | None, resolution: int | None, *, value_range: str = "auto",
             limit: int | None = None) -> Dataset:
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
        arr = np.load(path, allow_pickle=False, mmap_mode="r")
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or 0 in arr.shape:
        chw = arr.ndim == 4 and arr.shape[1] in (1, 3)
        hint = " (it looks channels-first; transpose to [N, H, W, C])" if chw else ""
        raise DatasetError(f"npy: {path} has shape {arr.shape}; expected [N, H, W, C] with C = 1 or 3, "
                           f"or [N, H, W]{hint}")
    arr = arr[:limit]
    with read_errors("npy", path):
        value_range = _detect_range("npy", arr, value_range, path)
        n, h, w, c = arr.shape
        if resolution is None:
            size, (left, top, right, bottom) = (h, w), (0, 0, w, h)
        else:
            size, (left, top, right, bottom) = (resolution, resolution), center_crop_box(w, h)
        out = torch.empty((n, c, *size), dtype=torch.uint8)
        for i in range(0, n, _CHUNK):
            chunk = _to_uint8(arr[i:i + _CHUNK, top:bottom, left:right], value_range).permute(0, 3, 1, 2)
            resize_uint8(chunk, size, antialias=True, out=out[i:i + _CHUNK])
    return Dataset("npy", out, "image", source=str(path))
