"""The report's tables, as typed :class:`Table` records of formatted cells (HTML and text render them).

Every number comes from :mod:`gannorm.stability`; this module only groups runs, calls it, and formats.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from ...errors import GannormError
from ...stability import (Paired, SuccessRule, Summary, best_or_within_noise, compare_paired, differs,
                          paired_values, smallest_wilcoxon_p, success_rule, summarize)
from ..sweep.results import RunRow, SweepResults
from .groups import DONE, Cell, Groups, cell_label, keyed, variants

NONE = "-"
CONFIDENCE = 0.95
N_BOOT = 10_000
ALPHA = 0.05


@dataclass(frozen=True)
class Table:
    """A table of formatted cells: ``id`` names it in the page, ``note`` says how to read it."""
    id: str
    title: str
    header: list[str]
    rows: list[list[str]]
    note: str = ""
    numeric: list[bool] = field(default_factory=list)     # right-align these columns


def num(v: float | None) -> str:
    return NONE if v is None else f"{v:.4g}"


def pair(v: tuple[float, float] | None) -> str:
    return NONE if v is None else f"[{v[0]:.4g}, {v[1]:.4g}]"


def rule_of(results: SweepResults) -> SuccessRule:
    try:
        return success_rule(results.success, results.lower_is_better)
    except ValueError as err:
        raise GannormError(f"sweep {results.name}: success: {err}") from None


# ----------------------------------------------------------------------------------- stability
def summaries(results: SweepResults, groups: Groups) -> list[tuple[str, str, Summary]]:
    """``(variant, cell label, Summary)`` for every (variant, cell) with a done run, in sweep order."""
    rule = rule_of(results)
    out = []
    for variant in variants(results):
        for cell in groups.cells:
            vals = groups.of(variant, cell)
            if vals:
                s = summarize(list(vals.values()), success=rule, lower_is_better=results.lower_is_better,
                              confidence=CONFIDENCE, n_boot=N_BOOT)
                out.append((variant, cell_label(results, cell), s))
    return out


def stability_table(results: SweepResults, groups: Groups) -> Table:
    header = ["variant", "cell", "runs", "success (95% Wilson)", "median", "mean ± std", "IQR [q1, q3]",
              "mean 95% CI (bootstrap)", "best"]
    rows = [[v, c, str(s.n), _success(s), num(s.median), _mean_std(s), pair(s.iqr), pair(s.mean_ci), num(s.best)]
            for v, c, s in summaries(results, groups)]
    note = (f"{results.metric}, {'lower' if results.lower_is_better else 'higher'} is better. Success: "
            f"{rule_of(results)}. A diverged or failed run counts as a run and a failure; the metric statistics "
            "are over the runs that finished.")
    return Table("stability", "Stability over seeds", header, rows, note, [False, False] + [True] * 7)


def _success(s: Summary) -> str:
    lo, hi = s.success_ci
    return f"{s.successes}/{s.n} = {100 * s.success_rate:.0f}% [{100 * lo:.0f}%, {100 * hi:.0f}%]"


def _mean_std(s: Summary) -> str:
    if s.mean is None:
        return NONE
    return num(s.mean) if s.std is None else f"{s.mean:.4g} ± {s.std:.3g}"


# ----------------------------------------------------------------------------------- comparisons
def comparisons(results: SweepResults, groups: Groups) -> list[tuple[str, str, Paired]]:
    """Each pair of variants, compared over the runs with the same (cell, seed)."""
    keyed_values = {v: keyed(results, groups, v) for v in variants(results)}
    return [(a, b, compare_paired(*paired_values(keyed_values[a], keyed_values[b]), confidence=CONFIDENCE,
                                  n_boot=N_BOOT))
            for a, b in itertools.combinations(variants(results), 2)]


def verdict(results: SweepResults, a: str, b: str, p: Paired) -> str:
    if differs(p, ALPHA):
        assert p.mean_diff is not None  # differs: there is a difference
        a_better = (p.mean_diff < 0) == results.lower_is_better
        return f"larger than seed noise: {a if a_better else b} is better"
    if p.p_value is None:
        return "within seed noise (too few pairs to tell)"
    floor = smallest_wilcoxon_p(p.n_pairs)
    if floor >= ALPHA:  # no outcome of these pairs could differ: say so rather than call it noise
        return f"cannot tell: {p.n_pairs} pairs give no Wilcoxon p below {floor:.3g}"
    return "within seed noise"


def paired_table(results: SweepResults, groups: Groups) -> Table:
    header = ["A", "B", "pairs", "mean A − B", "95% CI (bootstrap)", "Wilcoxon p", "verdict"]
    rows = [[a, b, str(p.n_pairs), num(p.mean_diff), pair(p.diff_ci), num(p.p_value), verdict(results, a, b, p)]
            for a, b, p in comparisons(results, groups)]
    note = (f"Runs paired by grid cell and seed; pairs where either run has no final metric are dropped. "
            f"\"Larger than seed noise\" means the two-sided Wilcoxon signed-rank p < {ALPHA} and the bootstrap "
            "interval of the mean difference excludes 0. Fewer than 6 pairs can never reach p < 0.05.")
    return Table("paired", "Paired comparisons", header, rows, note, [False, False, True, True, True, True, False])


def seed_aligned(results: SweepResults, groups: Groups) -> dict[Cell, dict[str, list[float]]]:
    """``{cell: {variant: [metric per seed]}}``, every list over the cell's seeds in order (NaN where a
    variant has no done run for a seed), as :func:`~gannorm.stability.best_or_within_noise` takes them."""
    out = {}
    for cell in groups.cells:
        present = [v for v in variants(results) if groups.of(v, cell)]
        seeds = sorted({s for v in present for s in groups.of(v, cell)})
        if present:
            out[cell] = {v: [groups.of(v, cell).get(s, float("nan")) for s in seeds] for v in present}
    return out


def noise_table(results: SweepResults, groups: Groups) -> Table:
    cells = seed_aligned(results, groups)
    counts = best_or_within_noise(cells, lower_is_better=results.lower_is_better, alpha=ALPHA,
                                  confidence=CONFIDENCE, n_boot=N_BOOT)
    rows = [[v, f"{c.n_best} / {c.n_cells}", f"{c.n_within_noise} / {c.n_cells}"]
            for v in variants(results) if (c := counts.get(v))]
    note = ("In each grid cell the best variant has the best median; a variant is within noise of the best "
            "when its paired comparison with the best over that cell's seeds is not larger than seed noise "
            "(a variant with no finished run in a cell is not).")
    return Table("noise", "Best or within noise of the best, over grid cells",
                 ["variant", "best in", "best or within noise in"], rows, note, [False, True, True])


# ----------------------------------------------------------------------------------- failures, health
def failure_table(results: SweepResults, groups: Groups) -> Table:
    header = ["variant", "cell", "runs", "finished", "diverged", "failed", "not done", "errors"]
    rows = [_failure_row(results, variant, cell, runs) for variant in variants(results) for cell in groups.cells
            if (runs := groups.runs.get((variant, cell)))]
    return Table("failures", "Divergences and failures", header, rows,
                 "\"Not done\": pending or running when the report was made; left out of every statistic.",
                 [False, False, True, True, True, True, True, False])


def _failure_row(results: SweepResults, variant: str, cell: Cell, runs: list[RunRow]) -> list[str]:
    count = {s: sum(r.status == s for r in runs) for s in DONE}
    errors = list(dict.fromkeys(_short(r.error) for r in runs if r.error))
    shown = "; ".join(errors[:3]) + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else "")
    return [variant, cell_label(results, cell), str(len(runs)), str(count["finished"]), str(count["diverged"]),
            str(count["failed"]), str(len(runs) - sum(count.values())), shown]


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class _RuleCount:
    """One health rule's warnings in one variant's runs."""
    runs: set[str] = field(default_factory=set)
    warnings: int = 0
    first_step: int | None = None
    first_message: str = ""

    def add(self, run_id: str, warning: dict) -> None:
        self.runs.add(run_id)
        self.warnings += 1
        step = warning.get("step")
        if not self.first_message or (step is not None and (self.first_step is None or step < self.first_step)):
            self.first_step, self.first_message = step, _message(warning)


def health_table(results: SweepResults) -> Table:
    """Health warnings, one row per (variant, rule): how many runs raised it, how often, first step, a message."""
    by_run = {r.run_id: r for r in results.runs}
    counts: dict[tuple[str, str], _RuleCount] = {}
    for run_id, warnings in results.health.items():
        variant = by_run[run_id].variant if run_id in by_run else f"(unknown run {run_id})"
        for w in warnings:
            counts.setdefault((variant, str(w.get("rule", "?"))), _RuleCount()).add(run_id, w)
    rows = [[v, rule, str(len(c.runs)), str(c.warnings), NONE if c.first_step is None else str(c.first_step),
             c.first_message] for (v, rule), c in counts.items()]
    return Table("health", "Health warnings", ["variant", "rule", "runs", "warnings", "first step", "first message"],
                 rows, "The diagnostics' health rules, counted over every run of the sweep.",
                 [False, False, True, True, True, False])


def _message(w: dict) -> str:
    layer = w.get("layer")
    return _short(f"{layer}: {w.get('message', '')}" if layer else str(w.get("message", "")))


def damaged_table(results: SweepResults) -> Table:
    """The runs whose folders have unreadable records, one row per variant: how many of its runs, which, what
    was unreadable and what status was recovered (``damaged``: unknown, left out of every statistic)."""
    rows = []
    for variant in variants(results):
        runs = [r for r in results.runs if r.variant == variant]
        bad = [r for r in runs if r.damaged is not None]
        if bad:
            rows.append([variant, f"{len(bad)} of {len(runs)}", "; ".join(f"{r.run_id} ({r.status}: {r.damaged})"
                                                                          for r in bad)])
    note = ("Run folders with unreadable records (e.g. an empty status.json). A run whose checkpoint is at "
            "train.steps with its final evaluation is recovered as finished and counted; a run whose end cannot "
            "be told is 'damaged' and left out of every statistic. Run the sweep again to resume those runs.")
    return Table("damaged", "Damaged run folders", ["variant", "runs damaged", "which (status: what)"], rows, note,
                 [False, True, False])


def damaged_lines(results: SweepResults) -> list[str]:
    """The damaged runs per variant as plain-text lines (none when no run is damaged)."""
    table = damaged_table(results)
    return [f"damaged run folders in {v}: {n} ({which})" for v, n, which in table.rows]


def all_tables(results: SweepResults, groups: Groups) -> list[Table]:
    """Every table of the page; the damaged run folders' only when there are some."""
    damaged = damaged_table(results)
    return [stability_table(results, groups), paired_table(results, groups), noise_table(results, groups),
            failure_table(results, groups), *([damaged] if damaged.rows else []), health_table(results)]


def text_table(table: Table) -> str:
    """``table`` as aligned plain text (numbers right-aligned), for the terminal."""
    widths = [max(len(r[i]) for r in [table.header, *table.rows]) for i in range(len(table.header))]
    right = table.numeric or [False] * len(widths)

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)).rstrip()
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(table.header), rule, *(line(r) for r in table.rows)])
