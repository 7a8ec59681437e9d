"""The results store of a sweep: ``DIR/results.sqlite`` (SQLite in WAL mode).

The run folders are the source of truth; the store is an index over them that the report and your own
queries read. Each run is one row of ``runs`` (the primary key is the run id, so recording a run again
replaces it: a run is never counted twice), with its metric time series in ``series`` and its health
warnings in ``health``. :func:`rebuild` makes the store anew from the run folders.

A store that cannot be read (truncated, garbled, not a database, a table or column missing:
:func:`store_problem`) is never deleted: :func:`set_aside` renames it ``results.sqlite.damaged-<time>``
(with its journal), and the sweep or the report rebuilds the store from the run folders.

Schema::

    runs(run_id TEXT PRIMARY KEY, variant TEXT, cell TEXT -- JSON {config key: value},
         seed INTEGER, status TEXT -- finished / diverged / failed / running / pending / damaged,
         config TEXT -- JSON of the resolved config, final TEXT -- JSON {metric: value} of the last evaluation,
         error TEXT, run_dir TEXT, started REAL, finished REAL -- Unix times, seconds REAL -- training time,
         damaged TEXT -- which of the run folder's records were unreadable and how its status was found, or NULL)
    series(run_id TEXT, step INTEGER, key TEXT, value REAL, PRIMARY KEY (run_id, step, key))
    health(run_id TEXT, step INTEGER, rule TEXT, layer TEXT, value REAL, message TEXT)
    meta(key TEXT PRIMARY KEY, value TEXT)   -- the sweep: name, metric, lower_is_better, success, grid keys
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

from ...runfolder import RunFolder
from .results import RunRow, SweepResults

DB = "results.sqlite"
#: the suffix of a store set aside as unreadable: ``results.sqlite.damaged-<YYYYmmdd-HHMMSS>``
DAMAGED = ".damaged-"
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs(run_id TEXT PRIMARY KEY, variant TEXT, cell TEXT, seed INTEGER, status TEXT,
    config TEXT, final TEXT, error TEXT, run_dir TEXT, started REAL, finished REAL, seconds REAL, damaged TEXT);
CREATE TABLE IF NOT EXISTS series(run_id TEXT, step INTEGER, key TEXT, value REAL, PRIMARY KEY (run_id, step, key));
CREATE TABLE IF NOT EXISTS health(run_id TEXT, step INTEGER, rule TEXT, layer TEXT, value REAL, message TEXT);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE INDEX IF NOT EXISTS series_run ON series(run_id);
CREATE INDEX IF NOT EXISTS health_run ON health(run_id);
"""


#: the columns each table must have for the store to be read (``runs.damaged`` is added to older stores)
COLUMNS = {"runs": {"run_id", "variant", "cell", "seed", "status", "config", "final", "error", "run_dir", "started",
                    "finished", "seconds"},
           "series": {"run_id", "step", "key", "value"},
           "health": {"run_id", "step", "rule", "layer", "value", "message"},
           "meta": {"key", "value"}}


def connect(path: str | Path) -> sqlite3.Connection:
    """Open (and create) the store; WAL mode and a busy timeout make concurrent writers safe."""
    con = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA busy_timeout=60000")
    con.executescript(SCHEMA)
    if "damaged" not in _columns(con, "runs"):  # a store written before the column existed
        con.execute("ALTER TABLE runs ADD COLUMN damaged TEXT")
    return con


def _columns(con: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in con.execute(f"PRAGMA table_info({table})")}


def store_problem(path: str | Path) -> str | None:
    """Why the store at ``path`` cannot be read, in a few words; None if it reads, or does not exist.

    Args:
        path: a ``results.sqlite``.

    Returns:
        ``None``, or e.g. ``"file is not a database"``, ``"table runs is missing"``.

    Example::

        if store_problem(folder / DB):
            set_aside(folder / DB)
    """
    path = Path(path)
    if not path.exists():
        return None
    if not path.is_file():
        return "it is not a file"
    try:
        with closing(sqlite3.connect(str(path), timeout=60.0)) as con:
            check = con.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                return f"the database is damaged: {' '.join(str(check[0][0]).split())}" if check else "no check result"
            for table, columns in COLUMNS.items():
                got = _columns(con, table)
                if not got:
                    return f"table {table} is missing"
                if columns - got:
                    return f"table {table} lacks the column {sorted(columns - got)[0]}"
    except sqlite3.OperationalError as err:
        if "locked" in str(err):  # busy, not damaged: another process holds it
            raise
        return " ".join(str(err).split())
    except sqlite3.DatabaseError as err:  # not a database, malformed, truncated
        return " ".join(str(err).split())
    return None


def set_aside(path: str | Path) -> Path:
    """Rename an unreadable store ``results.sqlite.damaged-<YYYYmmdd-HHMMSS>`` (``-2``, ``-3``, ... if taken),
    with its ``-wal`` and ``-shm`` journal files, so that a new store can take its place; returns the new
    name. Nothing is deleted."""
    path = Path(path)
    base = f"{path.name}{DAMAGED}{time.strftime('%Y%m%d-%H%M%S')}"
    target, i = path.with_name(base), 2
    while any(Path(f"{target}{s}").exists() for s in ("", "-wal", "-shm")):
        target, i = path.with_name(f"{base}-{i}"), i + 1
    os.replace(path, target)
    for suffix in ("-wal", "-shm"):
        journal = Path(f"{path}{suffix}")
        if journal.exists():
            os.replace(journal, Path(f"{target}{suffix}"))
    return target


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def final_metrics(folder: RunFolder) -> dict[str, float]:
    """The last evaluation's headline values ``{metric: value}`` (the EMA generator's if it has one)."""
    records = folder.read_eval()
    if not records:
        return {}
    last = records[-1]
    return {name: float(v["value"]) for name, v in last.metrics.items() if "value" in v}


def metric_series(folder: RunFolder) -> list[tuple[int, str, float]]:
    """``(step, "eval/<metric>" or a training scalar, value)`` of the run's evaluations and losses."""
    out = []
    for rec in folder.read_eval():
        for name, v in rec.metrics.items():
            if "value" in v and math.isfinite(float(v["value"])):
                out.append((rec.step, f"eval/{name}", float(v["value"])))
    for row in folder.read_metrics():
        for key in ("loss_d", "loss_g"):
            if key in row.values and math.isfinite(row.values[key]):
                out.append((row.step, key, row.values[key]))
    return out


def record_run(con: sqlite3.Connection, row: RunRow, config: dict[str, Any], *, started: float | None = None,
               folder: RunFolder | None = None) -> None:
    """Insert or replace one run with its series and health warnings, in one transaction."""
    series = metric_series(folder) if folder is not None else []
    health = folder.read_health() if folder is not None else []
    with _transaction(con):
        con.execute("INSERT OR REPLACE INTO runs (run_id, variant, cell, seed, status, config, final, error, run_dir, "
                    "started, finished, seconds, damaged) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    (row.run_id, row.variant, json.dumps(row.cell), row.seed, row.status, json.dumps(config),
                     json.dumps({k: _finite(v) for k, v in row.final.items()}), row.error, row.run_dir, started,
                     time.time(), row.seconds, row.damaged))
        con.execute("DELETE FROM series WHERE run_id = ?", (row.run_id,))
        con.executemany("INSERT OR REPLACE INTO series VALUES (?,?,?,?)",
                        [(row.run_id, s, k, v) for s, k, v in series])
        con.execute("DELETE FROM health WHERE run_id = ?", (row.run_id,))
        con.executemany("INSERT INTO health VALUES (?,?,?,?,?,?)",
                        [(row.run_id, w.step, w.rule, w.layer, _finite(w.value), w.message) for w in health])


class _transaction:
    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def __enter__(self) -> None:
        self.con.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind, value, tb) -> None:
        self.con.execute("COMMIT" if kind is None else "ROLLBACK")


def write_meta(con: sqlite3.Connection, meta: dict[str, Any]) -> None:
    with _transaction(con):
        con.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()])


def read_results(path: str | Path) -> SweepResults:
    """The whole store as typed records (the report's input)."""
    with closing(connect(path)) as con:
        meta = {k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")}
        runs = [RunRow(run_id=r[0], variant=r[1], cell=json.loads(r[2]), seed=r[3], status=r[4],
                       final={k: (math.nan if v is None else v) for k, v in json.loads(r[5] or "{}").items()},
                       error=r[6], run_dir=r[7], seconds=r[8], damaged=r[9])
                for r in con.execute("SELECT run_id, variant, cell, seed, status, final, error, run_dir, seconds, "
                                     "damaged FROM runs ORDER BY rowid")]
        metric = meta.get("metric", "")
        series: dict[str, list[tuple[int, float]]] = {}
        for run_id, step, value in con.execute("SELECT run_id, step, value FROM series WHERE key = ? "
                                               "ORDER BY run_id, step", (f"eval/{metric}",)):
            series.setdefault(run_id, []).append((step, value))
        health: dict[str, list[dict[str, Any]]] = {}
        for run_id, step, rule, layer, message in con.execute(
                "SELECT run_id, step, rule, layer, message FROM health ORDER BY run_id, step"):
            health.setdefault(run_id, []).append({"step": step, "rule": rule, "layer": layer, "message": message})
    order = {v: i for i, v in enumerate(meta.get("variants", []))}
    runs.sort(key=lambda r: (order.get(r.variant, len(order)), json.dumps(r.cell, sort_keys=True), r.seed))
    return SweepResults(name=meta.get("name", Path(path).parent.name), metric=metric,
                        lower_is_better=bool(meta.get("lower_is_better", True)), success=meta.get("success", {}),
                        grid_keys=list(meta.get("grid_keys", [])), variants=list(meta.get("variants", [])),
                        runs=runs, series=series, health=health)
