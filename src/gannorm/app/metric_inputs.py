"""The inputs of ``gannorm metrics A B``: each side is read as a :class:`Source`.

A side is one of:

- **a folder of images**: every ``.png/.jpg/.jpeg/.bmp/.webp`` file under it, recursively, sorted by relative
  path (as the ``imagefolder`` dataset lists them). Each is EXIF-rotated and converted to RGB (grayscale,
  palette and RGBA images alike), and kept at its own size: the Inception network resizes every image to
  its input, so images of different sizes (in one folder, or on the two sides) are fine. 16-bit grayscale
  images are scaled from 0-65535 to 0-255 (rounded). They are not
  cropped (a non-square image is resized as a whole, as the FID tools do).
- **an array** (``.npy``, or an ``.npz`` holding one array or a ``samples`` array, as ``gannorm sample -o
  X.npz`` writes): images ``[N, H, W, C]`` or ``[N, C, H, W]`` with C = 1 or 3 (channels-last wins when both
  fit), or ``[N, H, W]`` (one channel). ``uint8`` (or integers within 0-255) are pixels; floats are read as
  ``[-1, 1]`` when their minimum is negative and as ``[0, 1]`` otherwise (the ``npy`` dataset's rule), and
  rounded to 8 bits as the Inception preprocessing rounds float images. One-channel images are repeated to
  RGB by the Inception network.
- **a statistics file** written by ``gannorm fid-stats`` (an ``.npz`` with ``mu`` and ``sigma``): FID only.
- **a run folder** (it holds ``checkpoint.pt``, ``config.yaml`` or another of :data:`gannorm.runfolder.MARKERS`;
  one without ``checkpoint.pt`` is a one-line error): its generator (the EMA copy if any) samples ``num_samples``
  images in the run's ``train.sample_mode``, with the z (and, for a class-conditional G, the classes) that
  ``gannorm eval`` draws for the same ``seed`` (:func:`gannorm.metrics.evaluate.generate`).

The pure parts (:func:`array_layout`, :func:`array_range`, :func:`array_to_uint8`) take arrays; the readers
open files and return a :class:`Source` whose ``read(start, stop)`` reads those rows only.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor

from ..data.folder import EXTENSIONS, list_images
from ..data import load_dataset
from ..errors import GannormError, InputError, RunFolderError
from ..fileio import check_npz_member
from ..metrics.evaluate import (CLASS_FREQUENCIES, GENERATE_BATCH, LABEL_SEED_OFFSET, draw_labels, generate,
                                generator_classes)
from ..metrics.frechet import load_statistics
from ..runfolder import MARKERS, RunFolder
from ..training.sample_mode import SamplingView
from .sampling import NPZ_KEY, load_generator

FOLDER, ARRAY, STATISTICS, RUN = "folder", "array", "statistics", "run"
RANGES = ("[0,255]", "[0,1]", "[-1,1]")

#: what a side of ``gannorm metrics`` may be, for error messages
WHAT = ("a folder of images, an .npy/.npz array of images, a statistics file from gannorm fid-stats, or a run "
        "folder")


@dataclass(frozen=True)
class Source:
    """One side of ``gannorm metrics``.

    ``read(start, stop)`` gives rows ``[start, stop)``: a batch ``[n, C, H, W]`` (uint8, or a generator's float
    images in [-1, 1]) or a list of uint8 ``[C, H, W]`` images of any sizes; a shard of the rows starts at a
    multiple of ``unit``. A statistics file has ``count`` 0, no ``read`` and its ``statistics`` (mu, sigma).
    """

    kind: str
    path: str
    count: int
    unit: int = 1
    read: Callable[[int, int], Any] | None = None
    statistics: tuple[np.ndarray, np.ndarray] | None = None
    description: dict[str, Any] = field(default_factory=dict)

    @property
    def images(self) -> bool:
        """Whether the side holds images (not only statistics)."""
        return self.read is not None


# ------------------------------------------------------------------------------------------ pure helpers
def array_layout(shape: tuple[int, ...], name: str = "array") -> str:
    """``"NHWC"``, ``"NCHW"`` or ``"NHW"`` for an image array of ``shape``; a one-line :class:`InputError`
    otherwise (channels-last wins when both layouts fit, as in ``[N, 3, 8, 3]``).

    Args:
        shape: the array's shape.
        name: the array's name in the message.

    Returns:
        The layout.

    Example::

        >>> array_layout((10, 3, 32, 32))
        'NCHW'
    """
    if len(shape) == 3 and 0 not in shape:
        return "NHW"
    if len(shape) == 4 and 0 not in shape:
        if shape[3] in (1, 3):
            return "NHWC"
        if shape[1] in (1, 3):
            return "NCHW"
    raise InputError(f"{name} has shape {tuple(shape)}; expected images [N, H, W, C] or [N, C, H, W] with C = 1 "
                     "or 3, or [N, H, W], with N > 0")


def array_range(dtype: np.dtype, lo: float, hi: float, name: str = "array") -> str:
    """The value range of an image array of ``dtype`` whose values lie in ``[lo, hi]``: ``"[0,255]"`` for
    integers, ``"[-1,1]"`` for floats with a negative minimum, ``"[0,1]"`` for other floats; a one-line
    :class:`InputError` for values outside that range, NaN, or another dtype.

    Args:
        dtype: the array's dtype.
        lo: its smallest value.
        hi: its largest value.
        name: the array's name in the message.

    Returns:
        One of :data:`RANGES`.

    Example::

        >>> array_range(np.dtype(np.float32), -0.5, 1.0)
        '[-1,1]'
    """
    if dtype.kind not in "uif":
        raise InputError(f"{name} has dtype {dtype}; expected uint8 images or float images in [0, 1] or [-1, 1]")
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise InputError(f"{name} holds NaN or infinite values")
    detected = "[0,255]" if dtype.kind in "ui" else "[-1,1]" if lo < 0 else "[0,1]"
    low, high = {"[0,255]": (0, 255), "[0,1]": (0, 1), "[-1,1]": (-1, 1)}[detected]
    if lo < low or hi > high:
        raise InputError(f"{name} has values in [{lo:g}, {hi:g}], outside {detected} (expected uint8 0-255, or "
                         "floats in [0, 1] or [-1, 1])")
    return detected


def array_to_uint8(arr: np.ndarray, layout: str, value_range: str) -> Tensor:
    """Images of an array (``layout`` from :func:`array_layout`, values in ``value_range``) as uint8
    ``[N, C, H, W]``; floats are scaled to 0-255 and rounded half up, as the Inception preprocessing rounds
    float images.

    Args:
        arr: the images.
        layout: ``"NHWC"``, ``"NCHW"`` or ``"NHW"``.
        value_range: ``"[0,255]"``, ``"[0,1]"`` or ``"[-1,1]"``.

    Returns:
        uint8 ``[N, C, H, W]``.

    Example::

        >>> array_to_uint8(np.zeros((2, 4, 4, 3), np.float32) - 1, "NHWC", "[-1,1]").max()
        tensor(0, dtype=torch.uint8)
    """
    x = np.asarray(arr)
    x = x[:, None] if layout == "NHW" else x.transpose(0, 3, 1, 2) if layout == "NHWC" else x
    if value_range == "[0,255]":
        return torch.from_numpy(np.ascontiguousarray(x.astype(np.uint8)))
    scale = {"[0,1]": (0.0, 255.0), "[-1,1]": (1.0, 127.5)}[value_range]
    u = (torch.from_numpy(np.array(x, dtype=np.float32)) + scale[0]) * scale[1]  # a writable copy
    return torch.floor(u + 0.5).clamp_(0, 255).to(torch.uint8)


# ------------------------------------------------------------------------------------------ readers
def read_image(path: Path) -> Tensor:
    """One image file as uint8 ``[3, H, W]``: EXIF-rotated, converted to RGB, at its own size.

    Args:
        path: the image file.

    Returns:
        uint8 ``[3, H, W]``; a one-line :class:`InputError` for a file that is not a readable image.

    Example::

        >>> read_image(Path("cat.png")).shape   # doctest: +SKIP
        torch.Size([3, 480, 640])
    """
    try:
        with Image.open(path) as im:
            arr = _rgb(ImageOps.exif_transpose(im))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise InputError(f"{path}: not a readable image ({' '.join(str(err).split()) or type(err).__name__})") \
            from None
    return torch.from_numpy(arr.transpose(2, 0, 1).copy())


def _rgb(im: Image.Image) -> np.ndarray:
    """An image as uint8 ``[H, W, 3]``; a 16- or 32-bit integer grayscale image (modes ``I;16*``, ``I``: PNGs of
    16 bits) is scaled from 0-65535 to 0-255 and rounded first (PIL's RGB conversion would clip it to 255)."""
    if im.mode == "I" or im.mode.startswith("I;16"):
        wide = np.asarray(im).astype(np.float64)
        im = Image.fromarray(np.round(np.clip(wide, 0, 65535) * (255 / 65535)).astype(np.uint8))
    return np.asarray(im.convert("RGB"))


def open_folder(path: Path, batch_size: int) -> Source:
    """The images under the folder ``path``, listed now and read on demand.

    Args:
        path: the folder.
        batch_size: the rows a shard's reads are cut into.

    Returns:
        A :class:`Source` whose ``read`` gives a list of uint8 ``[3, H, W]``; an :class:`InputError` for a folder
        without images.

    Example::

        >>> open_folder(Path("pngs"), 50).count   # doctest: +SKIP
        1000
    """
    try:
        files = list_images(path)
    except OSError as err:
        raise InputError(f"{path}: cannot list the folder ({err.strerror or err})") from None
    if not len(files):
        raise InputError(f"{path} holds no image files ({', '.join(EXTENSIONS)}); give {WHAT}")

    def read(start: int, stop: int) -> list[Tensor]:
        return [read_image(path / files[i]) for i in range(start, stop)]

    return Source(FOLDER, str(path), len(files), batch_size, read,
                  description={"kind": FOLDER, "path": str(path), "images": len(files),
                               "read": "every image file, recursively, sorted; RGB, each at its own size"})


def _load_array(path: Path) -> tuple[np.ndarray, str]:
    """The image array of an ``.npy`` (memory-mapped) or ``.npz`` file and its name in messages."""
    data = np.load(path, allow_pickle=False, mmap_mode="r")  # an .npy (whatever its suffix) is memory-mapped
    if not isinstance(data, np.lib.npyio.NpzFile):
        return data, str(path)
    with data:
        names = list(data.files)
        key = NPZ_KEY if NPZ_KEY in names else names[0] if len(names) == 1 else None
        if key is None:
            raise InputError(f"{path} holds the arrays {', '.join(names) or 'none'}; expected one array of images, "
                             f"or one named '{NPZ_KEY}' (as gannorm sample -o X.npz writes)")
        check_npz_member(path, key)
        return data[key], f"{path}[{key}]"


def open_array(path: Path, batch_size: int) -> Source:
    """The images of an ``.npy`` (memory-mapped) or ``.npz`` file, layout and value range checked now.

    Args:
        path: the file.
        batch_size: the rows a shard's reads are cut into.

    Returns:
        A :class:`Source` whose ``read`` gives uint8 ``[n, C, H, W]`` (:func:`array_to_uint8`).

    Example::

        >>> open_array(Path("samples.npz"), 50).description["layout"]   # doctest: +SKIP
        'NHWC'
    """
    try:
        arr, name = _load_array(path)
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: not a readable .npy/.npz array ({' '.join(str(err).split())})") from None
    except MemoryError:
        raise InputError(f"{path}: its array does not fit in memory; give a smaller array (or a folder of "
                         "images)") from None
    layout = array_layout(arr.shape, name)
    lo, hi = 0.0, 255.0  # uint8: always in range, nothing to scan
    if arr.dtype != np.uint8 and arr.dtype.kind in "uif":
        lo, hi = float(arr.min()), float(arr.max())
    value_range = array_range(arr.dtype, lo, hi, name)

    def read(start: int, stop: int) -> Tensor:
        return array_to_uint8(arr[start:stop], layout, value_range)

    return Source(ARRAY, str(path), int(arr.shape[0]), batch_size, read,
                  description={"kind": ARRAY, "path": name, "images": int(arr.shape[0]), "layout": layout,
                               "value_range": value_range, "dtype": str(arr.dtype)})


def open_statistics(path: Path) -> Source:
    """The ``mu`` and ``sigma`` of a statistics file.

    Args:
        path: an ``.npz`` with ``mu`` and ``sigma`` (``gannorm fid-stats``).

    Returns:
        A :class:`Source` with ``statistics`` and no images; one-line errors from :func:`load_statistics`.

    Example::

        >>> open_statistics(Path("cifar10_train.npz")).statistics[0].shape   # doctest: +SKIP
        (2048,)
    """
    try:
        stats = load_statistics(path)
    except ValueError as err:
        raise InputError(" ".join(str(err).split())) from None
    return Source(STATISTICS, str(path), 0, statistics=stats,
                  description={"kind": STATISTICS, "path": str(path), "features": int(stats[0].shape[0])})


def open_run(path: Path, num_samples: int, seed: int, checkpoint: str, device: torch.device | str) -> Source:
    """``num_samples`` images of the run's generator (EMA copy if any), drawn as ``gannorm eval`` draws them.

    Args:
        path: the run folder.
        num_samples: the images drawn.
        seed: z comes from seed ``seed + 1000`` (as ``gannorm eval --seed``); a class-conditional G's classes
            from seed ``seed + 2000``, at the class frequencies of the run's dataset as ``gannorm eval`` draws
            them, or uniform over the classes when that dataset cannot be opened here (recorded in ``labels``).
        checkpoint: ``latest`` or ``best``.
        device: where the generator runs.

    Returns:
        A :class:`Source` whose ``read`` gives float ``[n, C, H, W]`` in [-1, 1], in whole batches of
        :data:`~gannorm.metrics.evaluate.GENERATE_BATCH` (its ``unit``).

    Example::

        >>> open_run(Path("runs/digits-cnn-bssn-s0"), 1000, 0, "latest", "cpu").count   # doctest: +SKIP
        1000
    """
    folder = RunFolder.open(path)
    state = folder.load_checkpoint(checkpoint)
    if not isinstance(state.get("step"), int):
        raise RunFolderError(f"checkpoint {folder.checkpoint_file(checkpoint)} records no step: it is not a gannorm "
                             "checkpoint")
    g, cfg, shape = load_generator(folder.path, use_ema=True, state=state, checkpoint=checkpoint)
    if len(shape) != 3:
        raise InputError(f"run {path} generates {shape[-1]}-D points, not images; gannorm metrics compares images")
    view = SamplingView(g.to(device), cfg.train.sample_mode)
    classes = generator_classes(view)
    labels, drawn = _run_labels(cfg, classes, num_samples, seed + LABEL_SEED_OFFSET) if classes else (None, "")

    def read(start: int, stop: int) -> Tensor:
        x = generate(view, num_samples, cfg.model.z_dim, seed + 1000, device=device, rows=(start, stop),
                     labels=labels)
        assert x is not None, "read is called with start < stop, and generate gives None only for no rows"
        return x

    return Source(RUN, str(folder.path), num_samples, GENERATE_BATCH, read, description={
        "kind": RUN, "path": str(folder.path), "step": state["step"], "checkpoint": checkpoint,
        "generator": "ema" if state.get("G_ema") is not None else "raw", "generator_mode": cfg.train.sample_mode,
        "images": num_samples, "z_seed": seed + 1000,
        **({"num_classes": classes, "labels": drawn, "label_seed": seed + LABEL_SEED_OFFSET} if classes else {})})


def _run_labels(cfg, classes: int, n: int, seed: int) -> tuple[Tensor, str]:
    """A conditional run's ``n`` generated classes and how they were drawn: at the class frequencies of the run's
    dataset (as ``gannorm eval``) when it opens here, else uniform over the classes."""
    try:
        data = load_dataset(cfg.data.name, cfg.data.root, cfg.data.resolution, **cfg.data.options)
    except (GannormError, OSError) as err:
        why = f"did not open here: {' '.join(str(err).split())}"
    else:
        if data.labels is not None:
            return draw_labels(data.labels, n, seed), CLASS_FREQUENCIES
        why = "has no labels"
    return (torch.randint(classes, (n,), generator=torch.Generator().manual_seed(seed)),
            f"uniform over the classes (the run's dataset {cfg.data.name!r} {why})")


def open_source(path: str | Path, *, batch_size: int = 50, num_samples: int = 10000, seed: int = 0,
                checkpoint: str = "latest", device: torch.device | str = "cpu") -> Source:
    """The :class:`Source` at ``path``, by what it is: a run folder (it holds any of
    :data:`gannorm.runfolder.MARKERS`, such as ``config.yaml`` or ``checkpoint.pt``), another folder
    (images), an ``.npz`` with ``mu`` and ``sigma`` (statistics), an ``.npy``/``.npz`` (an image array).

    Args:
        path: the side as given on the command line.
        batch_size: images read at a time from a folder or an array.
        num_samples: images a run's generator draws.
        seed: a run's sampling seed (as ``gannorm eval --seed``).
        checkpoint: a run's ``latest`` or ``best`` checkpoint.
        device: where a run's generator runs.

    Returns:
        The source; a one-line :class:`InputError` for anything else.

    Example::

        >>> open_source("samples.npz").count   # doctest: +SKIP
        10000
    """
    p = Path(path).expanduser()
    if p.is_dir():
        if any((p / marker).is_file() for marker in MARKERS):  # a run folder, with or without its checkpoint
            return open_run(p, num_samples, seed, checkpoint, device)
        return open_folder(p, batch_size)
    if not p.exists():
        raise InputError(f"{p} does not exist; give {WHAT}")
    suffix = p.suffix.lower()
    if suffix == ".npz" and _has_statistics(p):
        return open_statistics(p)
    if suffix in (".npy", ".npz"):
        return open_array(p, batch_size)
    raise InputError(f"{p} is not {WHAT}")


def _has_statistics(path: Path) -> bool:
    """Whether ``path`` is an ``.npz`` archive with ``mu`` and ``sigma``."""
    try:  # memory-mapped: a plain .npy renamed .npz is an array, never read here
        data = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile):
        return False
    if not isinstance(data, np.lib.npyio.NpzFile):
        return False
    with data:
        return {"mu", "sigma"} <= set(data.files)
