"""``gannorm sample``: load a trained generator from a run folder and draw samples.

A class-conditional generator (``num_classes > 0``, called ``G(z, y)``) draws one class per row by default
(:func:`class_labels`), or only the class ``--class K`` asks for.

Also the checks every command that writes one output file shares (:func:`prepare_output`,
:func:`write_output`): the file is refused before any work if it exists (without ``overwrite``) or
its folder cannot take it, and it is written atomically, so an error never leaves half a file.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .. import config as config_mod
from .. import images
from ..errors import GannormError, RunFolderError
from ..metrics.evaluate import generator_classes
from ..networks import build_generator
from ..runfolder import RunFolder, load_state_checked
from ..training.sample_mode import sampling


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


def sample_z(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The z of ``gannorm sample -n n --seed seed``: ``torch.randn(n, z_dim)`` from a generator seeded by ``seed``."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample(run_dir: str | Path, n: int, seed: int = 0, use_ema: bool = True,
           checkpoint: str = "latest", class_index: int | None = None) -> torch.Tensor:
    """``n`` samples ``[n, *data_shape]`` from the run's generator, z drawn with ``seed``, in batches of 256
    (in the run's ``train.sample_mode``: with ``train``, each batch normalizes with its own statistics).

    A class-conditional generator gets y from :func:`class_labels`: ``n`` samples of class ``class_index``,
    or (without it) ``ceil(n / K)`` samples of each of its K classes, in class order (so K times that many
    rows, z drawn for all of them). ``class_index`` for an unconditional generator is a one-line error."""
    if n < 1:
        raise GannormError(f"the number of samples must be >= 1, got {n} (-n)")
    g, cfg, _ = load_generator(run_dir, use_ema, checkpoint=checkpoint)
    return _draw(g, cfg, n, seed, class_index, run_dir)[0]


def _draw(g: nn.Module, cfg: config_mod.Config, n: int, seed: int, class_index: int | None,
          run_dir: str | Path) -> tuple[torch.Tensor, int | None]:
    """The samples of :func:`sample` and, for a class-per-row draw, the samples per class (else None)."""
    classes = generator_classes(g)
    if not classes:
        if class_index is not None:
            raise GannormError(f"--class {class_index}: the run {run_dir} is not class-conditional; drop --class")
        z = sample_z(n, cfg.model.z_dim, seed)
        with sampling(g, cfg.train.sample_mode):
            return torch.cat([g(chunk) for chunk in z.split(256)]), None
    y, per_class = class_labels(classes, n, class_index)
    z = sample_z(len(y), cfg.model.z_dim, seed)
    with sampling(g, cfg.train.sample_mode):
        x = torch.cat([g(zc, yc) for zc, yc in zip(z.split(256), y.split(256))])
    return x, (per_class if class_index is None else None)


def sample_to_png(run_dir: str | Path, n: int, output: str | Path, seed: int = 0, use_ema: bool = True,
                  overwrite: bool = False, checkpoint: str = "latest", class_index: int | None = None) -> Path:
    """Draw ``n`` samples into the PNG ``output`` (an image grid, or a scatter plot of 2-D points); a
    class-conditional run draws one class per row, or only ``class_index`` (:func:`sample`).

    An existing ``output`` is refused unless ``overwrite``; the file is written atomically.
    """
    return sample_png(run_dir, n, output, seed, use_ema, overwrite, checkpoint, class_index)[0]


def sample_png(run_dir: str | Path, n: int, output: str | Path, seed: int = 0, use_ema: bool = True,
               overwrite: bool = False, checkpoint: str = "latest",
               class_index: int | None = None) -> tuple[Path, int, int | None]:
    """:func:`sample_to_png`, returning the path, the number of samples drawn and, for a class-per-row grid,
    the samples per class (else None)."""
    output = prepare_output(output, ".png", overwrite)
    if n < 1:
        raise GannormError(f"the number of samples must be >= 1, got {n} (-n)")
    g, cfg, _ = load_generator(run_dir, use_ema, checkpoint=checkpoint)
    x, per_class = _draw(g, cfg, n, seed, class_index, run_dir)
    if x.ndim != 4:
        picture = images.scatter_plot(x)
    elif per_class is not None:
        picture = images.class_grid(x, per_class, min_cell=64)
    else:
        picture = images.image_grid(x, min_cell=64)
    write_output(output, lambda path: images.save_png(path, picture))
    return output, len(x), per_class
