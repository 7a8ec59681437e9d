"""``gannorm experiment NAME``: the paper's evidence regenerated at CPU scale, each a preset plus a figure.

An experiment is a comparison preset ``configs/experiment_<name>.yaml`` (a base config and its
``variants:``) and a report function that reads the variants' run folders and writes the figure(s) and
a ``summary.md`` into the experiment folder ``<out>/experiment-<name>[-N]/``:

``gradients``  per-layer gradient norms at initialisation and over training of the SNGAN CNN D with no
               normalization (official and LeCun init), SN, strict SN and BSSN;
``variance``   the effective weight variance ratio ``fan_in * Var(W_eff)`` per layer over training, SN
               against plain LeCun initialisation;
``scale``      classifier Frechet distance against the scale c of SSN and BSSN;
``mean_drift`` each layer's output channel means against their spread (mean drift) and the sparsity of
               the weight gradients over training, with no normalization, SN and MSN.
"""
from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence, cast

from ..config import from_dict, load_variants
from ..data import load_dataset
from ..diagnostics.probes import SPARSITY_TAU, layers
from ..diagnostics.records import ProbeRecord
from ..errors import ConfigError
from ..fileio import atomic_write_text, claim_dir, safe_path
from ..networks import build_discriminator
from ..normalizations.mean_sn import MeanOnlyBatchNorm
from ..registry import Registry
from ..runfolder import RunRecords
from .analysis import SUMMARY
from .analysis.figures import new_figure, save_png
from .analysis.reading import load_run
from .analysis.series import Series, finite, gradient_ratio, layer_names, layer_series, metric_series
from .training import train

#: ``report(folder, runs) -> (figures, Markdown)``: the experiment's figures and summary from its runs
Report = Callable[[Path, dict[str, RunRecords]], tuple[list[Path], str]]


@dataclass(frozen=True)
class Experiment:
    """An experiment: its report (the preset is ``experiment_<name>``) and a one-line description."""
    report: Report
    description: str


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


@dataclass
class ExperimentResult:
    folder: Path
    runs: dict[str, RunRecords] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    summary: str = ""
    seconds: float = 0.0

    def unfinished(self) -> list[str]:
        """The variants whose run did not finish (interrupted, diverged)."""
        return [v for v, run in self.runs.items() if run.status is not None and run.status.status != "finished"]


def _check_request(name: str, variants: dict[str, list[str]], overrides: Sequence[str], only: Sequence[str]) -> None:
    for o in overrides:
        key = o.split("=", 1)[0].strip()
        if key in ("train.out_dir", "train.run_name"):
            raise ConfigError(f"{key} is set by the experiment; use --out DIR for where it goes")
    unknown = [v for v in only if v not in variants]
    if unknown:
        raise ConfigError(f"unknown variant(s) {', '.join(unknown)} of experiment {name}; "
                          f"known: {', '.join(variants)}")


def run_experiment(name: str, overrides: Sequence[str] = (), out_dir: str | Path = "runs",
                   only: Sequence[str] = ()) -> ExperimentResult:
    """Train every variant of ``experiment_<name>`` (or those in ``only``), then write its report."""
    experiment = EXPERIMENTS.get(name)
    preset = f"experiment_{name}"
    variants = load_variants(preset)
    _check_request(name, variants, overrides, only)
    folder = claim_dir(safe_path(out_dir, "--out"), f"experiment-{name}")
    start = time.perf_counter()
    runs: dict[str, RunRecords] = {}
    for variant, extra in variants.items():
        if only and variant not in only:
            continue
        print(f"== experiment {name}: variant {variant}: {' '.join(extra) or '(base config)'}", file=sys.stderr)
        result = train(preset, [*extra, *overrides, f"train.out_dir={folder}", f"train.run_name={variant}"])
        runs[variant] = load_run(result.run_dir)
    figures, summary = experiment.report(folder, runs)
    seconds = time.perf_counter() - start
    summary += f"\nWall time: {seconds:.0f} s for {len(runs)} runs.\n"
    atomic_write_text(folder / SUMMARY, summary)
    return ExperimentResult(folder, runs, figures, summary, seconds)


# ------------------------------------------------------------------------------------------ helpers
def _layer_value(record: ProbeRecord, layer: str, key: str) -> float | None:
    entry = record.layers.get(layer)
    return None if entry is None else entry.value(key)


def _positive(series: Series) -> Series:
    """The points of a series with a value > 0 (log axes; a saturated hinge loss gives exact zeros)."""
    kept = [(s, v) for s, v in zip(*series) if v > 0]
    return [s for s, _ in kept], [v for _, v in kept]


def _series(run: RunRecords, layer: str, key: str) -> Series:
    return _positive(layer_series(run.diagnostics, key).get(layer, ([], [])))


def _ratio_series(run: RunRecords, key: str) -> Series:
    points = [(r.step, g.ratio) for r in run.diagnostics if (g := gradient_ratio(r, key)) and g.ratio is not None]
    return _positive(([s for s, _ in points], [v for _, v in points]))


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.3g}"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _status(run: RunRecords) -> str:
    return run.status.status if run.status is not None else "?"


# ------------------------------------------------------------------------------------------ gradients
@dataclass(frozen=True)
class GradientRow:
    """One variant of the gradients experiment: first/last-layer gradient norms at init and over training."""
    variant: str
    raw_first_init: float | None      # ||dL/dW|| of the first layer at step 0 (raw weight)
    eff_first_init: float | None      # ... w.r.t. the effective weight
    eff_last_init: float | None       # the last layer's, effective weight
    raw_first_median: float | None    # the first layer's median over training (raw weight)
    eff_first_median: float | None    # ... effective weight
    upper_end: float | None           # Lipschitz bounds at the last probe
    lower_end: float | None
    warnings: int
    status: str

    @property
    def eff_ratio_init(self) -> float | None:
        e0, el = self.eff_first_init, self.eff_last_init
        return e0 / el if e0 and el else None


def _gradient_row(variant: str, run: RunRecords) -> GradientRow:
    layers, init, end = layer_names(run.diagnostics), run.diagnostics[0], run.diagnostics[-1]
    first, last = layers[0], layers[-1]
    return GradientRow(variant, _layer_value(init, first, "grad_raw"), _layer_value(init, first, "grad_effective"),
                       _layer_value(init, last, "grad_effective"), _median(_series(run, first, "grad_raw")[1]),
                       _median(_series(run, first, "grad_effective")[1]), end.lipschitz_upper, end.lipschitz_lower,
                       len(run.health), _status(run))


def _plot_gradients(runs: dict[str, RunRecords], folder: Path) -> list[Path]:
    fig, axes = new_figure(2, width=6.2, height=4.6)
    fig2, axes2 = new_figure(2, width=6.2, height=4.6)
    for variant, run in runs.items():
        layers, init = layer_names(run.diagnostics), run.diagnostics[0]
        x = list(range(1, len(layers) + 1))
        for ax, key in ((axes[0], "grad_effective"), (axes[1], "grad_raw")):
            ys = [_layer_value(init, n, key) for n in layers]
            ax.plot(x, [y if y and y > 0 else math.nan for y in ys], marker="o", label=variant)
        axes2[0].plot(*_series(run, layers[0], "grad_raw"), label=variant)
        axes2[1].plot(*_ratio_series(run, "grad_effective"), label=variant)
    for ax, what in ((axes[0], "effective (normalized)"), (axes[1], "raw (trainable)")):
        ax.set_yscale("log")
        ax.set_xlabel("D layer (1 = first conv, last = output linear)")
        ax.set_ylabel("||dL/dW||_F (log scale)")
        ax.set_title(f"w.r.t. each layer's {what} weight")
        ax.legend(fontsize="small", ncol=2)
    for ax, ylabel, title in ((axes2[0], "first layer ||dL/dW_raw||_F (log scale)",
                               "First-layer gradient (raw weight) over training"),
                              (axes2[1], "first / last layer ||dL/dW_eff||_F (log scale)",
                               "First-layer gradient relative to the output layer's")):
        ax.set_yscale("log")
        ax.set_xlabel("generator step")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
    axes2[1].axhline(1.0, color="gray", lw=0.8, ls=":")
    for ax in axes2:
        ax.legend()
    fig.suptitle("Loss gradient norm per D layer at initialisation (SNGAN CNN D and its deep version, "
                 "16x16 digits)")
    fig2.suptitle("Gradient norms over training")
    return [save_png(fig, folder / "gradients_init.png"), save_png(fig2, folder / "gradients_training.png")]


def _verdict(ratio: float) -> str:
    """How a strict-SN / SN gradient ratio reads against the paper's claim (orders of magnitude below)."""
    if ratio < 1e-2:
        return "orders of magnitude below SN's, as the paper argues"
    if ratio < 1e-1:
        return "more than an order of magnitude below SN's (but less than two)"
    if ratio < 1:
        return "below SN's, by less than an order of magnitude"
    return "not below SN's"


def _strict_vs_sn(sn: GradientRow, st: GradientRow, what: str) -> list[str]:
    """Strict SN against SN: first-layer gradient ratios, and the verdict at init and over training."""
    pairs = [("raw, at init", st.raw_first_init, sn.raw_first_init),
             ("effective, at init", st.eff_first_init, sn.eff_first_init),
             ("raw, median over training", st.raw_first_median, sn.raw_first_median),
             ("effective, median over training", st.eff_first_median, sn.eff_first_median)]
    lines = ["", f"Strict SN against SN on {what}, first-layer gradient:"]
    for label, a, b in pairs:
        if a and b:
            lines.append(f"- {label}: strict SN / SN = {a / b:.3g} ({math.log10(a / b):+.2f} orders of magnitude)")
    for when, chosen in (("at initialisation", pairs[:2]), ("over training (medians)", pairs[2:])):
        ratios = [a / b for _, a, b in chosen if a and b]
        if ratios:
            lines.append(f"\nVerdict on {what}, {when}: strict SN's first-layer gradients are "
                         f"{_verdict(max(ratios))} (largest of the raw / effective ratios {max(ratios):.3g}).")
    return lines


def report_gradients(folder: Path, runs: dict[str, RunRecords]) -> tuple[list[Path], str]:
    usable = {v: r for v, r in runs.items() if r.diagnostics}
    figures = _plot_gradients(usable, folder)
    rows = [_gradient_row(v, r) for v, r in usable.items()]
    lines = ["# Experiment: gradients", "",
             "The SNGAN standard CNN discriminator (7 convs + linear, quarter width; `_deep`: 15 convs + linear) on",
             "the 16x16 digits, trained with the same budget under each variant. Gradient norms are of the D",
             "loss (hinge) w.r.t. each layer's raw (trainable) and effective (normalized) weight, probed at",
             "initialisation and every few steps (`diagnostics.jsonl` in each variant's folder;",
             "`gannorm analyze <folder>/<variant>` plots one).",
             "", "| variant | first layer raw grad at init | first layer eff. grad at init | last layer eff. "
             "grad at init | first/last (eff.) | median first-layer raw grad | median first-layer eff. grad | "
             "Lipschitz upper / lower at end | warnings | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.variant} | {_fmt(r.raw_first_init)} | {_fmt(r.eff_first_init)} | {_fmt(r.eff_last_init)} | "
                     f"{_fmt(r.eff_ratio_init)} | {_fmt(r.raw_first_median)} | {_fmt(r.eff_first_median)} | "
                     f"{_fmt(r.upper_end)} / {_fmt(r.lower_end)} | {r.warnings} | {r.status} |")
    by = {r.variant: r for r in rows}
    for suffix, what in (("", "the SNGAN CNN D"), ("_deep", "the deep D (15 convs + linear)")):
        sn, st = by.get("sn" + suffix), by.get("strict_sn" + suffix)
        if sn is not None and st is not None:
            lines += _strict_vs_sn(sn, st, what)
    lines.append("")
    lines.append("Figures: `gradients_init.png` (per layer, at initialisation), `gradients_training.png` "
                 "(first layer, and first/last ratio, over training).")
    return figures, "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ variance
def _variance_table(run: RunRecords, variant: str) -> list[str]:
    layers, first, last = layer_names(run.diagnostics), run.diagnostics[0], run.diagnostics[-1]
    lines = [f"## {variant}", "", "| layer | at step 0 | at the last probe | max over training | Kaiming ref. |",
             "|---|---|---|---|---|"]
    for name in layers:
        vals = _series(run, name, "var_ratio")[1]
        lines.append(f"| {name} | {_fmt(_layer_value(first, name, 'var_ratio'))} | "
                     f"{_fmt(_layer_value(last, name, 'var_ratio'))} | {_fmt(max(vals) if vals else None)} | "
                     f"{_fmt(_layer_value(last, name, 'ref_kaiming'))} |")
    ends = [v for n in layers if (v := _layer_value(last, n, "var_ratio"))]
    if ends:
        spread = max(abs(math.log10(v)) for v in ends)
        lines += ["", f"At the last probe (step {last.step}) the farthest layer is {10 ** spread:.3g}x "
                  f"from the LeCun value ({spread:.2f} orders of magnitude).", ""]
    return lines


def report_variance(folder: Path, runs: dict[str, RunRecords]) -> tuple[list[Path], str]:
    import matplotlib
    usable = {v: r for v, r in runs.items() if r.diagnostics}
    fig, axes = new_figure(max(1, len(usable)), width=6.0, height=4.6)
    lines = ["# Experiment: variance", "",
             "Effective weight variance ratio fan_in * Var(W_eff) per D layer (SNGAN CNN, 16x16 digits); 1 is the",
             "LeCun value. The paper's claim: LeCun initialisation sets it at step 0 only, SN keeps it near the",
             "LeCun value during training.", ""]
    cmap = matplotlib.colormaps["viridis"]
    for ax, (variant, run) in zip(axes, usable.items()):
        layers = layer_names(run.diagnostics)
        for i, name in enumerate(layers):
            ax.plot(*_series(run, name, "var_ratio"), color=cmap(0.9 * i / max(1, len(layers) - 1)), label=name)
        ax.axhline(1.0, color="black", ls="--", lw=1.2, label="LeCun (1)")
        ax.set_yscale("log")
        ax.set_xlabel("generator step")
        ax.set_ylabel("fan_in * Var(W_eff) (log scale)")
        ax.set_title(f"{variant}: effective weight variance / LeCun")
        ax.legend(fontsize=7, ncol=2)
        lines += _variance_table(run, variant)
    fig.suptitle("Effective weight variance against the LeCun value over training")
    figures = [save_png(fig, folder / "variance.png")]
    lines.append("Figure: `variance.png`.")
    return figures, "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ scale
@dataclass(frozen=True)
class ScalePoint:
    """One variant of the scale experiment: method, scale c, final classifier FD (None if none) and status."""
    method: str
    scale: float
    cfd: float | None
    status: str

    @property
    def ok(self) -> bool:
        return finite(self.cfd) is not None


def _scale_point(run: RunRecords, key: str = "eval/cfd") -> ScalePoint | None:
    norm = run.config.get("normalization") or {}
    scale = (norm.get("options") or {}).get("scale")
    if scale is None:
        return None
    values = metric_series(run.metrics, key)[1]
    return ScalePoint(str(norm.get("method", "?")), float(scale), values[-1] if values else None, _status(run))


def report_scale(folder: Path, runs: dict[str, RunRecords]) -> tuple[list[Path], str]:
    points: dict[str, list[ScalePoint]] = {}
    for run in runs.values():
        if (p := _scale_point(run)) is not None:
            points.setdefault(p.method, []).append(p)
    fig, (ax,) = new_figure(1, width=7.0, height=4.8)
    lines = ["# Experiment: scale", "",
             "Classifier Frechet distance (digits classifier, 1,000 samples; lower is better, real-vs-real about",
             "0.2) at the end of a fixed budget, against the scale c. SSN divides each weight by its reshaped",
             "spectral norm, BSSN by the mean of the fan-in and fan-out reshapings' norms; both multiply by c.",
             "One seed per point: differences below the seed-to-seed spread mean nothing.", "",
             "| method | c | classifier FD | status |", "|---|---|---|---|"]
    finite_fd = [p.cfd for pts in points.values() for p in pts if p.ok and p.cfd is not None]
    top = max(finite_fd) * 1.5 if finite_fd else 1.0
    for method, pts in sorted(points.items()):
        pts.sort(key=lambda p: p.scale)
        good = [p for p in pts if p.ok]
        line, = ax.plot([p.scale for p in good], [p.cfd for p in good], marker="o", label=method.upper())
        bad = [p.scale for p in pts if not p.ok]
        if bad:
            ax.plot(bad, [top] * len(bad), "x", color=line.get_color(), ms=9, label=f"{method.upper()} diverged")
        lines += [f"| {method} | {p.scale:g} | {_fmt(p.cfd)} | {p.status} |" for p in pts]
        if good:
            best = min(good, key=lambda p: (p.cfd, p.scale))
            lines.append(f"| {method} best | {best.scale:g} | {best.cfd:.3g} | |")
    ax.set_yscale("log")
    ax.set_xlabel("scale c (multiplies every normalized D weight)")
    ax.set_ylabel("classifier Frechet distance (log scale, lower is better)")
    ax.set_title("Sample quality against the scale c: SSN vs BSSN (16x16 digits)")
    ax.legend()
    figures = [save_png(fig, folder / "scale.png")]
    lines += ["", "Figure: `scale.png`."]
    return figures, "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ mean drift
#: a layer has drifted when its drift ratio act_mean / act_std grew by this much from initialisation: its
#: channel means moved half a within-channel standard deviation further from zero (for a Gaussian channel
#: that moves the share of entries on the majority side of the activation's kink from 69% to 84% if it
#: started at 0.5 std)
DRIFT_MARGIN = 0.5
#: below this median change the drift is called negligible
DRIFT_NEGLIGIBLE = 0.1


@dataclass(frozen=True)
class DriftRow:
    """One layer of one variant: drift ratio, channel means and spread at init and at the last probe, and
    the raw-weight gradient's sparsity at init and its median over the probes after init."""
    variant: str
    layer: str
    centred: bool                      # a mean-only batch norm (MSN) follows the layer
    drift_init: float | None
    drift_end: float | None
    mean_init: float | None
    mean_end: float | None
    std_init: float | None
    std_end: float | None
    sparsity_init: float | None
    sparsity_median: float | None

    @property
    def change(self) -> float | None:
        a, b = finite(self.drift_init), finite(self.drift_end)
        return b - a if a is not None and b is not None else None


def _centred_layers(run: RunRecords) -> set[str]:
    """The layers of the run's D that a mean-only batch norm follows (MSN's), found by rebuilding D from
    the run's config (cheap: no training)."""
    cfg = from_dict(run.config)
    m, n = cfg.model, cfg.normalization
    shape = load_dataset(cfg.data.name, cfg.data.root, cfg.data.resolution, **cfg.data.options).shape
    D = build_discriminator(m.arch, shape, width=m.width, normalization=n.method,
                            normalization_options=dict(n.options), init=m.d_init, **m.d_options)
    return {name for name, module in layers(D) if isinstance(getattr(module, "msn", None), MeanOnlyBatchNorm)}


def _drift_rows(variant: str, run: RunRecords) -> list[DriftRow]:
    init, end, centred = run.diagnostics[0], run.diagnostics[-1], _centred_layers(run)
    rows = []
    for name in layer_names(run.diagnostics):
        later = [v for r in run.diagnostics[1:] if (v := finite(_layer_value(r, name, "grad_sparsity"))) is not None]
        rows.append(DriftRow(variant, name, name in centred, _layer_value(init, name, "drift"),
                             _layer_value(end, name, "drift"), _layer_value(init, name, "act_mean"),
                             _layer_value(end, name, "act_mean"), _layer_value(init, name, "act_std"),
                             _layer_value(end, name, "act_std"), _layer_value(init, name, "grad_sparsity"),
                             _median(later)))
    return rows


def _drift_table(rows: Sequence[DriftRow]) -> list[str]:
    lines = ["| layer | drift at init | drift at end | change | act_mean init / end | act_std init / end | "
             "grad sparsity at init | median grad sparsity after init |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = " (centred)" if r.centred else ""
        lines.append(f"| {r.layer}{mark} | {_fmt(r.drift_init)} | {_fmt(r.drift_end)} | {_fmt(r.change)} | "
                     f"{_fmt(r.mean_init)} / {_fmt(r.mean_end)} | {_fmt(r.std_init)} / {_fmt(r.std_end)} | "
                     f"{_fmt(r.sparsity_init)} | {_fmt(r.sparsity_median)} |")
    return lines


def _median_of(rows: Sequence[DriftRow], key: Callable[[DriftRow], float | None]) -> float | None:
    return _median([v for r in rows if (v := finite(key(r))) is not None])


def _drift_words(change: float) -> str:
    if change >= DRIFT_MARGIN:
        return "drift"
    if change >= DRIFT_NEGLIGIBLE:
        return "drift a little (less than the margin)"
    return "do not drift noticeably"


def _hidden(rows: Sequence[DriftRow]) -> list[DriftRow]:
    """The rows of the hidden layers: all but the last (D's output has no activation after it)."""
    return list(rows[:-1])


def _variant_drift(variant: str, rows: Sequence[DriftRow]) -> str:
    """One line: a variant's median change, median drift at init and end, drifted layers, largest change
    (hidden layers)."""
    rows = _hidden(rows)
    changed = [r for r in rows if r.change is not None]
    if not changed:
        return f"- {variant}: no drift recorded"
    big = max(changed, key=lambda r: cast(float, r.change))  # not None in changed
    drifted = sum(cast(float, r.change) >= DRIFT_MARGIN for r in changed)
    return (f"- {variant}: median change over hidden layers {_fmt(_median_of(rows, lambda r: r.change))} (median drift "
            f"{_fmt(_median_of(rows, lambda r: r.drift_init))} at init, "
            f"{_fmt(_median_of(rows, lambda r: r.drift_end))} at the end); {drifted} of {len(changed)} layers "
            f"moved by >= {DRIFT_MARGIN}; largest: {big.layer} {_fmt(big.drift_init)} -> {_fmt(big.drift_end)}")


@dataclass(frozen=True)
class MsnComparison:
    """MSN against SN: median drift at the layers MSN centres (SN's at init too), median change at the others."""
    centred: list[str]
    msn_end: float | None
    sn_end: float | None
    sn_init: float | None
    msn_change: float | None
    sn_change: float | None

    @property
    def far_below(self) -> bool:
        """MSN's centred layers end at less than half SN's drift at the same layers."""
        return self.msn_end is not None and self.sn_end is not None and self.msn_end < 0.5 * self.sn_end


def _compare_msn(sn: Sequence[DriftRow], msn: Sequence[DriftRow]) -> MsnComparison:
    centred = [r.layer for r in msn if r.centred]  # forward order

    def median(rows: Sequence[DriftRow], inside: bool, key: Callable[[DriftRow], float | None]) -> float | None:
        return _median_of([r for r in _hidden(rows) if (r.layer in centred) == inside], key)

    return MsnComparison(centred, median(msn, True, lambda r: r.drift_end), median(sn, True, lambda r: r.drift_end),
                         median(sn, True, lambda r: r.drift_init), median(msn, False, lambda r: r.change),
                         median(sn, False, lambda r: r.change))


def _msn_lines(c: MsnComparison) -> list[str]:
    if not c.centred or c.msn_end is None or c.sn_end is None:
        return ["- MSN: no drift recorded at layers with a mean-only batch norm."]
    how = ("far below SN's (less than half)" if c.far_below else
           "below SN's, by less than a factor 2" if c.msn_end < c.sn_end else "not below SN's")
    return [f"- MSN at the {len(c.centred)} layers it centres ({', '.join(c.centred)}): median drift at the end "
            f"{_fmt(c.msn_end)} (its learned bias |beta| over the spread); SN at the same layers {_fmt(c.sn_end)} "
            f"({_fmt(c.sn_init)} at init): {how}.",
            f"- MSN's other layers: median change {_fmt(c.msn_change)} (SN's same layers: {_fmt(c.sn_change)})."]


def _claim(sn: Sequence[DriftRow], msn: MsnComparison | None) -> str:
    """The verdict on 'SN drifts and MSN does not', from the numbers."""
    change = _median_of(_hidden(sn), lambda r: r.change)
    if change is None:
        return "Verdict: no drift recorded for SN."
    text = f"Verdict: SN's layers {_drift_words(change)} over this run (median change {_fmt(change)})"
    if change < DRIFT_MARGIN:
        text += "; the mean drift the MSN paper describes is small at this scale (one seed, a short run)"
    if msn is not None and msn.msn_end is not None and msn.sn_end is not None:
        text += (f"; MSN's centred layers end {'well' if msn.far_below else 'not well'} below SN's "
                 f"({_fmt(msn.msn_end)} vs {_fmt(msn.sn_end)})")
        if msn.far_below and msn.sn_init is not None and msn.sn_end - msn.sn_init < DRIFT_NEGLIGIBLE:
            text += (f", but SN's were as far from zero at init ({_fmt(msn.sn_init)}): the gap is MSN's centring, "
                     "not drift that SN gained")
        holds = change >= DRIFT_MARGIN and msn.far_below
        text += ". 'SN drifts and MSN does not' is " + ("shown here" if holds else "not shown here")
    return text + "."


def _sparsity_lines(rows: dict[str, list[DriftRow]]) -> list[str]:
    """Each variant's median (over layers) of the median gradient sparsity after init; SN against the others."""
    med = {v: _median_of(r, lambda x: x.sparsity_median) for v, r in rows.items()}
    lines = ["", f"Gradient sparsity (fraction of the raw-weight gradient's entries with |g| <= {SPARSITY_TAU:g} "
             "RMS(g); a dense Gaussian gradient has about 0.008), median over layers of each layer's median after "
             "init:"]
    lines += [f"- {v}: {_fmt(m)}" for v, m in med.items()]
    sn = med.get("sn")
    for other in ("none", "msn"):
        o = med.get(other)
        if sn is None or o is None:
            continue
        word = ("higher" if sn > 1.25 * o and sn - o > 0.005 else
                "lower" if o > 1.25 * sn and o - sn > 0.005 else "about the same (within 25% or 0.005)")
        lines.append(f"- SN against {other}: {word} ({_fmt(sn)} vs {_fmt(o)}).")
    return lines


def _median_over_layers(run: RunRecords, key: str) -> Series:
    points = [(r.step, m) for r in run.diagnostics
              if (m := _median([v for e in r.layers.values() if (v := finite(e.value(key))) is not None]))
              is not None]
    return [s for s, _ in points], [v for _, v in points]


def _plot_per_layer(runs: dict[str, RunRecords], rows: dict[str, list[DriftRow]], key: str, ylabel: str,
                    title: str, path: Path, symlog: bool = False) -> Path:
    """Panel 1: each variant's median over layers of ``key``; then a panel per variant, a line per layer
    (dashed: the layers a mean-only batch norm follows). ``symlog``: y linear up to 1, logarithmic above
    (zero stays visible, and so does a blow-up)."""
    import matplotlib
    cmap = matplotlib.colormaps["viridis"]
    fig, axes = new_figure(1 + len(runs), width=5.2, height=4.4)
    for variant, run in runs.items():
        axes[0].plot(*_median_over_layers(run, key), marker=".", label=variant)
    axes[0].set_title("median over layers")
    axes[0].legend()
    for ax, (variant, run) in zip(axes[1:], runs.items()):
        centred = {r.layer for r in rows[variant] if r.centred}
        names, series = layer_names(run.diagnostics), layer_series(run.diagnostics, key)
        for i, name in enumerate(names):
            if name in series:
                ax.plot(*series[name], ls="--" if name in centred else "-",
                        color=cmap(0.9 * i / max(1, len(names) - 1)), label=name)
        ax.set_title(variant + (" (dashed: mean-only BN)" if centred else ""))
        ax.legend(fontsize=6, ncol=2)
    for ax in axes:
        ax.set_xlabel("generator step")
        ax.set_ylabel(ylabel)
        if symlog:
            ax.set_yscale("symlog", linthresh=1.0)
            ax.set_ylim(bottom=0.0)
            ax.set_ylabel(ylabel + " (linear to 1, log above)")
    fig.suptitle(title)
    return save_png(fig, path)


def report_mean_drift(folder: Path, runs: dict[str, RunRecords]) -> tuple[list[Path], str]:
    usable = {v: r for v, r in runs.items() if r.diagnostics}
    rows = {v: _drift_rows(v, r) for v, r in usable.items()}
    figures = [_plot_per_layer(usable, rows, "drift", "act_mean / act_std", "Mean drift of each D layer's output "
                               "(mean |channel mean| / within-channel std)", folder / "mean_drift.png", symlog=True),
               _plot_per_layer(usable, rows, "grad_sparsity", f"fraction of |g| <= {SPARSITY_TAU:g} RMS(g)",
                               "Sparsity of each D layer's weight gradient", folder / "gradient_sparsity.png")]
    lines = ["# Experiment: mean_drift", "",
             "The SNGAN CNN D (quarter width, 11 convs + linear) on the 16x16 digits with no normalization, SN and",
             "MSN. Drift = act_mean / act_std of each layer's output (after MSN's mean-only batch norm where there",
             "is one; `(centred)` in the tables): the mean over channels of |channel mean| over the root-mean",
             "within-channel std, real and fake probe batches pooled. The MSN paper's claim: SN's layer outputs",
             f"drift away from zero mean during training, MSN's do not. A layer drifted if its drift grew by >= "
             f"{DRIFT_MARGIN}.", ""]
    for variant, vrows in rows.items():
        run = usable[variant]
        lines += [f"## {variant} (probes at steps {run.diagnostics[0].step} to {run.diagnostics[-1].step}; "
                  f"status {_status(run)}; {len(run.health)} health warnings)", "", *_drift_table(vrows), ""]
    lines += ["## Summary", "", *[_variant_drift(v, r) for v, r in rows.items()]]
    msn = _compare_msn(rows["sn"], rows["msn"]) if "sn" in rows and "msn" in rows else None
    if msn is not None:
        lines += _msn_lines(msn)
    if "sn" in rows:
        lines += ["", _claim(rows["sn"], msn)]
    lines += [*_sparsity_lines(rows), "",
              "Figures: `mean_drift.png` (drift per layer over training), `gradient_sparsity.png`."]
    return figures, "\n".join(lines) + "\n"


EXPERIMENTS.register("gradients", Experiment(report_gradients, "per-layer gradient norms at init and over training: "
                                                               "none, LeCun, SN, strict SN, BSSN"))
EXPERIMENTS.register("variance", Experiment(report_variance,
                                            "effective weight variance over training: SN vs LeCun init"))
EXPERIMENTS.register("scale", Experiment(report_scale, "classifier FD against the scale c: SSN vs BSSN"))
EXPERIMENTS.register("mean_drift", Experiment(report_mean_drift, "mean drift of each layer's output and gradient "
                                                                 "sparsity over training: none, SN, MSN"))
