"""``gannorm sample``: load a trained generator from a run folder and draw samples into a PNG or an ``.npz``.

A PNG (a grid of images, or a scatter plot of 2-D points) is made in memory: its size is checked
against a memory budget (:data:`GRID_MEMORY_LIMIT`, ``--memory-limit``) before any sample is drawn. An
``.npz`` array is written in batches as they are drawn, whatever the number of samples.

A class-conditional generator (``num_classes > 0``, called ``G(z, y)``) draws one class per row by default
(:func:`class_labels`), or only the class ``--class K`` asks for.

Also the checks every command that writes one output file shares (:func:`prepare_output`,
:func:`write_output`): the file is refused before any work if it exists (without ``overwrite``) or
its folder cannot take it, and it is written atomically, so an error never leaves half a file.
"""
from __future__ import annotations

import math
import os
import tempfile
import zipfile
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .. import config as config_mod
from .. import images
from ..errors import GannormError, RunFolderError
from ..metrics.evaluate import generator_classes
from ..fileio import atomic_write
from ..networks import build_generator
from ..runfolder import RunFolder, load_state_checked
from ..training.sample_mode import sampling

MIB = 2**20
#: the memory a PNG of samples may take to make, by default (``gannorm sample --memory-limit``, in MiB)
GRID_MEMORY_LIMIT = 2**28
#: samples drawn per generator call
BATCH = 256
#: the smallest cell of a sample grid, in pixels (small images are enlarged)
MIN_CELL = 64
#: the side of a scatter plot of 2-D samples, in pixels
SCATTER_SIZE = 400
#: the array's key in a ``.npz`` of samples
NPZ_KEY = "samples"


# ------------------------------------------------------------------------------------------ outputs
def prepare_output(path: str | Path, suffix: str, overwrite: bool = False) -> Path:
    """``path`` as a :class:`Path`, once it is known that a new ``suffix`` file can be written there.

    A one-line :class:`GannormError` if it has another suffix, is a folder, exists (unless
    ``overwrite``), or its folder (or the nearest existing folder above it) does not accept new files.
    Nothing is created.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise GannormError(f"output {path} is a folder; give a file name (e.g. -o {path / ('out' + suffix)})")
    if path.suffix.lower() != suffix:
        raise GannormError(f"output {path} must be a {suffix} file (give -o NAME{suffix})")
    if path.exists() and not overwrite:
        raise GannormError(f"output {path} already exists; pass --overwrite to replace it, or choose another -o")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the folders in between are created when the file is written
    if not folder.is_dir():
        raise GannormError(f"cannot write {path}: {folder} is not a folder; choose another -o")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise GannormError(f"cannot write {path}: folder {folder} does not accept new files "
                           f"({err.strerror or err}); choose another -o") from None
    return path


def write_output(path: Path, write: Callable[[Path], None]) -> None:
    """``write(path)`` (an atomic writer), with a file-system failure as a one-line :class:`GannormError`."""
    try:
        write(path)
    except OSError as err:
        raise GannormError(f"cannot write {path}: {err.strerror or err}; choose another -o") from None


# ------------------------------------------------------------------------------------------ generator
def checkpoint_config(state: dict, path: str | os.PathLike) -> config_mod.Config:
    """The config a checkpoint was trained with; a one-line error if it records none."""
    if not isinstance(state.get("config"), dict):
        raise RunFolderError(f"checkpoint {path} records no config: it is not a gannorm checkpoint")
    return config_mod.from_dict(state["config"])


def load_generator(run_dir: str | Path, use_ema: bool = True, state: dict | None = None,
                   checkpoint: str = "latest") -> tuple[nn.Module, config_mod.Config, tuple[int, ...]]:
    """``(G in eval mode, config, data_shape)`` from ``run_dir``'s ``latest`` or ``best`` checkpoint (the EMA
    copy if present and ``use_ema``).

    ``state`` is the already loaded checkpoint, if the caller has it (it is then not read again). The
    config's ``train.sample_mode`` says how G draws samples (:func:`gannorm.training.sample_mode.sampling`).
    """
    folder = RunFolder.open(run_dir)
    state = folder.load_checkpoint(checkpoint) if state is None else state
    path = folder.checkpoint_file(checkpoint)
    cfg = checkpoint_config(state, path)
    data_shape = tuple(state.get("data_shape") or ())
    if not data_shape:
        raise RunFolderError(f"checkpoint {path} does not record the data shape; it is too old to sample")
    m = cfg.model
    n = cfg.normalization
    g = build_generator(m.arch, data_shape, z_dim=m.z_dim, width=m.width, **conditional_options(m),
                        normalization=n.g_method, normalization_options=dict(n.g_options), **m.g_options)
    ema = use_ema and state.get("G_ema") is not None
    load_state_checked(g, state["G_ema"] if ema else state.get("G"), "the generator", path)
    return g.eval(), cfg, data_shape


def conditional_options(model_cfg) -> dict:
    """``{"num_classes": K}`` for ``build_generator`` when the model section asks for a class-conditional G,
    else nothing (an unconditional G is built exactly as before)."""
    classes = model_cfg.num_classes
    return {"num_classes": classes} if classes else {}


def class_labels(num_classes: int, n: int, class_index: int | None = None) -> tuple[torch.Tensor, int]:
    """The y of ``gannorm sample -n n`` for a class-conditional G of ``num_classes`` classes, and the samples per
    class: ``class_index`` n times (``--class K``), else one row per class, ``ceil(n / num_classes)`` samples of
    each class in class order (``[0, 0, 1, 1, ...]``).

    Args:
        num_classes: the generator's classes.
        n: ``-n``: the samples of one class, or the least total of a class-per-row draw.
        class_index: ``--class K``, or None for every class.

    Returns:
        ``(y, per_class)``: int64 class indices and the samples per class.

    Example::

        >>> class_labels(3, 5)
        (tensor([0, 0, 1, 1, 2, 2]), 2)
    """
    if class_index is not None:
        if not 0 <= class_index < num_classes:
            raise GannormError(f"--class {class_index}: the run's generator has {num_classes} classes; give one of "
                               f"0..{num_classes - 1}")
        return torch.full((n,), class_index, dtype=torch.int64), n
    per_class = -(-n // num_classes)
    return torch.arange(num_classes).repeat_interleave(per_class), per_class


def z_batches(n: int, z_dim: int, seed: int) -> Iterator[torch.Tensor]:
    """The z of :func:`sample_z` in consecutive pieces (of :data:`BATCH` rows; the last one may hold up to
    ``BATCH + 15``): bitwise the rows of the one draw, with memory that does not grow with ``n``.

    A CPU ``torch.randn`` of ``m`` numbers draws ``m`` uniforms, then (when ``m`` is not a multiple of 16)
    16 more for its last 16 numbers; pieces of a multiple of 16 numbers, the last one at least 16 long,
    consume and transform the uniforms exactly as the one draw does.
    """
    gen = torch.Generator().manual_seed(seed)
    start = 0
    while start < n:
        rows = min(BATCH, n - start)
        if 0 < (n - start - rows) * z_dim < 16:  # a last piece under 16 numbers joins this one
            rows = n - start
        yield torch.randn(rows, z_dim, generator=gen)
        start += rows


def sample_z(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The z of ``gannorm sample -n n --seed seed``: ``torch.randn(n, z_dim)`` from a generator seeded by ``seed``."""
    return torch.cat(list(z_batches(n, z_dim, seed)))


def generate(g: nn.Module, cfg: config_mod.Config, n: int, seed: int,
             y: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """``n`` samples of ``g`` for the z of :func:`sample_z` (and, for a class-conditional ``g``, the ``n`` labels
    ``y``), in batches of at most :data:`BATCH`, each drawn in the run's ``train.sample_mode`` (with ``train``,
    each batch normalizes with its own statistics)."""
    start = 0
    with sampling(g, cfg.train.sample_mode):
        for z in z_batches(n, cfg.model.z_dim, seed):
            for piece in z.split(BATCH):
                with torch.no_grad():
                    out = g(piece) if y is None else g(piece, y[start:start + len(piece)])
                start += len(piece)
                yield out


def sample(run_dir: str | Path, n: int, seed: int = 0, use_ema: bool = True,
           checkpoint: str = "latest", class_index: int | None = None) -> torch.Tensor:
    """``n`` samples ``[n, *data_shape]`` from the run's generator, z drawn with ``seed``, in batches of 256
    (in the run's ``train.sample_mode``: with ``train``, each batch normalizes with its own statistics).

    A class-conditional generator gets y from :func:`class_labels`: ``n`` samples of class ``class_index``,
    or (without it) ``ceil(n / K)`` samples of each of its K classes, in class order (so K times that many
    rows, z drawn for all of them). ``class_index`` for an unconditional generator is a one-line error."""
    _check_count(n)
    g, cfg, _ = load_generator(run_dir, use_ema, checkpoint=checkpoint)
    y, _ = draw_labels(g, n, class_index, run_dir)
    return torch.cat(list(generate(g, cfg, n if y is None else len(y), seed, y)))


def draw_labels(g: nn.Module, n: int, class_index: int | None,
                run_dir: str | Path) -> tuple[torch.Tensor | None, int | None]:
    """The labels of a draw of ``n`` samples from ``g`` (:func:`class_labels`) and, for a class-per-row draw, the
    samples per class; ``(None, None)`` for an unconditional generator (``class_index`` is then an error)."""
    classes = generator_classes(g)
    if not classes:
        if class_index is not None:
            raise GannormError(f"--class {class_index}: the run {run_dir} is not class-conditional; drop --class")
        return None, None
    y, per_class = class_labels(classes, n, class_index)
    return y, (per_class if class_index is None else None)


def _open_draw(run_dir: str | Path, n: int, use_ema: bool, checkpoint: str, class_index: int | None):
    """What a draw into a file needs: the run folder, G, its config and data shape, the labels and the samples
    per class (:func:`draw_labels`), after checking ``n``."""
    _check_count(n)
    folder = RunFolder.open(run_dir)
    state = folder.load_checkpoint(checkpoint)
    g, cfg, data_shape = load_generator(folder.path, use_ema, state=state, checkpoint=checkpoint)
    y, per_class = draw_labels(g, n, class_index, run_dir)
    return folder, g, cfg, data_shape, y, per_class


def _check_count(n: int) -> None:
    if n < 1:
        raise GannormError(f"the number of samples must be >= 1, got {n} (-n)")


# ------------------------------------------------------------------------------------------ memory
def grid_memory(n: int, data_shape: Sequence[int]) -> tuple[int, str]:
    """The bytes a PNG of ``n`` samples of ``data_shape`` takes to make (the samples as floats, as bytes, and
    the picture), and the picture in words."""
    per_sample = math.prod(data_shape)
    if len(data_shape) == 3:
        c, h, w = data_shape
        height, width = images.grid_size(n, h, w, min_cell=MIN_CELL)
        return n * per_sample * 5 + height * width * 3, f"a {width} x {height} pixel grid"
    return n * per_sample * 4 * 2 + SCATTER_SIZE ** 2 * 3, f"a scatter plot of {n} points"


def check_grid_memory(n: int, data_shape: Sequence[int], limit: int = GRID_MEMORY_LIMIT) -> None:
    """Refuse, before any sample is drawn, a PNG of ``n`` samples that needs more than ``limit`` bytes.

    Args:
        n: the number of samples.
        data_shape: one sample's shape (``[C, H, W]`` images or ``[D]`` vectors).
        limit: the memory budget in bytes (``gannorm sample --memory-limit`` in MiB).

    Raises:
        GannormError: one line naming the need, the limit and the ways out (fewer samples, a larger limit, an
            ``.npz`` array written in batches).

    Example::

        check_grid_memory(64, (1, 8, 8))       # fine: under 1 MiB
    """
    if limit < 1:
        raise GannormError(f"the memory limit must be > 0 MiB, got {limit / MIB:g} (--memory-limit)")
    need, what = grid_memory(n, data_shape)
    if need > limit:
        raise GannormError(f"{n} samples as a PNG need {_size(need)} of memory ({what}), over the limit of "
                           f"{_size(limit)}: draw fewer (-n), raise the limit (--memory-limit MIB), or write the "
                           f"samples as an array, in batches of {BATCH} whatever -n is (-o FILE.npz)")


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / MIB:.0f} MiB"


# ------------------------------------------------------------------------------------------ files
def sample_to_file(run_dir: str | Path, n: int, output: str | Path, seed: int = 0, use_ema: bool = True,
                   overwrite: bool = False, checkpoint: str = "latest", memory_limit: int = GRID_MEMORY_LIMIT,
                   class_index: int | None = None) -> tuple[Path, int, int | None]:
    """Draw ``n`` samples into ``output``: a ``.png`` picture (:func:`sample_png`) or a ``.npz`` array
    (:func:`sample_to_npz`), by its suffix. Returns the path, the number of samples drawn and, for a
    class-per-row draw of a conditional run, the samples per class (else None)."""
    if Path(output).suffix.lower() == ".npz":
        return sample_to_npz(run_dir, n, output, seed, use_ema, overwrite, checkpoint, class_index)
    return sample_png(run_dir, n, output, seed, use_ema, overwrite, checkpoint, memory_limit, class_index)


def sample_png(run_dir: str | Path, n: int, output: str | Path, seed: int = 0, use_ema: bool = True,
               overwrite: bool = False, checkpoint: str = "latest", memory_limit: int = GRID_MEMORY_LIMIT,
               class_index: int | None = None) -> tuple[Path, int, int | None]:
    """Draw ``n`` samples into the PNG ``output`` (an image grid, or a scatter plot of 2-D points).

    An existing ``output`` is refused unless ``overwrite``; so is a picture that needs more than
    ``memory_limit`` bytes (:func:`check_grid_memory`), before any sample is drawn. The file is written
    atomically; inside the run folder, under the folder's lock. Returns the path, the number of samples drawn
    and, for a class-per-row grid, the samples per class (else None)."""
    output = prepare_output(output, ".png", overwrite)
    folder, g, cfg, data_shape, y, per_class = _open_draw(run_dir, n, use_ema, checkpoint, class_index)
    count = n if y is None else len(y)
    check_grid_memory(count, data_shape, memory_limit)
    with writing_into(folder, output):
        x = torch.cat(list(generate(g, cfg, count, seed, y)))
        if x.ndim != 4:
            picture = images.scatter_plot(x)
        elif per_class is not None:
            picture = images.class_grid(x, per_class, min_cell=MIN_CELL)
        else:
            picture = images.image_grid(x, min_cell=MIN_CELL)
        del x
        write_output(output, lambda path: images.save_png(path, picture))
    return output, count, per_class


def sample_to_npz(run_dir: str | Path, n: int, output: str | Path, seed: int = 0, use_ema: bool = True,
                  overwrite: bool = False, checkpoint: str = "latest",
                  class_index: int | None = None) -> tuple[Path, int, int | None]:
    """Draw ``n`` samples into the ``.npz`` file ``output``, under the key ``samples``: images as ``uint8``
    ``[n, H, W, C]`` (0..255 from the generator's [-1, 1]), vectors as ``float32`` ``[n, D]``.

    The samples are those of :func:`sample_png` for the same seed; they are written in batches of
    :data:`BATCH` as they are drawn, so the memory does not grow with ``n``. The file is written atomically
    (refused if it exists, unless ``overwrite``); ``numpy.load(output)["samples"]`` reads it. A conditional
    run's labels (:func:`draw_labels`) are stored under the key ``labels``. Returns as :func:`sample_to_file`.
    """
    output = prepare_output(output, ".npz", overwrite)
    folder, g, cfg, data_shape, y, per_class = _open_draw(run_dir, n, use_ema, checkpoint, class_index)
    n = n if y is None else len(y)
    is_image = len(data_shape) == 3
    shape = (n, data_shape[1], data_shape[2], data_shape[0]) if is_image else (n, *data_shape)
    dtype = np.dtype(np.uint8 if is_image else np.float32)

    def arrays() -> Iterator[np.ndarray]:
        for x in generate(g, cfg, n, seed, y):
            yield images.to_uint8(x) if is_image else x.detach().float().cpu().numpy()

    extra = {} if y is None else {"labels": y.numpy()}
    with writing_into(folder, output):
        write_output(output, lambda path: atomic_write(path, lambda fh: write_npz(fh, NPZ_KEY, shape, dtype,
                                                                                   arrays(), extra)))
    return output, n, per_class


def write_npz(fh: BinaryIO, key: str, shape: tuple[int, ...], dtype: np.dtype, parts: Iterable[np.ndarray],
              extra: dict[str, np.ndarray] | None = None) -> None:
    """An ``.npz`` archive with one array ``key`` of ``shape`` and ``dtype``, written from ``parts`` (its rows,
    in order) as they come, and the small arrays ``extra`` whole: ``numpy.load`` reads it as if ``numpy.savez``
    had written it."""
    rows = 0
    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, array in (extra or {}).items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.ascontiguousarray(array))
        with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                          "fortran_order": False, "shape": shape})
            for part in parts:
                member.write(np.ascontiguousarray(part, dtype=dtype).tobytes())
                rows += len(part)
    if rows != shape[0]:
        raise RuntimeError(f"wrote {rows} rows of {shape[0]}")


def writing_into(folder: RunFolder, output: Path):
    """The run folder's lock while ``output`` is written inside it (else nothing to hold)."""
    if folder.contains(output):
        return folder.locked("or give -o a file outside the run folder")
    return nullcontext()
