"""The :class:`Dataset` container, :class:`DatasetError`, the loader decorator and the resize helpers.

Images are stored as ``uint8 [N, C, H, W]`` (4x smaller than float32) and converted to float32 in
``[-1, 1]`` as ``x / 127.5 - 1`` (:func:`to_float`) by :meth:`Dataset.get` / :meth:`Dataset.sample`.
Vectors are stored as ``float32 [N, D]`` and returned as they are. A dataset too large for memory is
read lazily instead (:class:`gannorm.data.lazy.LazyDataset`, with the same interface); the
:func:`loader` wrapper chooses (its ``in_memory`` argument).
"""
from __future__ import annotations

import functools
import inspect
import numbers
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GannormError
from ..yamlsafe import summary

ANY = "any"  # ``resolutions=ANY``: any positive integer is accepted
_CHUNK = 1024  # images per resize chunk (bounds the float32 working memory)


class DatasetError(GannormError, ValueError):
    """A dataset cannot be loaded as asked; ``str()`` is a one-line message saying what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] (``x / 127.5 - 1``), the one conversion of every image dataset."""
    return images.to(torch.float32).div_(127.5).sub_(1.0)


class Dataset:
    """A fixed set of samples held in memory, drawn uniformly with replacement.

    Attributes: ``name``, ``kind`` ("image" or "vector"), ``data`` (uint8 [N, C, H, W] or float32
    [N, D]), ``labels`` (int64 [N] or None), ``modes`` (float32 [K, D] mode centres of a synthetic
    mixture, else None), ``mode_std`` (float or None) and ``source`` (where the data came from).
    """

    def __init__(self, name: str, data: torch.Tensor, kind: str, labels: torch.Tensor | None = None,
                 modes: torch.Tensor | None = None, mode_std: float | None = None, source: str = "") -> None:
        if kind == "image":
            if data.dtype != torch.uint8 or data.ndim != 4:
                raise DatasetError(f"{name}: image data must be uint8 [N, C, H, W], got {data.dtype} "
                                   f"{tuple(data.shape)}")
        elif kind == "vector":
            if data.dtype != torch.float32 or data.ndim != 2:
                raise DatasetError(f"{name}: vector data must be float32 [N, D], got {data.dtype} "
                                   f"{tuple(data.shape)}")
        else:
            raise DatasetError(f"{name}: kind must be 'image' or 'vector', got {kind!r}")
        if len(data) == 0:
            raise DatasetError(f"{name}: the dataset is empty ({source or 'no source'})")
        if labels is not None:
            labels = torch.as_tensor(labels, dtype=torch.int64)
            if labels.shape != (len(data),):
                raise DatasetError(f"{name}: {len(labels)} labels for {len(data)} samples")
        self.name = name
        self.kind = kind
        self.data = data.contiguous()
        self.labels = labels
        self.modes = None if modes is None else torch.as_tensor(modes, dtype=torch.float32)
        self.mode_std = None if mode_std is None else float(mode_std)
        self.source = source

    in_memory = True  # a LazyDataset says False

    @property
    def shape(self) -> tuple[int, ...]:
        """Per-sample shape: (C, H, W) for images, (D,) for vectors."""
        return tuple(self.data.shape[1:])

    def __len__(self) -> int:
        return self.data.shape[0]

    def get(self, indices: torch.Tensor | Sequence[int]) -> torch.Tensor:
        """The float32 batch ``[len(indices), *shape]`` (images in [-1, 1])."""
        idx = torch.as_tensor(indices, dtype=torch.int64)
        if idx.ndim == 0:
            idx = idx.reshape(1)  # always a batch (and a copy, never a view of ``data``)
        batch = self.data[idx]
        if self.kind == "image":
            return to_float(batch)
        return batch  # advanced indexing with an index tensor already copies

    def sample(self, n: int, generator: torch.Generator | None = None,
               rows: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """``n`` samples drawn uniformly *with* replacement (the official ``np.random.choice(N, n)``).

        Deterministic given the state of ``generator`` (a CPU ``torch.Generator``); advances it.
        ``rows`` (the positions in the batch the caller will use, e.g. one rank's shard) is a hint for
        a lazy dataset, which decodes only those rows; held in memory, all rows are returned filled.
        """
        idx = torch.randint(len(self), (int(n),), generator=generator)
        return self.get(idx)

    def close(self) -> None:
        """Nothing to release (a lazy dataset stops its worker processes here)."""

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        labels = "" if self.labels is None else ", labelled"
        return (f"Dataset({self.name!r}, {self.kind}, n={len(self)}, shape={self.shape}{labels}"
                f"{f', source={self.source!r}' if self.source else ''})")


# ----------------------------------------------------------------------------------------- loaders

def _check_resolution(name: str, resolution, resolutions, default):
    if isinstance(resolution, bool) or (resolution is not None and not isinstance(resolution, numbers.Integral)):
        raise DatasetError(f"{name}: resolution must be an integer or None, got {resolution!r}")
    if resolutions == ():
        if resolution is not None:
            raise DatasetError(f"{name}: resolution does not apply to a vector dataset (got {resolution}); "
                               "allowed: None")
        return None
    if resolution is None:
        return default
    resolution = int(resolution)
    if resolutions == ANY:
        if resolution <= 0:
            raise DatasetError(f"{name}: resolution must be a positive integer, got {resolution}")
        return resolution
    if resolution not in resolutions:
        dflt = f" (default {default})" if default is not None else ""
        raise DatasetError(f"{name}: unsupported resolution {resolution}; allowed: "
                           f"{', '.join(map(str, resolutions))}{dflt}")
    return resolution


def loader(name: str, resolutions: Sequence[int] | str = (), default: int | None = None,
           required: bool = False) -> Callable:
    """Decorate ``fn(root: Path | None, resolution, *, opt=...)`` into a registry loader.

    ``fn`` returns a :class:`Dataset`, or an image reader (:class:`gannorm.data.lazy.ImageReader`)
    for a dataset that can be read lazily. The wrapper has the signature ``(root=None,
    resolution=None, *, in_memory="auto", workers=None, **options)``. It validates ``resolution``
    (``resolutions=()``: must be None, a vector dataset; a tuple: one of those, ``None`` ->
    ``default``; ``ANY``: any positive integer, ``None`` -> ``default``, an error if ``required``),
    rejects options that are not keyword-only parameters of ``fn`` and turns ``root`` into an
    expanded ``Path``. A reader becomes a :class:`Dataset` (all images decoded now) or a lazy
    dataset (decoded when drawn, by ``workers`` processes) as ``in_memory`` says: ``True``,
    ``False``, or ``"auto"`` (lazy above :func:`gannorm.data.lazy.auto_limit` bytes decoded).
    ``in_memory=False`` for a dataset ``fn`` can only return whole is an error. Every failure is
    a one-line :class:`DatasetError`.
    """
    def wrap(fn: Callable) -> Callable:
        params = inspect.signature(fn).parameters.values()
        allowed = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]

        @functools.wraps(fn)
        def wrapped(root: str | Path | None = None, resolution: int | None = None, *,
                    in_memory: bool | str = "auto", workers: int | None = None, **options):
            unknown = sorted(set(options) - set(allowed))
            if unknown:
                raise DatasetError(f"{name}: unknown option(s) {', '.join(unknown)}; allowed: "
                                   f"{', '.join(allowed) if allowed else 'none'}")
            res = _check_resolution(name, resolution, resolutions, default)
            if res is None and required:
                raise DatasetError(f"{name}: resolution is required (any positive integer, e.g. 32)")
            if not (isinstance(in_memory, bool) or in_memory == "auto"):
                raise DatasetError(f"{name}: in_memory must be auto, true or false, got {in_memory!r}")
            if workers is not None and (isinstance(workers, bool) or not isinstance(workers, numbers.Integral)
                                        or workers < 0):
                raise DatasetError(f"{name}: workers must be a non-negative integer (0: decode in this process), "
                                   f"got {workers!r}")
            path = None if root is None or str(root) == "" else Path(root).expanduser()
            made = fn(path, res, **options)
            if not isinstance(made, Dataset):  # an image reader: decode it all now, or lazily
                return made.dataset(in_memory, workers)
            if in_memory is False:
                raise DatasetError(f"{name}: {made.source or 'this dataset'} cannot be read lazily (lazy reading "
                                   "works for imagefolder, npy, celeba and an extracted stl10_binary/); set "
                                   "data.in_memory=auto")
            return made

        wrapped.dataset_name = name
        wrapped.options = tuple(allowed)
        wrapped.resolutions = resolutions
        wrapped.default_resolution = default
        return wrapped
    return wrap


def check_limit(name: str, limit) -> int | None:
    """Validate a ``limit`` option (None or a positive integer, at most 2**40: more than any dataset holds)."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, numbers.Integral) or not 0 < limit <= 2**40:
        raise DatasetError(f"{name}: limit must be a positive integer <= 2**40 or None, got {summary(limit)}")
    return int(limit)


def need_root(name: str, root: Path | None, expected: str, hint: str) -> Path:
    """``root`` or the standard one-line 'no data root given' error."""
    if root is None:
        raise DatasetError(f"{name}: no data root given; expected {expected} ({hint} and pass data.root=DIR)")
    return root


# ------------------------------------------------------------------------------------------ resize

def quantize(x: torch.Tensor) -> torch.Tensor:
    """Float pixels in [0, 255] -> uint8, rounding half up (like OpenCV's fixed-point resize)."""
    return x.add(0.5).floor_().clamp_(0, 255).to(torch.uint8)


def resize(x: torch.Tensor, size: int | tuple[int, int], antialias: bool) -> torch.Tensor:
    """Bilinear resize of a float batch [N, C, H, W] (half-pixel centres, ``align_corners=False``).

    ``antialias=False`` matches OpenCV's ``cv2.resize(..., INTER_LINEAR)`` (used by the official
    STL10/CelebA preprocessing; for an exact 2x reduction both average 2x2 blocks).
    ``antialias=True`` widens the filter when shrinking (like Pillow's bilinear); it changes
    nothing when enlarging.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    if not antialias and tuple(x.shape[-2:]) == (2 * size[0], 2 * size[1]):
        return F.avg_pool2d(x, 2)  # the same numbers for an exact 2x reduction, ~10x faster
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=antialias)


def resize_uint8(images: torch.Tensor | np.ndarray, size: int | tuple[int, int], antialias: bool,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """Resize uint8 images [N, C, H, W] chunk by chunk (bounded float memory), returning uint8.

    Writes into ``out`` (uint8 [N, C, h, w]) when given.
    """
    size = (size, size) if isinstance(size, int) else tuple(size)
    n, c = images.shape[:2]
    if out is None:
        out = torch.empty((n, c, *size), dtype=torch.uint8)
    for i in range(0, n, _CHUNK):
        part = images[i:i + _CHUNK]
        chunk = part.contiguous() if isinstance(part, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(part))
        if tuple(chunk.shape[-2:]) == size:
            out[i:i + _CHUNK] = chunk
        else:
            out[i:i + _CHUNK] = quantize(resize(chunk.to(torch.float32), size, antialias))
    return out


def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box of the centred square of side min(width, height)."""
    s = min(width, height)
    left, top = (width - s) // 2, (height - s) // 2
    return left, top, left + s, top + s
