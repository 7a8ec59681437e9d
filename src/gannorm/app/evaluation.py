"""``gannorm eval`` and ``gannorm fid-stats``: evaluate a run's checkpoint, build reference statistics.

Both run under ``torchrun`` too (``torchrun --nproc_per_node=N -m gannorm eval RUN``): every rank joins the
process group (``gloo`` on the CPU, ``nccl`` with one GPU per rank for ``--device cuda``), extracts the
features of its shard of the images, and rank 0 gathers them, computes the numbers and alone writes the
output file; the numbers are those of one process (:mod:`gannorm.metrics.sharding`, ``docs/distributed.md``).
"""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import torch

from ..config import Config, evaluation_options
from ..data import load_dataset
from ..devices import resolve_device
from ..errors import GannormError, RunFolderError
from ..fileio import atomic_write_text
from ..metrics.evaluate import (METRICS, EvalOptions, check_conditional, check_precision, check_resize,
                                default_metrics, make_extractor, metric_dataset_problem, metric_protocols,
                                metrics_for_dataset, named_protocol_options, real_subset, resize_mismatch,
                                precision_mismatch, save_inception_statistics)
from ..metrics.frechet import feature_statistics, load_statistics
from ..metrics.protocol import EVAL_PROTOCOLS
from ..metrics.resize import DEFAULT_RESIZE
from ..metrics.sharding import Shards, extract_shard
from ..runfolder import RunFolder
from ..training.distributed import DEFAULT_TIMEOUT, Ranks, ranks_from_env, setup
from ..training.sample_mode import evaluate_generator
from ..validate import is_real
from .sampling import checkpoint_config, load_generator, prepare_output, write_output

#: the most generated (or real) samples one evaluation takes: it holds every sample's features in memory, and
#: an Inception feature is 2048 float64 numbers (16 KiB), so the limit is 8 GiB of features (FID's usual
#: protocol takes 50000)
MAX_EVAL_SAMPLES = 500_000


def eval_device(name: str) -> torch.device:
    """The device ``--device NAME`` names (``auto``: a GPU if there is one); a one-line error otherwise."""
    return resolve_device(name, what="--device", task="evaluation")


def join_ranks(device: str, timeout: float = DEFAULT_TIMEOUT) -> tuple[Ranks, torch.device]:
    """The ranks torchrun started (one process without torchrun) and this rank's device, the process group
    joined: ``gloo`` on the CPU, ``nccl`` on ``cuda:LOCAL_RANK``; its collectives wait ``timeout`` seconds."""
    if not (is_real(timeout) and timeout > 0):
        raise GannormError(f"--dist-timeout must be a number of seconds > 0, got {timeout}")
    resolved = eval_device(device)
    ranks = ranks_from_env(timeout)
    if ranks.distributed and resolved.index is not None:
        raise GannormError(f"--device {device} names one GPU, but torchrun started {ranks.world} ranks, one GPU each "
                           "(cuda:LOCAL_RANK); give --device cuda")
    return ranks, setup(ranks, resolved)


def check_options(options: EvalOptions, dataset: str | None = None, conditional: bool = False) -> None:
    """Refuse bad evaluation options before any work: unknown metrics, too few samples, a bad --reference, a
    per-metric protocol that does not fit (checked against ``dataset``'s default metrics when none are named,
    with the conditional ones for a ``conditional`` run), an Inception precision that is not fp32 or bf16."""
    for name in options.metrics:
        METRICS.get(name)  # a one-line error listing the known metrics
        why = None if dataset is None else metric_dataset_problem(name, dataset)
        if why is not None and dataset is not None:
            raise GannormError(f"--metric {name} cannot be computed on dataset {dataset!r} ({why}); use one of "
                               f"{', '.join(metrics_for_dataset(dataset)) or 'none'}")
    check_precision(options.inception_precision, "--precision")
    check_resize(options.inception_resize, "--resize")
    for what, value, low in (("--num-samples", options.num_samples, 2), ("--num-real", options.num_real, 2),
                             ("--batch-size", options.batch_size, 1)):
        if value is not None and value < low:
            raise GannormError(f"{what} must be >= {low}, got {value}")
        if what != "--batch-size" and value is not None and value > MAX_EVAL_SAMPLES:
            raise GannormError(f"{what} {value} is over the limit of {MAX_EVAL_SAMPLES} samples: an evaluation holds "
                               f"every sample's features in memory ({MAX_EVAL_SAMPLES * 2048 * 8 / 2**30:.0f} GiB of "
                               f"Inception features at the limit); give at most {MAX_EVAL_SAMPLES} (FID's usual "
                               "protocol takes 50000)")
    if options.reference_stats:
        try:
            load_statistics(options.reference_stats)
        except (OSError, ValueError) as err:  # load_statistics' one-line errors, all about the file
            raise GannormError(f"--reference: {' '.join(str(err).split())}") from None
    if options.metrics or dataset is not None:  # else the metrics are the dataset's, known once it is
        metric_protocols(list(options.metrics) or list(default_metrics(dataset or "", conditional)), options,
                         where="protocol")


def training_protocol(options: EvalOptions, cfg: Config) -> EvalOptions:
    """``options`` with the metrics, counts, per-metric protocol and seed of ``cfg``'s evaluations during
    training (:func:`gannorm.config.evaluation_options`); the extractor settings (batch size, Inception
    weights, backend, device, precision and resize, download, progress), ``reference_stats`` and ``sharded``
    stay ``options``' (so ``train.eval_inception_precision`` and ``train.eval_inception_resize`` do not carry
    over: the result records the precision and resize used)."""
    return dataclasses.replace(evaluation_options(cfg), batch_size=options.batch_size, progress=options.progress,
                               inception_weights=options.inception_weights,
                               inception_backend=options.inception_backend, download=options.download,
                               reference_stats=options.reference_stats, device=options.device,
                               sharded=options.sharded, inception_precision=options.inception_precision,
                               inception_resize=options.inception_resize)


def precision_warnings(options: EvalOptions, dataset: str) -> list[str]:
    """One line for each statistics file an Inception metric of ``options`` compares with (``--reference``, a
    protocol's ``reference``) whose features were extracted in another Inception precision than
    ``options.inception_precision``. A file that records no precision (:func:`gannorm.metrics.evaluate.
    statistics_precision`: other tools' files, gannorm's before bf16) counts as fp32. Likewise one line for
    each such file computed with another resize mode than ``options.inception_resize`` (:func:`gannorm.metrics.
    evaluate.resize_mismatch`; a file that records none counts as legacy_tensorflow). The metrics are
    ``options``' or, when none are named, ``dataset``'s default ones."""
    names = list(options.metrics) or list(default_metrics(dataset))
    ours, lines = options.inception_precision, []
    for name, plan in metric_protocols(names, options, where="protocol").items():
        reference = plan.settings.get("reference")
        if not reference or METRICS.get(name).extractor != "inception":
            continue
        resize_line = resize_mismatch(name, reference, options.inception_resize)
        lines.extend([resize_line] if resize_line else [])
        precision_line = precision_mismatch(name, reference, ours)
        lines.extend([precision_line] if precision_line else [])
    return lines


def evaluate_run(run_dir: str | Path, options: EvalOptions, output: str | Path | None = None,
                 checkpoint: str = "latest", use_training_protocol: bool = False,
                 dist_timeout: float = DEFAULT_TIMEOUT, protocol: str | None = None,
                 overwrite: bool = False) -> dict[str, Any]:
    """Evaluate the EMA (if the run has one) and the raw generator of ``run_dir``'s ``latest`` or ``best``
    checkpoint, each sampling in the run's ``train.sample_mode``; with ``use_training_protocol`` by the run's
    own evaluation protocol (:func:`training_protocol`) instead of ``options``' metrics and counts. The
    generator and the Inception network run on ``options.device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``), the
    Inception network in ``options.inception_precision``; a reference statistics file of another precision is
    a one-line warning on stderr (:func:`precision_warnings`).

    Writes ``{"step", "checkpoint", "results": {"ema": ..., "raw": ...}}`` as JSON to ``output`` (default
    ``RUN/eval_step<step>.json``) and returns it; an existing file (an earlier result) is replaced only with
    ``overwrite``, else refused before any work. Under torchrun every rank calls it alike: the evaluation is
    sharded over the ranks (:func:`gannorm.metrics.evaluate.evaluate`), rank 0 alone writes the file, and every
    rank returns the same numbers; ``dist_timeout`` bounds each wait for the other ranks.

    ``protocol`` names a protocol of :data:`~gannorm.metrics.protocol.EVAL_PROTOCOLS` (``sngan_10k_5k``,
    ``train_50k``, ...): its metrics, counts and settings replace ``options``' (:func:`gannorm.metrics.evaluate.
    named_protocol_options`), and the result records it under ``"protocol"`` and in each generator's protocol
    (``"protocol_name"``).
    """
    if protocol is not None and use_training_protocol:
        raise GannormError("give either a named protocol or the run's own training protocol, not both")
    named = None if protocol is None else EVAL_PROTOCOLS.get(protocol).to_json(protocol)
    if protocol is not None:
        options = named_protocol_options(options, protocol)
    check_options(options)
    ranks, device = join_ranks(options.device, dist_timeout)
    options = dataclasses.replace(options, device=str(device), sharded=True)
    folder = RunFolder.open(run_dir)
    state = folder.load_checkpoint(checkpoint)  # read once; both generators come from it
    cfg = checkpoint_config(state, folder.checkpoint_file(checkpoint))
    options = _options_for_run(training_protocol(options, cfg) if use_training_protocol else options, cfg,
                               warn=ranks.main)
    if not isinstance(state.get("step"), int):
        raise RunFolderError(f"checkpoint {folder.checkpoint_file(checkpoint)} records no step: it is not a gannorm "
                             "checkpoint")
    step = state["step"]
    path = Path(ranks.from_main(lambda: _output_path(folder, step, output, overwrite)))
    if folder.contains(path):  # RUN/eval_step<step>.json: one writer at a time in a run folder
        ranks.from_main(lambda: folder.lock("or write the result elsewhere with -o FILE"))
    try:
        out = {"run": str(folder.path), "step": step, "checkpoint": checkpoint,
               "results": _evaluate_both(folder, state, cfg, checkpoint, options, device)}
        if named is not None:
            out["protocol"] = named
            for result in out["results"].values():
                result["protocol"]["protocol_name"] = protocol
        if ranks.main:
            write_output(path, lambda p: atomic_write_text(p, json.dumps(out, indent=1) + "\n"))
    finally:
        folder.unlock()
    out["path"] = str(path)
    return out


def _options_for_run(options: EvalOptions, cfg: Config, warn: bool) -> EvalOptions:
    """``options`` checked against the run's dataset and classes; with ``warn``, reference-file warnings on stderr."""
    classes = cfg.model.num_classes
    check_options(options, cfg.data.name, conditional=bool(classes))
    check_conditional(options.metrics, classes, None, cfg.data.name, where="--metric")
    if warn:
        for line in precision_warnings(options, cfg.data.name):
            print(line, file=sys.stderr)
    return options


def _output_path(folder: RunFolder, step: int, output: str | Path | None, overwrite: bool) -> Path:
    """Where the result goes: ``output`` or ``RUN/eval_step<step>.json``, refused if it exists without ``overwrite``."""
    if output:
        return prepare_output(output, ".json", overwrite=overwrite)
    path = folder.eval_result_path(step)
    if path.exists() and not overwrite:
        raise GannormError(f"{path} already exists (an earlier evaluation of step {step}); pass --overwrite to "
                           "replace it, or write elsewhere with -o FILE.json")
    return path


def _evaluate_both(folder: RunFolder, state: dict, cfg: Config, checkpoint: str, options: EvalOptions,
                   device: torch.device) -> dict[str, Any]:
    """``{"ema": ..., "raw": ...}``: each generator of the checkpoint ``state`` evaluated by ``options``."""
    data = load_dataset(cfg.data.name, cfg.data.root, cfg.data.resolution, **cfg.data.options)
    results = {}
    try:
        for kind in (["ema"] if state.get("G_ema") is not None else []) + ["raw"]:
            g, _, _ = load_generator(folder.path, use_ema=(kind == "ema"), state=state, checkpoint=checkpoint)
            results[kind] = evaluate_generator(g.to(device), cfg.train.sample_mode, data, cfg.model.z_dim, options,
                                               device=device)
    finally:
        data.close()
    return results


def _protocol_text(protocol: dict[str, Any]) -> str:
    """A metric's protocol in words: ``10000 generated vs 5000 real`` and its settings."""
    counts = f"{protocol.get('num_generated')} generated"
    if "num_real" in protocol:
        counts += f" vs {protocol['num_real']} real"
    rest = [f"{k} {v}" for k, v in protocol.items() if k not in ("num_generated", "num_real") and v is not None]
    return "; ".join([counts, *rest])


def format_results(out: dict[str, Any]) -> str:
    """The result of :func:`evaluate_run` as text: per generator, each metric with its protocol."""
    which = " (the best checkpoint)" if out.get("checkpoint") == "best" else ""
    lines = [f"run {out['run']} at G step {out['step']}{which}"]
    if "protocol" in out:
        named = out["protocol"]
        lines.append(f"  protocol {named['name']}: {named['paper']}")
    for kind, res in out["results"].items():
        p = res["protocol"]
        precision, resize = p.get("inception_precision", "fp32"), p.get("inception_resize", DEFAULT_RESIZE)
        lines.append(f"  {kind} generator ({p['num_generated']} generated vs {p['num_real']} real; {p['real_split']}"
                     f"{'' if precision == 'fp32' else f'; Inception in {precision}'}"
                     f"{'' if resize == DEFAULT_RESIZE else f'; {resize} resize'}):")
        for name, vals in res["metrics"].items():
            extra = ", ".join(f"{k} {v:.4g}" for k, v in vals.items() if k != "value")
            lines.append(f"    {name:<6} {vals['value']:.4f}" + (f"  ({extra})" if extra else ""))
            if name in p.get("metrics", {}):
                lines.append(f"           {_protocol_text(p['metrics'][name])}")
    lines.append(f"  written to {out['path']}")
    return "\n".join(lines)


def fid_stats(dataset: str, output: str | Path, *, root: str | None = None, resolution: int | None = None,
              num: int | None = None, seed: int = 0, batch_size: int = 50, inception_weights: str | None = None,
              backend: str = "auto", progress: bool = True, overwrite: bool = False,
              download: bool = False, device: str = "cpu", dist_timeout: float = DEFAULT_TIMEOUT,
              precision: str = "fp32", resize: str = DEFAULT_RESIZE) -> dict[str, Any]:
    """Write TTUR-compatible ``mu``/``sigma`` of the Inception pool3 features of ``dataset`` to ``output``.

    An existing ``output`` is refused unless ``overwrite``; the file is written atomically. The Inception
    weights are downloaded only with ``download`` (otherwise a missing file is a one-line error). The network
    runs on ``device`` in ``precision`` (``fp32`` or ``bf16``), which the file also records
    (:func:`gannorm.metrics.evaluate.save_inception_statistics`: a key TTUR-style readers ignore), as it records
    the ``resize`` mode of the Inception input (``legacy_tensorflow``, ``clean``, ``pytorch_bilinear``). Under
    torchrun every rank calls it alike: each extracts its shard of the images (whole batches of
    ``batch_size``), rank 0 gathers the features in order and alone writes the file.
    """
    check_precision(precision, "--precision")
    check_resize(resize, "--resize")
    if batch_size < 1:
        raise GannormError(f"--batch-size must be >= 1, got {batch_size}")
    if num is not None and num < 2:
        raise GannormError(f"fid-stats needs at least 2 images (-n), got {num}")
    ranks, dev = join_ranks(device, dist_timeout)
    output = Path(ranks.from_main(lambda: prepare_output(output, ".npz", overwrite)))
    data = load_dataset(dataset, root, resolution)
    try:
        if data.kind != "image":
            raise GannormError(f"fid-stats needs an image dataset; {dataset} holds {data.kind}s")
        shards = Shards.current()
        n = min(num or len(data), len(data))
        bounds = shards.bounds(n, batch_size)
        x, protocol = real_subset(data, n, seed, rows=bounds[shards.rank])
        extract, desc = shards.main_first(lambda: make_extractor(
            "inception", dataset=dataset, resolution=data.shape[-1], batch_size=batch_size,
            progress=progress and shards.main, inception_weights=inception_weights, inception_backend=backend,
            download=download, device=str(dev), inception_precision=precision, inception_resize=resize))
        features = extract_shard(extract, x, shards, bounds, n)
    finally:
        data.close()
    if shards.main:
        assert features is not None  # gathered on rank 0
        mu, sigma = feature_statistics(features["features"])
        write_output(output, lambda path: save_inception_statistics(path, mu, sigma, precision, resize))
    return {"path": str(output), "num": n, **protocol, **desc}
