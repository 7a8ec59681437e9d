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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ..config import ConfigError, load_variants
from ..fileio import atomic_write_text, unique_dir
from ..registry import Registry
from .analyze import RunLog, gradient_ratio, layer_series, load_run, scalar_series
from .figures import new_figure, save_png

Report = Callable[[Path, dict[str, RunLog]], tuple[list[Path], str]]
EXPERIMENTS: Registry = Registry("experiment")


@dataclass
class ExperimentResult:
    folder: Path
    runs: dict[str, RunLog] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    summary: str = ""
    seconds: float = 0.0


def run_experiment(name: str, overrides: Sequence[str] = (), out_dir: str | Path = "runs",
                   only: Sequence[str] = ()) -> ExperimentResult:
    """Train every variant of ``experiment_<name>`` (or those in ``only``), then write its report."""
    import time

    from ..training.trainer import train
    report: Report = EXPERIMENTS.get(name)
    preset = f"experiment_{name}"
    variants = load_variants(preset)
    for o in overrides:
        if o.split("=", 1)[0].strip() in ("train.out_dir", "train.run_name"):
            raise ConfigError(f"{o.split('=', 1)[0]} is set by the experiment; use --out DIR for where it goes")
    unknown = [v for v in only if v not in variants]
    if unknown:
        raise ConfigError(f"unknown variant(s) {', '.join(unknown)} of experiment {name}; "
                          f"known: {', '.join(variants)}")
    folder = unique_dir(Path(out_dir) / f"experiment-{name}")
    folder.mkdir(parents=True)
    start = time.perf_counter()
    runs: dict[str, RunLog] = {}
    for variant, extra in variants.items():
        if only and variant not in only:
            continue
        print(f"== experiment {name}: variant {variant}: {' '.join(extra) or '(base config)'}", file=sys.stderr)
        result = train(preset, [*extra, *overrides, f"train.out_dir={folder}", f"train.run_name={variant}"])
        runs[variant] = load_run(result.run_dir)
    figures, summary = report(folder, runs)
    seconds = time.perf_counter() - start
    summary += f"\nWall time: {seconds:.0f} s for {len(runs)} runs.\n"
    atomic_write_text(folder / "summary.md", summary)
    return ExperimentResult(folder, runs, figures, summary, seconds)


# ------------------------------------------------------------------------------------------ helpers
def _layer_values(record: dict, key: str, layers: Sequence[str]) -> list[float | None]:
    entries = record.get("layers", {})
    return [entries.get(n, {}).get(key) for n in layers]


def _positive(series: tuple[list[int], list[float]]) -> tuple[list[int], list[float]]:
    """The points of a series with a value > 0 (log axes; a saturated hinge loss gives exact zeros)."""
    kept = [(s, v) for s, v in zip(*series) if v > 0]
    return [s for s, _ in kept], [v for _, v in kept]


def _series(run: RunLog, layer: str, key: str) -> tuple[list[int], list[float]]:
    return _positive(layer_series(run.diagnostics, key).get(layer, ([], [])))


def _ratio_series(run: RunLog, key: str) -> tuple[list[int], list[float]]:
    points = [(int(r["step"]), g[2]) for r in run.diagnostics if (g := gradient_ratio(r, key)) and g[2] is not None]
    return _positive(([s for s, _ in points], [v for _, v in points]))


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.3g}"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


# ------------------------------------------------------------------------------------------ gradients
def _verdict(ratio: float) -> str:
    """How a strict-SN / SN gradient ratio reads against the paper's claim (orders of magnitude below)."""
    if ratio < 1e-2:
        return "orders of magnitude below SN's, as the paper argues"
    if ratio < 1e-1:
        return "more than an order of magnitude below SN's (but less than two)"
    if ratio < 1:
        return "below SN's, by less than an order of magnitude"
    return "not below SN's"


def report_gradients(folder: Path, runs: dict[str, RunLog]) -> tuple[list[Path], str]:
    fig, axes = new_figure(2, width=6.2, height=4.6)
    fig2, axes2 = new_figure(2, width=6.2, height=4.6)
    rows = []
    for variant, run in runs.items():
        if not run.diagnostics:
            continue
        layers, init = run.layers, run.diagnostics[0]
        x = list(range(1, len(layers) + 1))
        for ax, key in ((axes[0], "grad_effective"), (axes[1], "grad_raw")):
            ys = _layer_values(init, key, layers)
            ax.plot(x, [y if y and y > 0 else math.nan for y in ys], marker="o", label=variant)
        steps, first = _series(run, layers[0], "grad_raw")
        axes2[0].plot(steps, first, label=variant)
        steps, ratio = _ratio_series(run, "grad_effective")
        axes2[1].plot(steps, ratio, label=variant)
        e0, el = _layer_values(init, "grad_effective", [layers[0], layers[-1]])
        r0, _ = _layer_values(init, "grad_raw", [layers[0], layers[-1]])
        rows.append((variant, r0, e0, el, (e0 / el) if e0 and el else None,
                     _median(_series(run, layers[0], "grad_raw")[1]),
                     _median(_series(run, layers[0], "grad_effective")[1]),
                     run.diagnostics[-1].get("lipschitz_upper"), run.diagnostics[-1].get("lipschitz_lower"),
                     len(run.health), run.status.get("status", "?")))
    for ax, what in ((axes[0], "effective (normalized)"), (axes[1], "raw (trainable)")):
        ax.set_yscale("log")
        ax.set_xlabel("D layer (1 = first conv, last = output linear)")
        ax.set_ylabel("||dL/dW||_F (log scale)")
        ax.set_title(f"w.r.t. each layer's {what} weight")
        ax.legend(fontsize="small", ncol=2)
    axes2[0].set_yscale("log")
    axes2[0].set_xlabel("generator step")
    axes2[0].set_ylabel("first layer ||dL/dW_raw||_F (log scale)")
    axes2[0].set_title("First-layer gradient (raw weight) over training")
    axes2[0].legend()
    axes2[1].set_yscale("log")
    axes2[1].set_xlabel("generator step")
    axes2[1].set_ylabel("first / last layer ||dL/dW_eff||_F (log scale)")
    axes2[1].set_title("First-layer gradient relative to the output layer's")
    axes2[1].axhline(1.0, color="gray", lw=0.8, ls=":")
    axes2[1].legend()
    fig.suptitle("Loss gradient norm per D layer at initialisation (SNGAN CNN D and its deep version, "
                 "16x16 digits)")
    fig2.suptitle("Gradient norms over training")
    figures = [save_png(fig, folder / "gradients_init.png"), save_png(fig2, folder / "gradients_training.png")]

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
    for v, r0, e0, el, ratio, mr, me, up, lo, nw, st in rows:
        lines.append(f"| {v} | {_fmt(r0)} | {_fmt(e0)} | {_fmt(el)} | {_fmt(ratio)} | {_fmt(mr)} | {_fmt(me)} | "
                     f"{_fmt(up)} / {_fmt(lo)} | {nw} | {st} |")
    by = {r[0]: r for r in rows}
    for suffix, what in (("", "the SNGAN CNN D"), ("_deep", "the deep D (15 convs + linear)")):
        sn, st = by.get("sn" + suffix), by.get("strict_sn" + suffix)
        if sn is None or st is None:
            continue
        pairs = [("raw, at init", st[1], sn[1]), ("effective, at init", st[2], sn[2]),
                 ("raw, median over training", st[5], sn[5]), ("effective, median over training", st[6], sn[6])]
        lines.append("")
        lines.append(f"Strict SN against SN on {what}, first-layer gradient:")
        for label, a, b in pairs:
            if a and b:
                lines.append(f"- {label}: strict SN / SN = {a / b:.3g} ({math.log10(a / b):+.2f} orders of magnitude)")
        for when, chosen in (("at initialisation", pairs[:2]), ("over training (medians)", pairs[2:])):
            ratios = [a / b for _, a, b in chosen if a and b]
            if ratios:
                lines.append(f"\nVerdict on {what}, {when}: strict SN's first-layer gradients are "
                             f"{_verdict(max(ratios))} (largest of the raw / effective ratios {max(ratios):.3g}).")
    lines.append("")
    lines.append("Figures: `gradients_init.png` (per layer, at initialisation), `gradients_training.png` "
                 "(first layer, and first/last ratio, over training).")
    return figures, "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ variance
def report_variance(folder: Path, runs: dict[str, RunLog]) -> tuple[list[Path], str]:
    import matplotlib
    usable = {v: r for v, r in runs.items() if r.diagnostics}
    fig, axes = new_figure(max(1, len(usable)), width=6.0, height=4.6)
    lines = ["# Experiment: variance", "",
             "Effective weight variance ratio fan_in * Var(W_eff) per D layer (SNGAN CNN, 16x16 digits); 1 is the",
             "LeCun value. The paper's claim: LeCun initialisation sets it at step 0 only, SN keeps it near the",
             "LeCun value during training.", ""]
    cmap = matplotlib.colormaps["viridis"]
    for ax, (variant, run) in zip(axes, usable.items()):
        layers = run.layers
        for i, name in enumerate(layers):
            steps, values = _series(run, name, "var_ratio")
            ax.plot(steps, values, color=cmap(0.9 * i / max(1, len(layers) - 1)), label=name)
        ax.axhline(1.0, color="black", ls="--", lw=1.2, label="LeCun (1)")
        ax.set_yscale("log")
        ax.set_xlabel("generator step")
        ax.set_ylabel("fan_in * Var(W_eff) (log scale)")
        ax.set_title(f"{variant}: effective weight variance / LeCun")
        ax.legend(fontsize=7, ncol=2)
        first, last = run.diagnostics[0], run.diagnostics[-1]
        lines += [f"## {variant}", "", "| layer | at step 0 | at the last probe | max over training | "
                  "Kaiming ref. |", "|---|---|---|---|---|"]
        for name in layers:
            vals = _series(run, name, "var_ratio")[1]
            a = first["layers"].get(name, {}).get("var_ratio")
            b = last["layers"].get(name, {}).get("var_ratio")
            k = last["layers"].get(name, {}).get("ref_kaiming")
            lines.append(f"| {name} | {_fmt(a)} | {_fmt(b)} | {_fmt(max(vals) if vals else None)} | {_fmt(k)} |")
        ends = [last["layers"][n]["var_ratio"] for n in layers if last["layers"].get(n, {}).get("var_ratio")]
        if ends:
            spread = max(abs(math.log10(v)) for v in ends)
            lines += ["", f"At the last probe (step {last['step']}) the farthest layer is {10 ** spread:.3g}x "
                      f"from the LeCun value ({spread:.2f} orders of magnitude).", ""]
    fig.suptitle("Effective weight variance against the LeCun value over training")
    figures = [save_png(fig, folder / "variance.png")]
    lines.append("Figure: `variance.png`.")
    return figures, "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ scale
def _method_and_scale(run: RunLog) -> tuple[str, float | None]:
    n = run.config.get("normalization", {})
    scale = (n.get("options") or {}).get("scale")
    return str(n.get("method", "?")), None if scale is None else float(scale)


def _final_metric(run: RunLog, key: str = "eval/cfd") -> float | None:
    values = scalar_series(run.metrics, key)[1]
    return values[-1] if values else None


def report_scale(folder: Path, runs: dict[str, RunLog]) -> tuple[list[Path], str]:
    points: dict[str, list[tuple[float, float | None, str]]] = {}
    for run in runs.values():
        method, scale = _method_and_scale(run)
        if scale is None:
            continue
        points.setdefault(method, []).append((scale, _final_metric(run), run.status.get("status", "?")))
    fig, (ax,) = new_figure(1, width=7.0, height=4.8)
    lines = ["# Experiment: scale", "",
             "Classifier Frechet distance (digits classifier, 1,000 samples; lower is better, real-vs-real about",
             "0.2) at the end of a fixed budget, against the scale c. SSN divides each weight by its reshaped",
             "spectral norm, BSSN by the mean of the fan-in and fan-out reshapings' norms; both multiply by c.",
             "One seed per point: differences below the seed-to-seed spread mean nothing.", "",
             "| method | c | classifier FD | status |", "|---|---|---|---|"]
    finite = [v for pts in points.values() for _, v, _ in pts if v is not None and math.isfinite(v)]
    top = max(finite) * 1.5 if finite else 1.0
    for method, pts in sorted(points.items()):
        pts.sort()
        xs = [c for c, v, _ in pts if v is not None and math.isfinite(v)]
        ys = [v for c, v, _ in pts if v is not None and math.isfinite(v)]
        line, = ax.plot(xs, ys, marker="o", label=method.upper())
        bad = [c for c, v, st in pts if v is None or not math.isfinite(v)]
        if bad:
            ax.plot(bad, [top] * len(bad), "x", color=line.get_color(), ms=9, label=f"{method.upper()} diverged")
        for c, v, st in pts:
            lines.append(f"| {method} | {c:g} | {_fmt(v)} | {st} |")
        if ys:
            best = min(zip(ys, xs))
            lines.append(f"| {method} best | {best[1]:g} | {best[0]:.3g} | |")
    ax.set_yscale("log")
    ax.set_xlabel("scale c (multiplies every normalized D weight)")
    ax.set_ylabel("classifier Frechet distance (log scale, lower is better)")
    ax.set_title("Sample quality against the scale c: SSN vs BSSN (16x16 digits)")
    ax.legend()
    figures = [save_png(fig, folder / "scale.png")]
    lines += ["", "Figure: `scale.png`."]
    return figures, "\n".join(lines) + "\n"


EXPERIMENTS.register("gradients", report_gradients,
                     "per-layer gradient norms at init and over training: none, LeCun, SN, strict SN, BSSN")
EXPERIMENTS.register("variance", report_variance, "effective weight variance over training: SN vs LeCun init")
EXPERIMENTS.register("scale", report_scale, "classifier FD against the scale c: SSN vs BSSN")
