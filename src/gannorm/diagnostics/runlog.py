"""The run's ``diagnostics.jsonl``: append records, and on resume drop those after the checkpoint."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

FILENAME = "diagnostics.jsonl"
HEALTH_FILENAME = "health.jsonl"


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def read_jsonl(path: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects of a JSONL file and the number of lines skipped as unreadable.

    A line is skipped when it is not a JSON object, e.g. the truncated last line of a run killed
    mid-write. Blank lines are ignored without counting.
    """
    records, skipped = [], 0
    with open(path, encoding="utf-8", errors="replace") as fh:
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


def read_records(path: Path) -> list[dict]:
    """The records of a JSONL file (none if it does not exist); unreadable lines are skipped."""
    return read_jsonl(path)[0] if path.exists() else []


def truncate_after(path: Path, step: int) -> None:
    """Keep only the records with ``step <= step`` (a resumed run re-records what comes after)."""
    if path.exists():
        keep = [r for r in read_records(path) if int(r.get("step", 0)) <= step]
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))


class DiagnosticsLog:
    def __init__(self, run_dir: Path, resume_step: int | None = None) -> None:
        self.path = run_dir / FILENAME
        self.health_path = run_dir / HEALTH_FILENAME
        if resume_step is None:
            for p in (self.path, self.health_path):
                if p.exists():
                    p.unlink()
        else:
            truncate_after(self.path, resume_step)
            truncate_after(self.health_path, resume_step)

    def records(self) -> list[dict]:
        return read_records(self.path)

    def append(self, record: dict) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(_clean(record)) + "\n")
