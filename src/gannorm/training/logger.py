"""Scalar logs: one JSON object per line (``metrics.jsonl``), a CSV mirror, and TensorBoard."""
from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path


class MetricLogger:
    """Appends ``{"step": s, ...}`` rows. On resume, rows after the checkpoint's step are dropped.

    The CSV's columns are fixed by the first row written to it; keys that appear later are kept in
    the JSONL file only. TensorBoard scalars are written when ``tensorboard`` is installed.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True, resume_step: int | None = None) -> None:
        self.jsonl = run_dir / "metrics.jsonl"
        self.csv = run_dir / "metrics.csv"
        self._columns: list[str] | None = None
        if resume_step is not None:
            self._truncate(resume_step)
        elif self.jsonl.exists():
            self.jsonl.unlink()
        if self.csv.exists():
            with self.csv.open(newline="") as fh:
                header = next(csv.reader(fh), None)
            self._columns = header
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self._tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=resume_step)
            except ImportError:
                print("gannorm: tensorboard is not installed; logging to metrics.jsonl/csv only "
                      "(pip install tensorboard)", file=sys.stderr)

    def _truncate(self, step: int) -> None:
        for path, parse in ((self.jsonl, lambda line: json.loads(line)["step"]),):
            if path.exists():
                keep = [line for line in path.read_text().splitlines() if line and parse(line) <= step]
                path.write_text("".join(line + "\n" for line in keep))
        if self.csv.exists():
            with self.csv.open(newline="") as fh:
                rows = list(csv.reader(fh))
            if rows:
                idx = rows[0].index("step")
                keep = [rows[0]] + [r for r in rows[1:] if int(r[idx]) <= step]
                with self.csv.open("w", newline="") as fh:
                    csv.writer(fh).writerows(keep)

    def log(self, step: int, scalars: dict[str, float], csv_row: bool = True) -> None:
        """One row; ``csv_row=False`` keeps it out of the CSV (whose columns the training rows fix)."""
        row = {"step": step, **{k: (float(v) if math.isfinite(float(v)) else str(float(v)))
                                for k, v in scalars.items()}}
        with self.jsonl.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
        self.tensorboard(step, scalars)
        if not csv_row:
            return
        new = self._columns is None
        if new:
            self._columns = list(row)
        with self.csv.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self._columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def tensorboard(self, step: int, scalars: dict[str, float]) -> None:
        """TensorBoard scalars (also the TensorBoard part of :meth:`log`)."""
        if self._tb is not None:
            for k, v in scalars.items():
                self._tb.add_scalar(k, float(v), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
