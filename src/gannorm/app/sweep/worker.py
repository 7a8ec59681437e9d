"""One run of a sweep, in whatever process executes it (a local worker or a Ray task).

:func:`run_one` starts the run in its own folder, resumes it from its checkpoint, or leaves it alone if
it has already ended; it never raises for a run that fails: the outcome says so.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from typing import Any

from ... import config as config_mod
from ...runfolder import RunFolder, RunFolderBusy
from ...training import Trainer

#: a run with one of these statuses has ended; starting the sweep again does not train it again
ENDED = ("finished", "diverged", "failed")


@dataclass(frozen=True)
class RunTask:
    """What a worker needs to run one run: the config, the exact run folder, its tags and threads."""
    run_id: str
    base: str
    overrides: tuple[str, ...]
    run_dir: str
    threads: int
    tags: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunOutcome:
    run_id: str
    status: str                 # finished, diverged, failed, interrupted
    error: str | None = None
    seconds: float = 0.0
    skipped: bool = False       # the run had ended before this sweep started


def die_with_parent(parent: int | None = None) -> None:
    """A sweep worker's start: get SIGKILL when the sweep's driver dies (Linux), so that no orphan keeps
    writing to a run folder that a restarted sweep resumes; ignore SIGINT while no run trains.

    The worker gets its own process group, so a terminal's Ctrl-C reaches only the driver, which sends SIGINT
    to each worker once: an idle worker ignores it (no traceback, the pool stays whole); a run in training
    has its own SIGINT/SIGTERM handlers for the run's length (:class:`gannorm.training.signals.StopRequest`),
    so it checkpoints and ends ``interrupted``.

    Args:
        parent: the driver's process id (``os.getpid()`` in the driver). The worker exits at once if its
            parent is no longer that process (the driver died before ``prctl`` took effect). ``None``: only
            the death signal is set up.

    Returns:
        None.

    Example:
        >>> executor = ProcessPoolExecutor(initializer=die_with_parent, initargs=(os.getpid(),))  # doctest: +SKIP
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.setpgrp()  # a terminal's Ctrl-C reaches the driver only, which passes it on once (a second SIGINT would
    # stop a run at once, without its checkpoint)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # not Linux: the sweep's lock still keeps a second driver out
        return
    if parent is not None and os.getppid() != parent:  # the parent died before prctl took effect (a driver
        # that is PID 1 itself, a container's entrypoint, is not a dead parent)
        os._exit(1)


def run_one(task: RunTask) -> RunOutcome:
    """Train, resume or skip one run; returns how it ended (exceptions become ``failed``)."""
    start = time.perf_counter()
    folder = RunFolder(task.run_dir)
    status = folder.read_status() if folder.path.is_dir() else None
    if status is not None and status.status in ENDED:
        return RunOutcome(task.run_id, status.status, status.reason, 0.0, skipped=True)
    cfg = config_mod.load(task.base, [*task.overrides, f"train.threads={task.threads}", "train.progress=false"])
    try:
        if folder.path.is_dir():  # RunFolderBusy if a worker of an earlier sweep still writes it
            with folder.locked():
                pass
        if folder.has_checkpoint():
            trainer = Trainer(cfg, resume=folder.path)
        else:
            if folder.path.exists():  # killed before its first checkpoint: nothing to keep
                shutil.rmtree(folder.path)
            trainer = Trainer(cfg, run_dir=folder.path)
            trainer.folder.write_tags(task.tags)
        result = trainer.run()
    except RunFolderBusy as err:  # another process (a dying worker of an earlier sweep) still writes it: not ended,
        # so the next start of the sweep trains it
        return RunOutcome(task.run_id, "interrupted", str(err), time.perf_counter() - start)
    except Exception as err:  # a failed run is a result, never a crash of the sweep
        return RunOutcome(task.run_id, "failed", f"{type(err).__name__}: {err}", time.perf_counter() - start)
    status = folder.read_status() if result.status == "diverged" else None
    reason = status.reason if status is not None else None
    return RunOutcome(task.run_id, result.status, reason, time.perf_counter() - start)

