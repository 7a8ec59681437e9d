"""gannorm.stability: Wilson intervals, bootstrap CIs, summaries, paired comparisons, best-or-within-noise,
checked against hand computations, SciPy and numpy."""
import math

import numpy as np
import pytest
from scipy import stats

from gannorm.stability import (NoiseCount, Paired, Summary, best_or_within_noise, bootstrap_mean_ci,
                               compare_paired, differs, paired_values, smallest_wilcoxon_p, success_rule, summarize,
                               wilson_interval)

NAN = float("nan")


# ----------------------------------------------------------------------------------- Wilson
def test_wilson_by_hand():
    # k=3, n=4, z=1.959964: p=0.75, z^2=3.841459; denom=1+z^2/4=1.960365
    # centre=(0.75+3.841459/8)/denom=0.627527; half=z*sqrt(0.75*0.25/4+3.841459/64)/denom=0.326885
    lo, hi = wilson_interval(3, 4)
    assert lo == pytest.approx(0.627527 - 0.326885, abs=2e-6)
    assert hi == pytest.approx(0.627527 + 0.326885, abs=2e-6)


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 4), (1, 4), (2, 4), (4, 4), (7, 20), (19, 20), (50, 137)])
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_matches_scipy(k, n, confidence):
    ref = stats.binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    lo, hi = wilson_interval(k, n, confidence)
    assert lo == pytest.approx(ref.low, abs=1e-12)
    assert hi == pytest.approx(ref.high, abs=1e-12)
    assert 0.0 <= lo <= k / n <= hi <= 1.0


@pytest.mark.parametrize("args", [(5, 4), (-1, 4), (0, 0), (1.5, 4)])
def test_wilson_bad_counts(args):
    with pytest.raises(ValueError, match="k"):
        wilson_interval(*args)


def test_wilson_bad_confidence():
    with pytest.raises(ValueError, match="confidence"):
        wilson_interval(1, 2, confidence=95)


# ----------------------------------------------------------------------------------- bootstrap
@pytest.mark.parametrize("n,seed", [(3, 0), (12, 1), (40, 7)])
def test_bootstrap_matches_scipy_percentile(n, seed):
    x = np.random.default_rng(100 + n).lognormal(size=n)
    lo, hi = bootstrap_mean_ci(x, confidence=0.9, n_boot=4000, seed=seed)
    ref = stats.bootstrap((x,), np.mean, n_resamples=4000, method="percentile", confidence_level=0.9,
                          rng=np.random.default_rng(seed)).confidence_interval
    # the same draws give the same interval; a different stream would be within Monte-Carlo error
    spread = x.std() / math.sqrt(n)
    assert lo == pytest.approx(ref.low, abs=0.05 * spread)
    assert hi == pytest.approx(ref.high, abs=0.05 * spread)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    x = [1.0, 2.0, 4.0, 8.0, 3.0]
    assert bootstrap_mean_ci(x, seed=3) == bootstrap_mean_ci(x, seed=3)
    assert bootstrap_mean_ci(x, seed=3) != bootstrap_mean_ci(x, seed=4)
    lo, hi = bootstrap_mean_ci(x)
    assert min(x) <= lo < np.mean(x) < hi <= max(x)
    assert bootstrap_mean_ci([2.5]) == (2.5, 2.5)


def test_bootstrap_chunks_like_one_draw(monkeypatch):
    """Chunking the resamples (for long inputs) changes nothing but the memory used."""
    import gannorm.stability as s
    x = np.arange(10.0)
    whole = bootstrap_mean_ci(x, n_boot=1000, seed=2)
    monkeypatch.setattr(s, "_BOOT_CHUNK", 10 * 64)      # 64 rows per chunk
    chunked = bootstrap_mean_ci(x, n_boot=1000, seed=2)
    assert chunked[0] == pytest.approx(whole[0], abs=0.15) and chunked[1] == pytest.approx(whole[1], abs=0.15)


def test_bootstrap_coverage():
    """Over many normal samples the 90% interval holds the true mean roughly 90% of the time (the
    percentile bootstrap undercovers a little for n=20)."""
    rng = np.random.default_rng(0)
    hits = 0
    for i in range(300):
        lo, hi = bootstrap_mean_ci(rng.normal(5.0, 2.0, size=20), confidence=0.9, n_boot=1000, seed=i)
        hits += lo <= 5.0 <= hi
    assert 0.82 <= hits / 300 <= 0.96


@pytest.mark.parametrize("values,match", [([], "no values"), ([1.0, NAN], "NaN"), ([1.0, math.inf], "NaN")])
def test_bootstrap_bad_input(values, match):
    with pytest.raises(ValueError, match=match):
        bootstrap_mean_ci(values)


# ----------------------------------------------------------------------------------- summarize
def test_summary_against_numpy():
    values = [3.0, NAN, 1.0, 7.0, 2.0, math.inf]
    s = summarize(values, success=success_rule({"max": 2.5}, lower_is_better=True))
    finite = np.array([3.0, 1.0, 7.0, 2.0])
    assert isinstance(s, Summary)
    assert (s.n, s.n_finished, s.successes) == (6, 4, 2)
    assert s.success_rate == pytest.approx(2 / 6)
    assert s.success_ci == wilson_interval(2, 6)
    assert s.median == pytest.approx(np.median(finite))
    assert s.mean == pytest.approx(finite.mean())
    assert s.std == pytest.approx(np.std(finite, ddof=1))
    assert s.iqr == pytest.approx((np.percentile(finite, 25), np.percentile(finite, 75)))
    assert s.mean_ci == bootstrap_mean_ci(finite)
    assert s.best == 1.0
    assert summarize(values, lower_is_better=False).best == 7.0


def test_summary_default_success_is_finished():
    s = summarize([1.0, NAN, 5.0])
    assert (s.successes, s.n_finished, s.n) == (2, 2, 3)


def test_summary_of_all_failed_and_single_runs():
    s = summarize([NAN, NAN])
    assert (s.n, s.n_finished, s.successes, s.success_rate) == (2, 0, 0, 0.0)
    assert s.median is s.mean is s.std is s.iqr is s.mean_ci is s.best is None
    one = summarize([4.0])
    assert one.median == one.mean == one.best == 4.0 and one.std is None and one.mean_ci is None
    with pytest.raises(ValueError, match="no runs"):
        summarize([])


def test_summary_is_frozen():
    s = summarize([1.0, 2.0])
    with pytest.raises(AttributeError):
        s.n = 3


# ----------------------------------------------------------------------------------- success rules
def test_success_rules():
    assert success_rule({}, True)(3.0) and not success_rule({}, True)(NAN)
    below = success_rule({"max": 10}, lower_is_better=True)
    assert below(10.0) and below(-1.0) and not below(10.5) and not below(NAN)
    above = success_rule({"min": 8}, lower_is_better=False)
    assert above(8.0) and not above(7.9)
    band = success_rule({"min": 1, "max": 2}, lower_is_better=True)
    assert band(1.5) and not band(0.5) and not band(2.5)
    assert "<= 10" in str(below) and str(success_rule(None, True)) == "finished with a finite metric"


@pytest.mark.parametrize("spec,lower,match", [
    ({"below": 3}, True, "unknown"), ({"min": 3}, True, "use {'max': 3}"), ({"max": 3}, False, "use {'min': 3}"),
    ({"min": 3, "max": 1}, True, "empty"), ({"max": NAN}, True, "finite")])
def test_success_rule_errors(spec, lower, match):
    with pytest.raises(ValueError, match=match):
        success_rule(spec, lower)


# ----------------------------------------------------------------------------------- paired
def test_compare_paired_against_scipy():
    rng = np.random.default_rng(1)
    b = rng.normal(10, 1, size=12)
    a = b + 0.8 + rng.normal(0, 0.3, size=12)
    a[3] = NAN                                       # a diverged run: its pair is dropped
    b[7] = NAN
    p = compare_paired(a, b, n_boot=2000, seed=5)
    keep = np.isfinite(a) & np.isfinite(b)
    d = a[keep] - b[keep]
    ref = stats.wilcoxon(a[keep], b[keep])
    assert isinstance(p, Paired) and p.n_pairs == 10
    assert p.mean_diff == pytest.approx(d.mean())
    assert p.wilcoxon_statistic == ref.statistic and p.p_value == pytest.approx(ref.pvalue)
    assert p.diff_ci == bootstrap_mean_ci(d, n_boot=2000, seed=5)
    assert differs(p) and p.diff_ci[0] > 0


def test_noise_does_not_differ():
    rng = np.random.default_rng(2)
    b = rng.normal(10, 1, size=10)
    a = b + rng.normal(0, 1, size=10)
    p = compare_paired(a, b)
    assert p.p_value > 0.05 and not differs(p)


def test_differs_needs_both_p_and_interval():
    assert not differs(Paired(8, 1.0, (0.5, 1.5), 0.0, 0.2))           # p too large
    assert not differs(Paired(8, 1.0, (-0.1, 1.5), 0.0, 0.01))         # CI holds 0
    assert differs(Paired(8, -1.0, (-1.5, -0.5), 0.0, 0.01))
    assert not differs(Paired(1, 1.0, None, None, None))


def test_compare_paired_with_too_few_differences():
    p = compare_paired([1.0, 2.0, 3.0], [1.0, 2.0, 2.5])               # one non-zero difference
    assert p.n_pairs == 3 and p.p_value is None and p.wilcoxon_statistic is None and not differs(p)
    assert p.mean_diff == pytest.approx(0.5 / 3)
    empty = compare_paired([NAN], [1.0])
    assert empty.n_pairs == 0 and empty.mean_diff is None and empty.diff_ci is None
    with pytest.raises(ValueError, match="align"):
        compare_paired([1.0, 2.0], [1.0])


def test_five_pairs_can_never_differ():
    """The smallest two-sided p with n pairs is 2 / 2**n: 0.0625 for 5 pairs, as documented."""
    p = compare_paired([10.0, 11, 12, 13, 14], [0.0, 0, 0, 0, 0])
    assert p.p_value == pytest.approx(2 / 2 ** 5) and not differs(p)
    assert compare_paired([10.0, 11, 12, 13, 14, 15], [0.0] * 6).p_value == pytest.approx(2 / 2 ** 6)


def test_paired_values_aligns_by_key():
    a = {("lr=1", 0): 1.0, ("lr=1", 1): 2.0, ("lr=2", 0): 3.0}
    b = {("lr=2", 0): 30.0, ("lr=1", 0): 10.0}
    assert paired_values(a, b) == ([1.0, 3.0], [10.0, 30.0])


# ----------------------------------------------------------------------------------- over cells
def test_best_or_within_noise():
    seeds = np.arange(8.0)
    cells = {
        "lr=1e-4": {"sn": 10 + seeds * 0.1, "bssn": 5 + seeds * 0.1, "gn": 5.05 + seeds * 0.1 + [0, .01] * 4},
        "lr=1e-3": {"sn": 4 + seeds * 0.1, "bssn": 9 + seeds * 0.1, "gn": [NAN] * 8},
    }
    out = best_or_within_noise(cells, lower_is_better=True)
    assert out == {"sn": NoiseCount(1, 1, 2), "bssn": NoiseCount(1, 1, 2), "gn": NoiseCount(0, 0, 2)}
    # gn is 0.05 worse than bssn in every seed: a consistent difference, so it differs. With noise it is tied:
    noisy = dict(cells["lr=1e-4"], gn=5 + seeds * 0.1 + np.random.default_rng(0).normal(0, 1, size=8))
    tied = best_or_within_noise({"c": noisy}, lower_is_better=True)
    assert tied["gn"].n_within_noise == 1 and tied["sn"].n_within_noise == 0
    # higher is better flips the winner
    flipped = best_or_within_noise(cells, lower_is_better=False)
    assert flipped["sn"].n_best == 1 and flipped["bssn"].n_best == 1
    assert best_or_within_noise({"a": {"x": [1.0]}}, lower_is_better=True)["x"] == (1, 1, 1)


@pytest.mark.parametrize("n", range(2, 12))
def test_smallest_wilcoxon_p_is_scipys_exact_p_for_one_sign(n):
    """All n differences of one sign (distinct magnitudes): scipy's exact test gives the smallest p there is,
    and no other sign pattern of the same magnitudes gives a smaller one."""
    from scipy.stats import wilcoxon
    d = np.arange(1.0, n + 1)
    assert smallest_wilcoxon_p(n) == pytest.approx(wilcoxon(d, method="exact").pvalue, rel=1e-12)
    flipped = d.copy()
    flipped[0] = -1.0
    assert wilcoxon(flipped, method="exact").pvalue > smallest_wilcoxon_p(n)
    assert (smallest_wilcoxon_p(n) < 0.05) == (n >= 6)


def test_smallest_wilcoxon_p_edges():
    assert smallest_wilcoxon_p(0) == smallest_wilcoxon_p(1) == 1.0
    with pytest.raises(ValueError, match="n_pairs"):
        smallest_wilcoxon_p(-1)
