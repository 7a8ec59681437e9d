"""``gannorm export``: a run's generator as one TorchScript file that loads with torch alone.

The file holds G (the EMA copy if the run has one, unless ``use_ema=False``) as a plain network: every
normalization removed by :func:`gannorm.remove_normalization` (its eval-mode weights kept as plain parameters), then
traced with :func:`torch.jit.trace`. It maps z ``[B, z_dim]`` to samples ``[B, *data_shape]``, and
``torch.jit.load(path)`` loads it without gannorm. It samples as the run does (``train.sample_mode``):
in ``eval`` mode BatchNorm uses its running statistics; in ``train`` mode the exported BatchNorm layers
keep no running statistics, so they normalize with the statistics of the batch they get, whatever the
loaded module's own mode, and calling it changes nothing in it.

Given the z that ``gannorm sample`` draws (:func:`gannorm.app.sampling.sample_z`) in one batch (at most
256, the batch ``gannorm sample`` uses), it returns bit for bit the same samples on the same machine.
The archive's extra file ``gannorm.json`` (``torch.jit.load(path, _extra_files={"gannorm.json": ""})``)
records z_dim, the data shape, the output range, the sample mode, which generator and checkpoint, the
step, and how z is drawn (:class:`ExportInfo`).

A class-conditional generator (``num_classes > 0``) is traced with two inputs: the file maps ``(z, y)``, y a
LongTensor ``[B]`` of class indices in ``0..num_classes-1``, to samples (``g(z, y)``); ``gannorm.json``
records ``num_classes`` (0 for an unconditional generator, whose file maps z alone, as before).
"""
from __future__ import annotations

import copy
import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from .. import __version__
from ..errors import GannormError
from ..metrics.evaluate import generator_classes
from ..fileio import atomic_write
from ..normalizations import remove_normalization
from ..runfolder import RunFolder
from .sampling import writing_into, load_generator, prepare_output, write_output

EXTRA_FILE = "gannorm.json"


@dataclass
class ExportInfo:
    """What an exported generator's ``gannorm.json`` records."""
    z_dim: int
    data_shape: list[int]
    output_range: list[float] | None   # [-1, 1] for images (tanh), None for vectors (no bound)
    sample_mode: str                   # eval: BatchNorm running statistics; train: each batch's own statistics
    generator: str                     # ema or raw
    checkpoint: str                    # latest or best
    step: int
    z: str = "torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))  # as gannorm sample"
    gannorm_version: str = __version__
    num_classes: int = 0               # > 0: class-conditional, called g(z, y) with y a LongTensor [n] of classes
    y: str = ""                        # how y is given, for a class-conditional generator


def batch_statistics_only(model: nn.Module) -> nn.Module:
    """Every BatchNorm of ``model`` without running statistics: it normalizes with the batch's statistics in
    eval mode too, and a forward changes nothing. Returns the model."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats = False
            m.running_mean = m.running_var = m.num_batches_tracked = None
    return model


def plain_generator(g: nn.Module, sample_mode: str) -> nn.Module:
    """A copy of ``g`` without normalizations, in eval mode, that samples in ``sample_mode`` as ``g`` does."""
    plain = remove_normalization(copy.deepcopy(g))
    if sample_mode == "train":
        batch_statistics_only(plain)
    return plain.eval().requires_grad_(False)


def _inputs(n: int, z_dim: int, num_classes: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
    """A batch of ``n`` inputs: ``(z,)``, or ``(z, y)`` for a class-conditional generator."""
    z = torch.randn(n, z_dim, generator=gen)
    return (z, torch.randint(num_classes, (n,), generator=gen)) if num_classes else (z,)


@torch.no_grad()
def trace(model: nn.Module, z_dim: int, num_classes: int = 0) -> torch.jit.ScriptModule:
    """``model`` traced on a batch of 2, checked bit for bit against itself on a batch of 3; a class-conditional
    one (``num_classes > 0``) is traced as ``model(z, y)``."""
    gen = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():  # torch 2.9+ marks TorchScript deprecated; the check below is what counts
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(model, _inputs(2, z_dim, num_classes, gen), check_trace=False)
        z = _inputs(3, z_dim, num_classes, gen)
        if not torch.equal(traced(*z), model(*z)):
            raise GannormError("the traced generator does not reproduce the generator on another batch size; this "
                               "network cannot be exported with torch.jit.trace")
    return traced


def export_generator(run_dir: str | Path, output: str | Path, *, use_ema: bool = True, checkpoint: str = "latest",
                     overwrite: bool = False) -> tuple[Path, ExportInfo]:
    """Write the run's generator to the TorchScript file ``output`` (``.pt``; atomic, refused if it exists
    unless ``overwrite``; inside the run folder, under its lock); returns the path and what ``gannorm.json``
    records."""
    output = prepare_output(output, ".pt", overwrite)
    folder = RunFolder.open(run_dir)
    state = folder.load_checkpoint(checkpoint)
    g, cfg, data_shape = load_generator(folder.path, use_ema, state=state, checkpoint=checkpoint)
    mode, classes = cfg.train.sample_mode, generator_classes(g)
    traced = trace(plain_generator(g, mode), cfg.model.z_dim, classes)
    info = ExportInfo(cfg.model.z_dim, list(data_shape), [-1.0, 1.0] if len(data_shape) == 3 else None, mode,
                      "ema" if use_ema and state.get("G_ema") is not None else "raw", checkpoint,
                      int(state.get("step", 0)), num_classes=classes,
                      y=f"torch.LongTensor [n] of class indices in 0..{classes - 1}: g(z, y)" if classes else "")
    extra = {EXTRA_FILE: json.dumps(asdict(info), indent=1)}

    def save(fh) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.jit.save(traced, fh, _extra_files=extra)

    with writing_into(folder, output):
        write_output(output, lambda path: atomic_write(path, save))
    return output, info


def read_info(path: str | Path) -> ExportInfo:
    """The :class:`ExportInfo` of an exported file."""
    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.load(str(path), _extra_files=extra)
    return ExportInfo(**json.loads(extra[EXTRA_FILE]))

