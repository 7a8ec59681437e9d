"""``gannorm sweep``: run a sweep's runs on local worker processes or as Ray tasks, and record them.

The sweep folder ``DIR`` holds ``sweep.json`` (the sweep as run), ``runs/<run id>/`` (one run folder
per run), ``results.sqlite`` (the store) and ``.lock``. One driver at a time works on a folder (an
``flock`` on ``.lock``, released by the kernel if the driver dies); its workers die with it. Started
again after any kill, a sweep skips the runs that ended, resumes the partial ones from their
checkpoints, and records each run exactly once.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import json
import multiprocessing
import os
import signal
import sqlite3
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

from ...errors import GannormError
from ...fileio import atomic_write_text, safe_path
from ...runfolder import STATUS, LockBusy, RecordCheck, RunFolder, acquire_lock
from ...validate import require
from .results import RunRow, SweepResults
from .placement import place_runs
from .spec import RunSpec, SweepSpec, expand, load_sweep, run_config
from .store import DB, connect, final_metrics, read_results, record_run, set_aside, store_problem, write_meta
from .worker import ENDED, RunOutcome, RunTask, die_with_parent, run_one

SPEC_FILE = "sweep.json"
RUNS = "runs"
LOCK = ".lock"


@dataclass(frozen=True)
class SweepOutcome:
    folder: Path
    results: SweepResults
    ran: int                  # runs trained (or resumed) by this call
    skipped: int              # runs that had ended before
    seconds: float


def default_workers() -> int:
    """One worker per CPU core: on small runs, 2 workers x 1 thread gave 1.30x the runs per minute of
    1 worker x 2 threads on 2 cores (benchmarks/sweep_throughput.py)."""
    return os.cpu_count() or 1


def default_threads(workers: int) -> int:
    """Torch threads per run: the cores shared among the workers."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


@contextlib.contextmanager
def sweep_lock(folder: Path) -> Iterator[None]:
    """Hold the sweep folder's lock, or fail at once with a one-line error naming the driver that holds it (a
    second driver in this process is refused too)."""
    try:
        held = acquire_lock(folder / LOCK, reentrant=False)
    except LockBusy as busy:
        who = f" (process {busy.pid})" if busy.pid is not None else ""
        raise GannormError(f"another gannorm sweep is running in {folder}{who}; wait for it or use another "
                           "--out DIR") from None
    with held:
        yield


def _meta(spec: SweepSpec) -> dict:
    return {"name": spec.name, "metric": spec.metric, "lower_is_better": spec.lower_is_better,
            "success": spec.success, "grid_keys": list(spec.grid), "variants": list(spec.variants),
            "spec": {**asdict(spec), "variants": {k: list(v) for k, v in spec.variants.items()}}}


def _check_same_sweep(folder: Path, name: str) -> None:
    """Refuse to run sweep ``name`` into a folder whose ``sweep.json`` names another sweep (its runs and records
    would be mixed with this one's); an unreadable ``sweep.json`` is rewritten as before."""
    try:
        held = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        return
    if isinstance(held, str) and held != name:
        raise GannormError(f"{folder} holds sweep {held!r}, not {name!r}: its runs and records would be mixed; give "
                           "another --out DIR")


def _task(spec: SweepSpec, run: RunSpec, folder: Path, threads: int) -> RunTask:
    tags = {"sweep": spec.name, "run_id": run.run_id, "variant": run.variant, "cell": run.cell, "seed": run.seed}
    return RunTask(run.run_id, spec.base, run.overrides, str(folder / RUNS / run.run_id), threads, tags)


def record(con, spec: SweepSpec, run: RunSpec, task: RunTask, outcome: RunOutcome | None = None) -> RunRow:
    """Write one run's row (from its run folder, the source of truth) into the store. A run folder whose
    records are partly unreadable is recorded with what was unreadable (``damaged``), its status recovered
    from its other records when they tell it (:meth:`gannorm.runfolder.RunFolder.check_records`)."""
    folder = RunFolder(task.run_dir)
    check = folder.check_records() if folder.path.is_dir() else RecordCheck(None)
    status = check.status
    state = outcome.status if outcome is not None else (status.status if status else "pending")
    error = outcome.error if outcome is not None else (status.reason if status else None)
    row = RunRow(run.run_id, run.variant, run.cell, run.seed, state, final_metrics(folder) if folder.path.is_dir()
                 else {}, error, task.run_dir, status.seconds if status else None,
                 check.damage if outcome is None else None)
    cfg = folder.read_config_dict() if folder.path.is_dir() else {}
    record_run(con, row, cfg, folder=folder if folder.path.is_dir() else None)
    return row


def run_sweep(sweep: str, out: str | Path | None = None, *, workers: int = 1, threads: int | None = None,
              ray: bool = False, ray_address: str | None = None,
              announce: Callable[[str], None] = lambda _msg: None) -> SweepOutcome:
    """Run every run of ``sweep`` not yet ended into ``out`` (default ``runs/sweep-<name>``)."""
    require(workers, name="--workers", kind="int", min=1, error=GannormError, why="worker processes")
    if threads is not None:
        require(threads, name="--threads", kind="int", min=1, error=GannormError, why="torch threads per run",
                fix="leave it out for cores / workers")
    spec = load_sweep(sweep)
    folder = Path(safe_path(out, "--out") if out is not None else Path("runs") / f"sweep-{spec.name}")
    folder.mkdir(parents=True, exist_ok=True)
    threads = threads if threads is not None else default_threads(workers)
    start = time.perf_counter()
    with sweep_lock(folder):
        _check_same_sweep(folder, spec.name)
        atomic_write_text(folder / SPEC_FILE, json.dumps(_meta(spec)["spec"], indent=1, default=str) + "\n")
        if heal(folder, announce):
            _rebuild(folder, spec)
        con = connect(folder / DB)
        try:
            write_meta(con, _meta(spec))
            pending, runs = [], place_runs(spec, expand(spec), folder / RUNS, announce)
            for run in runs:
                task = _task(spec, run, folder, threads)
                status = RunFolder(task.run_dir).read_status()
                if status is not None and status.status in ENDED:
                    record(con, spec, run, task)
                else:
                    pending.append((run, task))
            announce(f"sweep {spec.name}: {len(pending)} of {len(runs)} runs to train "
                     f"({workers} worker(s) x {threads} thread(s)) in {folder}")
            execute = _execute_ray if ray else _execute_local
            outcomes = execute(pending, workers, ray_address)
            try:
                for run, task, outcome in outcomes:
                    row = record(con, spec, run, task, outcome)
                    announce(f"  {row.run_id}: {row.status}" + (f" ({row.error})" if row.error else ""))
            finally:  # a Ctrl-C while a result is recorded: close the executor now (it cancels the queued runs)
                outcomes.close()
        finally:
            con.close()
    results = read_results(folder / DB)
    return SweepOutcome(folder, results, len(pending), len(results.runs) - len(pending),
                        time.perf_counter() - start)


def _execute_local(pending: Sequence[tuple[RunSpec, RunTask]], workers: int, _address=None):
    """Run the tasks on ``workers`` spawned processes (each dies with the driver); yields as they end.

    At most ``workers`` runs are handed to the pool at a time (the next when one ends): a run handed over
    cannot be cancelled (the pool queues a few beyond its busy workers), so a Ctrl-C starts no run that was
    not already training."""
    if not pending:
        return
    ctx = multiprocessing.get_context("spawn")
    queue = list(pending)[::-1]  # popped from the end: in order
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=die_with_parent,
                                initargs=(os.getpid(),)) as pool:
        futures: dict[cf.Future, tuple[RunSpec, RunTask]] = {}
        try:
            while queue or futures:
                while queue and len(futures) < workers:
                    run, task = queue.pop()
                    try:
                        futures[pool.submit(run_one, task)] = (run, task)
                    except BrokenProcessPool as err:  # a worker died earlier: the pool takes no more runs
                        yield run, task, _worker_died(run, err)
                done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    run, task = futures.pop(future)
                    try:
                        outcome = future.result()
                    except Exception as err:  # the worker process itself died (out of memory, a signal)
                        outcome = _worker_died(run, err)
                    yield run, task, outcome
        except BaseException:  # Ctrl-C (or the caller stopped early): start no queued run; the runs in training
            # get the signal from here, save a checkpoint and end 'interrupted' (the next start resumes them)
            queue.clear()
            interrupt_workers(pool)
            raise


def interrupt_workers(pool: cf.ProcessPoolExecutor) -> list[int]:
    """Send SIGINT to each of ``pool``'s worker processes (in their own process group, a terminal's Ctrl-C
    reaches only the driver): a run in training checkpoints and ends 'interrupted', an idle worker ignores it.

    Args:
        pool: a process pool whose workers ran :func:`die_with_parent` at their start.

    Returns:
        The process ids that were signalled.

    Example:
        >>> interrupt_workers(pool)  # doctest: +SKIP
        [4242, 4243]
    """
    sent = []
    for pid in list((getattr(pool, "_processes", None) or {}).keys()):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
            sent.append(pid)
    return sent


def _worker_died(run: RunSpec, err: Exception) -> RunOutcome:
    return RunOutcome(run.run_id, "failed", f"the worker process died: {type(err).__name__}: {err}")


def _execute_ray(pending: Sequence[tuple[RunSpec, RunTask]], workers: int, address: str | None):
    """Run each task as a Ray task on a local Ray instance (or the cluster at ``address``)."""
    try:
        import ray  # optional dependency: pip install "gannorm[ray]"
    except ImportError:
        raise GannormError("--ray needs Ray: pip install \"gannorm[ray]\" (or pip install ray)") from None
    if not pending:
        return
    started_here = not ray.is_initialized()
    if started_here:
        kwargs = {"address": address} if address else {"num_cpus": workers * pending[0][1].threads}
        ray.init(include_dashboard=False, log_to_driver=False, **kwargs)
    try:
        remote = ray.remote(num_cpus=pending[0][1].threads)(run_one)
        refs = {remote.remote(task): (run, task) for run, task in pending}
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            run, task = refs[done[0]]
            try:
                outcome = ray.get(done[0])
            except Exception as err:
                outcome = RunOutcome(run.run_id, "failed", f"the Ray task failed: {type(err).__name__}: {err}")
            yield run, task, outcome
    finally:
        if started_here:
            ray.shutdown()


def read_spec(folder: str | Path) -> SweepSpec:
    """The sweep as run, from the folder's ``sweep.json``; a one-line error if it is missing or unreadable."""
    folder = Path(folder)
    spec_file = folder / SPEC_FILE
    if not spec_file.is_file():
        raise GannormError(f"{folder} is not a sweep folder: it has no {SPEC_FILE} (run 'gannorm sweep' first)")
    try:
        raw = json.loads(spec_file.read_text(encoding="utf-8"))
        return SweepSpec(**{**raw, "overrides": tuple(raw["overrides"]), "seeds": tuple(raw["seeds"]),
                            "variants": {k: tuple(v) for k, v in raw["variants"].items()},
                            "grid": {k: tuple(v) for k, v in raw["grid"].items()}})
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise GannormError(f"{spec_file} is unreadable ({type(err).__name__}); run 'gannorm sweep SWEEP --out "
                           f"{folder}' again with the sweep's file to write it anew") from None


def rebuild(folder: str | Path, announce: Callable[[str], None] = lambda _msg: None) -> Path:
    """Make ``results.sqlite`` anew from the run folders (the source of truth) and ``sweep.json``; an
    unreadable store is set aside first (:func:`heal`), never deleted."""
    folder = Path(folder)
    spec = read_spec(folder)
    with sweep_lock(folder):
        heal(folder, announce)
        return _rebuild(folder, spec, announce)


def heal(folder: Path, announce: Callable[[str], None]) -> Path | None:
    """Set an unreadable store aside (:func:`~gannorm.app.sweep.store.set_aside`) with a one-line notice; the
    caller holds the sweep's lock and rebuilds it. Returns where it went (None if it read fine)."""
    db = folder / DB
    problem = store_problem(db)
    if problem is None:
        return None
    moved = set_aside(db)
    announce(f"gannorm: {db} cannot be read ({problem}); moved it to {moved.name} and rebuilt it from the run "
             "folders")
    return moved


def load_results(folder: str | Path, announce: Callable[[str], None] = lambda _msg: None) -> SweepResults:
    """The sweep's results for a report: the store, rebuilt from the run folders first when it is missing,
    older than a run's status, or unreadable (set aside, never deleted).

    Args:
        folder: the sweep folder.
        announce: gets a one-line notice when the store is rebuilt (the command line prints it on stderr).

    Returns:
        The store's :class:`~gannorm.app.sweep.results.SweepResults`.

    Example::

        results = load_results("runs/sweep-x", announce=print)
    """
    folder = Path(folder)
    spec = read_spec(folder)
    db = folder / DB
    if store_problem(db) is not None or is_stale(folder):
        with sweep_lock(folder):
            if heal(folder, announce) is None:
                announce(f"rebuilding {db} from the run folders")
            _rebuild(folder, spec, announce)
    try:
        return read_results(db)
    except (sqlite3.DatabaseError, ValueError, KeyError, TypeError) as err:  # readable tables, garbled values
        with sweep_lock(folder):
            moved = set_aside(db)
            announce(f"gannorm: {db} cannot be read ({type(err).__name__}: {' '.join(str(err).split())}); moved it "
                     f"to {moved.name} and rebuilt it from the run folders")
            _rebuild(folder, spec, announce)
        return read_results(db)


def owns(folder: str | Path, path: str | Path) -> bool:
    """Whether ``path`` is one of the sweep folder's own records: ``sweep.json``, the store with its journal
    and the stores set aside, the lock, anything under ``runs/``, or the folder itself.

    Args:
        folder: the sweep folder.
        path: any path (links and ``..`` are resolved).

    Returns:
        True if writing ``path`` would write over the sweep's records.

    Example::

        owns("runs/sweep-x", "runs/sweep-x/results.sqlite")    # True
    """
    try:
        rel = Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
    except ValueError:
        return False
    if not rel.parts or rel.parts[0] == RUNS:
        return True
    name = rel.parts[0]
    return len(rel.parts) == 1 and (name in (SPEC_FILE, LOCK) or name.startswith((DB, f".{DB}")))


def _rebuild(folder: Path, spec: SweepSpec, announce: Callable[[str], None] = lambda _msg: None) -> Path:
    db = folder / DB
    tmp = folder / f".{DB}.rebuild"
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    con = connect(tmp)
    try:
        write_meta(con, _meta(spec))
        for run in place_runs(spec, expand(spec), folder / RUNS, announce):
            record(con, spec, run, _task(spec, run, folder, 1))
    finally:
        con.close()
    for suffix in ("-wal", "-shm"):  # the old store's journal must not be applied to the new one
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, db)
    return db


def is_stale(folder: str | Path) -> bool:
    """Whether the store is missing, or older than a run folder's status."""
    folder = Path(folder)
    db = folder / DB
    if not db.is_file():
        return True
    newest = max((p.stat().st_mtime for p in (folder / RUNS).glob(f"*/{STATUS}")), default=0.0)
    return newest > db.stat().st_mtime


__all__ = ["SweepOutcome", "default_threads", "default_workers", "heal", "is_stale", "load_results", "owns",
           "read_spec", "rebuild", "record", "run_config", "run_sweep"]
