"""One writer per run folder: ``train``, ``train --resume``, ``eval``, ``analyze``, ``sample`` and ``export`` (into
the run) hold the folder's lock; a second writer is a one-line error naming the holder's PID (exit 2) and
touches nothing; the lock never outlives its holder (SIGKILL included, forked children too)."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import NO_EVAL, TINY_DIGITS

import gannorm.runfolder as rf
from gannorm.app.training import train
from gannorm.errors import RunFolderError
from gannorm.runfolder import RunFolder, read_jsonl

pytestmark = pytest.mark.usefixtures("one_thread")

CHILD = Path(__file__).with_name("_child.py")
TINY = [*TINY_DIGITS, *NO_EVAL, "train.threads=1", "train.log_every=1", "train.checkpoint_every=2",
        "train.sample_every=1000"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
DEADLINE = 60.0
LOCK = ".lock"

#: a process that takes RUN's lock, says LOCKED, and holds it until its stdin closes (or it is killed); with
#: ``fork`` it first forks a child that outlives it (until stdin closes), to show that a forked child does not keep
#: the lock
HOLDER = """
import os, sys, time
from gannorm.runfolder import RunFolder
folder = RunFolder(sys.argv[1])
folder.lock()
if len(sys.argv) > 2 and os.fork() == 0:
    sys.stdin.read()  # lives on until the test closes the shared stdin
    os._exit(0)
print("LOCKED", flush=True)
sys.stdin.read()
"""


def gannorm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gannorm", *args], env=ENV, capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def snapshot(run: Path) -> dict[str, str]:
    """Every file of the run folder but its lock: name -> SHA-256."""
    return {p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file() and p.name != LOCK}


def wait_free(run: Path) -> None:
    """Wait (polling, with a deadline) until the run's lock file can be ``flock``ed here, then let it go (an
    independent check: fcntl itself, not gannorm's lock code)."""
    end = time.monotonic() + DEADLINE
    while True:
        with open(run / LOCK, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
        assert time.monotonic() < end, "the lock outlived its holder"
        time.sleep(0.05)


def read_until(proc: subprocess.Popen, marker: str) -> None:
    for line in proc.stdout:
        if line.startswith(marker):
            return
    raise AssertionError(f"the child ended (rc {proc.wait()}) before printing {marker}")


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A 4-step run of the digits job, trained in this process (which gives the lock back at the end)."""
    out = tmp_path_factory.mktemp("lock")
    result = train("digits", [*TINY, "train.steps=4", f"train.out_dir={out}", "train.run_name=r"])
    assert result.status == "finished"
    return result.run_dir


def holder(run: Path, *extra: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run), *extra], env=ENV, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    read_until(proc, "LOCKED")
    return proc


def one_line_naming(proc: subprocess.CompletedProcess, pid: int) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"process {pid}" in lines[0] and "in use" in lines[0]
    return lines[0]


def test_resume_while_the_run_trains_is_refused_and_touches_nothing(run, tmp_path):
    """The reproduction: ``train --resume RUN`` while another process trains RUN. Both used to exit 0 and
    write every log twice; now the second one is refused with the trainer's PID, and after the trainer is
    SIGKILLed the lock is free and a resume records each step once."""
    child = subprocess.Popen([sys.executable, str(CHILD), "train", "--resume", str(run), "train.steps=8"],
                             env={**ENV, "GANNORM_CHILD_SLOW_STEP": "6"}, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    try:
        read_until(child, "SLOW-STEP")  # step 5 is done; the child sleeps before step 6, holding RUN
        before = snapshot(run)
        second = gannorm("train", "--resume", str(run), "train.steps=8")
        line = one_line_naming(second, child.pid)
        assert str(run) in line
        assert snapshot(run) == before  # no log, checkpoint or status written by the refused process
    finally:
        child.kill()
        child.wait()
    wait_free(run)
    again = gannorm("train", "--resume", str(run), "train.steps=8")
    assert again.returncode == 0, again.stderr
    steps = [r["step"] for r in read_jsonl(run / "metrics.jsonl")[0]]
    assert steps == sorted(set(steps)) and steps[-1] == 8  # each step once
    assert json.loads((run / "status.json").read_text())["status"] == "finished"


@pytest.mark.parametrize("command", [
    lambda run, tmp: ["train", "--resume", str(run), "train.steps=6"],
    lambda run, tmp: ["eval", str(run), "--metric", "cfd", "--num-samples", "20", "--num-real", "20"],
    lambda run, tmp: ["analyze", str(run)],
    lambda run, tmp: ["sample", str(run), "-n", "4", "-o", str(run / "more.png")],
    lambda run, tmp: ["export", str(run), "-o", str(run / "g.pt")],
], ids=["resume", "eval", "analyze", "sample-into-run", "export-into-run"])
def test_every_writer_into_a_held_run_is_refused(run, tmp_path, command):
    proc = holder(run)
    try:
        before = snapshot(run)
        one_line_naming(gannorm(*command(run, tmp_path)), proc.pid)
        assert snapshot(run) == before
    finally:
        proc.kill()
        proc.wait()


def test_readers_and_outputs_elsewhere_need_no_lock(run, tmp_path):
    proc = holder(run)
    try:
        out = gannorm("sample", str(run), "-n", "4", "-o", str(tmp_path / "s.png"))
        assert out.returncode == 0, out.stderr
        ev = gannorm("eval", str(run), "--metric", "cfd", "--num-samples", "20", "--num-real", "20", "-o",
                     str(tmp_path / "e.json"))
        assert ev.returncode == 0, ev.stderr
        assert (tmp_path / "s.png").is_file() and (tmp_path / "e.json").is_file()
    finally:
        proc.kill()
        proc.wait()


def test_a_forked_child_does_not_keep_the_lock_of_its_killed_parent(run):
    """The holder forks a child that lives on; the holder is SIGKILLed; the lock is free although the child
    still runs (a forked child closes its copy of the lock file)."""
    proc = holder(run, "fork")
    try:
        with pytest.raises(rf.LockBusy) as busy:
            rf.acquire_lock(run / LOCK, reentrant=False)
        assert busy.value.pid == proc.pid
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_free(run)
    finally:
        proc.kill()
        proc.wait()
        proc.stdin.close()  # the forked child's end: it reads EOF and exits


def test_in_process_locks_are_shared_and_released(tmp_path):
    a, b = RunFolder(tmp_path), RunFolder(tmp_path)
    a.lock()
    b.lock()  # the same process: one writer
    with pytest.raises(rf.LockBusy) as busy:  # what another process sees
        rf.acquire_lock(tmp_path / LOCK, reentrant=False)
    assert busy.value.pid == os.getpid()
    a.unlock()
    with pytest.raises(rf.LockBusy):
        rf.acquire_lock(tmp_path / LOCK, reentrant=False)  # b still holds it
    b.unlock()
    rf.acquire_lock(tmp_path / LOCK, reentrant=False).release()
    with a.locked():
        assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
    rf.acquire_lock(tmp_path / LOCK, reentrant=False).release()  # given back by the with block


def test_a_lock_is_given_back_when_its_folder_object_is_gone(tmp_path):
    folder = RunFolder(tmp_path)
    folder.lock()
    del folder
    rf.acquire_lock(tmp_path / LOCK, reentrant=False).release()


def test_the_lock_message_is_one_line_with_the_pid(run):
    proc = holder(run)
    try:
        with pytest.raises(RunFolderError) as err:
            RunFolder(run).lock("or write elsewhere")
        text = str(err.value)
        assert "\n" not in text and f"process {proc.pid}" in text and "or write elsewhere" in text
    finally:
        proc.kill()
        proc.wait()
