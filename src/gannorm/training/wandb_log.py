"""Weights & Biases logging, an optional extra (``pip install wandb``; ``train.wandb=true``).

Everything the run logs to ``metrics.jsonl`` and TensorBoard (losses, sigmas, evaluations, diagnostics
headlines) and the sample grids go to one W&B run per run folder. Its id is derived from the run folder's
path, so a resumed run continues the same W&B run. Offline use: ``WANDB_MODE=offline`` (the files go to
``RUN/wandb/``; ``wandb sync`` uploads them later).
"""
from __future__ import annotations

import hashlib
from typing import Any

from ..config import Config, to_dict
from ..errors import ConfigError
from ..runfolder import RunFolder


class WandbRun:
    """A thin handle on ``wandb.Run``: ``log``, ``image``, ``finish``."""

    def __init__(self, run: Any, wandb: Any) -> None:
        self._run, self._wandb = run, wandb

    @classmethod
    def start(cls, folder: RunFolder, cfg: Config) -> "WandbRun":
        try:
            import wandb  # optional dependency
        except ImportError:
            raise ConfigError("config key train.wandb: needs the wandb package (pip install wandb), or set "
                              "train.wandb=false") from None
        run_id = hashlib.sha1(str(folder.path.resolve()).encode()).hexdigest()[:16]
        run = wandb.init(project=cfg.train.wandb_project, name=folder.path.name, id=run_id, resume="allow",
                         dir=str(folder.path), config=to_dict(cfg))
        return cls(run, wandb)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self._run.log({k: float(v) for k, v in scalars.items()}, step=step)

    def image(self, tag: str, step: int, picture) -> None:
        self._run.log({tag: self._wandb.Image(picture)}, step=step)

    def finish(self) -> None:
        self._run.finish()
