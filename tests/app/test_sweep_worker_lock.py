"""A sweep worker that finds its run folder written by another process leaves it alone and reports the run as
not ended (``interrupted``), so the next start of the sweep trains it; it never deletes or records it failed."""
from __future__ import annotations

import subprocess
import sys

from gannorm.app.sweep.worker import RunTask, run_one
from gannorm.runfolder import RunFolder

HOLD = """
import sys
from gannorm.runfolder import acquire_lock
lock = acquire_lock(sys.argv[1])
print("held", flush=True)
sys.stdin.readline()
"""


def test_a_run_folder_held_by_another_process_is_left_alone(tmp_path):
    run = tmp_path / "r"
    RunFolder.create_at(run)
    (run / "keep.txt").write_text("partial work")
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run / ".lock")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        task = RunTask("r-s0-x", "digits", ("train.steps=1", "data.resolution=8", "model.width=0.125"), str(run), 1)
        outcome = run_one(task)
        assert outcome.status == "interrupted" and str(holder.pid) in outcome.error
        assert (run / "keep.txt").read_text() == "partial work"  # not deleted, not restarted
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
