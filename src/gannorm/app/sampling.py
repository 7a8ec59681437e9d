"""``gannorm sample``: load a trained generator from a run folder and draw samples."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .. import config as config_mod
from .. import images
from ..errors import GannormError
from ..networks import build_generator
from ..runfolder import RunFolder


def load_generator(run_dir: str | Path, use_ema: bool = True,
                   state: dict | None = None) -> tuple[nn.Module, config_mod.Config, tuple[int, ...]]:
    """``(G in eval mode, config, data_shape)`` from ``run_dir``'s checkpoint (EMA copy if present).

    ``state`` is the already loaded checkpoint, if the caller has it (it is then not read again).
    """
    folder = RunFolder.open(run_dir)
    state = folder.load_checkpoint() if state is None else state
    cfg = config_mod.from_dict(state["config"])
    data_shape = tuple(state.get("data_shape") or ())
    if not data_shape:
        raise GannormError(f"checkpoint {folder.checkpoint} does not record the data shape; it is too old to sample")
    m = cfg.model
    g = build_generator(m.arch, data_shape, z_dim=m.z_dim, width=m.width, **m.g_options)
    weights = state["G_ema"] if use_ema and state.get("G_ema") is not None else state["G"]
    g.load_state_dict(weights)
    return g.eval(), cfg, data_shape


@torch.no_grad()
def sample(run_dir: str | Path, n: int, seed: int = 0, use_ema: bool = True) -> torch.Tensor:
    """``n`` samples ``[n, *data_shape]`` from the run's generator, z drawn with ``seed``."""
    if n < 1:
        raise GannormError(f"the number of samples must be >= 1, got {n}")
    g, cfg, _ = load_generator(run_dir, use_ema)
    z = torch.randn(n, cfg.model.z_dim, generator=torch.Generator().manual_seed(seed))
    return torch.cat([g(chunk) for chunk in z.split(256)])


def sample_to_png(run_dir: str | Path, n: int, output: str | Path, seed: int = 0, use_ema: bool = True) -> Path:
    output = Path(output)
    if output.suffix.lower() != ".png":
        raise GannormError(f"output {output} must be a .png file")
    x = sample(run_dir, n, seed, use_ema)
    picture = images.image_grid(x, min_cell=64) if x.ndim == 4 else images.scatter_plot(x)
    images.save_png(output, picture)
    return output
