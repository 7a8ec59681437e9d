"""``gannorm metrics A B``: FID, KID and IS between two sides, each a folder of images, an image array, a
statistics file or a run folder (:mod:`gannorm.app.metric_inputs`).

A is the side measured (IS reads A alone), B the reference. The features come from the FID Inception network
as ``gannorm eval`` runs it (backend, weights, device, precision), the numbers from the registered metrics
(:data:`gannorm.metrics.evaluate.METRICS`: the math stays in :mod:`gannorm.metrics`). FID also takes a
statistics file on either side (FID is symmetric), or on both. Under ``torchrun`` every rank reads and
extracts its shard of each side's rows, rank 0 gathers the features in order, computes the numbers and alone
writes ``-o FILE``; the numbers are one process's (:mod:`gannorm.metrics.sharding`).
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from ..errors import GannormError, InputError
from ..fileio import atomic_write_text
from ..metrics.evaluate import (EXTRACTORS, METRICS, EvalContext, EvalOptions, ExtractorRequest, FeatureExtractor,
                                MetricSpec, check_precision, metric_protocols, on_dataset, resize_mismatch,
                                statistics_precision, statistics_resize)
from ..metrics.frechet import frechet_distance
from ..metrics.protocol import MetricProtocol
from ..metrics.resize import DEFAULT_RESIZE
from ..metrics.sharding import Shards
from ..training.distributed import DEFAULT_TIMEOUT
from .evaluation import MAX_EVAL_SAMPLES, join_ranks, precision_mismatch
from .metric_inputs import Source, open_source
from .sampling import prepare_output, write_output

SIDES = ("a", "b")

#: the dimension of the features FID compares for images (Inception pool3), which a statistics file must match
FEATURE_DIM = 2048


@dataclass(frozen=True)
class MetricsOptions:
    """What ``gannorm metrics`` computes and how: the metrics, a run side's draw (``num_samples``, ``seed``,
    ``checkpoint``) and the Inception network's settings (as ``gannorm eval``'s)."""

    metrics: tuple[str, ...] = ("fid",)
    num_samples: int = 10000
    seed: int = 0
    checkpoint: str = "latest"
    batch_size: int = 50
    inception_weights: str | None = None
    inception_backend: str = "auto"
    download: bool = False
    device: str = "cpu"
    precision: str = "fp32"
    resize: str = DEFAULT_RESIZE
    progress: bool = True


@dataclass(frozen=True)
class Plan:
    """How one metric reads the sides: ``fake`` (the side measured), ``real`` (None: none, or statistics given
    as ``protocol``'s reference), its resolved protocol; ``protocol`` None for FID between two statistics."""

    fake: str
    real: str | None
    protocol: MetricProtocol | None


def _resolved(name: str) -> MetricSpec:
    """The registered metric ``name`` with its extractor resolved for images that are not a dataset (the
    dataset-dependent ``features`` of precision/recall/density/coverage are Inception pool3 here)."""
    return on_dataset(METRICS.get(name), "images")


def _metric_spec(name: str) -> MetricSpec:
    """The registered metric ``name`` if ``gannorm metrics`` computes it (an Inception metric needing no labels)."""
    spec = _resolved(name)  # an unknown name: a one-line error listing the known ones
    if spec.extractor != "inception" or spec.needs_labels:
        usable = [n for n in METRICS.names() if _resolved(n).extractor == "inception" and not _resolved(n).needs_labels]
        why = "needs class labels" if spec.needs_labels else f"reads the {spec.extractor} extractor's outputs"
        raise InputError(f"--metric {name}: gannorm metrics computes {', '.join(usable)} (Inception features of any "
                         f"images); {name} {why}; use gannorm eval for it")
    return spec


def _plan_metric(name: str, sides: dict[str, Source]) -> Plan:
    """Which side ``name`` measures and which it compares with, its protocol resolved; one-line errors for a
    statistics file where images are needed and for a side with fewer than 2 images."""
    spec = _metric_spec(name)
    takes_stats = "reference" in spec.settings
    a, b = sides["a"], sides["b"]
    if takes_stats:
        _check_dimensions(name, sides)
    if not a.images and not b.images:
        if takes_stats:
            return Plan("a", "b", None)
        raise InputError(f"--metric {name} needs images; both sides are statistics files (only fid reads them)")
    fake = "a" if a.images else "b"
    if fake == "b" and not takes_stats:
        raise InputError(f"A ({a.path}) is a statistics file: {name} needs its images (only fid reads statistics)")
    other = sides["b" if fake == "a" else "a"]
    given: dict[str, Any] = {"num_samples": sides[fake].count}
    real = None
    if spec.uses_real({}):
        if other.images:
            real, given["num_real"] = ("b" if fake == "a" else "a"), other.count
        elif takes_stats:
            given["reference"] = other.path
        else:
            raise InputError(f"{other.path} is a statistics file: {name} needs images on both sides (only fid reads "
                             "statistics)")
    for side in (fake, real):
        if side is not None:
            _check_count(name, spec, side, sides[side], measured=side == fake)
    options = EvalOptions(metrics=(name,), num_samples=sides[fake].count, protocol={name: given})
    plans = metric_protocols([name], options, sides[real].count if real else None, where="gannorm metrics")
    return Plan(fake, real, plans[name])


#: the fewest images a metric's default setting needs on a side: ``setting: (images for a value, which sides)``
#: (gannorm metrics cannot change the settings, so too few images are the sides' fault)
LEAST_IMAGES: dict[str, tuple[Callable[[int], int], str]] = {
    "splits": (lambda splits: splits, "measured"),        # IS: one image per split at least
    "nearest_k": (lambda k: k + 1, "both"),              # precision/recall/density/coverage: k neighbours + itself
}


def _check_count(name: str, spec: MetricSpec, label: str, source: Source, measured: bool) -> None:
    """A one-line error for a side of fewer images than ``name`` needs at its default settings (2 at least)."""
    need, why = 2, ""
    for key, (least, sides) in LEAST_IMAGES.items():
        if key in spec.settings and (measured or sides == "both"):
            value = spec.settings[key].default
            if least(value) > need:
                need, why = least(value), f" ({value} {key})" if key == "splits" else f" ({key} {value})"
    if source.count < need:
        fix = "raise --num-samples" if source.kind == "run" else "give more images"
        raise InputError(f"{label.upper()} ({source.path}) holds {source.count} image{'' if source.count == 1 else 's'}"
                         f"; {name} needs at least {need}{why}: {fix}")


def _dimension(source: Source) -> int:
    """The feature dimension of a statistics file's ``mu``."""
    assert source.statistics is not None, "only a statistics file has a dimension of its own"
    return int(source.statistics[0].shape[0])


def _check_dimensions(name: str, sides: dict[str, Source]) -> None:
    """A one-line error for statistics of another dimension than the other side's: the other statistics file's,
    or :data:`FEATURE_DIM` (Inception pool3) for images; checked before any image is read."""
    stats = [label for label in SIDES if not sides[label].images]
    if len(stats) == 2:
        da, db = _dimension(sides["a"]), _dimension(sides["b"])
        if da != db:
            raise InputError(f"B ({sides['b'].path}) holds {db}-D statistics, A ({sides['a'].path}) {da}-D ones: "
                             f"{name} compares statistics of one dimension; give two files of the same features")
    for label in stats if len(stats) == 1 else ():
        got = _dimension(sides[label])
        if got != FEATURE_DIM:
            raise InputError(f"{label.upper()} ({sides[label].path}) holds {got}-D statistics; {name} of images "
                             f"compares Inception pool3 features ({FEATURE_DIM}-D): give statistics from gannorm "
                             "fid-stats")


def statistics_warnings(plans: dict[str, Plan], sides: dict[str, Source], options: MetricsOptions) -> list[str]:
    """One warning line for each statistics file whose recorded resize mode or Inception precision differs from
    ``options``' (as ``gannorm eval`` warns: a file that records none counts as legacy_tensorflow and fp32), and
    for two statistics files that differ in either.

    Args:
        plans: the planned metrics (:func:`_plan_metric`).
        sides: the opened sides.
        options: the resize mode and precision of the features extracted here.

    Returns:
        The lines (none when everything agrees).

    Example::

        >>> statistics_warnings({}, {}, MetricsOptions())
        []
    """
    lines: list[str] = []
    for name, plan in plans.items():
        if plan.protocol is None:  # two statistics files
            lines += _pair_warnings(name, sides["a"].path, sides["b"].path)
            continue
        reference = plan.protocol.settings.get("reference")
        if reference:
            lines += [line for line in (resize_mismatch(name, reference, options.resize),
                                        precision_mismatch(name, reference, options.precision)) if line]
    return lines


def _pair_warnings(name: str, a: str, b: str) -> list[str]:
    """The lines for two statistics files of different resize modes or Inception precisions."""
    lines = []
    for what, read, default, why in (("resize", statistics_resize, DEFAULT_RESIZE, "FIDs of different resizes differ"),
                                     ("precision", statistics_precision, "fp32", "fp32 and bf16 FIDs differ (by under "
                                                                                 "1%)")):
        ra, rb = read(a), read(b)
        if (ra or default) != (rb or default):
            said = [f"{p} ({what} {r or default}{'' if r else ', as it records none'})" for p, r in ((a, ra), (b, rb))]
            lines.append(f"gannorm: warning: {name} compares {said[0]} with {said[1]}; {why}: use statistics of one "
                         f"{what} (gannorm fid-stats --{what})")
    return lines


def _build_inception(options: MetricsOptions, specs: dict[str, MetricSpec]) -> FeatureExtractor:
    """The Inception extractor of ``options``, checked to give every output ``specs`` need (IS: logits)."""
    request = ExtractorRequest("images", None, options.batch_size, False, options.inception_weights,
                               options.inception_backend, options.download, options.device, options.precision,
                               inception_resize=options.resize)
    built = EXTRACTORS.get("inception").factory(request)
    for name, spec in specs.items():
        missing = sorted(set(spec.needs) - built.provides)
        if missing:
            hint = f" ({built.missing_hint})" if built.missing_hint else ""
            raise GannormError(f"metric {name} needs {' and '.join(missing)}, which the Inception backend in use does "
                               f"not provide{hint}")
    return built


def extract_images(images: Any, extract: Callable[[torch.Tensor], dict[str, np.ndarray]],
                   batch_size: int) -> dict[str, np.ndarray]:
    """The outputs of ``extract`` for ``images``, row for row in their order.

    Args:
        images: a batch ``[n, C, H, W]`` (cut into chunks of ``batch_size``), or a list of ``[C, H, W]`` images
            of any sizes (cut into runs of consecutive images of one shape, at most ``batch_size`` each).
        extract: a feature extractor, ``batch -> {output: array [rows, ...]}``.
        batch_size: the most images per call of ``extract``.

    Returns:
        ``{output: array [n, ...]}``.

    Example::

        >>> extract_images([torch.zeros(3, 8, 8, dtype=torch.uint8)] * 3, lambda x: {"n": np.ones(len(x))}, 2)
        {'n': array([1., 1., 1.])}
    """
    if isinstance(images, torch.Tensor):
        groups = list(images.split(batch_size))
    else:
        groups = []
        run: list[torch.Tensor] = []
        for image in images:
            if run and (image.shape != run[0].shape or len(run) == batch_size):
                groups.append(torch.stack(run))
                run = []
            run.append(image)
        groups += [torch.stack(run)] if run else []
    parts = [extract(g) for g in groups]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _extract_side(source: Source, extract: Callable, shards: Shards, batch_size: int,
                 progress: bool, label: str) -> dict[str, np.ndarray] | None:
    """The features of every row of ``source``, gathered in order on rank 0 (None on the others): each rank
    reads and extracts its shard, ``source.unit`` rows at a time."""
    bounds = shards.bounds(source.count, source.unit)
    start, stop = bounds[shards.rank]
    bar = tqdm(total=stop - start, desc=f"inception features {label}", unit="img", leave=False) if progress else None
    read = source.read
    assert read is not None, "a side with images has a read"
    parts = []
    for s in range(start, stop, source.unit):
        e = min(s + source.unit, stop)
        parts.append(extract_images(read(s, e), extract, batch_size))
        if bar is not None:
            bar.update(e - s)
    if bar is not None:
        bar.close()
    local = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    return shards.gather(local, Shards.counts(bounds, source.count))


def _compute(plans: dict[str, Plan], sides: dict[str, Source], features: dict[str, Any],
             seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every metric's numbers and protocol record from the gathered features (on rank 0)."""
    results: dict[str, Any] = {}
    records: dict[str, Any] = {}
    shared: dict[tuple, dict[str, float]] = {}
    for name, plan in plans.items():
        if plan.protocol is None:  # FID between two statistics files
            a, b = sides["a"].statistics, sides["b"].statistics
            assert a is not None and b is not None, "a plan without a protocol compares two statistics files"
            try:
                results[name] = {"value": float(frechet_distance(*a, *b))}
            except ValueError as err:  # the shapes are checked when planned; anything else frechet refuses
                raise InputError(f"{name} between {sides['a'].path} and {sides['b'].path}: "
                                 f"{' '.join(str(err).split())}") from None
            records[name] = {"generated": "a (statistics)", "real": "b (statistics)"}
            continue
        spec = _resolved(name)
        context = EvalContext(None, EvalOptions(seed=seed), plan.protocol)
        real = features[plan.real] if plan.real else {}
        kwargs = spec.options(context)
        if spec.value_of:  # precision/recall/density/coverage: one k-NN computation for the four
            # (only these share a call: the options of the others may hold arrays, which are not hashable)
            key = (spec.compute, plan.fake, plan.real, tuple(sorted(kwargs.items())))
            if key not in shared:
                shared[key] = spec.compute(features[plan.fake], real, **kwargs)
            results[name] = {"value": float(shared[key][spec.value_of])}
        else:
            results[name] = _values(name, spec, features[plan.fake], real, kwargs, plan.protocol)
        reference = plan.protocol.settings.get("reference")
        other = "b" if plan.fake == "a" else "a"
        real_name = plan.real or (f"{other} (statistics)" if reference else "none")
        records[name] = {"generated": plan.fake, "real": real_name, **plan.protocol.to_json(), **spec.protocol(context)}
    return results, records


def _values(name: str, spec: MetricSpec, fake: dict, real: dict, kwargs: dict[str, Any],
            protocol: MetricProtocol) -> dict[str, float]:
    """``spec``'s numbers; a statistics file that FID cannot compare with the features (a ValueError of
    :func:`~gannorm.metrics.frechet.frechet_distance`) is a one-line error."""
    reference = protocol.settings.get("reference")
    try:
        return {k: float(v) for k, v in spec.compute(fake, real, **kwargs).items()}
    except ValueError as err:
        if not reference:
            raise
        raise InputError(f"{name} against {reference}: {' '.join(str(err).split())}") from None


def compare(sides: dict[str, Source], options: MetricsOptions) -> dict[str, Any]:
    """The metrics of ``options`` between two opened sides; every rank of a sharded run calls it alike and gets
    the same result.

    Args:
        sides: ``{"a": Source, "b": Source}`` (:func:`gannorm.app.metric_inputs.open_source`).
        options: the metrics and the Inception settings.

    Returns:
        ``{"a", "b" (the sides' descriptions), "metrics": {name: {"value", ...}}, "protocol": {"seed",
        "inception_*", "metrics": {name: {"generated", "real", "num_generated", ...}}, "seconds"}}``.

    Example::

        >>> compare({"a": open_source("x.npz"), "b": open_source("stats.npz")}, MetricsOptions())  # doctest: +SKIP
    """
    shards = Shards.current()
    t0 = time.perf_counter()
    plans = {name: _plan_metric(name, sides) for name in dict.fromkeys(options.metrics)}
    if shards.main:
        for line in statistics_warnings(plans, sides, options):
            print(line, file=sys.stderr)
    specs = {name: _resolved(name) for name, plan in plans.items() if plan.protocol is not None}
    needed = sorted({s for p in plans.values() if p.protocol is not None for s in (p.fake, p.real) if s})
    protocol: dict[str, Any] = {"seed": options.seed}
    features: dict[str, Any] = {}
    if needed:
        built = shards.main_first(lambda: _build_inception(options, specs))
        protocol.update({f"inception_{k}": v for k, v in built.description.items()})
        for side in needed:
            features[side] = _extract_side(sides[side], built.extract, shards, options.batch_size,
                                          options.progress and shards.main, side.upper())
    results, protocol["metrics"] = shards.from_main(lambda: _compute(plans, sides, features, options.seed))
    if shards.distributed:
        protocol["ranks"] = shards.world
    protocol["seconds"] = round(time.perf_counter() - t0, 2)
    return {"a": sides["a"].description, "b": sides["b"].description, "metrics": results, "protocol": protocol}


def _check_options(options: MetricsOptions) -> None:
    """Refuse bad options before any file is read: no metric, an unknown or unsupported one, bad counts."""
    if not options.metrics:
        raise InputError("--metric names no metric; give e.g. --metric fid,kid")
    for name in options.metrics:
        _metric_spec(name)
    check_precision(options.precision, "--precision")
    if options.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {options.batch_size}")
    if not 2 <= options.num_samples <= MAX_EVAL_SAMPLES:
        raise InputError(f"--num-samples must be between 2 and {MAX_EVAL_SAMPLES}, got {options.num_samples}")


def metrics_between(a: str | Path, b: str | Path, options: MetricsOptions, output: str | Path | None = None,
                    overwrite: bool = False, dist_timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
    """``gannorm metrics A B``: open both sides (:func:`gannorm.app.metric_inputs.open_source`), compute
    ``options.metrics`` (:func:`compare`) and, with ``output``, write the result as JSON (refused if the file
    exists, unless ``overwrite``; rank 0 alone writes under torchrun).

    Args:
        a: the side measured (IS reads it alone).
        b: the reference side.
        options: the metrics, a run side's draw and the Inception settings.
        output: a ``.json`` file, or None.
        overwrite: replace an existing ``output``.
        dist_timeout: under torchrun, seconds a rank waits for the others.

    Returns:
        :func:`compare`'s result, with ``"path"`` (the JSON file) when ``output`` is given.

    Example::

        >>> metrics_between("samples.npz", "cifar10_train.npz", MetricsOptions())["metrics"]["fid"]  # doctest: +SKIP
        {'value': 17.9}
    """
    _check_options(options)
    ranks, device = join_ranks(options.device, dist_timeout)
    options = dataclasses.replace(options, device=str(device))
    path = Path(ranks.from_main(lambda: prepare_output(output, ".json", overwrite))) if output else None
    sides = {label: open_source(where, batch_size=options.batch_size, num_samples=options.num_samples,
                                seed=options.seed, checkpoint=options.checkpoint, device=device)
             for label, where in zip(SIDES, (a, b))}
    out = compare(sides, options)
    if path is not None:
        if ranks.main:
            write_output(path, lambda p: atomic_write_text(p, json.dumps(out, indent=1) + "\n"))
        out["path"] = str(path)
    return out


def format_metrics(out: dict[str, Any]) -> list[str]:
    """The lines ``gannorm metrics`` prints: one per metric, its value and its other numbers.

    Args:
        out: :func:`compare`'s result.

    Returns:
        The lines.

    Example::

        >>> format_metrics({"metrics": {"kid": {"value": 0.0123, "std": 0.001}}})
        ['kid    0.0123  (std 0.001)']
    """
    lines = []
    for name, values in out["metrics"].items():
        extra = ", ".join(f"{k} {v:.4g}" for k, v in values.items() if k != "value")
        lines.append(f"{name:<6} {values['value']:.4f}" + (f"  ({extra})" if extra else ""))
    return lines


def describe_side(label: str, side: dict[str, Any]) -> str:
    """A side in words, for the command's stderr.

    Args:
        label: ``"A"`` or ``"B"``.
        side: the side's description (:attr:`gannorm.app.metric_inputs.Source.description`).

    Returns:
        One line.

    Example::

        >>> describe_side("B", {"kind": "statistics", "path": "s.npz"})
        'B: statistics file s.npz'
    """
    if side["kind"] == "statistics":
        return f"{label}: statistics file {side['path']}"
    if side["kind"] == "run":
        return (f"{label}: {side['images']} samples of run {side['path']} ({side['generator']} G, step {side['step']}, "
                f"z seed {side['z_seed']})")
    return f"{label}: {side['images']} images of {side['kind']} {side['path']}"
