"""``gannorm experiment NAME``: the paper's evidence regenerated at CPU scale, each a preset plus a figure.

An experiment is a comparison preset ``configs/experiment_<name>.yaml`` (a base config and its
``variants:``) and a report function that reads the variants' run folders and writes the figure(s) and
a ``summary.md`` into the experiment folder ``<out>/experiment-<name>[-N]/``:

``gradients``  per-layer gradient norms at initialisation and over training of the SNGAN CNN D with no
               normalization (official and LeCun init), SN, strict SN and BSSN;
``variance``   the effective weight variance ratio ``fan_in * Var(W_eff)`` per layer over training, SN
               against plain LeCun initialisation;
``scale``      classifier Frechet distance against the scale c of SSN and BSSN.
"""
from __future__ import annotations

import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..config import load_variants
from ..diagnostics.records import ProbeRecord
from ..errors import ConfigError
from ..fileio import atomic_write_text, claim_dir
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
    folder = claim_dir(out_dir, f"experiment-{name}")
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
    finite_fd = [p.cfd for pts in points.values() for p in pts if p.ok]
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


EXPERIMENTS.register("gradients", Experiment(report_gradients, "per-layer gradient norms at init and over training: "
                                                               "none, LeCun, SN, strict SN, BSSN"))
EXPERIMENTS.register("variance", Experiment(report_variance,
                                            "effective weight variance over training: SN vs LeCun init"))
EXPERIMENTS.register("scale", Experiment(report_scale, "classifier FD against the scale c: SSN vs BSSN"))
