"""The figures of ``gannorm analyze``: one PNG per function, each written only when the run has its data.

Every ``plot_*`` function takes the run's records (:func:`~gannorm.app.analysis.reading.load_run`) and a
path, draws with matplotlib's object API (no pyplot state: headless, thread-safe) and returns the
path, or None (nothing written) when the run has none of the figure's data. :data:`FIGURES` lists them
by file name, in the order ``gannorm analyze`` writes them.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ...diagnostics.probes import SPARSITY_TAU
from ...runfolder import RunRecords
from .figures import new_figure, save_png
from .reading import run_name
from .series import (Series, input_grad_series, latest_layer_values, layer_names, layer_series, metric_series,
                     probe_series)

_LEGEND_MAX_LAYERS = 12
_STYLES: dict[str, Any] = {"sigma": "-", "sigma1": "--", "sigma2": ":", "raw_spectral": "-", "strict_sigma": "-."}


def _layer_colors(layers: Sequence[str]) -> dict[str, Any]:
    import matplotlib
    cmap = matplotlib.colormaps["viridis"]
    n = len(layers)
    return {name: cmap(0.9 * i / (n - 1) if n > 1 else 0.0) for i, name in enumerate(layers)}


def _layer_key(fig, axes, layers: Sequence[str], colors: dict[str, Any]) -> None:
    """A legend of layer names (outside the last panel), or a colorbar labelled with them for many layers."""
    if not layers:
        return
    if len(layers) <= _LEGEND_MAX_LAYERS:
        from matplotlib.lines import Line2D
        handles = [Line2D([], [], color=colors[name], label=name) for name in layers]
        if axes[-1].get_legend() is not None:       # keep the panel's own legend next to the layer key
            axes[-1].add_artist(axes[-1].get_legend())
        axes[-1].legend(handles=handles, title="layer (first to last)", fontsize="small",
                        title_fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
        return
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize
    n = len(layers)
    cmap = ListedColormap([colors[name] for name in layers])
    sm = ScalarMappable(norm=Normalize(-0.5, n - 0.5), cmap=cmap)
    every = max(1, math.ceil(n / 24))
    ticks = list(range(0, n, every))
    cbar = fig.colorbar(sm, ax=axes, ticks=ticks, fraction=0.04, pad=0.01)
    cbar.ax.set_yticklabels([layers[i] for i in ticks], fontsize=6)
    cbar.ax.invert_yaxis()
    cbar.set_label("layer (forward order)")


def _y_scale(ax, values: Iterable[float], label: str, force_log: bool = False, span: float = 30.0) -> bool:
    """Log y when the positive values span ``span``x or more (or ``force_log``); sets the label. True if log."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    pos = [v for v in vals if v > 0]
    log = bool(pos) and len(pos) >= 0.9 * len(vals) and (force_log or max(pos) / min(pos) >= span)
    if log:
        ax.set_yscale("log")
        label += " (log scale)"
        hidden = len(vals) - len(pos)
        if hidden:
            ax.text(0.99, 0.01, f"{hidden} values <= 0 not shown", transform=ax.transAxes,
                    ha="right", va="bottom", fontsize="x-small", color="0.4")
    ax.set_ylabel(label)
    return log


def _positive_if(log: bool, steps: Sequence[int], values: Sequence[float]) -> tuple[list[int], list[float]]:
    if not log:
        return list(steps), list(values)
    kept = [(s, v) for s, v in zip(steps, values) if v > 0]
    return [s for s, _ in kept], [v for _, v in kept]


def _all_values(series: dict[str, Series]) -> list[float]:
    return [v for _, vals in series.values() for v in vals]


def _no_data(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4")


def _plot_layers(ax, series: dict[str, Series], colors: dict[str, Any], log: bool, style: str = "-",
                 **kw: Any) -> None:
    for name, (steps, values) in series.items():
        s, v = _positive_if(log, steps, values)
        if s:
            ax.plot(s, v, style, color=colors[name], marker="." if len(s) < 30 else None, **kw)


def plot_gradients(run: RunRecords, path: str | os.PathLike) -> Path | None:
    """``||dL/dW||_F`` per layer over training, w.r.t. the raw (left) and effective (right) weights.
    Writes nothing and returns None when no probe has gradient norms."""
    panels = [("grad_raw", "w.r.t. the raw weight W", "||dL/dW||_F"),
              ("grad_effective", "w.r.t. the effective weight W_eff", "||dL/dW_eff||_F")]
    data = {key: layer_series(run.diagnostics, key) for key, *_ in panels}
    if not any(data.values()):
        return None
    layers = [n for n in layer_names(run.diagnostics) if any(n in d for d in data.values())]
    colors = _layer_colors(layers)
    fig, axes = new_figure(2)
    for ax, (key, subtitle, ylabel) in zip(axes, panels):
        series = data[key]
        ax.set_title(f"D gradient norm {subtitle}")
        ax.set_xlabel("generator step")
        if not series:
            ax.set_ylabel(ylabel)
            _no_data(ax, f"no {key} recorded")
            continue
        log = _y_scale(ax, _all_values(series), ylabel, span=10.0)
        _plot_layers(ax, series, colors, log)
    fig.suptitle(f"{run_name(run)}: per-layer gradient norms of the D loss")
    _layer_key(fig, axes, layers, colors)
    return save_png(fig, Path(path))


def plot_sigmas(run: RunRecords, path: str | os.PathLike) -> Path | None:
    """Left: the normalization's sigma per layer (BSN's sigma1/sigma2 dashed/dotted). Right: the raw
    weight's spectral norm and, when recorded, the strict operator norm of W_eff."""
    keys = ["sigma", "sigma1", "sigma2", "raw_spectral", "strict_sigma"]
    data = {key: layer_series(run.diagnostics, key) for key in keys}
    if not any(data.values()):
        return None
    layers = [n for n in layer_names(run.diagnostics) if any(n in d for d in data.values())]
    colors = _layer_colors(layers)
    fig, axes = new_figure(2)
    from matplotlib.lines import Line2D
    left = [k for k in ("sigma", "sigma1", "sigma2") if data[k]]
    right = [k for k in ("raw_spectral", "strict_sigma") if data[k]]
    labels = {"sigma": "sigma", "sigma1": "sigma1 (BSN)", "sigma2": "sigma2 (BSN)",
              "raw_spectral": "||W||_2 (raw weight)", "strict_sigma": "strict ||W_eff||_op"}
    for ax, used, title, ylabel in (
            (axes[0], left, "the normalization's sigma estimates", "sigma (dimensionless)"),
            (axes[1], right, "operator norms", "spectral norm (dimensionless)")):
        ax.set_title(title)
        ax.set_xlabel("generator step")
        if not used:
            ax.set_ylabel(ylabel)
            _no_data(ax, "none recorded (e.g. method none)" if ax is axes[0] else "none recorded")
            continue
        log = _y_scale(ax, [v for k in used for v in _all_values(data[k])], ylabel)
        for key in used:
            _plot_layers(ax, data[key], colors, log, _STYLES[key], linewidth=1.2 if key == "sigma" else 1.0)
        if len(used) > 1 or used[0] != "sigma":
            handles = [Line2D([], [], color="0.3", linestyle=_STYLES[k], label=labels[k]) for k in used]
            ax.add_artist(ax.legend(handles=handles, fontsize="small", loc="best"))
    fig.suptitle(f"{run_name(run)}: sigma trajectories per layer")
    _layer_key(fig, axes, layers, colors)
    return save_png(fig, Path(path))


def plot_variance(run: RunRecords, path: str | os.PathLike) -> Path | None:
    """Left: ``fan_in * Var(W_eff)`` per layer over training, LeCun's 1 marked. Right: the latest ratio
    per layer next to the Xavier and Kaiming reference ratios."""
    series = layer_series(run.diagnostics, "var_ratio")
    if not series:
        return None
    layers = list(series)
    colors = _layer_colors(layers)
    fig, axes = new_figure(2)
    ax = axes[0]
    ax.set_title("variance ratio over training")
    ax.set_xlabel("generator step")
    log = _y_scale(ax, _all_values(series) + [1.0], "fan_in * Var(W_eff) (dimensionless)")
    _plot_layers(ax, series, colors, log)
    ax.axhline(1.0, color="k", linestyle="--", linewidth=1, label="LeCun (1)")
    ax.legend(fontsize="small", loc="best")

    ax = axes[1]
    latest = latest_layer_values(run.diagnostics, "var_ratio")
    xavier = latest_layer_values(run.diagnostics, "ref_xavier")
    kaiming = latest_layer_values(run.diagnostics, "ref_kaiming")
    last_step = max(s for s, _ in latest.values())
    ax.set_title(f"latest ratio per layer (last probe: step {last_step})")
    idx = list(range(len(layers)))
    values = [latest[n][1] for n in layers]
    refs = [v for d in (xavier, kaiming) for _, v in d.values()]
    log = _y_scale(ax, values + refs + [1.0], "fan_in * Var(W_eff) (dimensionless)")
    if log:
        pts = [(i, v, colors[n]) for i, (n, v) in enumerate(zip(layers, values)) if v > 0]
        ax.scatter([i for i, *_ in pts], [v for _, v, _ in pts], c=[c for *_, c in pts], s=50, zorder=3,
                   label="this run (latest)")
    else:
        ax.bar(idx, values, color=[colors[n] for n in layers], alpha=0.8, label="this run (latest)")
    for ref, marker, name, color in ((xavier, "x", "Xavier init", "tab:blue"), (kaiming, "^", "Kaiming init",
                                                                                  "tab:red")):
        ref_pts = [(i, ref[n][1]) for i, n in enumerate(layers) if n in ref and (ref[n][1] > 0 or not log)]
        if ref_pts:
            ax.plot([i for i, _ in ref_pts], [v for _, v in ref_pts], marker, color=color, linestyle="none",
                    markersize=8, label=name)
    ax.axhline(1.0, color="k", linestyle="--", linewidth=1, label="LeCun (1)")
    ax.set_xlabel("layer index (forward order)")
    ax.set_xticks(idx)
    ax.set_xticklabels([f"{i}" for i in idx] if len(layers) > _LEGEND_MAX_LAYERS else
                       [f"{i}: {n}" for i, n in enumerate(layers)], fontsize="small", rotation=30, ha="right")
    ax.legend(fontsize="small", loc="best")
    fig.suptitle(f"{run_name(run)}: effective-weight variance, fan_in * Var(W_eff)")
    _layer_key(fig, axes, layers, colors)
    return save_png(fig, Path(path))


def plot_input_gradients(run: RunRecords, path: str | os.PathLike) -> Path | None:
    """Left: per-sample ``||grad_x D(x)||_2``, mean with a min-max band, for real, fake and
    interpolated inputs. Right: D(real), D(fake) at the probes, and the losses from metrics.jsonl."""
    kinds = {k: input_grad_series(run.diagnostics, k) for k in ("real", "fake", "interpolated")}
    d_out = {k: probe_series(run.diagnostics, k) for k in ("d_real", "d_fake")}
    if not any(s[0] for s in kinds.values()) and not any(s[0] for s in d_out.values()):
        return None
    palette = {"real": "tab:blue", "fake": "tab:red", "interpolated": "tab:green"}
    fig, axes = new_figure(2)
    ax = axes[0]
    ax.set_title("input-gradient norm of D (mean, min-max band)")
    ax.set_xlabel("generator step")
    vals = [v for s in kinds.values() for part in s[1:] for v in part]
    if not any(s[0] for s in kinds.values()):
        ax.set_ylabel("||grad_x D(x)||_2")
        _no_data(ax, "no input gradients recorded")
    else:
        log = _y_scale(ax, vals, "||grad_x D(x)||_2 per sample")
        for kind, (steps, mean, lo, hi) in kinds.items():
            if not steps:
                continue
            color = palette[kind]
            if log:
                lo = [v if v > 0 else math.nan for v in lo]
                mean = [v if v > 0 else math.nan for v in mean]
            ax.fill_between(steps, lo, hi, color=color, alpha=0.2, linewidth=0)
            ax.plot(steps, mean, color=color, marker="." if len(steps) < 30 else None, label=f"{kind} (mean)")
        ax.legend(fontsize="small", loc="best")

    ax = axes[1]
    ax.set_title("D outputs and losses")
    ax.set_xlabel("generator step")
    ax.set_ylabel("raw D output / loss value")
    drawn = False
    for key, color in (("loss_d", "tab:purple"), ("loss_g", "tab:orange"), ("d_real", "tab:blue"),
                       ("d_fake", "tab:red")):
        steps, values = metric_series(run.metrics, key)
        if steps:
            label = {"loss_d": "D loss", "loss_g": "G loss", "d_real": "D(real), training log",
                     "d_fake": "D(fake), training log"}[key]
            ax.plot(steps, values, "-" if key.startswith("d_") else "--", color=color, linewidth=0.8,
                    alpha=0.6, label=label)
            drawn = True
    for key, color in (("d_real", "tab:blue"), ("d_fake", "tab:red")):
        steps, values = d_out[key]
        if steps:
            ax.plot(steps, values, "o", color=color, markersize=4,
                    label=f"D({key[2:]}), mean at probes")
            drawn = True
    if drawn:
        ax.axhline(0.0, color="0.5", linewidth=0.8)
        ax.legend(fontsize="small", loc="best")
    else:
        _no_data(ax, "no D outputs or losses recorded")
    fig.suptitle(f"{run_name(run)}: D's sensitivity to its input")
    return save_png(fig, Path(path))


def plot_lipschitz(run: RunRecords, path: str | os.PathLike) -> Path | None:
    """Upper (product of layer norms) and lower (largest input-gradient norm) bounds on D's Lipschitz
    constant over training; health warnings as vertical lines."""
    upper = probe_series(run.diagnostics, "lipschitz_upper")
    lower = probe_series(run.diagnostics, "lipschitz_lower")
    if not upper[0] and not lower[0]:
        return None
    fig, axes = new_figure(1, width=8.0)
    ax = axes[0]
    log = _y_scale(ax, upper[1] + lower[1], "Lipschitz constant bound of D", force_log=True)
    for (steps, values), label, color in ((upper, "upper bound (product of layer norms)", "tab:red"),
                                          (lower, "lower bound (largest ||grad_x D||)", "tab:blue")):
        s, v = _positive_if(log, steps, values)
        if s:
            ax.plot(s, v, color=color, marker="." if len(s) < 30 else None, label=label)
    warned: dict[int, list[str]] = {}
    for w in run.health:
        warned.setdefault(w.step, []).append(w.rule)
    for i, (step, rules) in enumerate(sorted(warned.items())):
        ax.axvline(step, color="tab:orange", linestyle=":", linewidth=1.2,
                   label="health warning" if i == 0 else None)
        if i < 12:
            text = ", ".join(sorted(set(rules)))
            ax.annotate(text, (step, 1.0), xycoords=ax.get_xaxis_transform(), xytext=(3, -4),
                        textcoords="offset points", rotation=90, ha="left", va="top", fontsize="x-small",
                        color="tab:orange")
    ax.set_xlabel("generator step")
    ax.set_title(f"{run_name(run)}: bounds on D's Lipschitz constant"
                 + (f" ({len(run.health)} health warning{'s' if len(run.health) != 1 else ''})" if run.health else ""))
    ax.legend(fontsize="small", loc="best")
    return save_png(fig, Path(path))


def plot_mean_drift(run: RunRecords, path: str | os.PathLike) -> Path | None:
    """Left: each layer's mean drift ``act_mean / act_std`` (channel means of its output, in within-channel
    standard deviations) over training. Right: the sparsity of each layer's raw-weight gradient.
    Writes nothing (None) for records without them (runs of gannorm before they were measured)."""
    drift, sparsity = layer_series(run.diagnostics, "drift"), layer_series(run.diagnostics, "grad_sparsity")
    if not drift and not sparsity:
        return None
    layers = [n for n in layer_names(run.diagnostics) if n in drift or n in sparsity]
    colors = _layer_colors(layers)
    fig, axes = new_figure(2)
    for ax, series, title, ylabel in (
            (axes[0], drift, "mean drift of each layer's output", "act_mean / act_std (mean |channel mean| / std)"),
            (axes[1], sparsity, "sparsity of the weight gradient", f"fraction of |g| <= {SPARSITY_TAU:g} RMS(g)")):
        ax.set_title(title)
        ax.set_xlabel("generator step")
        if not series:
            ax.set_ylabel(ylabel)
            _no_data(ax, "not recorded")
            continue
        log = _y_scale(ax, _all_values(series), ylabel, span=100.0)
        _plot_layers(ax, series, colors, log)
    fig.suptitle(f"{run_name(run)}: mean drift and gradient sparsity per layer")
    _layer_key(fig, axes, layers, colors)
    return save_png(fig, Path(path))


FIGURES: dict[str, Callable[[RunRecords, Path], Path | None]] = {
    "gradients.png": plot_gradients,
    "sigmas.png": plot_sigmas,
    "variance.png": plot_variance,
    "input_gradients.png": plot_input_gradients,
    "lipschitz.png": plot_lipschitz,
    "mean_drift.png": plot_mean_drift,
}
