"""A small, deterministically trained CNN classifier for ``digits`` and ``mnist5k``, and metrics on its features.

Inception features mean little on 16x16 grey digits; the established practice for MNIST-like data is a
small classifier trained on the dataset itself, whose penultimate layer replaces Inception's pool3
(Fréchet distance, KID) and whose softmax replaces Inception's (the "classifier score")::

    from gannorm.metrics.classifier import get_classifier, classifier_metrics
    clf = get_classifier("digits", resolution=16)     # trained once (~10 s on one core), then cached
    clf.test_accuracy                                   # held-out accuracy, e.g. 0.98
    m = classifier_metrics(fake_images, real_images, clf)   # {'fd', 'kid', 'kid_std', 'cis', 'cis_std', ...}

Training protocol (everything below is part of the recipe hash that keys the cache):

- data: ``load_dataset(dataset, resolution=resolution)``, all images as ``x / 127.5 - 1``;
- split: stratified, :data:`TEST_FRACTION` = 20% of each class held out for the test accuracy, drawn
  with ``numpy.random.default_rng(SPLIT_SEED)`` (:func:`split_indices`); digits: 1,437 train / 360
  test, mnist5k: 4,000 / 1,000;
- inputs are resized to the classifier's native size (16 px for digits, 28 px for mnist5k) by bilinear
  interpolation (``align_corners=False``, antialiased when shrinking), so any resolution works;
- architecture: ``convs_per_stage`` 3x3 conv + ReLU layers per stage, two stages with 2x2 max
  pooling, then ``Linear -> ReLU`` to the :data:`FEATURE_DIM` (128) features and ``Linear`` to 10 logits;
  the features returned are those ReLU outputs divided by one fixed scalar ``feature_scale``, set after
  training so that their mean square over the training images is 1 (the KID kernel
  ``(x.y / d + 1)^3`` assumes O(1) entries, as Inception's pool3 has);
- optimisation: Adam (lr 1e-3) with a cosine decay to 0, batch 64, fixed epoch count, cross-entropy,
  random translations of up to 2 px (background -1) as augmentation;
- determinism: the model is initialised from ``torch.manual_seed(seed)`` inside ``torch.random.fork_rng``
  (the caller's global RNG is untouched), data order and augmentation come from a seeded
  ``torch.Generator``, and training runs with ``torch.use_deterministic_algorithms(True)`` and one
  thread (both restored afterwards), so two trainings on the same machine and torch build give
  bitwise-equal weights.

Cache: ``<root>/classifiers/<dataset>-<resolution>px-<hash>.pt`` where ``root`` is the ``cache_dir``
argument, else the ``GANNORM_CACHE`` environment variable, else ``~/.cache/gannorm``; the hash covers
the recipe and a SHA-256 of the training data. Files are written atomically (temporary file +
``os.replace``) and read with ``torch.load(weights_only=True)``; an unreadable or mismatching file is
retrained over, with a warning.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import load_dataset
from ..errors import InputError
from ..fileio import atomic_write
from .frechet import feature_statistics, frechet_distance
from .inception_score import inception_score
from .kid import kernel_inception_distance

__all__ = ["DigitsClassifier", "ClassifierRecipe", "RECIPES", "get_classifier", "train_classifier",
           "classifier_metrics", "split_indices", "default_cache_dir", "FEATURE_DIM"]

FORMAT = 1  # cache file layout version
FEATURE_DIM = 128
NUM_CLASSES = 10
TEST_FRACTION = 0.2
SPLIT_SEED = 0
KID_MAX_SUBSET = 1000


@dataclasses.dataclass(frozen=True)
class ClassifierRecipe:
    """Everything that determines the trained weights (besides the data, which is hashed separately)."""

    native_size: int
    channels: tuple[int, int] = (32, 64)
    convs_per_stage: int = 2
    feature_dim: int = FEATURE_DIM
    epochs: int = 15
    batch_size: int = 64
    lr: float = 1e-3
    max_shift: int = 1
    seed: int = 0
    test_fraction: float = TEST_FRACTION
    split_seed: int = SPLIT_SEED


#: The recipe per dataset. digits: ~8 s on one core, ~98% test accuracy; mnist5k: ~20 s, ~98%.
RECIPES: dict[str, ClassifierRecipe] = {
    "digits": ClassifierRecipe(native_size=16, convs_per_stage=2, epochs=15),
    "mnist5k": ClassifierRecipe(native_size=28, convs_per_stage=1, epochs=10),
}


# ------------------------------------------------------------------------------------------- model

def _as_images(x: Any) -> torch.Tensor:
    """A float32 CPU batch [N, 1, H, W] in [-1, 1] from a float tensor/array in [-1, 1] ([N, 1, H, W] or
    [N, H, W]) or from uint8 pixels in [0, 255] (converted as ``x / 127.5 - 1``)."""
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    x = x.detach().cpu()
    if x.ndim == 3:
        x = x.unsqueeze(1)
    if x.ndim != 4 or x.shape[1] != 1 or x.shape[0] < 1:
        raise ValueError(f"images must be a non-empty batch [N, 1, H, W] or [N, H, W] (one channel), "
                         f"got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.to(torch.float32).div_(127.5).sub_(1.0)
    if not x.is_floating_point():
        raise ValueError(f"images must be floats in [-1, 1] or uint8 in [0, 255], got dtype {x.dtype}")
    x = x.to(torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    return x


class DigitsClassifier(nn.Module):
    """The small CNN. Inputs are images in [-1, 1] at any resolution (resized to ``native_size``).

    Attributes: ``dataset``, ``resolution`` (the resolution it was trained at), ``native_size``,
    ``recipe``, ``recipe_hash``, ``test_accuracy`` (held-out accuracy, a float in [0, 1]),
    ``train_seconds`` and ``from_cache`` (whether :func:`get_classifier` loaded it from the cache).
    """

    def __init__(self, recipe: ClassifierRecipe, dataset: str = "digits", resolution: int = 16) -> None:
        super().__init__()
        self.recipe = recipe
        self.dataset = dataset
        self.resolution = int(resolution)
        self.native_size = int(recipe.native_size)
        self.recipe_hash = ""
        self.test_accuracy = float("nan")
        self.train_seconds = float("nan")
        self.from_cache = False
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in recipe.channels:
            for _ in range(recipe.convs_per_stage):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
        self.conv = nn.Sequential(*layers)
        side = self.native_size // 2 ** len(recipe.channels)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, recipe.feature_dim), nn.ReLU())
        self.head = nn.Linear(recipe.feature_dim, NUM_CLASSES)
        # features() returns embed(x) / feature_scale, the scale fixed after training so that the features
        # have mean square 1 on the training images (the KID kernel (x.y/d + 1)^3 expects O(1) entries)
        self.feature_scale: torch.Tensor
        self.register_buffer("feature_scale", torch.ones(()))

    def prepare(self, x: Any) -> torch.Tensor:
        """Validated float32 images resized to ``native_size`` (bilinear, ``align_corners=False``,
        antialiased when shrinking)."""
        x = _as_images(x)
        if tuple(x.shape[-2:]) != (self.native_size, self.native_size):
            x = F.interpolate(x, size=(self.native_size, self.native_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return x

    def _logits_from_native(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.embed(self.conv(x))
        return feats, self.head(feats)

    def forward(self, x: Any) -> torch.Tensor:
        """Logits [N, 10] (with autograd; for training or custom use)."""
        return self._logits_from_native(self.prepare(x))[1]

    @torch.no_grad()
    def features_and_probs(self, x: Any, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        """Penultimate-layer features (float32 [N, feature_dim]: after the ReLU, divided by ``feature_scale``)
        and softmax probabilities (float64 [N, 10]), in eval mode, without gradients, ``batch_size`` images
        at a time."""
        x = _as_images(x)
        was_training = self.training
        self.eval()
        feats, probs = [], []
        try:
            for start in range(0, x.shape[0], batch_size):
                f, logits = self._logits_from_native(self.prepare(x[start:start + batch_size]))
                feats.append(f / self.feature_scale)
                probs.append(torch.softmax(logits.double(), dim=1))
        finally:
            self.train(was_training)
        return torch.cat(feats), torch.cat(probs)

    def features(self, x: Any, batch_size: int = 500) -> torch.Tensor:
        """Penultimate-layer features, float32 [N, feature_dim] (see :meth:`features_and_probs`)."""
        return self.features_and_probs(x, batch_size)[0]

    def probs(self, x: Any, batch_size: int = 500) -> torch.Tensor:
        """Softmax class probabilities, float64 [N, 10] (see :meth:`features_and_probs`)."""
        return self.features_and_probs(x, batch_size)[1]

    @torch.no_grad()
    def accuracy(self, images: Any, labels: Any) -> float:
        """Fraction of ``images`` whose arg-max class equals ``labels``."""
        probs = self.probs(images)
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        return float((probs.argmax(dim=1) == labels).double().mean())


# ---------------------------------------------------------------------------------------- training

def split_indices(labels: Any, test_fraction: float = TEST_FRACTION,
                  seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """Stratified ``(train, test)`` index arrays (int64, sorted): for each class in increasing order,
    its indices are permuted with one shared ``numpy.random.default_rng(seed)`` and the first
    ``floor(test_fraction * n_class + 0.5)`` go to the test split."""
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    test = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        test.append(idx[:int(math.floor(test_fraction * len(idx) + 0.5))])
    test_idx = np.sort(np.concatenate(test)).astype(np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[test_idx] = False
    return np.flatnonzero(mask).astype(np.int64), test_idx


@contextlib.contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Seeded global RNG (restored on exit), deterministic algorithms and one thread (restored)."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(det, warn_only=warn_only)
            torch.set_num_threads(threads)


def _load_data(dataset: str, resolution: int | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    if dataset not in RECIPES:
        raise InputError(f"no classifier recipe for dataset {dataset!r}; available: {', '.join(sorted(RECIPES))}")
    ds = load_dataset(dataset, resolution=resolution)
    if ds.kind != "image" or ds.labels is None or ds.shape[0] != 1:
        raise InputError(f"{dataset}: the classifier needs labelled one-channel images, got {ds!r}")
    digest = hashlib.sha256()
    digest.update(str(tuple(ds.data.shape)).encode())
    digest.update(ds.data.numpy().tobytes())
    digest.update(ds.labels.numpy().astype("<i8").tobytes())
    return ds.data, ds.labels, digest.hexdigest()


def _recipe_hash(dataset: str, resolution: int, recipe: ClassifierRecipe, data_digest: str) -> str:
    blob = json.dumps({"format": FORMAT, "dataset": dataset, "resolution": int(resolution),
                       "recipe": dataclasses.asdict(recipe), "data_sha256": data_digest}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Each image translated by integer offsets in [-max_shift, max_shift] (background -1)."""
    if max_shift <= 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    off = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator).tolist()
    return torch.stack([padded[i, :, a:a + h, b:b + w] for i, (a, b) in enumerate(off)])


def train_classifier(dataset: str = "digits", resolution: int | None = 16, *,
                     _data: tuple[torch.Tensor, torch.Tensor, str] | None = None) -> DigitsClassifier:
    """Train the classifier for ``dataset`` at ``resolution`` with :data:`RECIPES` [dataset] (no cache).

    Deterministic (see the module docstring); sets ``test_accuracy`` (on the held-out split),
    ``train_seconds`` and ``recipe_hash`` and returns the model in eval mode.
    """
    data, labels, digest = _data if _data is not None else _load_data(dataset, resolution)
    resolution = int(data.shape[-1])
    recipe = RECIPES[dataset]
    t0 = time.perf_counter()
    with _deterministic(recipe.seed):
        model = DigitsClassifier(recipe, dataset, resolution)
        images = model.prepare(data)  # uint8 -> [-1, 1] -> native size, once
        train_idx, test_idx = split_indices(labels.numpy(), recipe.test_fraction, recipe.split_seed)
        train_idx_t = torch.from_numpy(train_idx)
        gen = torch.Generator().manual_seed(recipe.seed)
        opt = torch.optim.Adam(model.parameters(), lr=recipe.lr)
        steps_per_epoch = math.ceil(len(train_idx) / recipe.batch_size)
        total = recipe.epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1.0 + math.cos(math.pi * k / total)))
        model.train()
        for _ in range(recipe.epochs):
            order = train_idx_t[torch.randperm(len(train_idx_t), generator=gen)]
            for start in range(0, len(order), recipe.batch_size):
                batch = order[start:start + recipe.batch_size]
                xb = _shift(images[batch], recipe.max_shift, gen)
                loss = F.cross_entropy(model._logits_from_native(xb)[1], labels[batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        model.eval()
        with torch.no_grad():
            raw = torch.cat([model.embed(model.conv(images[train_idx_t[i:i + 500]]))
                             for i in range(0, len(train_idx_t), 500)])
            model.feature_scale.fill_(raw.double().pow(2).mean().sqrt().item())
        model.test_accuracy = model.accuracy(images[test_idx], labels[test_idx])
    model.train_seconds = time.perf_counter() - t0
    model.recipe_hash = _recipe_hash(dataset, resolution, recipe, digest)
    return model


# ------------------------------------------------------------------------------------------- cache

def default_cache_dir() -> Path:
    """``$GANNORM_CACHE`` if set (and non-empty), else ``~/.cache/gannorm``."""
    env = os.environ.get("GANNORM_CACHE", "")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "gannorm"


def _atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def _load_cached(path: Path, dataset: str, resolution: int, recipe_hash: str) -> DigitsClassifier:
    """Load and check a cache file; any problem raises (the caller retrains)."""
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT or blob.get("recipe_hash") != recipe_hash:
        raise ValueError("unexpected content (format or recipe hash mismatch)")
    model = DigitsClassifier(RECIPES[dataset], dataset, resolution)
    model.load_state_dict(blob["state_dict"], strict=True)
    model.recipe_hash = recipe_hash
    model.test_accuracy = float(blob["test_accuracy"])
    model.train_seconds = float(blob["train_seconds"])
    model.from_cache = True
    return model.eval()


def get_classifier(dataset: str = "digits", resolution: int | None = 16,
                   cache_dir: str | os.PathLike | None = None) -> DigitsClassifier:
    """The trained classifier for ``dataset`` ("digits" or "mnist5k") at ``resolution`` (``None``: the
    dataset's default, 32 for digits and 28 for mnist5k), from the cache or trained now
    (deterministically, then cached; see the module docstring).

    ``cache_dir`` is the cache root (default: ``$GANNORM_CACHE``, else ``~/.cache/gannorm``); the file is
    ``<root>/classifiers/<dataset>-<resolution>px-<hash>.pt``. A corrupt or mismatching cache file is
    retrained over with a ``RuntimeWarning``. The model is returned in eval mode.
    """
    if dataset not in RECIPES:
        raise InputError(f"no classifier recipe for dataset {dataset!r}; available: {', '.join(sorted(RECIPES))}")
    data = _load_data(dataset, resolution)
    resolution = int(data[0].shape[-1])
    recipe_hash = _recipe_hash(dataset, resolution, RECIPES[dataset], data[2])
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = root / "classifiers" / f"{dataset}-{int(resolution)}px-{recipe_hash}.pt"
    if path.exists():
        try:
            return _load_cached(path, dataset, resolution, recipe_hash)
        except Exception as err:  # corrupt, truncated, tampered or stale: retrain over it
            first = (str(err).splitlines() or [""])[0]
            warnings.warn(f"gannorm: ignoring unreadable classifier cache {path} ({type(err).__name__}: {first}); "
                          "retraining", RuntimeWarning, stacklevel=2)
    print(f"gannorm: training the {dataset} classifier at {resolution}px (once; cached at {path})",
          file=sys.stderr)
    model = train_classifier(dataset, resolution, _data=data)
    if model.recipe_hash != recipe_hash:  # pragma: no cover - same data, same recipe
        raise RuntimeError("classifier recipe hash changed during training")
    blob = {"format": FORMAT, "recipe_hash": recipe_hash, "dataset": dataset, "resolution": int(resolution),
            "recipe": json.dumps(dataclasses.asdict(RECIPES[dataset])), "test_accuracy": float(model.test_accuracy),
            "train_seconds": float(model.train_seconds), "torch_version": str(torch.__version__),
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    try:
        _atomic_torch_save(blob, path)
    except OSError as err:  # a read-only or full cache: still return the trained model
        warnings.warn(f"gannorm: cannot cache the classifier at {path} ({err}); it will be retrained next time",
                      RuntimeWarning, stacklevel=2)
    return model


# ----------------------------------------------------------------------------------------- metrics

def classifier_metrics(fake_images: Any, real_images: Any, classifier: DigitsClassifier, *,
                       kid_subsets: int = 100, kid_seed: int = 0, splits: int = 10, shuffle: bool = True,
                       batch_size: int = 500) -> dict[str, float | None]:
    """Fréchet distance, KID and classifier score of ``fake_images`` against ``real_images``.

    Both are batches in [-1, 1] (or uint8) at any resolution (see :meth:`DigitsClassifier.prepare`);
    every number goes through the pure functions:

    - ``fd``: :func:`~gannorm.metrics.frechet.frechet_distance` between the feature statistics
      (mean, unbiased covariance) of the fakes and of the reals; biased upward for small N, so compare
      only numbers computed with the same sample counts;
    - ``kid``, ``kid_std``: :func:`~gannorm.metrics.kid.kernel_inception_distance` on the features with
      ``kid_subsets`` subsets of ``kid_subset_size = min(1000, n_fake, n_real)`` samples (seed
      ``kid_seed``); the subset size used is returned too, and ``kid_std`` is None when both sets have
      that size (a single distinct subset);
    - ``cis``, ``cis_std``: :func:`~gannorm.metrics.inception_score.inception_score` of the fakes'
      softmax with ``splits`` (10) consecutive splits; with ``shuffle`` (default) the rows are first put
      in the fixed order ``numpy.random.default_rng(kid_seed).permutation(n_fake)``, so inputs sorted by
      class (mnist5k is) do not make every split one class (and the score ~1). At most 10 for ten
      classes; small splits bias it down (e.g. 36 images per split).

    Returns a dict with those keys plus ``n_fake``, ``n_real`` and ``kid_subset_size``.
    """
    f_fake, p_fake = classifier.features_and_probs(fake_images, batch_size)
    f_real = classifier.features(real_images, batch_size)
    n_fake, n_real = f_fake.shape[0], f_real.shape[0]
    fd = frechet_distance(*feature_statistics(f_fake), *feature_statistics(f_real))
    subset = min(KID_MAX_SUBSET, n_fake, n_real)
    kid, kid_std = kernel_inception_distance(f_fake, f_real, subsets=kid_subsets, subset_size=subset, seed=kid_seed)
    if shuffle:
        p_fake = p_fake[torch.from_numpy(np.random.default_rng(kid_seed).permutation(n_fake))]
    cis, cis_std = inception_score(p_fake, splits=splits)
    return {"fd": fd, "kid": kid, "kid_std": kid_std, "cis": cis, "cis_std": cis_std,
            "n_fake": int(n_fake), "n_real": int(n_real), "kid_subset_size": int(subset)}
