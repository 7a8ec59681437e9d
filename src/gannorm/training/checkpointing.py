"""What a training checkpoint holds, how a run returns to it, and when it is written.

A checkpoint is one dict: the weights of G and D (and of the EMA copy), both optimizers, the fp16
loss scaler, the trainer's seeded ``torch.Generator`` and torch's global RNG state, the fixed grid
latents, the step counters, the config and the data shape. :func:`capture` builds it from the live
objects (:class:`TrainingObjects`) and their counters (:class:`Progress`); :func:`restore` loads it
back into freshly built objects, so that a resumed run continues bitwise where the saved one was.

The file I/O itself is the run folder's (:class:`gannorm.runfolder.RunFolder`): every write goes
through a temporary file and ``os.replace`` (a crash leaves the previous checkpoint), and every read is
``torch.load(..., weights_only=True)`` (tensors, containers and plain values only). A checkpoint built
for other networks is a one-line error (:func:`gannorm.runfolder.load_state_checked`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..runfolder import BestRecord, RunFolder, load_state_checked
from .ema import EMA


@dataclass
class TrainingObjects:
    """The trained objects a checkpoint holds, by reference: :func:`restore` loads into them in place.

    ``ema`` is None without an EMA of G (``train.ema_decay`` 0), ``scaler`` None unless ``fp16``.
    """
    G: nn.Module
    D: nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    rng: torch.Generator
    ema: EMA | None = None
    scaler: torch.amp.GradScaler | None = None


@dataclass
class Progress:
    """What a checkpoint holds beside the objects: G steps and D steps done, torch's global RNG state
    (the stream the training steps draw from), and the fixed latents of the sample grid."""
    step: int
    d_steps: int
    torch_rng: torch.Tensor
    fixed_z: torch.Tensor


def capture(objects: TrainingObjects, progress: Progress, config: dict[str, Any],
            data_shape: Sequence[int]) -> dict[str, Any]:
    """The checkpoint dict of a run: the objects' state dicts, the progress, the config and the data shape.

    Args:
        objects: the live G, D, optimizers, generator, EMA and scaler.
        progress: the counters, torch's global RNG state and the fixed latents.
        config: the run's config as a plain dict (:func:`gannorm.config.to_dict`).
        data_shape: the shape of one training example.

    Returns:
        A dict of tensors, containers and plain values (``torch.load(weights_only=True)`` reads it).

    Example::

        >>> state = capture(objects, Progress(10, 50, torch.get_rng_state(), fixed_z), to_dict(cfg), (3, 32, 32))
        >>> state["step"], state["d_steps"]  # doctest: +SKIP
        (10, 50)
    """
    o = objects
    return {
        "step": progress.step, "config": config, "G": o.G.state_dict(),
        "D": o.D.state_dict(), "G_ema": None if o.ema is None else o.ema.state_dict(),
        "opt_g": o.opt_g.state_dict(), "opt_d": o.opt_d.state_dict(),
        "scaler": None if o.scaler is None else o.scaler.state_dict(),
        "rng": o.rng.get_state(), "torch_rng": progress.torch_rng,
        "fixed_z": progress.fixed_z, "data_shape": list(data_shape), "d_steps": progress.d_steps,
    }


def restore(objects: TrainingObjects, state: dict[str, Any], source: str | Path, n_dis: int) -> Progress:
    """Load a checkpoint dict into ``objects`` (in place); returns its :class:`Progress`.

    Args:
        objects: freshly built objects of the same config.
        state: what :func:`capture` built (read back by :meth:`RunFolder.load_checkpoint`).
        source: the checkpoint file, named in the errors.
        n_dis: D steps per G step, to count the D steps of a checkpoint written before they were saved.

    Returns:
        The step, the D steps, torch's global RNG state and the fixed latents of the checkpoint.

    Raises:
        RunFolderError: the checkpoint holds weights of other networks (one line naming the first mismatch).

    Example::

        >>> progress = restore(objects, folder.load_checkpoint(), folder.checkpoint, cfg.train.n_dis)  # doctest: +SKIP
    """
    o = objects
    load_state_checked(o.G, state["G"], "the generator", source)
    load_state_checked(o.D, state["D"], "the discriminator", source)
    if o.ema is not None and state.get("G_ema") is not None:
        load_state_checked(o.ema.model, state["G_ema"], "the EMA generator", source)
    o.opt_g.load_state_dict(state["opt_g"])
    o.opt_d.load_state_dict(state["opt_d"])
    if o.scaler is not None and state.get("scaler"):
        o.scaler.load_state_dict(state["scaler"])
    o.rng.set_state(state["rng"])
    step = int(state["step"])
    return Progress(step, int(state.get("d_steps", step * n_dis)), state["torch_rng"], state["fixed_z"])


def save(folder: RunFolder, state: dict[str, Any], best: BestRecord | None = None) -> None:
    """Write ``state`` as the latest checkpoint and, with ``best``, as ``checkpoint_best.pt`` and ``best.json``.

    The latest checkpoint comes first, so a resume never starts before the best step: the best file
    always holds a state of the run's own history.

    Args:
        folder: the run folder (its lock held by the caller).
        state: a checkpoint dict (:func:`capture`).
        best: the evaluation that made this state the best so far, or None.

    Example::

        >>> save(trainer.folder, trainer.state_dict())  # doctest: +SKIP
    """
    folder.save_checkpoint(state)
    if best is not None:
        folder.save_best(state, best)


def tidy_for_resume(folder: RunFolder, step: int) -> None:
    """What a killed run left behind, cleared before a resumed one writes: the half-written temporary files,
    and every log row after ``step``, the step of the checkpoint it resumes from.

    Example::

        >>> tidy_for_resume(RunFolder.open(run_dir), 300)  # doctest: +SKIP
    """
    folder.remove_temporaries()
    folder.truncate_logs(step)
