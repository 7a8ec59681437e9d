"""How stable is a training recipe across seeds? Statistics for seeded sweeps, as pure functions.

A sweep trains each variant (a normalization, a recipe) on every grid cell (a learning rate, a
penalty weight, ...) with several seeds, and ends each run with one number, its final metric. A run
that diverged or failed has no final metric: it is NaN here. The functions below turn those numbers
into evidence: how often a recipe succeeds (:func:`wilson_interval`), how its metric spreads over
seeds (:func:`summarize`, :func:`bootstrap_mean_ci`), whether two recipes differ by more than seed
noise (:func:`compare_paired`, :func:`differs`), and in how many grid cells a recipe is the best or
within seed noise of the best (:func:`best_or_within_noise`).

Everything is float64 and deterministic: the bootstrap draws from ``numpy.random.default_rng(seed)``.
Only numpy, the standard library and (for the Wilcoxon test) SciPy are used, so the module can be used
on any table of numbers, with or without the rest of gannorm.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Callable, Hashable, Mapping, NamedTuple, Sequence, TypeVar

import numpy as np

_K = TypeVar("_K", bound=Hashable)  # a key of a {(cell, seed): value} or {cell: ...} map

__all__ = ["NoiseCount", "Paired", "SuccessRule", "Summary", "best_or_within_noise", "bootstrap_mean_ci",
           "compare_paired", "differs", "success_rule", "summarize", "wilson_interval"]

#: the bootstrap draws at most this many indices at once (memory bound for long value lists)
_BOOT_CHUNK = 1 << 24


def _z(confidence: float) -> float:
    """The two-sided standard normal quantile for ``confidence`` (1.96 for 0.95)."""
    _check_confidence(confidence)
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}; use e.g. 0.95")


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a success rate of ``k`` successes in ``n`` runs.

    Closed form, with ``z`` the two-sided normal quantile and ``p = k / n``::

        centre = (p + z^2 / 2n) / (1 + z^2 / n)
        half   = z * sqrt(p (1 - p) / n + z^2 / 4n^2) / (1 + z^2 / n)

    Unlike the normal ("Wald") interval it stays inside [0, 1] and is not empty at ``k = 0`` or
    ``k = n``, which is where a few seeds usually are: 0 of 4 runs succeeding gives (0, 0.49).

    Args:
        k: successes.
        n: runs (>= 1).
        confidence: the interval's level, in (0, 1).

    Returns:
        ``(low, high)``.

    Example::

        >>> [round(v, 2) for v in wilson_interval(0, 4)]
        [0.0, 0.49]
    """
    if not (isinstance(n, (int, np.integer)) and isinstance(k, (int, np.integer))):
        raise ValueError(f"k and n must be integers (counts of runs), got k={k!r}, n={n!r}")
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n and n >= 1 (k successes of n runs), got k={k}, n={n}")
    z = _z(confidence)
    p = k / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def _as_finite(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{what}: no values; pass at least one number")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what}: the values contain NaN or inf; drop the runs without a final metric first")
    return x


def bootstrap_mean_ci(values: Sequence[float] | np.ndarray, confidence: float = 0.95, n_boot: int = 10_000,
                      seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap confidence interval of the mean of ``values`` (finite numbers).

    ``n_boot`` resamples of ``len(values)`` indices are drawn with replacement from
    ``numpy.random.default_rng(seed)`` (one ``integers`` call per chunk of rows), each resample's mean is
    taken, and the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of
    those means (linear interpolation). This is ``scipy.stats.bootstrap(..., method="percentile")``
    computed with plain numpy. One value gives the degenerate interval ``(v, v)``.

    Args:
        values: finite numbers.
        confidence: the interval's level.
        n_boot: the number of resamples.
        seed: the seed of the resamples.

    Returns:
        ``(low, high)``.

    Example::

        >>> bootstrap_mean_ci([1.0, 2.0, 3.0, 4.0], n_boot=200), bootstrap_mean_ci([2.0])
        ((1.5, 3.5), (2.0, 2.0))
    """
    _check_confidence(confidence)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}; use e.g. 10_000")
    x = _as_finite(values, "bootstrap_mean_ci")
    rng = np.random.default_rng(seed)
    rows = max(1, _BOOT_CHUNK // x.size)
    means = np.concatenate([x[rng.integers(0, x.size, size=(min(rows, n_boot - start), x.size))].mean(axis=1)
                            for start in range(0, n_boot, rows)])
    alpha = 1.0 - confidence
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


# ----------------------------------------------------------------------------------- one variant's runs
@dataclass(frozen=True)
class SuccessRule:
    """What counts as a successful run: a finite final metric, within the bounds that are set."""
    max: float | None = None
    min: float | None = None

    def __call__(self, value: float) -> bool:
        return (math.isfinite(value) and (self.max is None or value <= self.max)
                and (self.min is None or value >= self.min))

    def __str__(self) -> str:
        bounds = [f"<= {self.max:g}" if self.max is not None else "",
                  f">= {self.min:g}" if self.min is not None else ""]
        return "finished with a finite metric" + "".join(f", {b}" for b in bounds if b)


def success_rule(spec: Mapping[str, float] | None, lower_is_better: bool) -> SuccessRule:
    """The success test described by ``spec``: ``{"max": x}`` (metric <= x), ``{"min": x}`` (metric >= x),
    both (a band), or ``{}``/None.

    The default, with no bound, is "the run finished with a finite final metric": a run succeeds unless
    it diverged or failed. A single bound on the wrong side of the metric's direction (only ``min`` for
    a lower-is-better metric such as FID, only ``max`` for a higher-is-better one) would count worse runs
    as successes; it is refused as a likely mistake.

    Args:
        spec: ``{"max": x}``, ``{"min": x}``, both, or ``{}``/None.
        lower_is_better: the metric's direction.

    Returns:
        a :class:`SuccessRule`, ``rule(value) -> bool`` (``str(rule)`` describes it).

    Example::

        >>> rule = success_rule({"max": 30.0}, lower_is_better=True)
        >>> rule(25.0), rule(31.0), str(rule)
        (True, False, 'finished with a finite metric, <= 30')
    """
    spec = dict(spec or {})
    unknown = sorted(set(spec) - {"max", "min"})
    if unknown:
        raise ValueError(f"unknown success bound(s) {unknown}; use {{'max': x}}, {{'min': x}} or both")
    bounds = {k: float(v) for k, v in spec.items()}
    if not all(math.isfinite(v) for v in bounds.values()):
        raise ValueError(f"success bounds must be finite numbers, got {spec}")
    if "max" in bounds and "min" in bounds and bounds["min"] > bounds["max"]:
        raise ValueError(f"success bounds {spec} are empty (min > max); swap them")
    wrong = "min" if lower_is_better else "max"
    if set(bounds) == {wrong}:
        good = "max" if lower_is_better else "min"
        raise ValueError(f"success {spec} on a {'lower' if lower_is_better else 'higher'}-is-better metric counts "
                         f"worse runs as successes; use {{'{good}': {bounds[wrong]:g}}}")
    return SuccessRule(max=bounds.get("max"), min=bounds.get("min"))


@dataclass(frozen=True)
class Summary:
    """The runs of one variant (in one grid cell): how often they succeed and how their metric spreads.

    ``n`` counts every run; ``n_finished`` those with a finite metric. ``success_rate`` is
    ``successes / n`` with its Wilson interval ``success_ci``. The metric statistics are over the
    finite values: None when there are none; ``std`` (sample, ddof=1) and ``mean_ci`` (bootstrap) need
    two. ``iqr`` is the pair of quartiles ``(q1, q3)``; ``best`` the minimum (or maximum when higher is
    better).
    """
    n: int
    n_finished: int
    successes: int
    success_rate: float
    success_ci: tuple[float, float]
    median: float | None
    mean: float | None
    std: float | None
    iqr: tuple[float, float] | None
    mean_ci: tuple[float, float] | None
    best: float | None


def summarize(values: Sequence[float], *, success: Callable[[float], bool] | None = None,
              lower_is_better: bool = True, confidence: float = 0.95, n_boot: int = 10_000,
              seed: int = 0) -> Summary:
    """Summarize the final metrics of a set of runs; NaN (or inf) is a run without a final metric.

    A non-finite value counts as a run and as a failure (``success`` is not asked about it). ``success``
    decides about the finite values; by default every finite value is a success (see
    :func:`success_rule`).

    Args:
        values: each run's final metric (NaN for a run without one).
        success: the success test (default: a finite value).
        lower_is_better: the metric's direction (which value is ``best``).
        confidence: the level of the intervals.
        n_boot: the number of bootstrap resamples.
        seed: the seed of the resamples.

    Returns:
        a :class:`Summary`.

    Example::

        >>> s = summarize([20.0, 25.0, float("nan"), 40.0], success=success_rule({"max": 30.0}, True), n_boot=200)
        >>> s.n, s.n_finished, s.successes, s.median, s.best
        (4, 3, 2, 25.0, 20.0)
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError("summarize: no runs; pass the final metric of at least one run (NaN for a failed one)")
    ok = x[np.isfinite(x)]
    rule = success if success is not None else SuccessRule()
    successes = sum(1 for v in ok if rule(float(v)))
    stats = _spread(ok, lower_is_better, confidence, n_boot, seed)
    return Summary(n=int(x.size), n_finished=int(ok.size), successes=successes, success_rate=successes / x.size,
                   success_ci=wilson_interval(successes, int(x.size), confidence), **stats)


def _spread(ok: np.ndarray, lower_is_better: bool, confidence: float, n_boot: int, seed: int) -> dict:
    """Median, mean, std, quartiles, bootstrap CI and best of finite values (None where undefined)."""
    if ok.size == 0:
        return dict(median=None, mean=None, std=None, iqr=None, mean_ci=None, best=None)
    q1, med, q3 = np.quantile(ok, [0.25, 0.5, 0.75])
    two = ok.size >= 2
    return dict(median=float(med), mean=float(ok.mean()), std=float(ok.std(ddof=1)) if two else None,
                iqr=(float(q1), float(q3)),
                mean_ci=bootstrap_mean_ci(ok, confidence, n_boot, seed) if two else None,
                best=float(ok.min() if lower_is_better else ok.max()))


# ----------------------------------------------------------------------------------- two variants
@dataclass(frozen=True)
class Paired:
    """A paired comparison ``a - b`` over runs with the same (cell, seed).

    ``mean_diff`` and its bootstrap interval ``diff_ci`` are over the pairs where both runs have a
    finite metric (None with no pair; ``diff_ci`` needs two). ``wilcoxon_statistic`` and ``p_value``
    come from the two-sided Wilcoxon signed-rank test; they are None when fewer than 2 differences are
    non-zero (the test drops zero differences and has nothing to rank).
    """
    n_pairs: int
    mean_diff: float | None
    diff_ci: tuple[float, float] | None
    wilcoxon_statistic: float | None
    p_value: float | None


def compare_paired(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95, n_boot: int = 10_000,
                   seed: int = 0) -> Paired:
    """Compare two variants run on the same seeds: ``a[i]`` and ``b[i]`` are the final metrics of the same
    (cell, seed); pairs where either is NaN (a diverged or failed run) are dropped.

    With n pairs the smallest two-sided Wilcoxon p-value is ``2 / 2**n``: fewer than 6 pairs can never
    reach p < 0.05.

    Args:
        a: the first variant's metrics, one per (cell, seed).
        b: the second variant's, aligned with ``a``.
        confidence: the level of the bootstrap interval of the mean difference ``a - b``.
        n_boot: the number of bootstrap resamples.
        seed: the seed of the resamples.

    Returns:
        a :class:`Paired`.

    Example::

        >>> p = compare_paired([1, 2, 3, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7, 8.5], n_boot=200)
        >>> p.n_pairs, p.p_value, round(p.mean_diff, 4)
        (7, 0.015625, -1.0714)
    """
    x, y = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"compare_paired: a has {x.size} values and b {y.size}; align them by (cell, seed)")
    keep = np.isfinite(x) & np.isfinite(y)
    d = x[keep] - y[keep]
    stat, p = _wilcoxon(d)
    return Paired(n_pairs=int(d.size), mean_diff=float(d.mean()) if d.size else None,
                  diff_ci=bootstrap_mean_ci(d, confidence, n_boot, seed) if d.size >= 2 else None,
                  wilcoxon_statistic=stat, p_value=p)


def smallest_wilcoxon_p(n_pairs: int) -> float:
    """The smallest two-sided p-value the exact Wilcoxon signed-rank test can give on ``n_pairs`` non-zero
    differences (all of one sign): ``2 / 2**n``, 1 for fewer than 2 pairs. Below 6 pairs it is at least
    0.0625, so no difference can be called larger than seed noise at ``alpha = 0.05``.

    Args:
        n_pairs: the number of pairs.

    Returns:
        the smallest p-value.

    Example::

        >>> smallest_wilcoxon_p(5), smallest_wilcoxon_p(6)
        (0.0625, 0.03125)
    """
    if n_pairs < 0:
        raise ValueError(f"smallest_wilcoxon_p: n_pairs must be >= 0, got {n_pairs}")
    return 1.0 if n_pairs < 2 else min(1.0, 2.0 / 2.0 ** n_pairs)


def _wilcoxon(d: np.ndarray) -> tuple[float | None, float | None]:
    if np.count_nonzero(d) < 2:
        return None, None
    from scipy.stats import wilcoxon
    res = wilcoxon(d, alternative="two-sided", zero_method="wilcox")
    return float(res.statistic), float(res.pvalue)


def differs(paired: Paired, alpha: float = 0.05) -> bool:
    """True when the difference is larger than seed noise: Wilcoxon ``p < alpha`` AND the bootstrap
    interval of the mean difference excludes 0. False when either is undefined (too few pairs).

    Args:
        paired: the comparison (:func:`compare_paired`).
        alpha: the test's level.

    Returns:
        whether the two variants differ by more than seed noise.

    Example::

        >>> differs(compare_paired([1, 2, 3, 4, 5, 6, 7], [2, 3, 4, 5, 6, 7, 8.5], n_boot=200))
        True
        >>> differs(compare_paired([1, 2, 3], [2, 3, 4], n_boot=200))   # 3 pairs: never below 0.05
        False
    """
    if paired.p_value is None or paired.diff_ci is None:
        return False
    lo, hi = paired.diff_ci
    return paired.p_value < alpha and (lo > 0 or hi < 0)


def paired_values(a: Mapping[_K, float], b: Mapping[_K, float]) -> tuple[list[float], list[float]]:
    """Align two ``{(cell, seed): metric}`` maps for :func:`compare_paired`: the keys both have, in ``a``'s
    order.

    Args:
        a: ``{(cell, seed): metric}`` of one variant.
        b: the same for the other.

    Returns:
        the two aligned lists.

    Example::

        >>> paired_values({("c", 0): 1.0, ("c", 1): 2.0}, {("c", 1): 5.0, ("c", 0): 4.0, ("c", 2): 1.0})
        ([1.0, 2.0], [4.0, 5.0])
    """
    keys = [k for k in a if k in b]
    return [a[k] for k in keys], [b[k] for k in keys]


# ----------------------------------------------------------------------------------- over grid cells
class NoiseCount(NamedTuple):
    """In how many of its ``n_cells`` grid cells a variant is the best, and best or within noise of it."""
    n_best: int
    n_within_noise: int
    n_cells: int


def best_or_within_noise(cells: Mapping[_K, Mapping[str, Sequence[float]]], *, lower_is_better: bool,
                         alpha: float = 0.05, confidence: float = 0.95, n_boot: int = 10_000,
                         seed: int = 0) -> dict[str, NoiseCount]:
    """Count, over grid cells, where each variant is the best or statistically tied with the best.

    ``cells`` maps a cell to ``{variant: [final metric per seed]}``, the lists aligned by seed (the
    same index is the same seed; NaN for a run without a final metric). In each cell:

    - the **best** variant is the one with the best median of its finite values (lowest when
      ``lower_is_better``; the first in the cell's order on a tie); a variant with no finite value
      cannot be best;
    - a variant is **within noise of the best** when it is the best, or when its paired comparison with
      the best over that cell's seeds (:func:`compare_paired`) does not :func:`differ <differs>`;
      a variant with no finite value in the cell is not within noise.

    This is the summary used to argue a normalization is "never much worse" across a hyperparameter
    grid. With few seeds per cell it is lenient: fewer than 6 seeds can never reach p < 0.05, so every
    finished variant is then within noise. Returns ``{variant: NoiseCount}`` in order of first
    appearance; ``n_cells`` counts the cells in which the variant appears.

    Args:
        cells: ``{cell: {variant: [final metric per seed]}}``.
        lower_is_better: the metric's direction.
        alpha: the level of the paired test.
        confidence: the level of the bootstrap interval.
        n_boot: the number of bootstrap resamples.
        seed: the seed of the resamples.

    Returns:
        ``{variant: NoiseCount}``.

    Example::

        >>> counts = best_or_within_noise({"lr=1e-4": {"sn": [20.0, 21.0, 22.0], "bssn": [19.0, 20.0, float("nan")]}},
        ...                               lower_is_better=True, n_boot=200)
        >>> counts["bssn"].n_best, counts["sn"].n_best, counts["sn"].n_within_noise
        (1, 0, 1)
    """
    counts: dict[str, list[int]] = {}
    for variants in cells.values():
        for name in variants:
            counts.setdefault(name, [0, 0, 0])[2] += 1
        best = _best_variant(variants, lower_is_better)
        if best is None:
            continue
        counts[best][0] += 1
        for name, values in variants.items():
            if not np.any(np.isfinite(np.asarray(values, dtype=np.float64))):
                continue
            paired = compare_paired(values, variants[best], confidence=confidence, n_boot=n_boot, seed=seed)
            if name == best or not differs(paired, alpha):
                counts[name][1] += 1
    return {name: NoiseCount(*c) for name, c in counts.items()}


def _best_variant(variants: Mapping[str, Sequence[float]], lower_is_better: bool) -> str | None:
    best, best_median = None, None
    for name, values in variants.items():
        x = np.asarray(values, dtype=np.float64)
        x = x[np.isfinite(x)]
        if x.size == 0:
            continue
        med = float(np.median(x))
        if best_median is None or (med < best_median if lower_is_better else med > best_median):
            best, best_median = name, med
    return best
