"""The :class:`Dataset` container, :class:`DatasetError`, the loader decorator and the resize helpers.

A labelled dataset (``labels`` int64 [N]) also draws ``(x, y)`` pairs (:meth:`Labelled.sample_labelled`,
with bitwise the draws of ``sample``) and labels alone at the data's class frequencies
(:meth:`Labelled.sample_labels`); :data:`LABELLED` lists the loaders that give labels.

Images are stored as ``uint8 [N, C, H, W]`` (4x smaller than float32) and converted to float32 in
``[-1, 1]`` as ``x / 127.5 - 1`` (:func:`to_float`) by :meth:`Dataset.get` / :meth:`Dataset.sample`.
Vectors are stored as ``float32 [N, D]`` and returned as they are. A dataset too large for memory is
read lazily instead (:class:`gannorm.data.lazy.LazyDataset`, with the same interface); the
:func:`loader` wrapper chooses (its ``in_memory`` argument).
"""
from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Callable, Sequence, cast

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import GannormError
from ..validate import is_int
from ..yamlsafe import summary

ANY = "any"  # ``resolutions=ANY``: any positive integer is accepted
_CHUNK = 1024  # images per resize chunk (bounds the float32 working memory)
LABELLED: dict[str, str] = {}  # loader name -> when it gives labels ("" always), filled by @loader(labels=...)


class DatasetError(GannormError, ValueError):
    """A dataset cannot be loaded as asked; ``str()`` is a one-line message saying what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # always one line


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [-1, 1] (``x / 127.5 - 1``), the one conversion of every image dataset."""
    return images.to(torch.float32).div_(127.5).sub_(1.0)


def labelled_datasets() -> str:
    """The loaders that give labels, and when, for error messages.

    Returns:
        One line: the always-labelled loaders first, then the others with their condition.

    Example:
        >>> labelled_datasets()
        'cifar10, digits, grid25, mnist5k, ring8, imagefolder (labels=true), stl10 (split=train, test or train+test)'
    """
    order = sorted(LABELLED.items(), key=lambda item: (item[1] != "", item[0]))  # always labelled first
    return ", ".join(f"{name} ({when})" if when else name for name, when in order) or "none"


def check_labels(name: str, labels, count: int, class_names) -> tuple[torch.Tensor | None, tuple[str, ...] | None]:
    """Validate a dataset's labels and class names.

    Args:
        name: the dataset named in errors.
        labels: integer class indices [count], or None (unlabelled).
        count: the number of samples.
        class_names: the names of the classes, or None (unknown).

    Returns:
        ``(labels as int64 [count] or None, class_names as a tuple of str or None)``.

    Raises:
        DatasetError: a wrong count, a negative label, a label without a class name, or names without labels.

    Example:
        >>> check_labels("toy", [0, 2, 1], 3, ["a", "b", "c"])
        (tensor([0, 2, 1]), ('a', 'b', 'c'))
    """
    if labels is None:
        if class_names is not None:
            raise DatasetError(f"{name}: class_names given without labels")
        return None, None
    labels = torch.as_tensor(labels, dtype=torch.int64)
    if labels.shape != (count,):
        raise DatasetError(f"{name}: {len(labels.reshape(-1))} labels for {count} samples")
    if count and int(labels.min()) < 0:
        raise DatasetError(f"{name}: labels must be non-negative class indices, got {int(labels.min())}")
    if class_names is not None:
        class_names = tuple(str(c) for c in class_names)
        if count and int(labels.max()) >= len(class_names):
            raise DatasetError(f"{name}: label {int(labels.max())} for {len(class_names)} class names")
    return labels, class_names


class Labelled:
    """The label interface shared by :class:`Dataset` and :class:`~gannorm.data.lazy.LazyDataset`.

    A subclass sets ``name``, ``labels`` (int64 [N] or None) and ``class_names`` (tuple or None), and
    defines ``__len__`` and ``_draw(n, generator, rows) -> (x, indices)``, the one draw of ``sample``.
    """

    name: str
    labels: torch.Tensor | None = None
    class_names: tuple[str, ...] | None = None

    @property
    def num_classes(self) -> int:
        """0 if unlabelled; else ``len(class_names)`` when the names are known, or the largest label + 1.

        Example:
            >>> load_dataset("digits", resolution=8).num_classes
            10
        """
        if self.labels is None:
            return 0
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.labels.max()) + 1

    def class_counts(self) -> torch.Tensor:
        """The number of samples of each class.

        Returns:
            int64 [num_classes] (empty for an unlabelled dataset).

        Example:
            >>> load_dataset("mnist5k").class_counts()
            tensor([500, 500, 500, 500, 500, 500, 500, 500, 500, 500])
        """
        if self.labels is None:
            return torch.zeros(0, dtype=torch.int64)
        return torch.bincount(self.labels, minlength=self.num_classes)

    def _need_labels(self) -> torch.Tensor:
        if self.labels is None:
            raise DatasetError(f"{self.name}: this dataset has no labels; a class-conditional run needs a labelled "
                               f"one: {labelled_datasets()}")
        return self.labels

    def sample(self, n: int, generator: torch.Generator | None = None,
               rows: torch.Tensor | Sequence[int] | None = None) -> torch.Tensor:
        """``n`` samples drawn uniformly *with* replacement (the official ``np.random.choice(N, n)``).

        Deterministic given the state of ``generator`` (a CPU ``torch.Generator``); advances it by
        exactly ``torch.randint(N, (n,), generator=generator)``.

        Args:
            n: the batch size.
            generator: the CPU generator the indices are drawn from (None: torch's global one).
            rows: the positions in the batch the caller will use (e.g. one rank's shard); a hint
                for a lazy dataset, which decodes only those rows and leaves the others zero. Held
                in memory, all rows are returned filled.

        Returns:
            float32 ``[n, *shape]`` (images in [-1, 1]).

        Example:
            >>> x = ds.sample(64, torch.Generator().manual_seed(0))
        """
        return self._draw(int(n), generator, rows)[0]

    def sample_labelled(self, n: int, generator: torch.Generator | None = None,
                        rows: torch.Tensor | Sequence[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` samples and their labels, by exactly the draw of :meth:`sample`: with equal generator
        states ``sample_labelled(n, g, rows)[0]`` is bitwise ``sample(n, g, rows)`` and both leave
        the generator in the same state.

        Args:
            n: the batch size.
            generator: the CPU generator the indices are drawn from.
            rows: as in :meth:`sample` (only those rows of ``x`` are decoded by a lazy dataset);
                the labels are always returned for all ``n`` rows.

        Returns:
            ``(x, y)``: x float32 ``[n, *shape]`` as :meth:`sample` returns it, y int64 ``[n]``.

        Raises:
            DatasetError: the dataset has no labels (the message names the labelled datasets).

        Example:
            >>> x, y = load_dataset("digits", resolution=8).sample_labelled(16, torch.Generator().manual_seed(0))
            >>> x.shape, y.shape
            (torch.Size([16, 1, 8, 8]), torch.Size([16]))
        """
        labels = self._need_labels()
        x, idx = self._draw(int(n), generator, rows)
        return x, labels[idx]

    def sample_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` labels at the data's class frequencies: the labels of ``n`` uniformly drawn samples
        (``torch.randint(N, (n,))``, the generator consumption of :meth:`sample`); nothing is decoded.
        Used for the labels a class-conditional generator is given, so that its joint distribution of
        labels matches the data's (uniform for a balanced dataset).

        Args:
            n: how many labels.
            generator: the CPU generator the indices are drawn from.

        Returns:
            int64 ``[n]``.

        Raises:
            DatasetError: the dataset has no labels.

        Example:
            >>> y = load_dataset("digits", resolution=8).sample_labels(64, torch.Generator().manual_seed(0))
        """
        labels = self._need_labels()
        return labels[torch.randint(len(self), (int(n),), generator=generator)]

    def __len__(self) -> int:
        raise NotImplementedError

    def _draw(self, n: int, generator: torch.Generator | None,
              rows: torch.Tensor | Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class Dataset(Labelled):
    """A fixed set of samples held in memory, drawn uniformly with replacement.

    Attributes: ``name``, ``kind`` ("image" or "vector"), ``data`` (uint8 [N, C, H, W] or float32
    [N, D]), ``labels`` (int64 [N] or None), ``class_names`` (tuple of str, or None), ``modes``
    (float32 [K, D] mode centres of a synthetic mixture, else None), ``mode_std`` (float or None)
    and ``source`` (where the data came from).
    """

    def __init__(self, name: str, data: torch.Tensor, kind: str, labels: torch.Tensor | None = None,
                 modes: torch.Tensor | None = None, mode_std: float | None = None, source: str = "",
                 class_names: Sequence[str] | None = None) -> None:
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
        labels, class_names = check_labels(name, labels, len(data), class_names)
        self.name = name
        self.kind = kind
        self.data = data.contiguous()
        self.labels = labels
        self.class_names = class_names
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

    def _draw(self, n: int, generator: torch.Generator | None,
              rows: torch.Tensor | Sequence[int] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The one draw of every ``sample*``: ``n`` indices, and their samples (all rows: held in memory)."""
        idx = torch.randint(len(self), (n,), generator=generator)
        return self.get(idx), idx

    def close(self) -> None:
        """Nothing to release (a lazy dataset stops its worker processes here)."""

    def __enter__(self) -> "Dataset":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        labels = "" if self.labels is None else f", {self.num_classes} classes"
        return (f"Dataset({self.name!r}, {self.kind}, n={len(self)}, shape={self.shape}{labels}"
                f"{f', source={self.source!r}' if self.source else ''})")


# ----------------------------------------------------------------------------------------- loaders

def _check_resolution(name: str, resolution, resolutions, default):
    if resolution is not None and not is_int(resolution):
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
           required: bool = False, labels: str | None = None) -> Callable:
    """Decorate ``fn(root: Path | None, resolution, *, opt=...)`` into a registry loader.

    ``labels`` says when the loader gives labelled datasets: ``""`` always, a condition such as
    ``"labels=true"``, or None (never); it is recorded in :data:`LABELLED` (the wrapper's
    ``labels`` attribute), which the "no labels" error lists.

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
    if labels is not None:
        LABELLED[name] = labels

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
            if workers is not None and not (is_int(workers) and workers >= 0):
                raise DatasetError(f"{name}: workers must be a non-negative integer (0: decode in this process), "
                                   f"got {workers!r}")
            path = None if root is None or str(root) == "" else Path(root).expanduser()
            made = fn(path, res, **options)
            if not isinstance(made, Dataset):  # an image reader: decode it all now, or lazily
                return made.dataset(in_memory, workers)
            if in_memory is False:
                raise DatasetError(f"{name}: {made.source or 'this dataset'} cannot be read lazily (lazy reading "
                                   "works for imagefolder, npy, celeba, celebahq and an extracted stl10_binary/); set "
                                   "data.in_memory=auto")
            return made

        wrapped.__dict__.update(dataset_name=name, options=tuple(allowed), resolutions=resolutions,
                                default_resolution=default, labels=labels)
        return wrapped
    return wrap


def check_limit(name: str, limit) -> int | None:
    """Validate a ``limit`` option (None or a positive integer, at most 2**40: more than any dataset holds)."""
    if limit is None:
        return None
    if not (is_int(limit) and 0 < limit <= 2**40):
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
    size = (size, size) if isinstance(size, int) else cast("tuple[int, int]", tuple(size))
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
    size = (size, size) if isinstance(size, int) else cast("tuple[int, int]", tuple(size))
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
