"""``gannorm sample``: load a trained generator from a run folder and draw samples.

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
    g = build_generator(m.arch, data_shape, z_dim=m.z_dim, width=m.width, **m.g_options)
    ema = use_ema and state.get("G_ema") is not None
    load_state_checked(g, state["G_ema"] if ema else state.get("G"), "the generator", path)
    return g.eval(), cfg, data_shape


def sample_z(n: int, z_dim: int, seed: int) -> torch.Tensor:
    """The z of ``gannorm sample -n n --seed seed``: ``torch.randn(n, z_dim)`` from a generator seeded by ``seed``."""
    return torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def sample(run_dir: str | Path, n: int, seed: int = 0, use_ema: bool = True,
           checkpoint: str = "latest") -> torch.Tensor:
    """``n`` samples ``[n, *data_shape]`` from the run's generator, z drawn with ``seed``, in batches of 256
    (in the run's ``train.sample_mode``: with ``train``, each batch normalizes with its own statistics)."""
    if n < 1:
        raise GannormError(f"the number of samples must be >= 1, got {n} (-n)")
    g, cfg, _ = load_generator(run_dir, use_ema, checkpoint=checkpoint)
    z = sample_z(n, cfg.model.z_dim, seed)
    with sampling(g, cfg.train.sample_mode):
        return torch.cat([g(chunk) for chunk in z.split(256)])


def sample_to_png(run_dir: str | Path, n: int, output: str | Path, seed: int = 0, use_ema: bool = True,
                  overwrite: bool = False, checkpoint: str = "latest") -> Path:
    """Draw ``n`` samples into the PNG ``output`` (an image grid, or a scatter plot of 2-D points).

    An existing ``output`` is refused unless ``overwrite``; the file is written atomically.
    """
    output = prepare_output(output, ".png", overwrite)
    x = sample(run_dir, n, seed, use_ema, checkpoint)
    picture = images.image_grid(x, min_cell=64) if x.ndim == 4 else images.scatter_plot(x)
    write_output(output, lambda path: images.save_png(path, picture))
    return output
