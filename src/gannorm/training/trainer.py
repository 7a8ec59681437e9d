"""The GAN trainer: the official SNGAN/BSSN loop, made reproducible and resumable.

One iteration is ``n_dis`` discriminator steps (each on a fresh real batch drawn with
replacement and fresh z) followed by one generator step; ``train.steps`` counts generator steps.
Everything random in the loop comes from one seeded ``torch.Generator`` that is saved in the
checkpoint, so a resumed run produces bitwise the same weights as an uninterrupted one on CPU.

The loop itself is :meth:`Trainer.run`; logging, diagnostics, samples, evaluation, checkpoints and the
progress bar are callbacks (:mod:`gannorm.training.callbacks`); what a checkpoint holds and how a resume
restores it is :mod:`gannorm.training.checkpointing`, and the SIGINT/SIGTERM stop is
:mod:`gannorm.training.signals`. The trainer leaves its caller's process state as it found it: torch's
thread count, the global RNG, and the signal handlers are restored.

Started by ``torchrun`` (``WORLD_SIZE`` > 1), every rank runs this same loop on its shard of each global
batch, with the gradients summed over the ranks after each backward (:mod:`gannorm.training.distributed`,
``docs/distributed.md``); every write to the run folder happens on rank 0, and the callbacks run there
(the evaluation runs on every rank, each extracting its shard).
"""
from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence, cast

import torch
from torch import nn

from .. import devices, images
from ..augment import DiffAugment, consistency_loss, flip_translate
from ..config import Config, ConfigError, evaluation_options, to_dict, validate
from ..data import load_dataset
from ..diagnostics.probes import probe
from ..diagnostics.records import ProbeRecord
from ..gradnorm import GradientNormalized, call_d
from ..losses import LOSSES
from ..networks import build_discriminator, build_generator
from ..normalizations import update_after_step
from ..penalties import PENALTIES, orthogonal_regularization, weight_clip_
from ..runfolder import CHECKPOINT, SAMPLES, BestRecord, EvalRecord, RunFolder, Status
from . import checkpointing
from .callbacks import Callback, default_callbacks, evaluate_sampler, rank_callbacks
from .distributed import check_supported, ranks_from_env, setup, sync_batch_norm, synced
from .ema import EMA
from .finite import agreed_non_finite, locate, named_grads
from .logger import MetricSink
from .sample_mode import sampling
from .signals import StopRequest
from .wandb_log import WandbRun
from .state import num_threads, private_rng

AMP_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class RunResult:
    run_dir: Path
    status: str                      # finished, interrupted or diverged
    step: int                        # generator steps completed (and saved, unless diverged)
    last: dict[str, float] = field(default_factory=dict)  # the last logged scalars
    seconds: float = 0.0

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / CHECKPOINT

    @property
    def samples(self) -> Path:
        return self.run_dir / SAMPLES


def resolve_device(name: str) -> torch.device:
    """``train.device`` as a device (:func:`gannorm.devices.resolve_device`); a one-line ConfigError otherwise."""
    return devices.resolve_device(name, what="config key train.device:", task="training", error=ConfigError)


class Trainer:
    """Build everything from a :class:`Config`, then :meth:`run` it. ``resume`` continues a run folder.

    ``run_dir`` is the exact new folder to create (default: ``train.out_dir/train.run_name``, with a
    ``-2``, ``-3``, ... suffix if taken). ``callbacks`` replaces the default ones
    (:func:`gannorm.training.callbacks.default_callbacks`); add to ``trainer.callbacks`` to keep them and plug
    in more. In a run of several ranks (``torchrun``) the
    callbacks run on rank 0 (which alone creates and writes the run folder), except those marked
    ``every_rank`` (the evaluation, sharded over the ranks), which run on every rank.
    """

    def __init__(self, cfg: Config, *, resume: str | Path | None = None, run_dir: str | Path | None = None,
                 callbacks: Sequence[Callback] | None = None) -> None:
        validate(cfg)
        self.cfg = cfg
        t = cfg.train
        # torchrun's WORLD_SIZE, RANK, LOCAL_RANK
        self.ranks = ranks_from_env(t.dist_timeout)
        check_supported(cfg, self.ranks.world)
        self.device = setup(self.ranks, resolve_device(t.device))
        if t.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("config key train.precision: fp16 needs a GPU; use bf16 on the CPU")
        self.amp_dtype = AMP_DTYPES[t.precision]
        d = cfg.data  # a large dataset is read lazily, by worker processes that close() stops (docs/data.md)
        # built on train.threads like the training: the power iterations at normalization and the initial
        # norms sum in the thread count's order, so building on the caller's count changed a run's numbers
        with num_threads(t.threads):
            self.data = load_dataset(d.name, d.root, d.resolution, in_memory=d.in_memory, workers=d.workers,
                                     **d.options)
            self._check_labels()
            with private_rng(seed=t.seed, device=self.device):  # the models' initial weights come from the seed
                self.G, self.D = self._build_models()
                self._torch_rng = torch.get_rng_state()       # the global stream the training steps continue
        o = cfg.optim
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=o.lr_d, betas=o.betas_d, eps=o.eps)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=o.lr_g, betas=o.betas_g, eps=o.eps)
        update_after_step(self.opt_d, self.D)  # persists u once per D step for update="step" layers
        if cfg.normalization.g_method != "none":
            update_after_step(self.opt_g, self.G)  # ... and per G step for G's (normalization.g_method)
        self.scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None
        self.ema = EMA(self.G, t.ema_decay, t.ema_start, t.ema_buffers) if t.ema_decay > 0 else None
        self.loss = LOSSES.get(t.loss)
        self.penalty = None if t.penalty == "none" else PENALTIES.get(t.penalty)
        self.rng = torch.Generator().manual_seed(t.seed + 1)
        self.fixed_z = torch.randn(t.num_samples_grid, cfg.model.z_dim,
                                   generator=torch.Generator().manual_seed(t.seed + 2))
        self.diffaug = DiffAugment(t.diffaug) if t.diffaug else None
        self.step = 0
        self.d_steps = 0
        self.last: dict[str, float] = {}
        self.last_eval: EvalRecord | None = None  # the latest evaluation of this session
        self.saved_step: int | None = None        # the step of the latest checkpoint this session wrote
        self.callbacks: list[Callback] = list(default_callbacks(cfg) if callbacks is None else callbacks)
        self.logger: MetricSink | None = None
        self.stop = StopRequest()                 # SIGINT/SIGTERM or request_stop(): stop after this step
        self._in_run = False
        self.non_finite: str | None = None  # what went non-finite first, once a step has diverged
        self._resumed = resume is not None
        self.folder = self._open_folder(resume, run_dir)
        self.ranks.from_main(self.folder.lock)  # one writer per run folder: another gets its PID in one line
        if self.ranks.main:
            self.folder.write_config(cfg)

    def _open_folder(self, resume: str | Path | None, run_dir: str | Path | None) -> RunFolder:
        """The run folder, opened (and the checkpoint loaded) or created only now, when the config, the data
        and the models are known to be good."""
        if resume is not None:
            folder = self.folder = RunFolder.open(resume)
            self._load(folder.load_checkpoint())
            return folder
        if run_dir is not None:  # exactly this folder (a sweep's run)
            return RunFolder(self.ranks.from_main(lambda: RunFolder.create_at(run_dir).path))
        c = self.cfg
        name = c.train.run_name or f"{c.data.name}-{c.model.arch}-{c.normalization.method}-s{c.train.seed}"
        return RunFolder(self.ranks.from_main(lambda: RunFolder.create(c.train.out_dir, name).path))

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    @property
    def conditional(self) -> bool:
        """Whether G and D are class-conditional (``model.num_classes`` > 0): ``G(z, y)``, ``D(x, y)``."""
        return self.cfg.model.num_classes > 0

    def _check_labels(self) -> None:
        """A conditional run needs a labelled dataset with exactly ``model.num_classes`` classes."""
        k, d = self.cfg.model.num_classes, self.data
        if k == 0:
            return
        if d.num_classes == 0:
            raise ConfigError(f"config key model.num_classes: dataset {self.cfg.data.name!r} has no labels, so it "
                              "cannot train a class-conditional GAN; use a labelled dataset (digits, mnist5k, cifar10, "
                              "stl10 with data.options.split=train, imagefolder with data.options.labels=true, ring8, "
                              "grid25) or model.num_classes=0")
        if d.num_classes != k:
            raise ConfigError(f"config key model.num_classes: dataset {self.cfg.data.name!r} has {d.num_classes} "
                              f"classes, not {k}; set model.num_classes={d.num_classes}")

    def _build_models(self) -> tuple[nn.Module, nn.Module]:
        m, n, t = self.cfg.model, self.cfg.normalization, self.cfg.train
        shape = tuple(self.data.shape)
        G = build_generator(m.arch, shape, z_dim=m.z_dim, width=m.width, num_classes=m.num_classes,
                            normalization=n.g_method, normalization_options=dict(n.g_options), init=m.g_init,
                            **m.g_options).to(self.device)
        if self.ranks.distributed:  # BatchNorm over the global batch; the same state-dict keys
            G = sync_batch_norm(G)
        D = build_discriminator(m.arch, shape, width=m.width, normalization=n.method,
                                normalization_options=dict(n.options), init=m.d_init, num_classes=m.num_classes,
                                **m.d_options).to(self.device)
        if t.channels_last:
            # Module.to takes memory_format (torch's stub omits it)
            G = G.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
            D = D.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        if n.function != "none":
            D = GradientNormalized(D, n.function, n.function_eps, n.first_order_g)
        return G, D

    # ------------------------------------------------------------------ state (gannorm.training.checkpointing)
    def _objects(self) -> checkpointing.TrainingObjects:
        return checkpointing.TrainingObjects(self.G, self.D, self.opt_g, self.opt_d, self.rng, self.ema, self.scaler)

    def state_dict(self) -> dict[str, Any]:
        """The checkpoint of the run as it stands (:func:`gannorm.training.checkpointing.capture`)."""
        torch_rng = torch.get_rng_state() if self._in_run else self._torch_rng
        progress = checkpointing.Progress(self.step, self.d_steps, torch_rng, self.fixed_z)
        return checkpointing.capture(self._objects(), progress, to_dict(self.cfg), self.data.shape)

    def _load(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint; a checkpoint of another network or method is a one-line error."""
        p = checkpointing.restore(self._objects(), state, self.folder.checkpoint, self.cfg.train.n_dis)
        self.step, self.d_steps, self._torch_rng, self.fixed_z = p.step, p.d_steps, p.torch_rng, p.fixed_z

    def save(self) -> None:
        """The latest checkpoint, at this step."""
        checkpointing.save(self.folder, self.state_dict())
        self.saved_step = self.step

    def save_best(self, record: BestRecord) -> None:
        """The latest checkpoint, then ``checkpoint_best.pt`` and ``best.json``, at this step.

        The latest checkpoint comes first, so a resume never starts before the best step: the best file
        always holds a state of the run's own history.
        """
        checkpointing.save(self.folder, self.state_dict(), best=record)
        self.saved_step = self.step

    # ------------------------------------------------------------------ pieces of a step
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def lr_factor(self, step: int) -> float:
        """The learning-rate multiplier at G step ``step`` (1, or linear to 0 from ``optim.lr_decay_start``)."""
        o, total = self.cfg.optim, self.cfg.train.steps
        if o.lr_decay == "none" or step < o.lr_decay_start:
            return 1.0
        return max(0.0, 1.0 - (step - o.lr_decay_start) / max(1, total - o.lr_decay_start))

    def _set_lr(self, step: int) -> None:
        f = self.lr_factor(step)
        for opt, base in ((self.opt_d, self.cfg.optim.lr_d), (self.opt_g, self.cfg.optim.lr_g)):
            for group in opt.param_groups:
                group["lr"] = base * f

    def to_device(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device)
        if self.cfg.train.channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def frozen_bn_stats(self, frozen: bool = True):
        """G's BatchNorm layers normalize with batch statistics but keep their running estimates."""
        return _bn_running_stats(self.G, not frozen)

    def _real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The global real batch of a D step and its labels (None unless conditional), on the CPU; every rank
        draws all of it, then takes its shard.

        A lazy dataset decodes only this rank's rows of it (the others are left zero); the labels are whole."""
        t = self.cfg.train
        rows = self.ranks.shard(torch.arange(t.batch_size_d)) if self.ranks.distributed else None
        if self.conditional:  # the same draws as sample(): an unconditional run's stream is unchanged
            real, labels = self.data.sample_labelled(t.batch_size_d, self.rng, rows=rows)
        else:
            real, labels = self.data.sample(t.batch_size_d, self.rng, rows=rows), None
        if t.real_hflip and real.ndim == 4:
            flip = torch.rand(len(real), generator=self.rng) < 0.5
            real = torch.where(flip.view(-1, 1, 1, 1), real.flip(-1), real)
        return real, labels

    def _z(self, n: int) -> torch.Tensor:
        """This rank's shard of ``n`` (the global batch) latent vectors drawn from the shared stream."""
        return self.ranks.shard(torch.randn(n, self.cfg.model.z_dim, generator=self.rng)).to(self.device)

    def _fake_labels(self, n: int) -> torch.Tensor | None:
        """This rank's shard of ``n`` class labels for G, drawn at the data's class frequencies from the shared
        stream (None for an unconditional run, which draws nothing)."""
        if not self.conditional:
            return None
        return self.ranks.shard(self.data.sample_labels(n, self.rng)).to(self.device)

    def _shard_labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return None if labels is None else self.ranks.shard(labels).to(self.device)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """``G(z)``, or ``G(z, y)`` for a conditional run."""
        return self.G(z) if y is None else self.G(z, y)

    def discriminate(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """``D(x)``, or ``D(x, y)`` for a conditional run (GN/PGN take the gradient w.r.t. x at fixed y)."""
        return call_d(self.D, x, y)

    def _augment(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """DiffAugment (``train.diffaug``) of this rank's shard ``x`` of a global batch of ``n``: the random numbers
        are drawn for the whole global batch from the shared stream, and this rank applies its rows of them."""
        if self.diffaug is None:
            return x
        params = self.diffaug.draw(n, tuple(x.shape[1:]), self.rng)
        if self.ranks.distributed:
            params = params.select(self.ranks.shard(torch.arange(n)))
        return self.diffaug.apply(x, params)

    def _regularizers(self, batch: torch.Tensor, real: torch.Tensor, fake: torch.Tensor, d_real: torch.Tensor,
                      y_real: torch.Tensor | None, y_fake: torch.Tensor | None) -> torch.Tensor | None:
        """The configured gradient penalty, orthogonal regularization and consistency term of this D step.

        ``batch`` is the global real batch and ``real`` this rank's shard of it on the device, as D saw it
        (after DiffAugment); the penalty's interpolation weights and the consistency term's augmentation are
        this shard's rows of the global draws. A conditional D is evaluated at the labels of its inputs.
        """
        t = self.cfg.train
        terms = []
        if self.penalty is not None and self.d_steps % t.penalty_every == 0:
            weight = (self.penalty.default_weight if t.penalty_weight is None else t.penalty_weight) * t.penalty_every
            labels = {} if y_real is None else {"y_real": y_real, "y_fake": y_fake}
            with self.ranks.shard_stream(self.rng, t.batch_size_d) as generator:
                terms.append(self.penalty.fn(self.D, real, fake, weight, generator=generator, **labels))
        if t.ortho_reg > 0:
            terms.append(orthogonal_regularization(self.D, t.ortho_reg).to(real.device))
        if t.cr_weight > 0:
            augmented = self.to_device(self.ranks.shard(flip_translate(batch, t.cr_translate, self.rng)))
            with self._autocast():
                d_aug = self.discriminate(augmented, y_real).float()
            terms.append(t.cr_weight * consistency_loss(d_real, d_aug))
        return cast(torch.Tensor, sum(terms)) if terms else None

    def _backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer, who: str) -> bool:
        """Backward and optimizer step; False (and no step) if a gradient is not finite.

        On several ranks ``loss`` is this rank's shard mean: it is scaled by ``1/N`` and the gradients are
        summed over the ranks, which gives every rank the gradient of the global batch's mean.
        """
        opt.zero_grad(set_to_none=True)
        # only the optimizer's parameters: GN and penalties differentiate w.r.t. their own input leaves,
        # whose gradients nobody reads (this skips D's first-layer input gradient in those steps)
        params = [p for group in opt.param_groups for p in group["params"] if p.requires_grad]
        if self.ranks.distributed:
            loss = loss * self.ranks.loss_scale
        if self.scaler is not None:  # fp16: the scaler skips steps with inf gradients by design
            self.scaler.scale(loss).backward(inputs=params)
            self.ranks.sum_grads(params)
            self.scaler.step(opt)
            self.scaler.update()
            return True
        loss.backward(inputs=params)
        self.ranks.sum_grads(params)
        bad = agreed_non_finite(named_grads(self.D if who == "D" else self.G, who), self.ranks)
        if bad is not None:
            self.non_finite = f"{bad} is not finite"
            opt.zero_grad(set_to_none=True)
            return False
        opt.step()
        return True

    def _d_step(self) -> dict[str, Any]:
        """One discriminator step; returns its global scalars as tensors (the means over the global batch),
        this rank's ``z`` and G labels ``y`` (None unless conditional), and ``ok`` (False if something was not
        finite)."""
        t = self.cfg.train
        batch, labels = self._real_batch()
        real, y_real = self.to_device(self.ranks.shard(batch)), self._shard_labels(labels)
        z = self._z(t.batch_size_d)
        y = self._fake_labels(t.batch_size_d)
        with self._autocast():
            with torch.no_grad(), self.frozen_bn_stats(not t.g_bn_stats_in_d_step):
                fake = self.generate(z, y)  # train mode: batch statistics (of the global batch, on several ranks)
            real_in, fake_in = self._augment(real, t.batch_size_d), self._augment(fake, t.batch_size_d)
            d_real, d_fake = self.discriminate(real_in, y_real).float(), self.discriminate(fake_in, y).float()
            loss = self.loss.d(d_real, d_fake)
        self.d_steps += 1
        reg = self._regularizers(batch, real_in, fake_in, d_real, y_real, y)
        total = loss if reg is None else loss + reg
        parts = [loss, total, d_real.detach().mean(), d_fake.detach().mean(), *([] if reg is None else [reg])]
        means = self.ranks.mean(torch.stack([p.detach().float() for p in parts]))  # one all-reduce
        ok = bool(torch.isfinite(means[1])) and self._backward_step(total, self.opt_d, "D")
        if ok and t.weight_clip > 0:
            weight_clip_(self.D, t.weight_clip)
        return {"z": z, "y": y, "loss": means[0], "reg": None if reg is None else means[4], "total": means[1],
                "d_real": means[2], "d_fake": means[3], "ok": ok}

    def _g_step(self, z: torch.Tensor, y: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
        """One generator step on this rank's ``z`` (and labels ``y``); returns the global loss and whether it
        was applied."""
        n = self.cfg.train.batch_size_g
        self.D.requires_grad_(False)
        try:
            with self._autocast():
                fake = self._augment(self.generate(z, y), n)
                g_loss = self.loss.g(self.discriminate(fake, y).float())
            global_loss = self.ranks.mean(g_loss.detach())
            ok = bool(torch.isfinite(global_loss)) and self._backward_step(g_loss, self.opt_g, "G")
        finally:
            self.D.requires_grad_(True)
        return global_loss, ok

    def train_step(self) -> dict[str, float]:
        """One generator step (after ``n_dis`` discriminator steps); returns scalars to log.

        If a loss or a gradient is not finite, no optimizer step applies it, ``self.non_finite`` names
        the first non-finite quantity, and the returned scalars hold the non-finite loss (or gradient norm).
        On several ranks the scalars are those of the global batch, the same on every rank.
        """
        with synced(self.G, self.ranks.distributed):
            return self._train_step()

    def _train_step(self) -> dict[str, float]:
        t = self.cfg.train
        self._set_lr(self.step)
        for _ in range(t.n_dis):
            d = self._d_step()
            if not d["ok"]:
                return {"loss_d": d["total"].item() if self.non_finite is None else math.nan}
        if t.g_reuses_d_z and t.batch_size_g == t.batch_size_d:
            z, y = d["z"], d["y"]
        else:
            z = self._z(t.batch_size_g)
            y = self._fake_labels(t.batch_size_g)
        g_loss, ok = self._g_step(z, y)
        if not ok:
            return {"loss_d": d["loss"].item(), "loss_g": g_loss.item() if self.non_finite is None else math.nan}
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.G, self.step)
        extra = {} if d["reg"] is None else {"penalty": d["reg"].item()}
        return {**extra, "loss_d": d["loss"].item(), "loss_g": g_loss.item(),
                "d_real": d["d_real"].item(), "d_fake": d["d_fake"].item(),
                "lr_factor": self.lr_factor(self.step - 1)}

    # ------------------------------------------------------------------ outputs
    def sampler(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.G

    @torch.no_grad()
    def save_samples(self) -> Path:
        """The fixed-z grid of the sampling generator (in ``train.sample_mode``, one batch) to ``samples.png``,
        ``samples/`` and TensorBoard."""
        with sampling(self.sampler(), self.cfg.train.sample_mode) as g:
            z, y = self.fixed_z.to(self.device), self.fixed_labels()
            out = (g(z) if y is None else g(z, y.to(self.device))).float().cpu()
        if self.data.kind == "image":
            picture = images.image_grid(out, min_cell=64)
        else:
            real = self.data.sample(min(len(self.data), 1000), torch.Generator().manual_seed(0))
            picture = images.scatter_plot(out, real)
        path = self.folder.sample_path(self.step)
        images.save_png(path, picture)
        images.save_png(self.folder.samples_file, picture)
        if self.logger is not None:
            self.logger.image("samples", self.step, picture)
        return path

    def fixed_labels(self) -> torch.Tensor | None:
        """The labels of the fixed-z grid of a conditional run: one class per row of the grid (cycling through
        the classes when there are more rows than classes); None for an unconditional run."""
        if not self.conditional:
            return None
        n = len(self.fixed_z)
        cols = max(1, math.ceil(math.sqrt(n)))
        return (torch.arange(n) // cols) % self.cfg.model.num_classes

    def evaluate(self) -> dict[str, float]:
        """Evaluate the sampling generator now, by the run's protocol (what the Evaluation callback does)."""
        return evaluate_sampler(self, evaluation_options(self.cfg))

    def probe(self) -> ProbeRecord:
        """Probe D on a fresh batch drawn from its own seeded stream (training is unchanged)."""
        c, seed = self.cfg.diagnostics, self.cfg.train.seed
        gen = torch.Generator().manual_seed(seed * 1_000_003 + self.step + 7)
        if self.conditional:
            real, y_real = self.data.sample_labelled(c.batch_size, gen)
            y_real = y_real.to(self.device)
        else:
            real, y_real = self.data.sample(c.batch_size, gen), None
        real = self.to_device(real)
        z = torch.randn(c.batch_size, self.cfg.model.z_dim, generator=gen).to(self.device)
        y_fake = None if y_real is None else self.data.sample_labels(c.batch_size, gen).to(self.device)
        with torch.no_grad(), self.frozen_bn_stats():
            fake = self.generate(z, y_fake)
        return probe(self.D, self.loss.d, real, fake, step=self.step, strict=c.strict, bounds=c.bounds,
                     generator=gen, y_real=y_real, y_fake=y_fake)

    # ------------------------------------------------------------------ the loop
    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Stop after the current step, with a checkpoint (what SIGINT/SIGTERM do); a second request
        stops at once (:class:`gannorm.training.signals.StopRequest`)."""
        self.stop.request(signum)

    def run(self) -> RunResult:
        """Train to ``train.steps``; returns how it ended. The caller's threads, RNG and signals are kept."""
        if self.ranks.main:
            self.folder.lock()  # held since __init__, unless a previous run() gave it back
        with num_threads(self.cfg.train.threads), private_rng(self._torch_rng, device=self.device), \
                self.stop.handlers():
            self._in_run = True
            try:
                return self._loop()
            finally:
                self._torch_rng = torch.get_rng_state()
                self._in_run = False
                self.close()

    def close(self) -> None:
        """Stop the data worker processes of a lazy dataset (:meth:`run` does this when it ends, however it
        ends), and give the run folder's lock back; a later run or evaluation starts them again."""
        self.data.close()
        self.folder.unlock()

    def _loop(self) -> RunResult:
        resumed = self._resumed or self.step > 0
        callbacks = self._open_logs(resumed)
        start, status = time.perf_counter(), "failed"
        try:
            try:
                for cb in callbacks:
                    cb.on_start(self, resumed)
                ended = self._steps(callbacks)
                self._check_ranks_agree()
                status = ended
            finally:
                for cb in callbacks:
                    cb.on_end(self, status)
        except KeyboardInterrupt:  # a second signal (even during the stop's checkpoint): keep the last checkpoint
            self._try_status(Status("interrupted", self.step, checkpoint_step=self.folder.checkpoint_step()))
            raise
        except Exception as err:
            self._try_status(Status("failed", self.step, reason=f"{type(err).__name__}: {err}",
                                    checkpoint_step=self.folder.checkpoint_step()))
            raise
        finally:
            if self.logger is not None:
                self.logger.close()
        seconds = time.perf_counter() - start
        self._write_final_status(status, seconds)
        self.ranks.barrier()  # no rank exits (torchrun would stop the others) before rank 0 has written it all
        return RunResult(self.run_dir, status, self.step, dict(self.last), seconds)

    def _open_logs(self, resumed: bool) -> list[Callback]:
        """Rank 0: tidy a resumed folder, open the metric sink, mark the run running; returns the callbacks
        this rank runs (all of them on rank 0; on the others those that run on every rank: the evaluation,
        sharded over the ranks)."""
        if not self.ranks.main:
            self.logger = None
            return rank_callbacks(self.callbacks, self.ranks)
        t = self.cfg.train
        if resumed:  # what a killed run left: half-written temporaries, log rows after the checkpoint
            checkpointing.tidy_for_resume(self.folder, self.step)
        self.logger = MetricSink(self.folder, tensorboard=t.tensorboard, resume_step=self.step if resumed else None,
                                 wandb=WandbRun.start(self.folder, self.cfg) if t.wandb else None)
        self.folder.write_status(Status("running", self.step))
        return rank_callbacks(self.callbacks, self.ranks)

    def _check_ranks_agree(self) -> None:
        """Several ranks: check that they all hold this state bitwise (rank 0's checkpoint stands for them)."""
        if not self.ranks.distributed:
            return
        compared = self.ranks.check_agree(self.state_dict(), self.step)
        if self.ranks.main:
            print(f"gannorm: the {self.ranks.world} ranks agree bitwise at G step {self.step} ({compared} entries "
                  "of G, D, the EMA, the optimizers and the RNG states)", file=sys.stderr)

    def _steps(self, callbacks: Sequence[Callback]) -> str:
        """Train until the last step, a divergence or a stop request; returns the status."""
        while self.step < self.cfg.train.steps:
            scalars = self.train_step()
            if self.non_finite is not None or not all(math.isfinite(v) for v in scalars.values()):
                self.last = scalars
                if self.non_finite is None:
                    self.non_finite = locate((("G", self.G), ("D", self.D)), scalars)
                return "diverged"
            for cb in callbacks:
                cb.on_step(self, scalars)
            if self.ranks.any(self.stop.requested):  # a stop asked of one rank stops them all
                return "interrupted"
        return "finished"

    def _try_status(self, status: Status) -> None:
        """Record how the run failed, if the disk lets us (the original error is what the user must see)."""
        if not self.ranks.main:
            return
        try:
            self.folder.write_status(status)
        except OSError:
            pass

    def _write_final_status(self, status: str, seconds: float) -> None:
        if not self.ranks.main:
            return
        if status == "diverged":
            self.folder.write_status(Status("diverged", self.step, reason=f"non-finite at G step {self.step + 1}: "
                                            f"{self.non_finite}", checkpoint_step=self.folder.checkpoint_step()))
        else:
            self.folder.write_status(Status(status, self.step, seconds=round(seconds, 2)))


@contextlib.contextmanager
def _bn_running_stats(model: nn.Module, update: bool):
    """With ``update=False``, BatchNorm layers still normalize with batch statistics but their running
    estimates stay put (momentum 0: ``running = (1 - 0) * running + 0 * batch``)."""
    if update:
        yield
        return
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, m.num_batches_tracked.clone() if m.num_batches_tracked is not None else None)
             for m in bns]
    try:
        for m in bns:
            m.momentum = 0.0
        yield
    finally:
        for m, (momentum, tracked) in zip(bns, saved):
            m.momentum = momentum
            if tracked is not None and m.num_batches_tracked is not None:
                m.num_batches_tracked.copy_(tracked)
