"""What happens around the training steps, as callbacks: logging, diagnostics, samples, evaluation,
the best checkpoint, checkpoints and the progress bar.

The loop (:meth:`gannorm.training.Trainer.run`) calls, for every callback in order, ``on_start(trainer,
resumed)`` once, ``on_step(trainer, scalars)`` after each generator step, and ``on_end(trainer, status)``
once (``finished``, ``interrupted`` -- stopped on request, after a whole step --, ``diverged``, or
``failed`` when an exception, or a second interrupt, ends the loop mid-step). A sweep or a
distributed run adds its own callbacks without touching the loop.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from typing import TYPE_CHECKING, Sequence

from tqdm import tqdm

from ..config import Config, best_metric, evaluation_options
from ..diagnostics.health import HealthMonitor, HealthRules
from ..diagnostics.probes import flat_scalars, headline_scalars
from ..metrics.evaluate import METRICS, EvalOptions, check_evaluation, flat
from ..normalizations import sigmas
from ..runfolder import BestRecord, EvalRecord
from .distributed import Ranks
from .logger import MetricSink
from .sample_mode import evaluate_generator

if TYPE_CHECKING:
    from .trainer import Trainer


def due(step: int, every: int, last: int) -> bool:
    """Whether a periodic action runs after G step ``step``: every ``every`` steps and at the last one."""
    return every > 0 and (step % every == 0 or step == last)


class Callback:
    """The hooks of the training loop; each does nothing by default.

    In a run of several ranks a callback runs on rank 0 only, unless it sets ``every_rank`` (and the trainer
    picks the callbacks of each rank with :func:`rank_callbacks`): it then runs on every rank, which it must
    keep in step (the same collectives in the same order), writing only on rank 0.
    """

    every_rank: bool = False
    #: set by :func:`rank_callbacks` on an ``every_rank`` callback that every rank of a distributed run runs
    on_every_rank: bool = False

    def on_start(self, trainer: "Trainer", resumed: bool) -> None:
        pass

    def on_step(self, trainer: "Trainer", scalars: dict[str, float]) -> None:
        pass

    def on_end(self, trainer: "Trainer", status: str) -> None:
        pass


def _sink(trainer: "Trainer") -> MetricSink:
    """The run's metric sink (the trainer makes it before the first callback is called, on rank 0)."""
    assert trainer.logger is not None
    return trainer.logger


class ProgressBar(Callback):
    """A tqdm bar on stderr with the last losses."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None

    def on_start(self, trainer: "Trainer", resumed: bool) -> None:
        self.bar = tqdm(total=trainer.cfg.train.steps, initial=trainer.step, unit="it", dynamic_ncols=True,
                        file=sys.stderr)

    def on_step(self, trainer: "Trainer", scalars: dict[str, float]) -> None:
        assert self.bar is not None  # made by on_start
        self.bar.update(1)
        self.bar.set_postfix(d=f"{scalars['loss_d']:.3f}", g=f"{scalars['loss_g']:.3f}", refresh=False)

    def on_end(self, trainer: "Trainer", status: str) -> None:
        if self.bar is not None:
            self.bar.close()


class ScalarLog(Callback):
    """Every ``train.log_every`` steps: the step's losses, D outputs, lr factor, speed and sigmas."""

    def __init__(self, every: int) -> None:
        self.every = every
        self._t, self._step = time.perf_counter(), 0

    def on_start(self, trainer: "Trainer", resumed: bool) -> None:
        self._t, self._step = time.perf_counter(), trainer.step

    def on_step(self, trainer: "Trainer", scalars: dict[str, float]) -> None:
        if not due(trainer.step, self.every, trainer.cfg.train.steps):
            return
        now = time.perf_counter()
        row = {**scalars, "it_per_s": (trainer.step - self._step) / max(now - self._t, 1e-9)}
        self._t, self._step = now, trainer.step
        row.update({f"sigma/{k}": v for k, v in sigmas(trainer.D).items()})
        row.update({f"g_sigma/{k}": v for k, v in sigmas(trainer.G).items()})  # normalization.g_method
        _sink(trainer).log(trainer.step, row)
        trainer.last = row


class Diagnostics(Callback):
    """Probe D at step 0, every ``diagnostics.every`` steps and at the end; records, warns, logs headlines."""

    def __init__(self, cfg: Config) -> None:
        c = cfg.diagnostics
        self.every = c.every
        self.monitor = HealthMonitor(HealthRules(c.explode_growth, c.explode_abs, c.vanish_ratio, c.saturate_gap))

    def on_start(self, trainer: "Trainer", resumed: bool) -> None:
        self.monitor.prime(trainer.folder.read_diagnostics(), trainer.folder.read_health())
        if not resumed:
            self.record(trainer)  # gradients at initialisation

    def on_step(self, trainer: "Trainer", scalars: dict[str, float]) -> None:
        if due(trainer.step, self.every, trainer.cfg.train.steps):
            self.record(trainer)

    def record(self, trainer: "Trainer") -> None:
        rec = trainer.probe()
        trainer.folder.append_diagnostics(rec)
        for warning in self.monitor(rec):
            trainer.folder.append_health(warning)
            tqdm.write(f"gannorm health warning: {warning.message}", file=sys.stderr)
        _sink(trainer).log(trainer.step, headline_scalars(rec), csv_row=False)  # metrics.jsonl + TensorBoard
        _sink(trainer).tensorboard(trainer.step, flat_scalars(rec))


class SampleGrid(Callback):
    """Every ``train.sample_every`` steps: the fixed-z grid to ``samples.png`` and ``samples/step_N.png``."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_step(self, trainer: "Trainer", scalars: dict[str, float]) -> None:
        if due(trainer.step, self.every, trainer.cfg.train.steps):
            trainer.save_samples()


def rank_callbacks(callbacks: Sequence[Callback], ranks: Ranks) -> list[Callback]:
    """The callbacks one rank runs: all of them in one process and on rank 0, those that set ``every_rank``
    (the :class:`Evaluation`, sharded over the ranks) on the others. On several ranks it marks those
    ``on_every_rank``, which is how they know that every rank runs them."""
    if not ranks.distributed:
        return list(callbacks)
    for cb in callbacks:
        if cb.every_rank:
            cb.on_every_rank = True
    return list(callbacks) if ranks.main else [cb for cb in callbacks if cb.every_rank]


def evaluate_sampler(trainer: "Trainer", options: EvalOptions, sharded: bool = False) -> dict[str, float]:
    """Evaluate the sampling generator (the EMA copy if any, in ``train.sample_mode``) with ``options``;
    appends the record, with its per-metric protocol, to ``eval.jsonl`` (rank 0), keeps it as
    ``trainer.last_eval`` and returns the ``eval/<metric>`` scalars.

    With ``sharded`` (only when every rank calls it, at the same step) the evaluation is split over the ranks
    (:func:`gannorm.metrics.evaluate.evaluate`) and every rank returns the same numbers; otherwise it runs
    whole on the rank that calls it. The Inception network runs on the trainer's device (a GPU run evaluates
    on its GPU)."""
    options = dataclasses.replace(options, sharded=sharded and trainer.ranks.distributed, device=str(trainer.device))
    result = evaluate_generator(trainer.sampler(), trainer.cfg.train.sample_mode, trainer.data,
                                trainer.cfg.model.z_dim, options, device=trainer.device)
    generator = "ema" if trainer.ema is not None else "raw"
    trainer.last_eval = EvalRecord(trainer.step, generator, result["metrics"], result["protocol"])
    if trainer.ranks.main:
        trainer.folder.append_eval(trainer.last_eval)
    return flat(result)


class Evaluation(Callback):
    """Every ``train.eval_every`` steps: the configured metrics of the sampling generator, each by its protocol
    (``train.eval_protocol``, :func:`gannorm.config.evaluation_options`), to ``eval.jsonl`` (with the
    protocol) and as ``eval/<metric>`` scalars. What an evaluation needs (the Inception weights, a backend
    with logits for IS, readable reference files) is checked at the start, so that it fails before the first
    step rather than at the first evaluation.

    In a run of several ranks whose trainer runs it on every rank (:func:`rank_callbacks`) the evaluation is
    sharded over them; run on rank 0 alone, it evaluates whole there while the others wait."""

    every_rank = True

    def __init__(self, cfg: Config) -> None:
        self.every = cfg.train.eval_every
        self.options = evaluation_options(cfg)

    def on_start(self, trainer: "Trainer", resumed: bool) -> None:
        self.options = dataclasses.replace(self.options, device=str(trainer.device))
        check_evaluation(trainer.data, self.options, where="config key train.eval_protocol",
                         num_classes=trainer.cfg.model.num_classes)

    def on_step(self, trainer: "Trainer", scalars: dict[str, float]) -> None:
        if due(trainer.step, self.every, trainer.cfg.train.steps):
            scores = evaluate_sampler(trainer, self.options, sharded=self.on_every_rank)
            if trainer.ranks.main:
                _sink(trainer).log(trainer.step, scores, csv_row=False)  # the CSV's columns are the training rows
            trainer.last = {**trainer.last, **scores}


class BestCheckpoint(Callback):
    """After each evaluation that beats every earlier one by ``metric``: ``checkpoint_best.pt`` and ``best.json``
    (:meth:`gannorm.training.Trainer.save_best`, which also writes the latest checkpoint at that step).

    Lower or higher is better as the metric's registry entry says; a tie keeps the earlier step. On a
    resume the best so far is the record of ``checkpoint_best.pt`` in ``best.json`` (if it is of this metric
    and not after the resumed step); an evaluation in ``eval.jsonl`` at the resumed step that beats it (a
    run killed while writing the best files) is saved again from the resumed state, which is that step's.
    """

    def __init__(self, metric: str) -> None:
        self.metric = metric
        self.lower_is_better = METRICS.get(metric).lower_is_better
        self.best: BestRecord | None = None

    def record(self, evaluation: EvalRecord) -> BestRecord | None:
        """The evaluation as a candidate record, or None if it lacks the metric."""
        value = evaluation.metrics.get(self.metric, {}).get("value")
        if value is None:
            return None
        return BestRecord(self.metric, evaluation.step, float(value), evaluation.generator, self.lower_is_better)

    def consider(self, trainer: "Trainer", evaluation: EvalRecord) -> None:
        candidate = self.record(evaluation)
        if candidate is not None and candidate.better_than(self.best):
            trainer.save_best(candidate)
            self.best = candidate

    def on_start(self, trainer: "Trainer", resumed: bool) -> None:
        best = trainer.folder.read_best() if resumed else None
        self.best = best if best is not None and best.metric == self.metric and best.step <= trainer.step else None
        if resumed:  # the log was cut at the resumed step: its last evaluation may be one the best file missed
            at_step = [e for e in trainer.folder.read_eval() if e.step == trainer.step]
            if at_step:
                self.consider(trainer, at_step[-1])

    def on_step(self, trainer: "Trainer", scalars: dict[str, float]) -> None:
        evaluation = trainer.last_eval
        if evaluation is not None and evaluation.step == trainer.step:
            self.consider(trainer, evaluation)


class Checkpoints(Callback):
    """A checkpoint at the start of a new run (a run folder always holds a loadable one), every
    ``train.checkpoint_every`` steps, at the end, and when the run is interrupted; none when this step's
    was already written (by :class:`BestCheckpoint`)."""

    def __init__(self, every: int) -> None:
        self.every = every

    def on_start(self, trainer: "Trainer", resumed: bool) -> None:
        if not resumed:
            trainer.save()

    def on_step(self, trainer: "Trainer", scalars: dict[str, float]) -> None:
        if due(trainer.step, self.every, trainer.cfg.train.steps) and trainer.saved_step != trainer.step:
            trainer.save()

    def on_end(self, trainer: "Trainer", status: str) -> None:
        if status == "interrupted" and trainer.saved_step != trainer.step:
            trainer.save()


def default_callbacks(cfg: Config) -> list[Callback]:
    """The callbacks a config asks for, in the order they run after each step."""
    t = cfg.train
    out: list[Callback] = [ProgressBar()] if t.progress else []
    out.append(ScalarLog(t.log_every))
    if cfg.diagnostics.every > 0:
        out.append(Diagnostics(cfg))
    out.append(SampleGrid(t.sample_every))
    if t.eval_every > 0:
        out.append(Evaluation(cfg))
    metric = best_metric(cfg)
    if metric is not None:
        out.append(BestCheckpoint(metric))
    out.append(Checkpoints(t.checkpoint_every))
    return out
