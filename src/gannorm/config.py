"""Typed run configuration: dataclasses loaded from YAML, with ``key=value`` overrides.

A config has six sections (``data``, ``model``, ``normalization``, ``optim``, ``train``, ``diagnostics``)
and a header ``about`` (what a preset reproduces; documentation, never read by training); a YAML file
or an override names a field by its dotted path (``train.steps=2000``,
``normalization.options.scale=1.4``). Unknown keys and ill-typed values fail with a one-line
:class:`ConfigError` naming the key and what is allowed. :func:`validate` checks the rest: names
against their registries (:data:`NAMES`), every number against its range (:data:`RANGES`), and the
options of the normalization method, the network and the dataset against their registry entries.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib.util
import os
import sys
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

from .augment import DIFFAUG_OPS
from .data import DATASETS
from .errors import ConfigError, OptionError
from .fileio import resolve_shipped, safe_name, safe_path
from .gradnorm import FUNCTIONS
from .init import SCHEMES
from .losses import LOSSES
from .metrics.evaluate import (METRICS, EvalOptions, check_conditional, default_metrics, metric_dataset_problem,
                               metric_protocols, metrics_for_dataset)
from .metrics.resize import DEFAULT_RESIZE, RESIZE_MODES
from .networks import NETWORKS
from .normalizations import METHODS
from .normalizations.model import method_options
from .penalties import PENALTIES
from .validate import bounds_text, in_bounds, is_int, is_real
from .yamlsafe import YamlError, problem, summary
from .yamlsafe import load as load_yaml


@dataclass
class DataConfig:
    name: str = "digits"                 # a dataset from ``gannorm list``
    root: str | None = None              # where its files are (None: the dataset's default)
    resolution: int | None = None        # image size (None: the dataset's default size)
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific options (e.g. limit)
    in_memory: bool | Literal["auto"] = "auto"  # hold the decoded images in memory, or read them from disk when
                                         # drawn (false); auto: lazily above 4 GiB decoded (docs/data.md)
    workers: int | None = None           # processes decoding a lazily read dataset (None: up to 4; 0: none)


@dataclass
class ModelConfig:
    arch: str = "cnn"                    # a network from ``gannorm list``
    width: float = 0.25                  # channel-width multiplier (1.0 = the official network)
    z_dim: int = 128
    g_options: dict[str, Any] = field(default_factory=dict)  # architecture options for G (e.g. depth)
    d_options: dict[str, Any] = field(default_factory=dict)  # ... and for D
    d_init: str = "official"             # D's initialisation: official, lecun, xavier, kaiming, normal, trunc_normal
    g_init: str = "official"             # G's initialisation, the same schemes (official: the network's own)
    num_classes: int = 0                 # class-conditional G(z, y) and D(x, y) with this many classes
                                         # (0: unconditional); must equal the dataset's number of classes
                                         # (docs/conditional.md)


@dataclass
class NormalizationConfig:
    method: str = "sn"                   # a method from ``gannorm list``, applied to every D layer
    options: dict[str, Any] = field(default_factory=dict)  # that method's options: scale, update, warmup, ...
    function: str = "none"               # function-level normalization of D's output: none, gn, pgn
    function_eps: float = 0.0            # eps in GN/PGN's denominator (0: the official code)
    first_order_g: bool = False          # GN's first-order G step (Faster-GNGAN; exact for piecewise-linear D)
    g_method: str = "none"               # a weight method applied to every G layer too (BigGAN: sn), incl. embeddings
    g_options: dict[str, Any] = field(default_factory=dict)  # that method's options on G


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
    diffaug: str = ""                    # DiffAugment policy on every D input, reals and fakes, D and G steps
                                         # (e.g. color,translation,cutout; "": off)
    g_bn_stats_in_d_step: bool = True    # G's BatchNorm running stats also update on the D steps' fakes
                                         # (official CNN code); false: only in the G step (official ResNet)
    ema_decay: float = 0.0               # EMA of G (0: off; 0.9999 in the GN-GAN configs)
    ema_start: int = 0                   # G step where the EMA starts
    ema_buffers: Literal["copy", "average"] = "copy"  # G's buffers in the EMA: copied from G, or the floating
                                         # ones (BN running stats) averaged with ema_decay as the GN-GAN code
                                         # does; power-iteration vectors are always copied (gannorm.training.ema)
    sample_mode: Literal["eval", "train"] = "eval"    # G draws samples and evaluation batches in eval mode (BN
                                         # running stats) or train mode (batch stats, as the GN-GAN code; the
                                         # buffers stay as they were); see gannorm.training.sample_mode
    seed: int = 0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    channels_last: bool = False          # NHWC memory format for G, D and image batches (faster convs on CPU)
    device: str = "auto"                 # auto, cpu, cuda, cuda:1, ...
    threads: int = 0                     # torch CPU threads (0: leave torch's default)
    dist_timeout: float = 600.0          # seconds a collective waits for the other ranks (torchrun) before the
                                         # run fails
    eval_every: int = 0                  # evaluate every N G steps and at the end (0: off)
    eval_metrics: tuple[str, ...] = ()   # metric names (empty: the dataset's default, see 'gannorm list')
    eval_num_samples: int = 1000         # generated samples per evaluation (real: as many, or the dataset size)
    eval_protocol: dict[str, Any] = field(default_factory=dict)  # per-metric settings, e.g. {is: {num_samples:
                                         # 50000, splits: 10, logits: 1000}, fid: {num_real: 5000}} or {fid:
                                         # {reference: stats.npz}}; see docs/metrics.md (protocols)
    eval_inception_precision: Literal["fp32", "bf16"] = "fp32"  # the Inception network's precision in these
                                         # evaluations (fid, is, kid; recorded in eval.jsonl); see docs/metrics.md
    eval_inception_resize: str = DEFAULT_RESIZE  # how the Inception input is resized to 299 in these evaluations:
                                         # legacy_tensorflow (TF1 bilinear), clean (clean-fid's PIL bicubic),
                                         # pytorch_bilinear (recorded in eval.jsonl); see docs/metrics.md
    best_metric: str = ""                # checkpoint_best.pt at each evaluation that improves on this metric
                                         # ("": the first evaluated metric; "none": no best checkpoint)
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 500
    num_samples_grid: int = 64           # images in the fixed-z sample grid
    out_dir: str = "runs"
    run_name: str | None = None          # default: <data>-<arch>-<method>-<seed>
    tensorboard: bool = True             # also write TensorBoard scalars (if tensorboard is installed)
    wandb: bool = False                  # also log to Weights & Biases (pip install wandb; WANDB_MODE=offline works)
    wandb_project: str = "gannorm"       # the W&B project
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
class AboutConfig:
    """What a preset reproduces, for people and ``gannorm list --presets``; training never reads it.

    It describes the preset as shipped: overrides do not change it.
    """
    paper: str = "none"                  # the paper ("none": one of gannorm's own jobs)
    code: str = ""                       # the official code the settings come from, if any
    follows: Literal["paper", "code", "none"] = "none"  # where the settings come from, where the two differ
    deviations: tuple[str, ...] = ()     # where the preset differs from the paper or the code (each in words)


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    normalization: NormalizationConfig = field(default_factory=NormalizationConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)
    about: AboutConfig = field(default_factory=AboutConfig)


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
    if origin is Literal:
        if not any(type(value) is type(a) and value == a for a in typing.get_args(tp)):
            raise ConfigError(f"config key {key}: {summary(value)} is not one of "
                              f"{', '.join(map(str, typing.get_args(tp)))}")
        return value
    bad = _Bad(value, tp, key)
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
        return _coerce_float(value, bad)
    if tp is int:
        if not is_int(value):
            raise bad
        return int(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise bad
        return value
    if tp is str:
        if isinstance(value, os.PathLike):  # a pathlib.Path from the Python API (train.out_dir, data.root)
            value = os.fspath(value)
        if not isinstance(value, str):
            raise bad
        return value
    if tp is Any:
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _coerce_float(value: Any, bad: ConfigError) -> float:
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise bad from None
    if not is_real(value, finite=False):  # inf and nan are numbers here; validate() refuses them by range
        raise bad
    try:
        return float(value)
    except OverflowError:  # an integer past float's range
        raise bad from None


class _Bad(ConfigError):
    """``config key K: <value> is not <type>``, the value shown bounded (:func:`gannorm.yamlsafe.summary`)."""

    def __init__(self, value: Any, tp: Any, key: str) -> None:
        super().__init__(f"config key {key}: {summary(value)} is not {_type_name(tp)}")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


# ------------------------------------------------------------------------------------ building
def _apply(obj: Any, mapping: dict[str, Any], prefix: str) -> None:
    hints = _hints(type(obj))
    for key, value in mapping.items():
        if not isinstance(key, str):
            raise ConfigError(f"config key {prefix}{summary(key, 30)}: a key is a name (text), not a "
                              f"{type(key).__name__}; quote it")
        path = f"{prefix}{key}"
        if key not in hints:
            names = [f.name for f in dataclasses.fields(obj)]
            close = difflib.get_close_matches(key, names, n=3)
            if prefix and close:  # a section's full list is long: name the likely keys, point to the rest
                raise ConfigError(f"unknown config key {summary(path)}; did you mean "
                                  f"{' or '.join(prefix + c for c in close)}? (every key of {prefix[:-1]}: "
                                  "docs/training.md)")
            raise ConfigError(f"unknown config key {summary(path)}; allowed{' in ' + prefix[:-1] if prefix else ''}: "
                              f"{', '.join(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path}: expected a mapping of its fields, got {summary(value)}")
            _apply(current, value, path + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def _parse_value(text: str, key: str = "") -> Any:
    """An override's value as YAML (the limited loader, :mod:`gannorm.yamlsafe`); text that is not valid
    YAML stays text (``train.run_name=a:b``), a value past the loader's limits is a ConfigError."""
    if text == "":
        return ""
    try:
        return load_yaml(text)
    except YamlError as err:
        if err.syntax:
            return text
        raise ConfigError(f"override {key}: its value {err}") from None


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b=VALUE"`` -> ``(["a", "b"], value)``, the value read as YAML (:func:`_parse_value`)."""
    if not isinstance(item, str):
        raise ConfigError(f"an override must be text key=value (e.g. 'train.steps=100'), got {summary(item)}")
    if "=" not in item:
        raise ConfigError(f"override {summary(item)} is not key=value (e.g. train.steps=100)")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key.isprintable() or " " in key:
        raise ConfigError(f"override {summary(item)}: its key holds a space or a control character; write "
                          "section.key=value (e.g. train.steps=100)")
    parts = key.split(".")
    if not all(parts):
        raise ConfigError(f"override {summary(item)} has an empty key part")
    return parts, _parse_value(text.strip(), key)


def apply_overrides(cfg: Config, overrides: Sequence[str]) -> Config:
    """Apply ``section.key=value`` strings (values parsed as YAML scalars or lists)."""
    if isinstance(overrides, (str, bytes, dict)) or not (overrides is None or hasattr(overrides, "__iter__")):
        raise ConfigError(f"overrides must be a list of key=value texts (e.g. ['train.steps=100']), got "
                          f"{summary(overrides)}")
    for item in overrides or ():
        parts, value = parse_override(item)
        obj: Any = cfg
        for i, part in enumerate(parts[:-1]):
            path = ".".join(parts[: i + 1])
            if isinstance(obj, dict):
                obj = obj.setdefault(part, {})
            elif part in _hints(type(obj)):
                obj = getattr(obj, part)
            else:
                allowed = ", ".join(f.name for f in dataclasses.fields(obj))
                raise ConfigError(f"unknown config key {summary(path)}; allowed: {allowed}")
            if not (isinstance(obj, dict) or dataclasses.is_dataclass(obj)):
                raise ConfigError(f"config key {path} holds a value, not keys: write {path}=VALUE")
        last = parts[-1]
        if isinstance(obj, dict):
            obj[last] = value
        else:
            _apply(obj, {last: value}, ".".join(parts[:-1]) + "." if len(parts) > 1 else "")
    return cfg


def from_dict(mapping: dict[str, Any] | None) -> Config:
    """The default config updated by ``mapping`` (``{section: {key: value}}``); a one-line ConfigError for
    anything that is not such a mapping."""
    if mapping is not None and not isinstance(mapping, dict):
        raise ConfigError(f"a config must be a mapping of sections (data, model, train, ...), got {summary(mapping)}")
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


def _presets_hint(name: str) -> str:
    """The presets closest to ``name`` (``gannorm list`` shows them all)."""
    names = preset_names()
    close = difflib.get_close_matches(Path(name).stem, names, n=3, cutoff=0.7)
    near = f"did you mean {' or '.join(close)}? " if close else ""
    return f"{near}known: digits, ring8, sngan_cifar10_cnn and {len(names) - 3} more ('gannorm list' shows all)"


def resolve_path(name_or_path: str | os.PathLike) -> Path:
    """A YAML path, or the name of a preset shipped in ``gannorm/configs``."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise ConfigError(f"the config must be a preset name, a YAML path, a dict or a Config, got "
                          f"{summary(name_or_path)}")
    return resolve_shipped(name_or_path, folder=PRESET_DIR, what="config", kind="preset", hint=_presets_hint)


def _read_yaml(path: Path) -> dict[str, Any]:
    """The mapping a YAML config file holds; a one-line ConfigError naming the file (an empty file too:
    it is never silently the default job). Read with the limited loader (:mod:`gannorm.yamlsafe`)."""
    try:
        mapping = load_yaml(path.read_text(encoding="utf-8"))
    except YamlError as err:
        raise ConfigError(f"config file {path} is {err}; fix the syntax there" if err.syntax else
                          f"config file {path}: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text file (expected YAML)") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    if mapping is None:
        raise ConfigError(f"config file {path} is empty; give at least one section (e.g. train: {{steps: 100}}), "
                          "or no config for the default job")
    if not isinstance(mapping, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections (data:, model:, train:, ...), "
                          f"got a {type(mapping).__name__}")
    return mapping


#: PyYAML's error in one line (kept for callers of the old name)
_yaml_problem = problem


def load(name_or_path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> Config:
    """The default config, updated by a YAML file or preset, then by ``key=value`` overrides."""
    given = not (name_or_path is None or (isinstance(name_or_path, str) and name_or_path == ""))
    mapping = _read_yaml(resolve_path(name_or_path)) if given and name_or_path is not None else {}
    mapping.pop("variants", None)  # a comparison preset's list of runs (see load_variants)
    cfg = from_dict(mapping)
    return apply_overrides(cfg, overrides)


def load_variants(name_or_path: str) -> dict[str, list[str]]:
    """A preset's ``variants:`` mapping (name -> list of ``key=value`` overrides), or ``{}``.

    A comparison preset trains the same base config once per variant (``gannorm train compare_digits``).
    """
    variants = _read_yaml(resolve_path(name_or_path)).get("variants") or {}
    if not isinstance(variants, dict) or not all(isinstance(v, list) for v in variants.values()):
        raise ConfigError(f"config {name_or_path}: variants must map names to lists of key=value overrides")
    for name in variants:  # each becomes (part of) a run folder's name
        safe_name(name, f"config {name_or_path}: variant")
    return {k: [str(x) for x in v] for k, v in variants.items()}


def dump(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# ------------------------------------------------------------------------------------ validation
@dataclass(frozen=True)
class Range:
    """Where a numeric config value must lie: the bounds of :func:`gannorm.validate.in_bounds`, and
    :attr:`text` saying them in words (:func:`gannorm.validate.bounds_text`).

    Every range also requires a finite number (:func:`gannorm.validate.is_real`); ``None`` (an optional key
    left unset) always passes, and each element of a list (``optim.betas_d``) is checked. ``high`` is a cap
    besides the bounds (counts and sizes that reach tensors and loops; a value above it says ``<= high``).
    """
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    max_exclusive: bool = False
    high: float | None = None

    @property
    def text(self) -> str:
        return bounds_text(self.min, self.max, min_exclusive=self.min_exclusive, max_exclusive=self.max_exclusive)

    def holds(self, value: Any) -> bool:
        if value is None:
            return True
        if isinstance(value, tuple):
            return all(self.holds(v) for v in value)
        return is_real(value) and in_bounds(value, self.min, self.max, min_exclusive=self.min_exclusive,
                                            max_exclusive=self.max_exclusive) and not self.too_high(value)

    def too_high(self, value: Any) -> bool:
        """Whether ``value`` (or an element of it) lies above :attr:`high`."""
        if isinstance(value, tuple):
            return any(self.too_high(v) for v in value)
        return self.high is not None and value is not None and value > self.high

    def describe(self, value: Any) -> str:
        """What ``value`` breaks, in words (``>= 1`` or ``<= 1,000,000,000``)."""
        return f"<= {self.high:,}" if self.too_high(value) else self.text


def at_least(low: float, high: float | None = None) -> Range:
    return Range(min=low, high=high)


POSITIVE = Range(min=0, min_exclusive=True)
UNIT = Range(min=0, max=1, max_exclusive=True)
SEED = Range(min=0, max=2**32, max_exclusive=True)

#: every numeric config key and its range (``gannorm.config.validate`` checks them in this order)
#: the upper bound of sizes that become tensor dimensions (a batch, z_dim, a resolution, a sample count)
MAX_SIZE = 2**20
#: the upper bound of step counts and intervals
MAX_STEPS = 10**9

RANGES: tuple[tuple[str, Range], ...] = (
    ("data.resolution", at_least(1, 2**14)), ("data.workers", at_least(0, 1024)),
    ("model.width", Range(min=0, min_exclusive=True, high=1024)), ("model.z_dim", at_least(1, MAX_SIZE)),
    ("model.num_classes", at_least(0, MAX_SIZE)),
    ("normalization.function_eps", at_least(0)),
    ("optim.lr_d", POSITIVE), ("optim.lr_g", POSITIVE), ("optim.betas_d", UNIT), ("optim.betas_g", UNIT),
    ("optim.eps", POSITIVE), ("optim.lr_decay_start", at_least(0, MAX_STEPS)),
    ("train.steps", at_least(1, MAX_STEPS)), ("train.n_dis", at_least(1, 10**6)),
    ("train.batch_size_d", at_least(1, MAX_SIZE)), ("train.batch_size_g", at_least(1, MAX_SIZE)),
    ("train.penalty_weight", at_least(0)), ("train.penalty_every", at_least(1, MAX_STEPS)),
    ("train.weight_clip", at_least(0)), ("train.ortho_reg", at_least(0)),
    ("train.cr_weight", at_least(0)), ("train.cr_translate", Range(min=0, max=0.5, max_exclusive=True)),
    ("train.ema_decay", UNIT), ("train.dist_timeout", POSITIVE), ("train.ema_start", at_least(0, MAX_STEPS)),
    ("train.seed", SEED), ("train.threads", at_least(0, 4096)),
    ("train.eval_every", at_least(0, MAX_STEPS)), ("train.eval_num_samples", at_least(2, 10**8)),
    ("train.log_every", at_least(1, MAX_STEPS)), ("train.sample_every", at_least(1, MAX_STEPS)),
    ("train.checkpoint_every", at_least(1, MAX_STEPS)), ("train.num_samples_grid", at_least(1, 10**4)),
    ("diagnostics.every", at_least(0, MAX_STEPS)), ("diagnostics.batch_size", at_least(2, MAX_SIZE)),
    ("diagnostics.explode_growth", POSITIVE), ("diagnostics.explode_abs", POSITIVE),
    ("diagnostics.vanish_ratio", POSITIVE), ("diagnostics.saturate_gap", POSITIVE),
)

#: every config key that names a registry entry, the registry, and the names allowed besides its entries
NAMES: tuple[tuple[str, Any, tuple[str, ...]], ...] = (
    ("data.name", DATASETS, ()), ("model.arch", NETWORKS, ()), ("model.d_init", SCHEMES, ("official",)),
    ("model.g_init", SCHEMES, ("official",)),
    ("normalization.method", METHODS, ()), ("normalization.g_method", METHODS, ()),
    ("normalization.function", FUNCTIONS, ()),
    ("train.loss", LOSSES, ()), ("train.penalty", PENALTIES, ("none",)), ("train.eval_metrics", METRICS, ()),
    ("train.eval_inception_resize", RESIZE_MODES, ()),
)


def lookup(cfg: Config, key: str) -> Any:
    """The value of the dotted ``key`` (``"optim.lr_d"``) in ``cfg``."""
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _known(registry: Any) -> list[str]:
    return registry.names() if hasattr(registry, "names") else list(registry)


def validate(cfg: Config) -> None:
    """Check registry-backed names, numeric ranges, the options of the method, network and dataset, and the
    evaluation protocol (``train.eval_protocol``: known metrics and settings, counts, reference files).

    Raises a one-line :class:`ConfigError` naming the key and what it accepts.
    """
    for key, registry, extra in NAMES:
        value = lookup(cfg, key)
        for name in value if isinstance(value, tuple) else (value,):
            if name not in extra and name not in registry:
                raise ConfigError(f"config key {key}: {summary(name)} is not one of "
                                  f"{', '.join([*extra, *_known(registry)])}")
    for key, allowed in RANGES:
        value = lookup(cfg, key)
        if not allowed.holds(value):
            raise ConfigError(f"config key {key}: must be {allowed.describe(value)}"
                              f"{' (each)' if isinstance(value, tuple) else ''}, got {_show(value)}")
    _check_method_options(cfg.normalization)
    _check_diffaug(cfg)
    _check_batch_coupling(cfg)
    _check_batch_statistics(cfg)
    _check_model_and_data(cfg)
    _check_metrics_fit_data(cfg)
    _check_best_metric(cfg.train, evaluated_metrics(cfg))
    check_conditional(evaluated_metrics(cfg), cfg.model.num_classes, None, cfg.data.name,
                      where="config key train.eval_metrics:")
    if cfg.train.eval_every > 0 or cfg.train.eval_protocol:  # the defaults need checking only when they are used
        metric_protocols(evaluated_metrics(cfg), evaluation_options(cfg), where="config key train.eval_protocol")
    _check_paths(cfg)
    if cfg.train.wandb and "wandb" not in sys.modules and importlib.util.find_spec("wandb") is None:
        raise ConfigError("config key train.wandb: needs the wandb package (pip install wandb), or set "
                          "train.wandb=false")


def _check_diffaug(cfg: Config) -> None:
    """``train.diffaug``: known DiffAugment ops, and image data (they shift, cut and recolour images)."""
    names = [p.strip() for p in cfg.train.diffaug.split(",") if p.strip()]
    unknown = [p for p in names if p not in DIFFAUG_OPS]
    if unknown:
        raise ConfigError(f"config key train.diffaug: {unknown[0]!r} is not a DiffAugment op; use a comma-separated "
                          f"list of {', '.join(DIFFAUG_OPS.names())} (or \"\" for none)")
    if names and DATASETS.get(cfg.data.name).resolutions == ():
        raise ConfigError(f"config key train.diffaug: DiffAugment works on images, and dataset {cfg.data.name!r} "
                          "holds points; set train.diffaug=\"\"")


def _check_paths(cfg: Config) -> None:
    """Every user string that becomes a path: the run name is one plain name (:func:`gannorm.fileio.safe_name`),
    ``train.out_dir`` and ``data.root`` usable paths (:func:`gannorm.fileio.safe_path`)."""
    if cfg.train.run_name is not None:
        safe_name(cfg.train.run_name, "config key train.run_name")
    safe_path(cfg.train.out_dir, "config key train.out_dir")
    if cfg.data.root:
        safe_path(cfg.data.root, "config key data.root")


def _check_batch_statistics(cfg: Config) -> None:
    """BatchNorm in training mode needs at least 2 samples a batch: G's (the network entry's
    ``g_batch_stats``) sees batch_size_d and batch_size_g fakes, and D's normalization method (its
    ``couples_samples``) batch_size_d reals and fakes."""
    t = cfg.train
    sizes = [("train.batch_size_d", t.batch_size_d), ("train.batch_size_g", t.batch_size_g)]
    if t.sample_mode == "train":
        sizes.append(("train.num_samples_grid", t.num_samples_grid))
    if NETWORKS.get(cfg.model.arch).g_batch_stats:
        for key, size in sizes:
            if size < 2:
                raise ConfigError(f"config key {key}: network {cfg.model.arch!r} has BatchNorm in G, which needs at "
                                  f"least 2 samples a batch; set {key}=2 or more")
    if METHODS.get(cfg.normalization.method).couples_samples and t.batch_size_d < 2:
        raise ConfigError(f"config key train.batch_size_d: normalization.method {cfg.normalization.method!r} uses "
                          "batch statistics, which need at least 2 samples a batch; set train.batch_size_d=2 or more")


def _check_metrics_fit_data(cfg: Config) -> None:
    """Each metric named in ``train.eval_metrics`` must be computable on ``data.name`` (its extractor's
    ``accepts``): the digits classifier only for the digit datasets, raw points only for 2-D mixtures."""
    for name in cfg.train.eval_metrics:
        why = metric_dataset_problem(name, cfg.data.name)
        if why is not None:
            raise ConfigError(f"config key train.eval_metrics: {name} cannot be computed on dataset "
                              f"{cfg.data.name!r} ({why}); use one of "
                              f"{', '.join(metrics_for_dataset(cfg.data.name)) or 'none'}")


def _check_batch_coupling(cfg: Config) -> None:
    """GN/PGN and the per-sample gradient penalties need D's output for one sample to depend on that sample
    only; a method that normalizes with batch statistics (the entry's ``couples_samples``) breaks that."""
    n, method = cfg.normalization, METHODS.get(cfg.normalization.method)
    if not method.couples_samples:
        return
    if FUNCTIONS.get(n.function).per_sample:
        raise ConfigError(f"config key normalization.function: {n.function} needs per-sample D outputs, but "
                          f"normalization.method {n.method!r} uses batch statistics; use a per-sample method (sn, "
                          "layer_norm, weight_norm, ...) or normalization.function=none")
    if cfg.train.penalty != "none":
        raise ConfigError(f"config key train.penalty: {cfg.train.penalty} penalizes per-sample input gradients, but "
                          f"normalization.method {n.method!r} uses batch statistics; use a per-sample method (sn, "
                          "layer_norm, weight_norm, ...) or train.penalty=none")


def evaluated_metrics(cfg: Config) -> tuple[str, ...]:
    """The metrics an evaluation during training computes: ``train.eval_metrics`` or the dataset's default."""
    return tuple(cfg.train.eval_metrics) or tuple(default_metrics(cfg.data.name, cfg.model.num_classes > 0))


def evaluation_options(cfg: Config) -> EvalOptions:
    """The options of an evaluation during training: the metrics, ``train.eval_num_samples`` (each metric's
    default count), ``train.eval_protocol``, ``train.seed`` (the real subset and z of every evaluation) and
    ``train.eval_inception_precision`` and ``train.eval_inception_resize``."""
    t = cfg.train
    return EvalOptions(metrics=evaluated_metrics(cfg), num_samples=t.eval_num_samples, seed=t.seed, progress=False,
                       protocol=copy.deepcopy(t.eval_protocol), inception_precision=t.eval_inception_precision,
                       inception_resize=t.eval_inception_resize)


def best_metric(cfg: Config) -> str | None:
    """The metric ``checkpoint_best.pt`` is chosen by, or None (no evaluation during training, or ``none``)."""
    t = cfg.train
    if t.eval_every <= 0 or t.best_metric == "none":
        return None
    return t.best_metric or evaluated_metrics(cfg)[0]


def _check_best_metric(t: TrainConfig, evaluated: tuple[str, ...]) -> None:
    name = t.best_metric
    if name in ("", "none"):
        return
    if name not in METRICS:
        raise ConfigError(f"config key train.best_metric: {summary(name)} is not one of none, "
                          f"{', '.join(_known(METRICS))} (or leave it empty: the first evaluated metric)")
    if t.eval_every <= 0:
        raise ConfigError(f"config key train.best_metric: {name} needs evaluations during training; set "
                          "train.eval_every=N, or train.best_metric=none")
    if name not in evaluated:
        raise ConfigError(f"config key train.best_metric: {name} is not evaluated during training (the metrics: "
                          f"{', '.join(evaluated)}); add it to train.eval_metrics or choose one of those")


def _show(value: Any) -> str:
    return summary(list(value)) if isinstance(value, tuple) else summary(value)


def _not_options(names: list[Any]) -> str:
    shown = [n if isinstance(n, str) and len(n) <= 40 and n.isprintable() else summary(n, 40) for n in names[:5]]
    more = f" (and {len(names) - 5} more)" if len(names) > 5 else ""
    return f"{shown[0]} is not an option" if len(names) == 1 else f"{', '.join(shown)}{more} are not options"


def _check_method_options(n: NormalizationConfig) -> None:
    _check_options_of(n.method, n.options, "normalization.options", "normalization.method")
    _check_options_of(n.g_method, n.g_options, "normalization.g_options", "normalization.g_method")


def _check_options_of(method: str, options: dict[str, Any], key: str, method_key: str) -> None:
    """The options ``options`` (config key ``key``) of the weight method ``method`` against its registry entry."""
    spec = METHODS.get(method)
    allowed = method_options(method)
    unknown = sorted(set(options) - set(allowed) - {"input_shape"}, key=str)
    if unknown:
        raise ConfigError(f"config key {key}: {_not_options(unknown)} of method "
                          f"{method!r} (allowed: {', '.join(allowed) or 'none'}); a preset's options stay when "
                          f"you change {method_key}: also set {key}={{}} (or the new options)")
    missing = [o for o in spec.required_options() if o not in options]
    if missing:
        raise ConfigError(f"config key {key}.{missing[0]}: method {method!r} needs it "
                          f"(e.g. {key}.{missing[0]}=...)")
    check = getattr(spec, "check_options", None)
    if check is not None:
        try:
            check({k: v for k, v in options.items() if k != "input_shape"})
        except OptionError as err:
            raise ConfigError(f"config key {key}.{err.option}: {err}") from None


def _check_model_and_data(cfg: Config) -> None:
    """The network's options, its data kind and resolution against the dataset, and the dataset's options."""
    m, d = cfg.model, cfg.data
    spec, data = NETWORKS.get(m.arch), DATASETS.get(d.name)
    for key, options in (("model.g_options", m.g_options), ("model.d_options", m.d_options)):
        unknown = sorted(set(options) - set(spec.options), key=str)
        if unknown:
            raise ConfigError(f"config key {key}: {_not_options(unknown)} of network {m.arch!r} "
                              f"(allowed: {', '.join(spec.options) or 'none'})")
    unknown = sorted(set(d.options) - set(data.options), key=str)
    if unknown:
        raise ConfigError(f"config key data.options: {_not_options(unknown)} of dataset {d.name!r} "
                          f"(allowed: {', '.join(data.options) or 'none'})")
    if m.num_classes > 0 and not spec.conditional:
        fits = [e.name for e in NETWORKS.entries() if e.obj.conditional]
        raise ConfigError(f"config key model.num_classes: network {m.arch!r} has no class-conditional version; use "
                          f"one of {', '.join(fits)}, or model.num_classes=0")
    vectors = data.resolutions == ()  # a dataset of points takes no resolution
    if vectors != (spec.kind == "vector"):
        fits = [e.name for e in NETWORKS.entries() if (e.obj.kind == "vector") == vectors]
        raise ConfigError(f"config key model.arch: network {m.arch!r} is for {spec.kind}s, but dataset {d.name!r} "
                          f"holds {'vector' if vectors else 'image'}s; use one of {', '.join(fits)}")
    resolution = d.resolution if d.resolution is not None else data.default_resolution
    if not vectors and resolution is not None and not spec.supports(resolution):
        raise ConfigError(f"config key data.resolution: network {m.arch!r} supports {spec.resolutions_text()}, "
                          f"not {resolution}; set data.resolution or choose another model.arch")
