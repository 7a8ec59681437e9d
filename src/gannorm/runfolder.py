"""The run folder: the one module that knows its layout, its file names and its records.

A run folder holds everything one training run writes::

    config.yaml         the resolved config (``gannorm train --resume`` reads it back)
    checkpoint.pt       the latest checkpoint (atomic; loaded with ``weights_only=True``)
    checkpoint_best.pt  the checkpoint of the best evaluation so far by ``train.best_metric`` (with the record)
    best.json           that record in plain JSON: the metric, its direction, the step, the value, the generator
    status.json         running / finished / interrupted / diverged / failed, the step, and why
    metrics.jsonl       one row per logged step: losses, D outputs, sigmas, evaluation and diagnostics scalars
    metrics.csv         the training rows of metrics.jsonl as CSV (columns fixed by the first row)
    eval.jsonl          one record per evaluation: the step, which generator, the metrics and their protocol
    diagnostics.jsonl   one probe record per diagnostics step (:class:`gannorm.diagnostics.ProbeRecord`)
    health.jsonl        one record per health warning (:class:`gannorm.diagnostics.HealthWarning`)
    samples.png         the latest fixed-z sample grid; ``samples/step_NNNNNNN.png`` every one of them
    tensorboard/        TensorBoard event files (when tensorboard is installed)
    analysis/           what ``gannorm analyze`` writes
    tags.json           where the run sits in a sweep (sweep, run id, variant, grid cell, seed), for sweep runs
    .lock               the writers' lock (:meth:`RunFolder.lock`): the PID of the last process that held it

Everything above the libraries (the trainer, ``eval``, ``sample``, ``analyze``, ``experiment``) reads and
writes runs through :class:`RunFolder`. Every step-keyed log holds each step at most once: a resumed run
first drops the rows after its checkpoint's step (:meth:`RunFolder.truncate_logs`), and each file is
replaced atomically, so a kill during the truncation leaves the old file or the new one, never half.

One process at a time writes a run folder: the trainer (a new run or ``--resume``), ``eval``, ``analyze``,
``sample`` and ``export`` (when they write into the folder) hold its lock (:meth:`RunFolder.lock`, an
``flock`` on ``.lock`` that the kernel releases when the holder dies, however it dies); a second writer
gets a one-line :class:`RunFolderError` naming the holder's PID.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import math
import os
import threading
import weakref
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

import torch

from . import config as config_mod
from .config import Config
from .diagnostics.health import HealthWarning
from .diagnostics.records import ProbeRecord
from .errors import RunFolderError
from .fileio import TEMPORARY_GLOB, atomic_write, atomic_write_text, claim_dir
from . import yamlsafe

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_BEST = "checkpoint_best.pt"
BEST = "best.json"
#: the checkpoints a command can name (``gannorm sample/eval/export --checkpoint``)
CHECKPOINTS = {"latest": CHECKPOINT, "best": CHECKPOINT_BEST}
CONFIG = "config.yaml"
STATUS = "status.json"
METRICS = "metrics.jsonl"
METRICS_CSV = "metrics.csv"
EVAL = "eval.jsonl"
DIAGNOSTICS = "diagnostics.jsonl"
HEALTH = "health.jsonl"
SAMPLES = "samples.png"
SAMPLES_DIR = "samples"
TENSORBOARD = "tensorboard"
ANALYSIS = "analysis"
TAGS = "tags.json"
LOCK = ".lock"
#: the step-keyed JSONL logs (each step at most once after any number of resumes)
LOGS = (METRICS, EVAL, DIAGNOSTICS, HEALTH)
#: files whose presence marks a folder as a run folder
MARKERS = (CONFIG, CHECKPOINT, METRICS, DIAGNOSTICS)

R = TypeVar("R")


# ------------------------------------------------------------------------------------------ records
def _finite_or_str(value: float) -> float | str:
    value = float(value)
    return value if math.isfinite(value) else str(value)


@dataclass
class MetricsRow:
    """One row of ``metrics.jsonl``: a step and named scalars (non-finite values kept, as strings on disk)."""
    step: int
    values: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, **{k: _finite_or_str(v) for k, v in self.values.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "MetricsRow":
        values = {}
        for k, v in d.items():
            if k == "step":
                continue
            try:
                values[k] = float(v)
            except (TypeError, ValueError):
                continue
        return cls(int(d["step"]), values)


@dataclass
class EvalRecord:
    """One evaluation: the step, the generator evaluated (``ema`` or ``raw``), the metrics, and the protocol."""
    step: int
    generator: str
    metrics: dict[str, dict[str, float]]
    protocol: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "generator": self.generator, "metrics": self.metrics, "protocol": self.protocol}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "EvalRecord":
        return cls(int(d["step"]), str(d.get("generator", "raw")), dict(d.get("metrics") or {}),
                   dict(d.get("protocol") or {}))


@dataclass
class BestRecord:
    """The best evaluation so far by one metric (``best.json``, and ``"best"`` in ``checkpoint_best.pt``)."""
    metric: str
    step: int
    value: float
    generator: str                        # the generator evaluated: ema or raw
    lower_is_better: bool = True

    def better_than(self, other: "BestRecord | None") -> bool:
        """Whether this value beats ``other`` (by this record's direction); a tie keeps the earlier one."""
        if not math.isfinite(self.value):
            return False
        if other is None or other.metric != self.metric or not math.isfinite(other.value):
            return True
        return self.value < other.value if self.lower_is_better else self.value > other.value

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "BestRecord":
        return cls(str(d["metric"]), int(d["step"]), float(d["value"]), str(d.get("generator", "raw")),
                   bool(d.get("lower_is_better", True)))


@dataclass
class Status:
    """``status.json``: ``running``, ``finished``, ``interrupted`` or ``diverged``, at G step ``step``."""
    status: str
    step: int
    reason: str | None = None             # why a run diverged
    seconds: float | None = None          # wall time of the last session
    checkpoint_step: int | None = None    # the step of the checkpoint on disk, when it differs

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Status":
        known = {k: d.get(k) for k in ("reason", "seconds", "checkpoint_step")}
        return cls(str(d.get("status", "unknown")), int(d.get("step", 0)), **known)


@dataclass
class RunRecords:
    """Everything a run folder's logs hold, parsed (:meth:`RunFolder.load`)."""
    path: Path
    config: dict[str, Any] = field(default_factory=dict)     # config.yaml as plain YAML ({} if absent)
    metrics: list[MetricsRow] = field(default_factory=list)
    eval: list[EvalRecord] = field(default_factory=list)
    diagnostics: list[ProbeRecord] = field(default_factory=list)
    health: list[HealthWarning] = field(default_factory=list)
    status: Status | None = None
    skipped: dict[str, int] = field(default_factory=dict)     # file name -> unreadable lines skipped


@dataclass
class RecordCheck:
    """:meth:`RunFolder.check_records`: the run's status (None: not started; ``damaged``: unknown) and which
    records were unreadable, with how the status was recovered (None when every record read)."""
    status: Status | None
    damage: str | None = None


def _section(config: Any, name: str) -> dict[str, Any]:
    """``config[name]`` when both are mappings, else ``{}`` (a config read from a damaged file)."""
    section = config.get(name) if isinstance(config, dict) else None
    return section if isinstance(section, dict) else {}


# ------------------------------------------------------------------------------------------ JSONL
def read_jsonl(path: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of a JSONL file and the number of lines skipped as unreadable (e.g. the torn last
    line of a run killed mid-write). A missing file has no records; blank lines are ignored."""
    path = Path(path)
    if not path.is_file():
        return [], 0
    records, skipped = [], 0
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            if isinstance(obj, dict):
                records.append(obj)
            else:
                skipped += 1
    return records, skipped


def _parse(records: Iterable[dict[str, Any]], parse: Callable[[dict[str, Any]], R]) -> tuple[list[R], int]:
    out, bad = [], 0
    for rec in records:
        try:
            out.append(parse(rec))
        except (KeyError, TypeError, ValueError):
            bad += 1
    return out, bad


def _json_object(path: Path) -> dict[str, Any] | None:
    """A small JSON file holding one object, or None if it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _step_of(line: str) -> int | None:
    try:
        obj = json.loads(line)
        return int(obj["step"])
    except (ValueError, KeyError, TypeError):
        return None


# ------------------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write ``state`` with ``torch.save`` through a temporary file: the previous file survives any crash."""
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors, containers and plain values only).

    A missing, truncated or foreign file is a one-line :class:`RunFolderError`; a file that would need
    arbitrary code to load is refused, and the message never suggests loading it unsafely.
    """
    path = Path(path)
    if not path.is_file():
        raise RunFolderError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors, truncated zip archives, foreign pickles
        raise RunFolderError(f"checkpoint {path} cannot be loaded: it is truncated, damaged, or not a gannorm "
                             f"checkpoint of tensors and plain values ({type(err).__name__})") from None
    if not isinstance(state, dict):
        raise RunFolderError(f"checkpoint {path} is not a gannorm checkpoint (it holds a {type(state).__name__})")
    return state


# ------------------------------------------------------------------------------------------ locks
class RunFolderBusy(RunFolderError):
    """Another process writes the run folder (the one-line error of :meth:`RunFolder.lock`); ``pid`` is its PID."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


class LockBusy(Exception):
    """The lock file ``path`` is held by another process: ``pid`` (None if it has not written it yet)."""

    def __init__(self, path: Path, pid: int | None) -> None:
        super().__init__(f"{path} is held by process {pid if pid is not None else '(unknown)'}")
        self.path, self.pid = path, pid


class _Held:
    """One open, locked lock file of this process and how many holders share it."""

    def __init__(self, fh: Any) -> None:
        self.fh, self.count = fh, 0


_GUARD = threading.Lock()
_SHARED: dict[str, _Held] = {}     # real path -> the lock this process holds there (reentrant locks)
_OPEN: set[_Held] = set()           # every lock file this process holds open


def _forget_after_fork() -> None:
    """In a forked child: close the parent's lock files. The parent keeps its locks (an ``flock`` belongs to the
    open file, which the parent still has open); the child holds none, so it never outlives a killed parent."""
    global _GUARD
    _GUARD = threading.Lock()
    for held in _OPEN:
        try:
            held.fh.close()
        except OSError:
            pass
    _OPEN.clear()
    _SHARED.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _take(path: Path) -> Any:
    """Open and ``flock`` ``path`` without waiting, then write this process's PID into it."""
    fh = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        text = fh.read(32).strip()
        fh.close()
        raise LockBusy(path, int(text) if text.isdigit() else None) from None
    except BaseException:
        fh.close()
        raise
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def _release(key: str | None, held: _Held) -> None:
    with _GUARD:
        held.count -= 1
        if held.count > 0:
            return
        if key is not None and _SHARED.get(key) is held:
            del _SHARED[key]
        _OPEN.discard(held)
        try:
            held.fh.close()  # closing the file releases the flock
        except OSError:
            pass


class HeldLock:
    """A lock :func:`acquire_lock` took; :meth:`release` (or leaving its ``with`` block, or its garbage
    collection, or the end of the process) gives it back."""

    def __init__(self, key: str | None, held: _Held) -> None:
        self._held: _Held | None = held
        self._finalizer = weakref.finalize(self, _release, key, held)

    @property
    def held(self) -> bool:
        return self._held is not None

    def release(self) -> None:
        if self._held is not None:
            self._held = None
            self._finalizer()  # calls _release once, then never again

    def __enter__(self) -> "HeldLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def acquire_lock(path: str | os.PathLike, *, reentrant: bool = True) -> HeldLock:
    """Hold the exclusive lock of the file ``path`` (created if missing), or raise :class:`LockBusy` at once.

    The lock is an ``flock`` on the open file: the kernel releases it when the holder ends, however it
    ends (SIGKILL included), and a forked child does not keep it. The file holds the holder's PID, which
    :class:`LockBusy` reports. With ``reentrant``, a lock this process already holds is shared (counted,
    and released with its last holder); without, a second acquire in this process is refused as another
    process's would be.

    Args:
        path: the lock file (its folder must exist).
        reentrant: whether this process may hold it more than once.

    Returns:
        The :class:`HeldLock` (a context manager).

    Example::

        with acquire_lock(folder / ".lock"):
            ...  # no other process holds it here
    """
    path = Path(path)
    key = os.path.realpath(path)
    with _GUARD:
        held = _SHARED.get(key) if reentrant else None
        if held is None:
            held = _Held(_take(path))
            _OPEN.add(held)
            if reentrant:
                _SHARED[key] = held
        held.count += 1
    return HeldLock(key if reentrant else None, held)


# ------------------------------------------------------------------------------------------ the folder
class RunFolder:
    """A run folder at ``path``; see the module docstring for its files."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._csv_columns: list[str] | None = None
        self._lock: HeldLock | None = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # ---------------------------------------------------------------- creation and opening
    @classmethod
    def create(cls, parent: str | os.PathLike, name: str) -> "RunFolder":
        """Make a new folder ``parent/name`` (or ``name-2``, ``name-3``, ... if taken) and return it.

        Claiming the name is one ``mkdir``, which fails if the folder exists: two processes starting at
        once get two different folders, and an existing run is never reused.
        """
        try:
            return cls(claim_dir(parent, name))
        except OSError as err:
            raise RunFolderError(f"cannot create a run folder in {parent}: {err.strerror or err}; choose another "
                                 "place with train.out_dir=DIR") from None

    @classmethod
    def create_at(cls, path: str | os.PathLike) -> "RunFolder":
        """Make exactly the new folder ``path`` (a sweep names its runs); an existing one is an error."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
        except FileExistsError:
            raise RunFolderError(f"run folder {path} exists already; resume it or choose another") from None
        except OSError as err:
            raise RunFolderError(f"cannot create the run folder {path}: {err.strerror or err}") from None
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "RunFolder":
        """An existing run folder; a one-line :class:`RunFolderError` if ``path`` is not one."""
        path = Path(path)
        if not path.exists():
            raise RunFolderError(f"run folder {path} does not exist")
        if not path.is_dir():
            raise RunFolderError(f"{path} is not a run folder (it is a file)")
        if not any((path / m).is_file() for m in MARKERS):
            raise RunFolderError(f"{path} is not a run folder: it has none of {', '.join(MARKERS)} "
                                 "(train one with 'gannorm train')")
        return cls(path)

    # ---------------------------------------------------------------- the writers' lock
    def lock(self, hint: str = "") -> None:
        """Hold the folder's writers' lock (``.lock``) until :meth:`unlock`, until this object is gone, or until
        the process ends (however it ends). Holding it already is fine: the same process may lock a folder
        through several :class:`RunFolder` objects (one process, one writer).

        Args:
            hint: another way out for the user, added to the error (e.g. ``"or give -o FILE outside the run"``).

        Raises:
            RunFolderError: another process holds it (the message names its PID), or the folder cannot take a
                lock file.

        Example::

            folder = RunFolder.open("runs/r")
            with folder.locked():
                folder.write_status(Status("running", 0))
        """
        if self._lock is not None and self._lock.held:
            return
        try:
            self._lock = acquire_lock(self.path / LOCK)
        except LockBusy as busy:
            who = f"process {busy.pid}" if busy.pid is not None else "another process"
            stop = f" (kill {busy.pid})" if busy.pid is not None else ""
            raise RunFolderBusy(f"run folder {self.path} is in use by {who}, which is writing into it (gannorm "
                                f"train, eval, analyze, sample or export); wait for it to end or stop it{stop}"
                                + (f", {hint}" if hint else "") + ", then try again", busy.pid) from None
        except OSError as err:
            raise RunFolderError(f"cannot lock the run folder {self.path}: {err.strerror or err}") from None

    def unlock(self) -> None:
        """Give the writers' lock back (nothing if this object does not hold it)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @contextlib.contextmanager
    def locked(self, hint: str = "") -> Iterator["RunFolder"]:
        """:meth:`lock` for a ``with`` block; a lock held before the block stays held after it."""
        before = self._lock is not None and self._lock.held
        self.lock(hint)
        try:
            yield self
        finally:
            if not before:
                self.unlock()

    def contains(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` lies inside this folder (symbolic links and ``..`` resolved)."""
        try:
            Path(os.path.realpath(path)).relative_to(os.path.realpath(self.path))
        except ValueError:
            return False
        return True

    # ---------------------------------------------------------------- paths
    def file(self, name: str) -> Path:
        return self.path / name

    checkpoint = property(lambda self: self.path / CHECKPOINT)
    best_checkpoint = property(lambda self: self.path / CHECKPOINT_BEST)
    best_file = property(lambda self: self.path / BEST)
    config_file = property(lambda self: self.path / CONFIG)
    status_file = property(lambda self: self.path / STATUS)
    metrics_file = property(lambda self: self.path / METRICS)
    metrics_csv = property(lambda self: self.path / METRICS_CSV)
    eval_file = property(lambda self: self.path / EVAL)
    diagnostics_file = property(lambda self: self.path / DIAGNOSTICS)
    health_file = property(lambda self: self.path / HEALTH)
    samples_file = property(lambda self: self.path / SAMPLES)
    samples_dir = property(lambda self: self.path / SAMPLES_DIR)
    tensorboard_dir = property(lambda self: self.path / TENSORBOARD)
    analysis_dir = property(lambda self: self.path / ANALYSIS)

    def sample_path(self, step: int) -> Path:
        return self.samples_dir / f"step_{step:07d}.png"

    def eval_result_path(self, step: int) -> Path:
        """Where ``gannorm eval`` writes its JSON by default."""
        return self.path / f"eval_step{step:07d}.json"

    # ---------------------------------------------------------------- checkpoint, config, status
    def has_checkpoint(self) -> bool:
        return self.checkpoint.is_file()

    def save_checkpoint(self, state: dict) -> None:
        save_checkpoint(self.checkpoint, state)

    def checkpoint_file(self, which: str = "latest") -> Path:
        """The path of the ``latest`` or the ``best`` checkpoint (:data:`CHECKPOINTS`)."""
        if which not in CHECKPOINTS:
            raise RunFolderError(f"unknown checkpoint {which!r}; choose one of {', '.join(CHECKPOINTS)}")
        return self.path / CHECKPOINTS[which]

    def load_checkpoint(self, which: str = "latest") -> dict:
        """The ``latest`` checkpoint (``checkpoint.pt``) or the ``best`` one (``checkpoint_best.pt``)."""
        path = self.checkpoint_file(which)
        if which == "best" and not path.is_file():
            raise RunFolderError(f"{self.path} has no {CHECKPOINT_BEST}: it is written when an evaluation during "
                                 "training (train.eval_every > 0) improves on train.best_metric; use the latest "
                                 "checkpoint instead")
        if not path.is_file():
            raise RunFolderError(f"{self.path} has no {CHECKPOINT} (train one with 'gannorm train')")
        return load_checkpoint(path)

    def save_best(self, state: dict, record: BestRecord) -> None:
        """``checkpoint_best.pt`` (``state`` with the record under ``"best"``), then ``best.json``; each atomic.

        A kill between the two leaves ``best.json`` naming the previous best: the trainer's resume finds the
        newer evaluation in ``eval.jsonl`` at the step it resumes from and writes both again.
        """
        save_checkpoint(self.best_checkpoint, {**state, "best": record.to_json()})
        atomic_write_text(self.best_file, json.dumps(record.to_json(), indent=1) + "\n")

    def read_best(self) -> BestRecord | None:
        """The record of ``checkpoint_best.pt`` (from ``best.json``), or None if either is missing or unreadable."""
        data = _json_object(self.best_file)
        if data is None or not self.best_checkpoint.is_file():
            return None
        try:
            return BestRecord.from_json(data)
        except (KeyError, TypeError, ValueError):
            return None

    def checkpoint_step(self) -> int | None:
        """The step of the checkpoint on disk, or None if there is none or it cannot be read."""
        try:
            return int(self.load_checkpoint()["step"])
        except (RunFolderError, KeyError, TypeError, ValueError):
            return None

    def write_config(self, cfg: Config) -> None:
        atomic_write_text(self.config_file, config_mod.dump(cfg))

    def read_config(self, overrides: Iterable[str] = ()) -> Config:
        if not self.config_file.is_file():
            raise RunFolderError(f"{self.path} has no {CONFIG}")
        return config_mod.load(str(self.config_file), list(overrides))

    def read_config_dict(self) -> dict[str, Any]:
        """``config.yaml`` as plain YAML, ``{}`` if it is missing or unreadable (for reports on old runs)."""
        try:
            data = yamlsafe.load(self.config_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yamlsafe.YamlError):
            return {}
        return data if isinstance(data, dict) else {}

    def write_status(self, status: Status) -> None:
        atomic_write_text(self.status_file, json.dumps(status.to_json(), indent=1) + "\n")

    def read_status(self) -> Status | None:
        """``status.json``, or None if it is missing or unreadable (:meth:`check_records` tells which)."""
        data = _json_object(self.status_file)
        try:
            return None if data is None else Status.from_json(data)
        except (TypeError, ValueError):
            return None

    def check_records(self) -> RecordCheck:
        """The run's status and which of its records are unreadable, for a results store.

        A readable ``status.json`` is the status. A run with neither ``status.json`` nor a checkpoint has
        not started (status None). When ``status.json`` is unreadable (empty, garbled) or missing beside a
        checkpoint, the status is recovered from the other records: ``finished`` when the checkpoint loads,
        is at the config's ``train.steps``, and (if the run evaluates, ``train.eval_every > 0``) ``eval.jsonl``
        holds the evaluation of that step, since only a run that ended well writes both; otherwise
        ``damaged`` (how it ended cannot be told). Unreadable lines in a finished run's ``eval.jsonl`` and an
        unreadable ``config.yaml`` are reported too.

        Returns:
            A :class:`RecordCheck`: the status (possibly recovered) and what was unreadable (None if nothing).

        Example::

            check = RunFolder("runs/r").check_records()
            if check.damage:
                print(f"{check.status.status}: {check.damage}")
        """
        problems = []
        status = self.read_status()
        if self.config_file.is_file() and not self.read_config_dict():
            problems.append(f"{CONFIG} unreadable")
        if status is None and (self.status_file.exists() or self.has_checkpoint()):
            problems.append(f"{STATUS} unreadable" if self.status_file.exists() else f"{STATUS} missing")
            status, how = self._recover_status()
            problems.append(how)
        if status is not None and status.status == "finished":
            raw, skipped = read_jsonl(self.eval_file)
            bad = skipped + _parse(raw, EvalRecord.from_json)[1]
            if bad:
                problems.append(f"{EVAL}: {bad} unreadable line{'s' if bad != 1 else ''}")
        return RecordCheck(status, "; ".join(problems) or None)

    def _recover_status(self) -> tuple[Status, str]:
        """The status the checkpoint and the evaluations imply (see :meth:`check_records`), and how it was found."""
        try:
            state = self.load_checkpoint()
            step = int(state["step"])
        except (RunFolderError, KeyError, TypeError, ValueError):
            return Status("damaged", 0), f"no loadable {CHECKPOINT}: how the run ended is unknown"
        train = {**_section(state.get("config"), "train"), **_section(self.read_config_dict(), "train")}
        steps, every = train.get("steps"), train.get("eval_every") or 0
        evaluated = any(r.step == step for r in self.read_eval())
        if isinstance(steps, int) and step == steps and (not every or evaluated):
            return Status("finished", step), (f"recovered as finished: {CHECKPOINT} at train.steps={steps}"
                                              + (" and its final evaluation" if every else ""))
        return Status("damaged", step), (f"{CHECKPOINT} at G step {step} of {steps if steps is not None else '?'}"
                                         + (", no evaluation at that step" if every and not evaluated else "")
                                         + ": how the run ended is unknown")

    def write_tags(self, tags: dict[str, Any]) -> None:
        """``tags.json``: plain JSON describing the run's place in a sweep (or any grouping)."""
        atomic_write_text(self.path / TAGS, json.dumps(tags, indent=1, sort_keys=True) + "\n")

    def read_tags(self) -> dict[str, Any]:
        return _json_object(self.path / TAGS) or {}

    # ---------------------------------------------------------------- logs
    def _append(self, path: Path, obj: dict[str, Any]) -> None:
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(obj) + "\n")

    def append_metrics(self, row: MetricsRow, csv_row: bool = True) -> None:
        """A row of ``metrics.jsonl``; with ``csv_row`` also of ``metrics.csv`` (its columns are fixed by
        the first row written; later keys stay in the JSONL file only)."""
        obj = row.to_json()
        self._append(self.metrics_file, obj)
        if csv_row:
            self._append_csv(obj)

    def _append_csv(self, obj: dict[str, Any]) -> None:
        if self._csv_columns is None and self.metrics_csv.is_file():
            with self.metrics_csv.open(newline="") as fh:
                self._csv_columns = next(csv.reader(fh), None)
        new = self._csv_columns is None
        if new:
            self._csv_columns = list(obj)
        with self.metrics_csv.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._csv_columns or [], extrasaction="ignore")  # set above
            if new:
                writer.writeheader()
            writer.writerow(obj)

    def append_eval(self, record: EvalRecord) -> None:
        self._append(self.eval_file, record.to_json())

    def append_diagnostics(self, record: ProbeRecord) -> None:
        self._append(self.diagnostics_file, record.to_json())

    def append_health(self, warning: HealthWarning) -> None:
        self._append(self.health_file, warning.to_json())

    def read_metrics(self) -> list[MetricsRow]:
        return _parse(read_jsonl(self.metrics_file)[0], MetricsRow.from_json)[0]

    def read_eval(self) -> list[EvalRecord]:
        return _parse(read_jsonl(self.eval_file)[0], EvalRecord.from_json)[0]

    def read_diagnostics(self) -> list[ProbeRecord]:
        return _parse(read_jsonl(self.diagnostics_file)[0], ProbeRecord.from_json)[0]

    def read_health(self) -> list[HealthWarning]:
        return _parse(read_jsonl(self.health_file)[0], HealthWarning.from_json)[0]

    def truncate_logs(self, step: int) -> None:
        """Keep only the rows with ``step <= step`` in every log (a resumed run re-records what follows).

        Each file is rewritten to a temporary file and renamed into place; a torn last line is dropped.
        """
        for name in LOGS:
            path = self.path / name
            if path.is_file():
                lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
                keep = [ln for ln in lines if (s := _step_of(ln)) is not None and s <= step]
                atomic_write_text(path, "".join(ln + "\n" for ln in keep))
        self._truncate_csv(step)

    def _truncate_csv(self, step: int) -> None:
        if not self.metrics_csv.is_file():
            return
        with self.metrics_csv.open(newline="") as fh:
            rows = list(csv.reader(fh))
        if not rows or "step" not in rows[0]:
            return
        idx = rows[0].index("step")
        keep = [rows[0]] + [r for r in rows[1:] if len(r) == len(rows[0]) and r[idx].isdigit() and int(r[idx]) <= step]
        buf = io.StringIO()
        csv.writer(buf).writerows(keep)
        atomic_write_text(self.metrics_csv, buf.getvalue())
        self._csv_columns = rows[0]

    def remove_temporaries(self) -> list[Path]:
        """Delete the half-written temporary files a killed write left (never a finished file); returns them."""
        found = sorted(self.path.glob(TEMPORARY_GLOB)) + sorted(self.samples_dir.glob(TEMPORARY_GLOB))
        for path in found:
            path.unlink(missing_ok=True)
        return found

    def reset_logs(self) -> None:
        """A fresh start: remove every log (a new run in a folder that held an older one)."""
        for name in (*LOGS, METRICS_CSV):
            (self.path / name).unlink(missing_ok=True)
        self._csv_columns = None

    # ---------------------------------------------------------------- everything at once
    def load(self) -> RunRecords:
        """Parse every log of the folder; unreadable lines are counted in ``skipped``, never fatal."""
        out = RunRecords(self.path, config=self.read_config_dict(), status=self.read_status())
        for name, attr, parse in ((METRICS, "metrics", MetricsRow.from_json), (EVAL, "eval", EvalRecord.from_json),
                                  (DIAGNOSTICS, "diagnostics", ProbeRecord.from_json),
                                  (HEALTH, "health", HealthWarning.from_json)):
            raw, skipped = read_jsonl(self.path / name)
            records, bad = _parse(raw, parse)
            setattr(out, attr, records)
            if skipped + bad:
                out.skipped[name] = skipped + bad
        return out


# ------------------------------------------------------------------------------------------ loading weights
def load_state_checked(module: torch.nn.Module, state_dict: Any, what: str, path: str | os.PathLike) -> None:
    """Load ``state_dict`` into ``module`` after checking that its names and shapes are the module's.

    ``what`` names the module in the message ("the generator", "the discriminator"); ``path`` is the
    checkpoint it came from. The first mismatch (a missing, extra or differently shaped entry) is a
    one-line :class:`RunFolderError`, not PyTorch's list of every key: it happens when the config
    building ``module`` (model.arch, model.width, the network options, normalization.method) is not
    the one the checkpoint was trained with.
    """
    fix = ("the config (model.arch, model.width, model options, normalization) differs from the one the "
           "checkpoint was trained with; restore the run's config.yaml or train a new run")
    if not isinstance(state_dict, dict):
        raise RunFolderError(f"checkpoint {path} holds no weights for {what} (got a {type(state_dict).__name__})")
    expected = module.state_dict()
    for name, tensor in expected.items():
        if name not in state_dict:
            raise RunFolderError(f"checkpoint {path} holds {what} without {name} (the config builds it with shape "
                                 f"{_shape(tensor)}): {fix}")
        got = state_dict[name]
        if isinstance(tensor, torch.Tensor) and (not isinstance(got, torch.Tensor) or got.shape != tensor.shape):
            raise RunFolderError(f"checkpoint {path} holds {what} with {name} of shape {_shape(got)}, the config "
                                 f"builds {_shape(tensor)}: {fix}")
    extra = [name for name in state_dict if name not in expected]
    if extra:
        raise RunFolderError(f"checkpoint {path} holds {what} with {extra[0]} of shape {_shape(state_dict[extra[0]])}, "
                             f"which the config does not build: {fix}")
    module.load_state_dict(state_dict)


def _shape(value: Any) -> str:
    return str(list(value.shape)) if isinstance(value, torch.Tensor) else f"? (a {type(value).__name__})"
