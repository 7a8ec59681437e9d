"""A sweep file, and its expansion into runs with stable ids.

A sweep is a YAML file (or the name of one shipped in ``gannorm/configs/sweeps``)::

    base: digits                 # a preset or a YAML path
    overrides: [train.steps=600] # applied to every run
    variants:                    # named override lists (optional)
      sn:   [normalization.method=sn, "normalization.options={}"]
      bssn: [normalization.method=bssn, "normalization.options={scale: 1.4}"]
    grid:                        # every combination (optional)
      optim.lr_d: [2.0e-4, 1.0e-3]
    seeds: 5                     # or a list [0, 1, 2]
    metric: cfd                  # the headline metric (default: the dataset's first default metric);
                                 # its registry entry says whether lower is better
    success: {max: 10.0}         # what counts as a successful run (default: finished with a finite metric)

It expands to variants x grid cells x seeds runs. A run's id is its variant, seed and a hash of its
resolved config, so the same run gets the same id (and run folder) every time the sweep is started.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ... import config as config_mod
from ...config import Config, ConfigError
from ...fileio import resolve_shipped, safe_name
from ...metrics.evaluate import METRICS, default_metrics, metric_dataset_problem, metrics_for_dataset
from ...validate import is_int, is_real
from ...yamlsafe import YamlError, summary
from ...yamlsafe import load as load_yaml

SWEEP_DIR = config_mod.PRESET_DIR / "sweeps"
#: the most runs one sweep may hold (variants x grid cells x seeds)
MAX_RUNS = 10_000
#: config keys a sweep sets itself, per run
RESERVED = ("train.seed", "train.out_dir", "train.run_name")
#: config keys that do not change what a run computes (left out of its id)
#: (``about`` is the preset's description, never read by training)
NOT_IN_ID = ("train.out_dir", "train.run_name", "train.progress", "train.threads", "train.tensorboard", "about")


@dataclass(frozen=True)
class SweepSpec:
    name: str
    base: str
    overrides: tuple[str, ...] = ()
    variants: dict[str, tuple[str, ...]] = field(default_factory=lambda: {"base": ()})
    grid: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    metric: str = "cfd"
    success: dict[str, float] = field(default_factory=dict)

    @property
    def lower_is_better(self) -> bool:
        return METRICS.get(self.metric).lower_is_better


@dataclass(frozen=True)
class RunSpec:
    """One run of a sweep: where it sits in the sweep and the overrides that make its config."""
    run_id: str
    variant: str
    cell: dict[str, Any]
    seed: int
    overrides: tuple[str, ...]        # applied to the base config, without train.out_dir/run_name


def sweep_names() -> list[str]:
    return sorted(p.stem for p in SWEEP_DIR.glob("*.yaml"))


def _resolve(name_or_path: str) -> Path:
    return resolve_shipped(name_or_path, folder=SWEEP_DIR, what="sweep", kind="sweep",
                           hint=lambda _: f"known: {', '.join(sweep_names())}")


def _list(value: Any, key: str, path: Path) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"sweep {path}: {key} must be a list, got {type(value).__name__}")
    return value


def _texts(value: Any, key: str, path: Path) -> tuple[str, ...]:
    """A list of ``key=value`` override texts (a number or a list inside is an error, not its repr)."""
    items = _list(value, key, path)
    bad = next((x for x in items if not isinstance(x, (str, int, float, bool))), None)
    if bad is not None:
        raise ConfigError(f"sweep {path}: {key} must list key=value overrides, got {summary(bad)}; quote an "
                          "override that holds a mapping or list (\"normalization.options={scale: 1.4}\")")
    return tuple(str(x) for x in items)


def _read(path: Path) -> Any:
    """The sweep file's data, read with the limited YAML loader (:mod:`gannorm.yamlsafe`)."""
    try:
        return load_yaml(path.read_text(encoding="utf-8"))
    except YamlError as err:
        raise ConfigError(f"sweep file {path} is {err}; fix the syntax there" if err.syntax else
                          f"sweep file {path}: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"sweep file {path} is not a text file (expected YAML)") from None


def load_sweep(name_or_path: str) -> SweepSpec:
    """Read and check a sweep file (a one-line ConfigError for anything wrong in it)."""
    path = _resolve(name_or_path)
    raw = _read(path)
    if not isinstance(raw, dict) or "base" not in raw:
        raise ConfigError(f"sweep file {path} must be a mapping with at least a 'base:' preset or config file")
    unknown = sorted(set(raw) - {"base", "overrides", "variants", "grid", "seeds", "metric", "success"})
    if unknown:
        raise ConfigError(f"sweep {path}: unknown key(s) {', '.join(unknown)} (allowed: base, overrides, variants, "
                          "grid, seeds, metric, success)")
    variants = raw.get("variants") or {"base": []}
    if not isinstance(variants, dict):
        raise ConfigError(f"sweep {path}: variants must map names to lists of key=value overrides")
    for name in variants:  # each becomes part of a run folder's name
        safe_name(name, f"sweep {path}: variant")
    grid = raw.get("grid") or {}
    if not isinstance(grid, dict):
        raise ConfigError(f"sweep {path}: grid must map config keys to lists of values")
    seeds = raw.get("seeds", 1)
    count = is_int(seeds)
    if count and not 1 <= seeds <= MAX_RUNS:
        raise ConfigError(f"sweep {path}: seeds must be a count in [1, {MAX_RUNS}] or a list of seeds >= 0")
    seeds = list(range(seeds)) if count else _list(seeds, "seeds", path)
    if not seeds or not all(is_int(s) and s >= 0 for s in seeds):
        raise ConfigError(f"sweep {path}: seeds must be a count >= 1 or a list of seeds >= 0")
    base, overrides = _base(raw["base"], path), _texts(raw.get("overrides"), "overrides", path)
    metric = raw["metric"] if "metric" in raw else default_metrics(config_mod.load(base, overrides).data.name)[0]
    spec = SweepSpec(name=safe_name(path.stem, "sweep file name"), base=base, overrides=overrides,
                     variants={k: _texts(v, f"variants.{k}", path) for k, v in variants.items()},
                     grid={k: tuple(_list(v, f"grid.{k}", path)) for k, v in grid.items()},
                     seeds=tuple(seeds), metric=_metric(metric, path),
                     success=_success(raw.get("success"), path))
    _check(spec, path)
    return spec


def _base(value: Any, path: Path) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"sweep {path}: base must name a preset or a config file, got {summary(value)}")
    return value


def _metric(value: Any, path: Path) -> str:
    if not isinstance(value, str) or value not in METRICS:
        raise ConfigError(f"sweep {path}: metric {summary(value)} is not one of {', '.join(METRICS.names())}")
    return value


def _success(value: Any, path: Path) -> dict[str, float]:
    success = value or {}
    if not isinstance(success, dict) or set(success) - {"min", "max"} or not all(
            is_real(v, finite=False) for v in success.values()):
        raise ConfigError(f"sweep {path}: success must be a mapping with 'min' and/or 'max' numbers on the metric")
    return {k: float(v) for k, v in success.items()}


def _key(override: str) -> str:
    """The config key an override (or a grid key) sets: the text before its first ``=``."""
    return str(override).split("=", 1)[0].strip()


def _check(spec: SweepSpec, path: Path) -> None:
    """Everything a sweep can get wrong, before anything is trained: reserved keys, empty grid keys, repeated
    seeds and grid values, the number of runs, every run's config (names, types, ranges, the metrics against
    the dataset) and every run id as a folder name (two runs never share one)."""
    for where, key in [*((f"grid key {k!r}", _key(k)) for k in spec.grid),
                       *(("overrides", _key(o)) for o in spec.overrides),
                       *((f"variant {v}", _key(o)) for v, extra in spec.variants.items() for o in extra)]:
        if key in RESERVED:
            raise ConfigError(f"sweep {path}: {where} sets {key}, which is set by the sweep for each run (seeds: the "
                              "'seeds:' key, where the runs go: --out DIR); remove it")
    if any(len(v) == 0 for v in spec.grid.values()):
        raise ConfigError(f"sweep {path}: every grid key needs at least one value")
    _check_repeats(spec, path)
    total = len(spec.variants) * len(spec.seeds) * math.prod(len(v) for v in spec.grid.values())
    if total > MAX_RUNS:
        raise ConfigError(f"sweep {path}: {total} runs (variants x grid cells x seeds) is more than {MAX_RUNS}; "
                          "split it into several sweeps")
    try:
        _check_metric(spec, path)
        runs = expand(spec)
    except ConfigError as err:
        raise ConfigError(f"sweep {path}: {err}") from None
    seen: dict[str, RunSpec] = {}
    for run in runs:  # every run's config resolves (names, types, ranges, metrics on the data)
        try:
            config_mod.validate(run_config(spec, run))
        except ConfigError as err:
            raise ConfigError(f"sweep {path}: run {_where(run.variant, run.seed, run.cell)}: {err}") from None
        safe_name(run.run_id, f"sweep {path}: the run id of variant {run.variant}")
        if run.run_id in seen:
            other = seen[run.run_id]
            raise ConfigError(f"sweep {path}: runs {_where(other.variant, other.seed, other.cell)} and "
                              f"{_where(run.variant, run.seed, run.cell)} are the same run (one config, one run "
                              "id); give each grid key distinct values")
        seen[run.run_id] = run


def _check_repeats(spec: SweepSpec, path: Path) -> None:
    """A seed or a grid value listed twice would make two runs of one run id (one folder, trained twice)."""
    seed = next((s for i, s in enumerate(spec.seeds) if s in spec.seeds[:i]), None)
    if seed is not None:
        raise ConfigError(f"sweep {path}: seed {seed} is listed twice in seeds; list each seed once")
    for key, values in spec.grid.items():
        texts = [_value_text(v) for v in values]
        repeat = next((t for i, t in enumerate(texts) if t in texts[:i]), None)
        if repeat is not None:
            raise ConfigError(f"sweep {path}: grid key {key} lists the value {summary(repeat, 30)} twice; list "
                              "each value once")


def _where(variant: str, seed: int, cell: dict[str, Any]) -> str:
    """A run's place in the sweep, in words: ``sn (seed 0, optim.lr_d=0.0002)``."""
    return f"{variant} (seed {seed}{''.join(f', {k}={summary(v, 30)}' for k, v in cell.items())})"


def _check_metric(spec: SweepSpec, path: Path) -> None:
    """The sweep's headline ``metric:`` must be computable on the base config's dataset."""
    data = config_mod.load(spec.base, spec.overrides).data.name
    why = metric_dataset_problem(spec.metric, data)
    if why is not None:
        raise ConfigError(f"sweep {path}: metric {spec.metric} cannot be computed on dataset {data!r} ({why}); "
                          f"use metric: {' or '.join(metrics_for_dataset(data)) or '(none fits)'}")


def _value_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _evaluation_overrides(spec: SweepSpec) -> list[str]:
    """Make sure every run evaluates the headline metric, at least at its last step."""
    base = config_mod.load(spec.base, spec.overrides)
    extra = []
    if base.train.eval_every <= 0:
        extra.append(f"train.eval_every={base.train.steps}")
    metrics = list(config_mod.evaluated_metrics(base))  # the dataset's defaults (conditional ones included)
    if spec.metric not in metrics:
        extra.append(f"train.eval_metrics=[{', '.join([*metrics, spec.metric])}]")
    return extra


def _changed(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that differ from ``defaults`` (recursively, for nested sections)."""
    out = {}
    for key, value in values.items():
        default = defaults.get(key)
        if key in defaults and value == default:
            continue
        if isinstance(value, dict) and isinstance(default, dict) and set(default) <= set(value):
            out[key] = _changed(value, default)
        else:
            out[key] = value
    return out


def _without_ignored(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` (a config as a dict) without the keys of :data:`NOT_IN_ID`."""
    for key in NOT_IN_ID:
        section, _, name = key.partition(".")
        if name:
            values.get(section, {}).pop(name, None)
        else:
            values.pop(section, None)
    return values


def id_values(cfg: Config) -> dict[str, Any]:
    """What a run id hashes: the config's values that differ from the defaults, less :data:`NOT_IN_ID`
    (taken out of both sides, so that a section is compared key by key)."""
    return _changed(_without_ignored(config_mod.to_dict(cfg)), _without_ignored(config_mod.to_dict(Config())))


def _run_id(variant: str, seed: int, cfg: Config) -> str:
    """``<variant>-s<seed>-<hash>``; the hash covers the config's values that differ from the defaults.

    Hashing only the changes keeps a sweep's ids stable when a later gannorm adds a config key with a
    default (its runs are not retrained); keys that do not change what a run computes are left out.
    """
    digest = hashlib.sha256(json.dumps(id_values(cfg), sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{variant}-s{seed}-{digest}"


def expand(spec: SweepSpec) -> list[RunSpec]:
    """Every run of the sweep: variants x grid cells x seeds, in that order."""
    evaluation = _evaluation_overrides(spec)
    keys = list(spec.grid)
    runs = []
    for variant, extra in spec.variants.items():
        for values in itertools.product(*(spec.grid[k] for k in keys)):
            cell = dict(zip(keys, values))
            for seed in spec.seeds:
                overrides = (*spec.overrides, *evaluation, *extra,
                             *(f"{k}={_value_text(v)}" for k, v in cell.items()), f"train.seed={seed}")
                try:
                    cfg = config_mod.load(spec.base, overrides)
                except ConfigError as err:  # a grid or variant value the config refuses: say which run
                    raise ConfigError(f"run {_where(variant, seed, cell)}: {err}") from None
                runs.append(RunSpec(_run_id(variant, seed, cfg), variant, cell, seed, tuple(overrides)))
    return runs


def run_config(spec: SweepSpec, run: RunSpec, extra: Sequence[str] = ()) -> Config:
    return config_mod.load(spec.base, [*run.overrides, *extra])
