"""The GAN trainer: the official SNGAN/BSSN loop, made reproducible and resumable.

One iteration is ``n_dis`` discriminator steps (each on a fresh real batch drawn with
replacement and fresh z) followed by one generator step; ``train.steps`` counts generator steps.
Everything random in the loop comes from one seeded ``torch.Generator`` that is saved in the
checkpoint, so a resumed run produces bitwise the same weights as an uninterrupted one on CPU.
"""
from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from .. import config as config_mod
from ..config import Config, ConfigError
from ..fileio import unique_dir
from ..losses import LOSSES
from ..normalizations import METHODS, sigmas, update_after_step
from ..normalizations.model import method_options
from . import images
from .ema import EMA
from .io import atomic_write_text, load_checkpoint, save_checkpoint
from .logger import MetricLogger

CHECKPOINT = "checkpoint.pt"
STATUS = "status.json"


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
        return self.run_dir / "samples.png"


def validate(cfg: Config) -> None:
    """Check registry-backed names and numeric ranges; raises a one-line ConfigError."""
    from ..data import DATASETS
    from ..networks import NETWORKS
    for key, value, registry in (("data.name", cfg.data.name, DATASETS), ("model.arch", cfg.model.arch, NETWORKS),
                                 ("normalization.method", cfg.normalization.method, METHODS),
                                 ("train.loss", cfg.train.loss, LOSSES)):
        if value not in registry:
            raise ConfigError(f"config key {key}: {value!r} is not one of {', '.join(registry.names())}")
    t = cfg.train
    for key, value, low in (("train.steps", t.steps, 1), ("train.n_dis", t.n_dis, 1),
                            ("train.batch_size_d", t.batch_size_d, 1), ("train.batch_size_g", t.batch_size_g, 1),
                            ("train.log_every", t.log_every, 1), ("train.sample_every", t.sample_every, 1),
                            ("train.checkpoint_every", t.checkpoint_every, 1), ("train.threads", t.threads, 0),
                            ("train.num_samples_grid", t.num_samples_grid, 1), ("model.z_dim", cfg.model.z_dim, 1),
                            ("train.eval_every", t.eval_every, 0), ("train.eval_num_samples", t.eval_num_samples, 2),
                            ("optim.lr_decay_start", cfg.optim.lr_decay_start, 0)):
        if value < low:
            raise ConfigError(f"config key {key}: must be >= {low}, got {value}")
    from ..metrics.evaluate import METRICS
    for name in t.eval_metrics:
        if name not in METRICS:
            raise ConfigError(f"config key train.eval_metrics: {name!r} is not one of {', '.join(METRICS.names())}")
    from ..gradnorm import FUNCTIONS
    if cfg.normalization.function not in FUNCTIONS:
        raise ConfigError(f"config key normalization.function: {cfg.normalization.function!r} is not one of "
                          f"{', '.join(FUNCTIONS.names())}")
    if t.cr_weight < 0 or not 0.0 <= t.cr_translate < 0.5:
        raise ConfigError("config keys train.cr_weight (>= 0) and train.cr_translate (in [0, 0.5)) are out of range")
    if t.penalty_every < 1:
        raise ConfigError(f"config key train.penalty_every: must be >= 1, got {t.penalty_every}")
    if not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"config key train.ema_decay: must be in [0, 1), got {t.ema_decay}")
    if cfg.model.width <= 0:
        raise ConfigError(f"config key model.width: must be > 0, got {cfg.model.width}")
    n = cfg.normalization
    allowed = method_options(n.method)
    unknown = sorted(set(n.options) - set(allowed) - {"input_shape"})
    if unknown:
        raise ConfigError(f"config key normalization.options: {', '.join(unknown)} is not an option of method "
                          f"{n.method!r} (allowed: {', '.join(allowed) or 'none'}); a preset's options stay when "
                          "you change normalization.method: also set normalization.options={} (or the new options)")
    from ..init import SCHEMES
    if cfg.model.d_init != "official" and cfg.model.d_init not in SCHEMES:
        raise ConfigError(f"config key model.d_init: {cfg.model.d_init!r} is not one of official, {', '.join(SCHEMES)}")
    d = cfg.diagnostics
    if d.every < 0 or d.batch_size < 2:
        raise ConfigError("config keys diagnostics.every (>= 0) and diagnostics.batch_size (>= 2) are out of range")
    if min(d.explode_growth, d.explode_abs, d.vanish_ratio, d.saturate_gap) <= 0:
        raise ConfigError("config keys diagnostics.explode_growth, explode_abs, vanish_ratio and saturate_gap "
                          "must be > 0")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"config key train.device: {name!r} is not a device (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key train.device: cuda was asked for but no GPU is available; use cpu or auto")
    return device


class Trainer:
    """Build everything from a :class:`Config`, then :meth:`run` it. ``resume`` continues a run folder."""

    def __init__(self, cfg: Config, *, resume: Path | None = None) -> None:
        validate(cfg)
        self.cfg = cfg
        t = cfg.train
        if t.threads:
            torch.set_num_threads(t.threads)
        self.device = resolve_device(t.device)
        if t.precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("config key train.precision: fp16 needs a GPU; use bf16 on the CPU")
        self.amp_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[t.precision]

        from ..data import load_dataset
        from ..networks import build_discriminator, build_generator
        self.data = load_dataset(cfg.data.name, cfg.data.root, cfg.data.resolution, **cfg.data.options)
        torch.manual_seed(t.seed)
        m, n = cfg.model, cfg.normalization
        self.G = build_generator(m.arch, tuple(self.data.shape), z_dim=m.z_dim, width=m.width,
                                 **m.g_options).to(self.device)
        self.D = build_discriminator(m.arch, tuple(self.data.shape), width=m.width, normalization=n.method,
                                     normalization_options=dict(n.options), init=m.d_init,
                                     **m.d_options).to(self.device)
        if t.channels_last:
            self.G = self.G.to(memory_format=torch.channels_last)
            self.D = self.D.to(memory_format=torch.channels_last)
        if n.function != "none":
            from ..gradnorm import GradientNormalized
            self.D = GradientNormalized(self.D, n.function, n.function_eps, n.first_order_g)
        o = cfg.optim
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=o.lr_d, betas=o.betas_d, eps=o.eps)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=o.lr_g, betas=o.betas_g, eps=o.eps)
        update_after_step(self.opt_d, self.D)  # persists u once per D step for update="step" layers
        self.scaler = torch.amp.GradScaler("cuda") if t.precision == "fp16" else None
        self.ema = EMA(self.G, t.ema_decay, t.ema_start) if t.ema_decay > 0 else None
        self.loss = LOSSES.get(t.loss)
        self.rng = torch.Generator().manual_seed(t.seed + 1)
        self.fixed_z = torch.randn(t.num_samples_grid, m.z_dim, generator=torch.Generator().manual_seed(t.seed + 2))
        self.step = 0
        self.d_steps = 0

        if resume is not None:
            self.run_dir = Path(resume)
            self._load(load_checkpoint(self.run_dir / CHECKPOINT))
        else:
            name = t.run_name or f"{cfg.data.name}-{m.arch}-{n.method}-s{t.seed}"
            self.run_dir = unique_dir(Path(t.out_dir) / name)
            self.run_dir.mkdir(parents=True)
        atomic_write_text(self.run_dir / "config.yaml", config_mod.dump(cfg))
        self._stop_signal: int | None = None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "config": config_mod.to_dict(self.cfg), "G": self.G.state_dict(),
            "D": self.D.state_dict(), "G_ema": None if self.ema is None else self.ema.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "rng": self.rng.get_state(), "torch_rng": torch.get_rng_state(), "fixed_z": self.fixed_z,
            "data_shape": list(self.data.shape), "d_steps": self.d_steps,
        }

    def _load(self, state: dict[str, Any]) -> None:
        self.G.load_state_dict(state["G"])
        self.D.load_state_dict(state["D"])
        if self.ema is not None and state.get("G_ema") is not None:
            self.ema.load_state_dict(state["G_ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        self.fixed_z = state["fixed_z"]
        self.step = int(state["step"])
        self.d_steps = int(state.get("d_steps", self.step * self.cfg.train.n_dis))

    def save(self) -> None:
        save_checkpoint(self.run_dir / CHECKPOINT, self.state_dict())

    def _status(self, status: str, **extra: Any) -> None:
        atomic_write_text(self.run_dir / STATUS, json.dumps({"status": status, "step": self.step, **extra},
                                                            indent=1) + "\n")

    # ------------------------------------------------------------------ pieces of a step
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.model.z_dim, generator=self.rng).to(self.device)

    def _lr_factor(self, step: int) -> float:
        o, total = self.cfg.optim, self.cfg.train.steps
        if o.lr_decay == "none" or step < o.lr_decay_start:
            return 1.0
        return max(0.0, 1.0 - (step - o.lr_decay_start) / max(1, total - o.lr_decay_start))

    def _set_lr(self, step: int) -> float:
        f = self._lr_factor(step)
        for opt, base in ((self.opt_d, self.cfg.optim.lr_d), (self.opt_g, self.cfg.optim.lr_g)):
            for group in opt.param_groups:
                group["lr"] = base * f
        return f

    def _penalty(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor | None:
        """The configured gradient penalty (and orthogonal regularization) for this D step, or None."""
        from .. import penalties as P
        t = self.cfg.train
        terms = []
        if t.penalty != "none" and self.d_steps % t.penalty_every == 0:
            standard = {"wgan_gp": 10.0, "lp": 10.0, "zero_gp": 10.0, "r1": 10.0, "r2": 10.0}[t.penalty]
            w = (standard if t.penalty_weight is None else t.penalty_weight) * t.penalty_every
            if t.penalty == "r1":
                terms.append(P.r1(self.D, real, w))
            elif t.penalty == "r2":
                terms.append(P.r2(self.D, fake, w))
            else:
                fn = {"wgan_gp": P.wgan_gp, "lp": P.lipschitz_penalty, "zero_gp": P.zero_gp}[t.penalty]
                terms.append(fn(self.D, real, fake, w, generator=self.rng))
        if t.ortho_reg > 0:
            terms.append(P.orthogonal_regularization(self.D, t.ortho_reg).to(real.device))
        return sum(terms) if terms else None

    def _to_device(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device)
        if self.cfg.train.channels_last and batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return batch

    def _backward_step(self, loss: torch.Tensor, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        # only the optimizer's parameters: GN and penalties differentiate w.r.t. their own input leaves,
        # whose gradients nobody reads (this skips D's first-layer input gradient in those steps)
        params = [p for group in opt.param_groups for p in group["params"] if p.requires_grad]
        if self.scaler is None:
            loss.backward(inputs=params)
            opt.step()
        else:
            self.scaler.scale(loss).backward(inputs=params)
            self.scaler.step(opt)
            self.scaler.update()

    def train_step(self) -> dict[str, float]:
        """One generator step (after ``n_dis`` discriminator steps); returns scalars to log."""
        t = self.cfg.train
        self._set_lr(self.step)
        for _ in range(t.n_dis):
            real = self.data.sample(t.batch_size_d, self.rng)
            if t.real_hflip and real.ndim == 4:
                flip = torch.rand(len(real), generator=self.rng) < 0.5
                real = torch.where(flip.view(-1, 1, 1, 1), real.flip(-1), real)
            real = self._to_device(real)
            z = self._z(t.batch_size_d)
            with self._autocast():
                with torch.no_grad(), _bn_running_stats(self.G, t.g_bn_stats_in_d_step):
                    fake = self.G(z)  # train mode: batch statistics
                d_real, d_fake = self.D(real).float(), self.D(fake).float()
                d_loss = self.loss.d(d_real, d_fake)
            self.d_steps += 1
            penalty = self._penalty(real, fake)
            if t.cr_weight > 0:
                from ..augment import consistency_loss, flip_translate
                with self._autocast():
                    d_aug = self.D(flip_translate(real, t.cr_translate, self.rng)).float()
                cr = t.cr_weight * consistency_loss(d_real, d_aug)
                penalty = cr if penalty is None else penalty + cr
            if penalty is not None:
                d_loss_total = d_loss + penalty
            else:
                d_loss_total = d_loss
            if not torch.isfinite(d_loss_total):
                return {"loss_d": d_loss_total.item()}
            self._backward_step(d_loss_total, self.opt_d)
            if t.weight_clip > 0:
                from ..penalties import weight_clip_
                weight_clip_(self.D, t.weight_clip)
        if not (t.g_reuses_d_z and t.batch_size_g == t.batch_size_d):
            z = self._z(t.batch_size_g)
        self.D.requires_grad_(False)
        try:
            with self._autocast():
                g_loss = self.loss.g(self.D(self.G(z)).float())
            if torch.isfinite(g_loss):
                self._backward_step(g_loss, self.opt_g)
        finally:
            self.D.requires_grad_(True)
        self.step += 1
        if self.ema is not None:
            self.ema.update(self.G, self.step)
        extra = {} if penalty is None else {"penalty": penalty.item()}
        return {**extra, "loss_d": d_loss.item(), "loss_g": g_loss.item(), "d_real": d_real.detach().mean().item(),
                "d_fake": d_fake.detach().mean().item(), "lr_factor": self._lr_factor(self.step - 1)}

    # ------------------------------------------------------------------ diagnostics
    def _diagnostics_setup(self, resumed: bool):
        if self.cfg.diagnostics.every <= 0:
            return None
        from ..diagnostics.health import HealthMonitor, HealthRules
        from ..diagnostics.runlog import DiagnosticsLog
        c = self.cfg.diagnostics
        log = DiagnosticsLog(self.run_dir, resume_step=self.step if resumed else None)
        monitor = HealthMonitor(HealthRules(c.explode_growth, c.explode_abs, c.vanish_ratio, c.saturate_gap),
                                log.health_path, stream=None)  # printed by diagnose(), around the progress bar
        monitor.prime(log.records())
        return log, monitor

    def diagnose(self, diag=None, logger: MetricLogger | None = None) -> dict:
        """Probe D on a fresh batch (its own random stream: training is unchanged) and record it."""
        from ..diagnostics.probes import flat_scalars, headline_scalars, probe
        c = self.cfg.diagnostics
        gen = torch.Generator().manual_seed(self.cfg.train.seed * 1_000_003 + self.step + 7)
        real = self._to_device(self.data.sample(c.batch_size, gen))
        z = torch.randn(c.batch_size, self.cfg.model.z_dim, generator=gen).to(self.device)
        with torch.no_grad(), _bn_running_stats(self.G, False):
            fake = self.G(z)
        record = {"step": self.step, **probe(self.D, self.loss.d, real, fake, strict=c.strict, bounds=c.bounds,
                                             generator=gen)}
        if diag is not None:
            log, monitor = diag
            log.append(record)
            from tqdm import tqdm
            for warning in monitor(record):
                tqdm.write(f"gannorm health warning: {warning.message}", file=sys.stderr)
        if logger is not None:
            logger.log(self.step, headline_scalars(record), csv_row=False)  # metrics.jsonl + TensorBoard
            logger.tensorboard(self.step, flat_scalars(record))
        return record

    # ------------------------------------------------------------------ outputs
    def sampler(self) -> nn.Module:
        return self.ema.model if self.ema is not None else self.G

    @torch.no_grad()
    def save_samples(self) -> Path:
        g = self.sampler()
        was = g.training
        g.eval()
        try:
            out = g(self.fixed_z.to(self.device)).float().cpu()
        finally:
            g.train(was)
        if self.data.kind == "image":
            picture = images.image_grid(out, min_cell=64)
        else:
            real = self.data.sample(min(len(self.data), 1000), torch.Generator().manual_seed(0))
            picture = images.scatter_plot(out, real)
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        images.save_png(path, picture)
        images.save_png(self.run_dir / "samples.png", picture)
        return path

    def evaluate(self) -> dict[str, float]:
        """Evaluate the sampling generator (EMA if any, eval mode); appends to ``eval.jsonl``."""
        from ..metrics.evaluate import EvalOptions, evaluate, flat
        t = self.cfg.train
        result = evaluate(self.sampler(), self.data, self.cfg.model.z_dim,
                          EvalOptions(metrics=t.eval_metrics, num_samples=t.eval_num_samples, seed=t.seed,
                                      progress=False), device=self.device)
        result["step"] = self.step
        result["generator"] = "ema" if self.ema is not None else "raw"
        with (self.run_dir / "eval.jsonl").open("a") as fh:
            fh.write(json.dumps(result) + "\n")
        return flat(result)

    # ------------------------------------------------------------------ the loop
    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._stop_signal is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self._stop_signal = signum
        print(f"\ngannorm: got signal {signum}; saving a checkpoint after this step", file=sys.stderr)

    def run(self) -> RunResult:
        t = self.cfg.train
        resumed = self.step > 0
        logger = MetricLogger(self.run_dir, tensorboard=t.tensorboard, resume_step=self.step if resumed else None)
        diag = self._diagnostics_setup(resumed)
        handlers = {}
        if _in_main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                handlers[sig] = signal.signal(sig, self._on_signal)
        self._status("running")
        if not resumed:
            self.save()  # a run folder always holds a loadable checkpoint
            if diag is not None:
                self.diagnose(diag, logger)  # gradients at initialisation
        bar = _progress(t.steps, self.step, enabled=t.progress)
        start, last, status = time.perf_counter(), {}, "finished"
        window_t, window_s = time.perf_counter(), self.step
        try:
            while self.step < t.steps:
                scalars = self.train_step()
                if not all(math.isfinite(v) for v in scalars.values()):
                    status = "diverged"
                    last = scalars
                    break
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(d=f"{scalars['loss_d']:.3f}", g=f"{scalars['loss_g']:.3f}", refresh=False)
                if self.step % t.log_every == 0 or self.step == t.steps:
                    now = time.perf_counter()
                    scalars["it_per_s"] = (self.step - window_s) / max(now - window_t, 1e-9)
                    window_t, window_s = now, self.step
                    scalars.update({f"sigma/{k}": v for k, v in sigmas(self.D).items()})
                    logger.log(self.step, scalars)
                    last = scalars
                if diag is not None and (self.step % self.cfg.diagnostics.every == 0 or self.step == t.steps):
                    self.diagnose(diag, logger)
                if self.step % t.sample_every == 0 or self.step == t.steps:
                    self.save_samples()
                if t.eval_every and (self.step % t.eval_every == 0 or self.step == t.steps):
                    scores = self.evaluate()
                    logger.log(self.step, scores)
                    last = {**last, **scores}
                if self.step % t.checkpoint_every == 0 or self.step == t.steps:
                    self.save()
                if self._stop_signal is not None:
                    status = "interrupted"
                    self.save()
                    break
        finally:
            if bar is not None:
                bar.close()
            logger.close()
            for sig, h in handlers.items():
                signal.signal(sig, h)
        seconds = time.perf_counter() - start
        if status == "diverged":
            bad = ", ".join(f"{k}={v}" for k, v in last.items() if not math.isfinite(v))
            self._status("diverged", reason=f"non-finite loss at G step {self.step + 1}: {bad}",
                         checkpoint_step=_checkpoint_step(self.run_dir))
        else:
            self._status(status, seconds=round(seconds, 2))
        return RunResult(self.run_dir, status, self.step, last, seconds)


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
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


def _checkpoint_step(run_dir: Path) -> int | None:
    try:
        return int(load_checkpoint(run_dir / CHECKPOINT)["step"])
    except (FileNotFoundError, ValueError):
        return None


def _in_main_thread() -> bool:
    import threading
    return threading.current_thread() is threading.main_thread()


def _progress(total: int, initial: int, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, unit="it", dynamic_ncols=True, file=sys.stderr)


def train(config: Config | str | dict | None = None, overrides: Sequence[str] = ()) -> RunResult:
    """Train from a :class:`Config`, a preset name or YAML path, or a dict; returns a :class:`RunResult`."""
    if isinstance(config, Config):
        cfg = config_mod.apply_overrides(config, overrides)
    elif isinstance(config, dict):
        cfg = config_mod.apply_overrides(config_mod.from_dict(config), overrides)
    else:
        cfg = config_mod.load(config, overrides)
    return Trainer(cfg).run()


def resume(run_dir: str | Path, overrides: Sequence[str] = ()) -> RunResult:
    """Continue the run in ``run_dir`` from its checkpoint (e.g. ``overrides=["train.steps=5000"]``)."""
    run_dir = Path(run_dir)
    if not (run_dir / CHECKPOINT).is_file():
        raise FileNotFoundError(f"{run_dir} has no {CHECKPOINT} to resume from")
    cfg = config_mod.load(str(run_dir / "config.yaml"), overrides)
    return Trainer(cfg, resume=run_dir).run()
