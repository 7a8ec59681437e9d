"""Figures and a summary from a run folder's logs (``gannorm analyze RUN``).

Reads ``diagnostics.jsonl``, ``health.jsonl`` and ``metrics.jsonl`` (formats in
:mod:`gannorm.diagnostics`), plus ``config.yaml`` and ``status.json``. The work is split in three:

* :func:`load_run` parses the files into a :class:`RunLog`. It skips lines that are not JSON objects
  with a ``step`` (a run killed mid-write leaves a truncated last line) and counts them; when a step
  appears twice (a resumed run), the later record wins.
* Pure functions turn records into series: :func:`layer_series`, :func:`scalar_series`,
  :func:`input_grad_series`, :func:`latest_layer_values`, :func:`gradient_ratio`, :func:`last_eval`.
  Null, missing and non-finite values are left out of series (and so out of the plots).
* ``plot_*`` functions each write one PNG through matplotlib's object API (``Figure`` plus the Agg
  canvas, no pyplot state, so they work headless and from threads); :func:`summarize` writes the
  Markdown summary; :func:`analyze` writes all of them for which there is data.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from ..fileio import atomic_write_text
from .figures import new_figure, save_png
from .runlog import read_jsonl

DIAGNOSTICS = "diagnostics.jsonl"
HEALTH = "health.jsonl"
METRICS = "metrics.jsonl"
ANALYSIS_DIR = "analysis"

Series = tuple[list[int], list[float]]

NO_DIAGNOSTICS_HINT = "train with diagnostics.every=N (e.g. 100) to record diagnostics"


# ----------------------------------------------------------------------------------------- loading

@dataclass
class RunLog:
    """The parsed logs of one run folder. Record lists are sorted by step, one record per step."""
    run_dir: Path
    diagnostics: list[dict[str, Any]] = field(default_factory=list)  # diagnostics.jsonl
    metrics: list[dict[str, Any]] = field(default_factory=list)      # metrics.jsonl
    health: list[dict[str, Any]] = field(default_factory=list)       # health.jsonl, in file order by step
    config: dict[str, Any] = field(default_factory=dict)             # config.yaml as plain YAML ({} if absent)
    status: dict[str, Any] = field(default_factory=dict)             # status.json ({} if absent)
    skipped: dict[str, int] = field(default_factory=dict)            # file name -> unreadable lines skipped

    @property
    def name(self) -> str:
        return self.run_dir.resolve().name

    @property
    def layers(self) -> list[str]:
        return layer_names(self.diagnostics)


def _by_step(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """Records with an integer ``step``, sorted, rows of the same step merged (later keys win: the
    training, evaluation and diagnostics rows of ``metrics.jsonl`` share steps); and the number dropped."""
    out: dict[int, dict[str, Any]] = {}
    dropped = 0
    for rec in records:
        step = _step(rec)
        if step is None:
            dropped += 1
            continue
        out[step] = {**out.get(step, {}), **rec}
    return [out[s] for s in sorted(out)], dropped


def _step(rec: dict[str, Any]) -> int | None:
    step = rec.get("step")
    if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step):
        return None
    return int(step)


def load_run(run_dir: str | os.PathLike) -> RunLog:
    """Parse a run folder's logs. A missing folder, or one with neither ``diagnostics.jsonl`` nor
    ``metrics.jsonl``, raises :class:`FileNotFoundError` with a one-line message."""
    path = Path(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    if not path.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run folder (it is a file)")
    diag_path, metrics_path = path / DIAGNOSTICS, path / METRICS
    if not diag_path.is_file() and not metrics_path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {DIAGNOSTICS} (nor {METRICS}): {NO_DIAGNOSTICS_HINT}")
    run = RunLog(run_dir=path)
    for name, attr in ((DIAGNOSTICS, "diagnostics"), (METRICS, "metrics"), (HEALTH, "health")):
        if not (path / name).is_file():
            continue
        records, skipped = read_jsonl(path / name)
        if attr == "health":
            kept = [r for r in records if _step(r) is not None]
            kept.sort(key=lambda r: _step(r))
            dropped = len(records) - len(kept)
        else:
            kept, dropped = _by_step(records)
        setattr(run, attr, kept)
        if skipped + dropped:
            run.skipped[name] = skipped + dropped
    run.config = _read_yaml(path / "config.yaml")
    run.status = _read_json(path / "status.json")
    return run


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    import yaml
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------------------------------------ series

def _num(value: Any) -> float | None:
    """A float from a log value: numbers, or the strings "nan"/"inf" (metrics.jsonl); None otherwise."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _finite(value: Any) -> float | None:
    v = _num(value)
    return v if v is not None and math.isfinite(v) else None


def _layers_of(rec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    layers = rec.get("layers")
    if not isinstance(layers, dict):
        return {}
    return {str(k): v for k, v in layers.items() if isinstance(v, dict)}


def layer_names(records: Iterable[dict[str, Any]]) -> list[str]:
    """D's layers in forward order: the order of each record's ``layers``, new names appended."""
    seen: dict[str, None] = {}
    for rec in records:
        for name in _layers_of(rec):
            seen.setdefault(name, None)
    return list(seen)


def layer_series(records: Iterable[dict[str, Any]], key: str) -> dict[str, Series]:
    """``{layer: (steps, values)}`` of a per-layer quantity (``grad_raw``, ``sigma1``, ...).

    Null, missing and non-finite values are left out; layers without any value are left out. The
    dict is in forward layer order.
    """
    records = list(records)
    out: dict[str, Series] = {}
    for name in layer_names(records):
        steps, values = [], []
        for rec in records:
            v = _finite(_layers_of(rec).get(name, {}).get(key))
            if v is not None:
                steps.append(_step(rec))
                values.append(v)
        if steps:
            out[name] = (steps, values)
    return out


def scalar_series(records: Iterable[dict[str, Any]], key: str) -> Series:
    """``(steps, values)`` of a top-level key (``d_real``, ``lipschitz_upper``, ``loss_d``, ``eval/cfd``, ...)."""
    steps, values = [], []
    for rec in records:
        v = _finite(rec.get(key))
        if v is not None:
            steps.append(_step(rec))
            values.append(v)
    return steps, values


def input_grad_series(records: Iterable[dict[str, Any]], which: str
                      ) -> tuple[list[int], list[float], list[float], list[float]]:
    """``(steps, mean, min, max)`` of ``input_grad[which]`` (``real``, ``fake``, ``interpolated``).

    A step is kept when its mean is finite; a missing min or max is NaN (a gap in the band).
    """
    steps, mean, lo, hi = [], [], [], []
    for rec in records:
        grads = rec.get("input_grad")
        entry = grads.get(which) if isinstance(grads, dict) else None
        if not isinstance(entry, dict):
            continue
        m = _finite(entry.get("mean"))
        if m is None:
            continue
        steps.append(_step(rec))
        mean.append(m)
        for out, key in ((lo, "min"), (hi, "max")):
            v = _finite(entry.get(key))
            out.append(math.nan if v is None else v)
    return steps, mean, lo, hi


def latest_layer_values(records: Sequence[dict[str, Any]], key: str) -> dict[str, tuple[int, float]]:
    """``{layer: (step, value)}``: each layer's last finite value of ``key``, in forward layer order."""
    return {name: (s[-1], v[-1]) for name, (s, v) in layer_series(records, key).items()}


def gradient_ratio(record: dict[str, Any], key: str = "grad_raw") -> tuple[str, str, float | None] | None:
    """``(first layer, last layer, ratio)``: the first layer's ``key`` over the last layer's in one probe.

    First and last are the ends of the record's ``layers`` in forward order. The ratio is None when
    either value is null or non-finite or the last one is zero; the result is None when the record has
    fewer than two layers.
    """
    layers = list(_layers_of(record).items())
    if len(layers) < 2:
        return None
    (first, a), (last, b) = layers[0], layers[-1]
    num, den = _finite(a.get(key)), _finite(b.get(key))
    ratio = num / den if num is not None and den not in (None, 0.0) else None
    return first, last, ratio


def last_eval(metrics: Iterable[dict[str, Any]]) -> dict[str, tuple[int, float]]:
    """``{key: (step, value)}``: the last finite value of each ``eval/...`` key in metrics.jsonl."""
    out: dict[str, tuple[int, float]] = {}
    for rec in metrics:
        for key, value in rec.items():
            if key.startswith("eval/"):
                v = _finite(value)
                if v is not None:
                    out[key] = (_step(rec), v)
    return out


def describe_run(config: dict[str, Any]) -> dict[str, str]:
    """Method, network and dataset as short strings, from config.yaml (``?`` where unknown)."""
    def section(name: str) -> dict[str, Any]:
        sec = config.get(name)
        return sec if isinstance(sec, dict) else {}

    norm, model, data, train = section("normalization"), section("model"), section("data"), section("train")
    method = str(norm.get("method", "?"))
    options = norm.get("options") or {}
    if isinstance(options, dict) and options:
        method += " (" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")"
    function = str(norm.get("function", "none"))
    network = str(model.get("arch", "?"))
    if model.get("width") is not None:
        network += f" (width {model['width']})"
    dataset = str(data.get("name", "?"))
    if data.get("resolution") is not None:
        dataset += f" ({data['resolution']}x{data['resolution']})"
    out = {"method": method, "function": function, "network": network, "dataset": dataset}
    if train.get("loss") is not None:
        out["loss"] = str(train["loss"])
    return out


# ------------------------------------------------------------------------------------------ figures

_LEGEND_MAX_LAYERS = 12
_STYLES = {"sigma": "-", "sigma1": "--", "sigma2": ":", "raw_spectral": "-", "strict_sigma": "-."}


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


def plot_gradients(run: RunLog, path: str | os.PathLike) -> Path | None:
    """``||dL/dW||_F`` per layer over training, w.r.t. the raw (left) and effective (right) weights.
    Writes nothing and returns None when no probe has gradient norms."""
    panels = [("grad_raw", "w.r.t. the raw weight W", "||dL/dW||_F"),
              ("grad_effective", "w.r.t. the effective weight W_eff", "||dL/dW_eff||_F")]
    data = {key: layer_series(run.diagnostics, key) for key, *_ in panels}
    if not any(data.values()):
        return None
    layers = [n for n in run.layers if any(n in d for d in data.values())]
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
    fig.suptitle(f"{run.name}: per-layer gradient norms of the D loss")
    _layer_key(fig, axes, layers, colors)
    return save_png(fig, Path(path))


def plot_sigmas(run: RunLog, path: str | os.PathLike) -> Path | None:
    """Left: the normalization's sigma per layer (BSN's sigma1/sigma2 dashed/dotted). Right: the raw
    weight's spectral norm and, when recorded, the strict operator norm of W_eff."""
    keys = ["sigma", "sigma1", "sigma2", "raw_spectral", "strict_sigma"]
    data = {key: layer_series(run.diagnostics, key) for key in keys}
    if not any(data.values()):
        return None
    layers = [n for n in run.layers if any(n in d for d in data.values())]
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
    fig.suptitle(f"{run.name}: sigma trajectories per layer")
    _layer_key(fig, axes, layers, colors)
    return save_png(fig, Path(path))


def plot_variance(run: RunLog, path: str | os.PathLike) -> Path | None:
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
        pts = [(i, ref[n][1]) for i, n in enumerate(layers) if n in ref and (ref[n][1] > 0 or not log)]
        if pts:
            ax.plot([i for i, _ in pts], [v for _, v in pts], marker, color=color, linestyle="none",
                    markersize=8, label=name)
    ax.axhline(1.0, color="k", linestyle="--", linewidth=1, label="LeCun (1)")
    ax.set_xlabel("layer index (forward order)")
    ax.set_xticks(idx)
    ax.set_xticklabels([f"{i}" for i in idx] if len(layers) > _LEGEND_MAX_LAYERS else
                       [f"{i}: {n}" for i, n in enumerate(layers)], fontsize="small", rotation=30, ha="right")
    ax.legend(fontsize="small", loc="best")
    fig.suptitle(f"{run.name}: effective-weight variance, fan_in * Var(W_eff)")
    _layer_key(fig, axes, layers, colors)
    return save_png(fig, Path(path))


def plot_input_gradients(run: RunLog, path: str | os.PathLike) -> Path | None:
    """Left: per-sample ``||grad_x D(x)||_2``, mean with a min-max band, for real, fake and
    interpolated inputs. Right: D(real), D(fake) at the probes, and the losses from metrics.jsonl."""
    kinds = {k: input_grad_series(run.diagnostics, k) for k in ("real", "fake", "interpolated")}
    d_out = {k: scalar_series(run.diagnostics, k) for k in ("d_real", "d_fake")}
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
        steps, values = scalar_series(run.metrics, key)
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
    fig.suptitle(f"{run.name}: D's sensitivity to its input")
    return save_png(fig, Path(path))


def plot_lipschitz(run: RunLog, path: str | os.PathLike) -> Path | None:
    """Upper (product of layer norms) and lower (largest input-gradient norm) bounds on D's Lipschitz
    constant over training; health warnings as vertical lines."""
    upper = scalar_series(run.diagnostics, "lipschitz_upper")
    lower = scalar_series(run.diagnostics, "lipschitz_lower")
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
        warned.setdefault(_step(w), []).append(str(w.get("rule", "warning")))
    for i, (step, rules) in enumerate(sorted(warned.items())):
        ax.axvline(step, color="tab:orange", linestyle=":", linewidth=1.2,
                   label="health warning" if i == 0 else None)
        if i < 12:
            text = ", ".join(sorted(set(rules)))
            ax.annotate(text, (step, 1.0), xycoords=ax.get_xaxis_transform(), xytext=(3, -4),
                        textcoords="offset points", rotation=90, ha="left", va="top", fontsize="x-small",
                        color="tab:orange")
    ax.set_xlabel("generator step")
    ax.set_title(f"{run.name}: bounds on D's Lipschitz constant"
                 + (f" ({len(run.health)} health warning{'s' if len(run.health) != 1 else ''})" if run.health else ""))
    ax.legend(fontsize="small", loc="best")
    return save_png(fig, Path(path))


FIGURES: dict[str, Callable[[RunLog, Path], Path | None]] = {
    "gradients.png": plot_gradients,
    "sigmas.png": plot_sigmas,
    "variance.png": plot_variance,
    "input_gradients.png": plot_input_gradients,
    "lipschitz.png": plot_lipschitz,
}


# ------------------------------------------------------------------------------------------ summary

def _fmt(value: Any) -> str:
    v = _num(value)
    if v is None:
        return "-"
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.4g}"


def _step_range(records: Sequence[dict[str, Any]]) -> str:
    steps = [_step(r) for r in records]
    if not steps:
        return "none"
    text = f"{len(steps)} records, generator steps {steps[0]} to {steps[-1]}"
    gaps = {b - a for a, b in zip(steps, steps[1:])}
    if len(gaps) == 1:
        text += f" (every {gaps.pop()})"
    return text


_TABLE_KEYS = ("grad_raw", "grad_effective", "var_ratio", "sigma")


def _layer_table(record: dict[str, Any]) -> list[str]:
    layers = _layers_of(record)
    extra = [k for k in ("sigma1", "sigma2") if any(v.get(k) is not None for v in layers.values())]
    keys = [*_TABLE_KEYS, *extra]
    lines = ["| # | layer | kind | " + " | ".join(keys) + " |", "|---|---|---|" + "---|" * len(keys)]
    for i, (name, vals) in enumerate(layers.items()):
        lines.append(f"| {i} | {name} | {vals.get('kind', '-')} | "
                     + " | ".join(_fmt(vals.get(k)) for k in keys) + " |")
    return lines


def summarize(run: RunLog, figures: Sequence[str | os.PathLike] = ()) -> str:
    """The run's analysis as Markdown: what was run, per-layer tables at the first and last probe,
    the first/last-layer gradient ratio, the Lipschitz bounds, health warnings and the last evaluation."""
    info = describe_run(run.config)
    lines = [f"# Analysis of {run.name}", "", f"- run folder: {run.run_dir}"]
    if run.status:
        status = f"- status: {run.status.get('status', '?')}"
        if run.status.get("step") is not None:
            status += f" at generator step {run.status['step']}"
        if run.status.get("reason"):
            status += f" ({run.status['reason']})"
        lines.append(status)
    if run.config:
        lines.append(f"- method: {info['method']}; function normalization: {info['function']}")
        lines.append(f"- network: {info['network']}; dataset: {info['dataset']}"
                     + (f"; loss: {info['loss']}" if "loss" in info else ""))
    else:
        lines.append("- no config.yaml: method, network and dataset unknown")
    lines.append(f"- diagnostics probes: {_step_range(run.diagnostics)}")
    lines.append(f"- training-log rows (metrics.jsonl): {_step_range(run.metrics)}")
    for name, n in run.skipped.items():
        lines.append(f"- {name}: skipped {n} unreadable line{'s' if n != 1 else ''} (e.g. a truncated last line)")
    lines.append("")

    diag = run.diagnostics
    if not diag:
        if (run.run_dir / DIAGNOSTICS).is_file():
            lines += [f"{DIAGNOSTICS} has no complete record yet (the first probe is written at "
                      "diagnostics.every steps).", ""]
        else:
            lines += [f"No {DIAGNOSTICS}: {NO_DIAGNOSTICS_HINT}.", ""]
    else:
        first, last = diag[0], diag[-1]
        probes = [("first", first)] if first is last else [("first", first), ("last", last)]
        for which, rec in probes:
            lines += [f"## Layers at the {which} probe (generator step {_step(rec)})", "",
                      *_layer_table(rec), ""]
        lines += ["## Gradient norm, first layer / last layer", "",
                  "| probe | generator step | layers | grad_raw ratio | grad_effective ratio |",
                  "|---|---|---|---|---|"]
        for which, rec in probes:
            raw, eff = gradient_ratio(rec, "grad_raw"), gradient_ratio(rec, "grad_effective")
            pair = f"{raw[0]} / {raw[1]}" if raw else "-"
            lines.append(f"| {which} | {_step(rec)} | {pair} | {_fmt(raw[2] if raw else None)} | "
                         f"{_fmt(eff[2] if eff else None)} |")
        lines.append("")
        up, lo = last.get("lipschitz_upper"), last.get("lipschitz_lower")
        lines += [f"## Lipschitz bounds at the last probe (generator step {_step(last)})", "",
                  f"- upper bound (product of layer norms): {_fmt(up)}"
                  + (f" ({last['lipschitz_upper_note']})" if up is None and last.get("lipschitz_upper_note") else ""),
                  f"- lower bound (largest input-gradient norm): {_fmt(lo)}", ""]

    lines += [f"## Health warnings ({len(run.health)})", ""]
    if run.health:
        for w in run.health:
            where = f" on {w['layer']}" if w.get("layer") else ""
            detail = ", ".join(f"{k} {_fmt(w.get(k))}" for k in ("value", "threshold") if w.get(k) is not None)
            lines.append(f"- step {_step(w)}: {w.get('rule', '?')}{where}"
                         + (f" ({detail})" if detail else "") + (f": {w['message']}" if w.get("message") else ""))
    else:
        lines.append("none" if (run.run_dir / HEALTH).is_file() or diag else "none recorded")
    lines.append("")

    scores = last_eval(run.metrics)
    lines += ["## Last evaluation (metrics.jsonl)", ""]
    if scores:
        lines += ["| metric | generator step | value |", "|---|---|---|"]
        lines += [f"| {k[5:]} | {s} | {_fmt(v)} |" for k, (s, v) in scores.items()]
    else:
        lines.append("no eval/ entries")
    lines.append("")
    if figures:
        lines += ["## Figures", "", *[f"- {Path(f).name}" for f in figures], ""]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ analyze

def analyze(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
            print_fn: Callable[[str], Any] | None = print) -> list[Path]:
    """Write the figures for which the run has data and ``summary.md`` into ``run_dir/analysis``
    (or ``out_dir``); print the summary through ``print_fn`` (None: silent). Returns the files written."""
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / ANALYSIS_DIR
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, plot in FIGURES.items():
        path = plot(run, out / name)
        if path is not None:
            written.append(path)
    text = summarize(run, written)
    summary = out / "summary.md"
    atomic_write_text(summary, text)
    written.append(summary)
    if print_fn is not None:
        print_fn(text)
    return written
