"""Typed run configuration: dataclasses loaded from YAML, with ``key=value`` overrides.

A config has five sections (``data``, ``model``, ``normalization``, ``optim``, ``train``); a YAML file
or an override names a field by its dotted path (``train.steps=2000``,
``normalization.options.scale=1.4``). Unknown keys and ill-typed values fail with a one-line
:class:`ConfigError` naming the key and what is allowed. Fields whose values come from a
registry (loss, normalization, architecture, dataset) are checked against it in :func:`validate`.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from .data import DATASETS
from .errors import ConfigError
from .gradnorm import FUNCTIONS
from .init import SCHEMES
from .losses import LOSSES
from .metrics.evaluate import METRICS
from .networks import NETWORKS
from .normalizations import METHODS
from .normalizations.model import method_options
from .penalties import PENALTIES


@dataclass
class DataConfig:
    name: str = "digits"                 # a dataset from ``gannorm list``
    root: str | None = None              # where its files are (None: the dataset's default)
    resolution: int | None = None        # image size (None: the dataset's default size)
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific options (e.g. limit)


@dataclass
class ModelConfig:
    arch: str = "cnn"                    # a network from ``gannorm list``
    width: float = 0.25                  # channel-width multiplier (1.0 = the official network)
    z_dim: int = 128
    g_options: dict[str, Any] = field(default_factory=dict)  # architecture options for G (e.g. depth)
    d_options: dict[str, Any] = field(default_factory=dict)  # ... and for D
    d_init: str = "official"             # D's initialisation: official, lecun, xavier, kaiming, normal, trunc_normal


@dataclass
class NormalizationConfig:
    method: str = "sn"                   # a method from ``gannorm list``, applied to every D layer
    options: dict[str, Any] = field(default_factory=dict)  # that method's options: scale, update, warmup, ...
    function: str = "none"               # function-level normalization of D's output: none, gn, pgn
    function_eps: float = 0.0            # eps in GN/PGN's denominator (0: the official code)
    first_order_g: bool = False          # GN's first-order G step (Faster-GNGAN; exact for piecewise-linear D)


@dataclass
class OptimConfig:
    lr_d: float = 2e-4
    lr_g: float = 2e-4
    betas_d: tuple[float, float] = (0.5, 0.999)
    betas_g: tuple[float, float] = (0.5, 0.999)
    eps: float = 1e-8                    # Adam epsilon (TF's default)
    lr_decay: Literal["none", "linear"] = "none"   # linear: to 0 at the last step
    lr_decay_start: int = 0              # G step where the linear decay starts


@dataclass
class TrainConfig:
    steps: int = 2000                    # generator steps
    n_dis: int = 1                       # discriminator steps per generator step
    batch_size_d: int = 64
    batch_size_g: int = 64
    loss: str = "hinge"                  # a loss from ``gannorm list``
    real_hflip: bool = False             # flip each real image horizontally with probability 0.5 (GN-GAN data)
    g_reuses_d_z: bool = False           # official CNN code: the G step reuses the last D step's z
    penalty: str = "none"                # a gradient penalty on D: none or a name from gannorm.PENALTIES
    penalty_weight: float | None = None  # None: the penalty's standard weight (its registry entry)
    penalty_every: int = 1               # lazy regularization: apply every k D steps, weight times k
    weight_clip: float = 0.0             # clip D's raw weights to [-c, c] after each D step (0: off)
    ortho_reg: float = 0.0               # orthogonal regularization weight on D (BigGAN form; 0: off)
    cr_weight: float = 0.0               # consistency regularization on reals (5 in GN-GAN-CR, 10 in CR-GAN; 0: off)
    cr_translate: float = 0.125          # CR augmentation: flip + translate by up to this fraction (GN-GAN-CR: 0.2)
    g_bn_stats_in_d_step: bool = True    # G's BatchNorm running stats also update on the D steps' fakes
                                         # (official CNN code); false: only in the G step (official ResNet)
    ema_decay: float = 0.0               # EMA of G (0: off; 0.9999 in the GN-GAN configs)
    ema_start: int = 0                   # G step where the EMA starts
    seed: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False          # NHWC memory format for G, D and image batches (faster convs on CPU)
    device: str = "auto"                 # auto, cpu, cuda, cuda:1, ...
    threads: int = 0                     # torch CPU threads (0: leave torch's default)
    eval_every: int = 0                  # evaluate every N G steps and at the end (0: off)
    eval_metrics: tuple[str, ...] = ()   # metric names (empty: the dataset's default, see 'gannorm list')
    eval_num_samples: int = 1000         # generated samples per evaluation (real: as many, or the dataset size)
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    num_samples_grid: int = 64           # images in the fixed-z sample grid
    out_dir: str = "runs"
    run_name: str | None = None          # default: <data>-<arch>-<method>-<seed>
    tensorboard: bool = True             # also write TensorBoard scalars (if tensorboard is installed)
    progress: bool = True                # progress bar on stderr


@dataclass
class DiagnosticsConfig:
    every: int = 0                       # probe D every N G steps (0: off); see gannorm.diagnostics
    batch_size: int = 64                 # real and fake samples per probe
    strict: bool = False                 # also the strict (operator) sigma of every layer
    bounds: bool = True                  # the Lipschitz upper bound (product of operator norms) per probe
    # health warnings (each fires once per layer; gannorm.diagnostics.health documents the rules)
    explode_growth: float = 1e3          # a layer's raw-weight gradient norm is this times its recent median
    explode_abs: float = 1e3             # a layer's raw-weight gradient norm above this
    vanish_ratio: float = 1e-3           # first layer's effective-weight gradient norm / the last layer's below this
    saturate_gap: float = 30.0           # mean D(real) - mean D(fake) above this (sigmoid losses saturate)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


# ------------------------------------------------------------------------------------ typing
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_type_name(args[0])}"
        return "a list of " + ", ".join(_type_name(a) for a in args)
    if origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; returns the value in its canonical form."""
    origin = typing.get_origin(tp)
    bad = ConfigError(f"config key {key}: {value!r} is not {_type_name(tp)}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"config key {key}: {value!r} is not one of "
                              f"{', '.join(map(str, typing.get_args(tp)))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                pass
        raise bad
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            if isinstance(value, str):  # a comma-separated list on the command line
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, (list, tuple)):
                raise bad
            return tuple(_coerce(v, args[0], key) for v in value)
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise bad
        return tuple(_coerce(v, a, key) for v, a in zip(value, args))
    if origin is dict:
        if not isinstance(value, dict):
            raise bad
        return dict(value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                raise bad from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is str:
        if not isinstance(value, str):
            raise bad
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# ------------------------------------------------------------------------------------ building
def _apply(obj: Any, mapping: dict[str, Any], prefix: str) -> None:
    hints = _hints(type(obj))
    for key, value in mapping.items():
        path = f"{prefix}{key}"
        if key not in hints:
            allowed = ", ".join(f.name for f in dataclasses.fields(obj))
            raise ConfigError(f"unknown config key {path!r}; allowed{' in ' + prefix[:-1] if prefix else ''}: {allowed}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path}: expected a mapping of its fields, got {value!r}")
            _apply(current, value, path + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override {item!r} is not key=value (e.g. train.steps=100)")
    key, _, text = item.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {item!r} has an empty key part")
    return parts, _parse_value(text.strip())


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars or lists)."""
    for item in overrides:
        parts, value = parse_override(item)
        obj: Any = cfg
        for i, part in enumerate(parts[:-1]):
            child = getattr(obj, part, None) if dataclasses.is_dataclass(obj) else None
            if isinstance(obj, dict):
                obj = obj.setdefault(part, {})
                continue
            if child is None or part not in _hints(type(obj)):
                path = ".".join(parts[: i + 1])
                allowed = ", ".join(f.name for f in dataclasses.fields(obj))
                raise ConfigError(f"unknown config key {path!r}; allowed: {allowed}")
            obj = child
        last = parts[-1]
        if isinstance(obj, dict):
            obj[last] = value
        else:
            _apply(obj, {last: value}, ".".join(parts[:-1]) + "." if len(parts) > 1 else "")
    return cfg


def from_dict(mapping: dict[str, Any] | None) -> Config:
    cfg = Config()
    _apply(cfg, mapping or {}, "")
    return cfg


def to_dict(cfg: Config) -> dict[str, Any]:
    def plain(v: Any) -> Any:
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}


PRESET_DIR = Path(__file__).parent / "configs"


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def resolve_path(name_or_path: str) -> Path:
    """A YAML path, or the name of a preset shipped in ``gannorm/configs``."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise ConfigError(f"config file {name_or_path!r} not found (or use a preset: "
                              f"{', '.join(preset_names())})")
        return path
    preset = PRESET_DIR / f"{name_or_path}.yaml"
    if not preset.is_file():
        raise ConfigError(f"unknown preset {name_or_path!r}; known: {', '.join(preset_names())}")
    return preset


def load(name_or_path: str | None = None, overrides: Sequence[str] = ()) -> Config:
    """The default config, updated by a YAML file or preset, then by ``key=value`` overrides."""
    mapping: dict[str, Any] = {}
    if name_or_path:
        path = resolve_path(name_or_path)
        try:
            mapping = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"config file {path} is not valid YAML: {str(err).splitlines()[0]}") from None
        if not isinstance(mapping, dict):
            raise ConfigError(f"config file {path} must hold a mapping of sections, got {type(mapping).__name__}")
    mapping.pop("variants", None)  # a comparison preset's list of runs (see load_variants)
    cfg = from_dict(mapping)
    return apply_overrides(cfg, overrides)


def load_variants(name_or_path: str) -> dict[str, list[str]]:
    """A preset's ``variants:`` mapping (name -> list of ``key=value`` overrides), or ``{}``.

    A comparison preset trains the same base config once per variant (``gannorm train compare_digits``).
    """
    mapping = yaml.safe_load(resolve_path(name_or_path).read_text()) or {}
    variants = mapping.get("variants") or {}
    if not isinstance(variants, dict) or not all(isinstance(v, list) for v in variants.values()):
        raise ConfigError(f"config {name_or_path}: variants must map names to lists of key=value overrides")
    return {str(k): [str(x) for x in v] for k, v in variants.items()}


def dump(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def validate(cfg: Config) -> None:
    """Check registry-backed names and numeric ranges; raises a one-line ConfigError."""
    for key, value, registry in (("data.name", cfg.data.name, DATASETS), ("model.arch", cfg.model.arch, NETWORKS),
                                 ("normalization.method", cfg.normalization.method, METHODS),
                                 ("train.loss", cfg.train.loss, LOSSES)):
        if value not in registry:
            raise ConfigError(f"config key {key}: {value!r} is not one of {', '.join(registry.names())}")
    if cfg.train.penalty != "none" and cfg.train.penalty not in PENALTIES:
        raise ConfigError(f"config key train.penalty: {cfg.train.penalty!r} is not one of none, "
                          f"{', '.join(PENALTIES.names())}")
    t = cfg.train
    for key, value, low in (("train.steps", t.steps, 1), ("train.n_dis", t.n_dis, 1),
                            ("train.batch_size_d", t.batch_size_d, 1), ("train.batch_size_g", t.batch_size_g, 1),
                            ("train.log_every", t.log_every, 1), ("train.sample_every", t.sample_every, 1),
                            ("train.checkpoint_every", t.checkpoint_every, 1), ("train.threads", t.threads, 0),
                            ("train.num_samples_grid", t.num_samples_grid, 1), ("model.z_dim", cfg.model.z_dim, 1),
                            ("train.eval_every", t.eval_every, 0), ("train.eval_num_samples", t.eval_num_samples, 2),
                            ("optim.lr_decay_start", cfg.optim.lr_decay_start, 0)):
        if value < low:
            raise ConfigError(f"config key {key}: must be >= {low}, got {value}")
    for name in t.eval_metrics:
        if name not in METRICS:
            raise ConfigError(f"config key train.eval_metrics: {name!r} is not one of {', '.join(METRICS.names())}")
    if cfg.normalization.function not in FUNCTIONS:
        raise ConfigError(f"config key normalization.function: {cfg.normalization.function!r} is not one of "
                          f"{', '.join(FUNCTIONS.names())}")
    if t.cr_weight < 0 or not 0.0 <= t.cr_translate < 0.5:
        raise ConfigError("config keys train.cr_weight (>= 0) and train.cr_translate (in [0, 0.5)) are out of range")
    if t.penalty_every < 1:
        raise ConfigError(f"config key train.penalty_every: must be >= 1, got {t.penalty_every}")
    if not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"config key train.ema_decay: must be in [0, 1), got {t.ema_decay}")
    if cfg.model.width <= 0:
        raise ConfigError(f"config key model.width: must be > 0, got {cfg.model.width}")
    n = cfg.normalization
    allowed = method_options(n.method)
    unknown = sorted(set(n.options) - set(allowed) - {"input_shape"})
    if unknown:
        raise ConfigError(f"config key normalization.options: {', '.join(unknown)} is not an option of method "
                          f"{n.method!r} (allowed: {', '.join(allowed) or 'none'}); a preset's options stay when "
                          "you change normalization.method: also set normalization.options={} (or the new options)")
    if cfg.model.d_init != "official" and cfg.model.d_init not in SCHEMES:
        raise ConfigError(f"config key model.d_init: {cfg.model.d_init!r} is not one of official, {', '.join(SCHEMES)}")
    d = cfg.diagnostics
    if d.every < 0 or d.batch_size < 2:
        raise ConfigError("config keys diagnostics.every (>= 0) and diagnostics.batch_size (>= 2) are out of range")
    if min(d.explode_growth, d.explode_abs, d.vanish_ratio, d.saturate_gap) <= 0:
        raise ConfigError("config keys diagnostics.explode_growth, explode_abs, vanish_ratio and saturate_gap "
                          "must be > 0")
