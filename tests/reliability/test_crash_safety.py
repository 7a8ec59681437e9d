"""Crash safety of ``gannorm train``: SIGKILL at random moments and mid-checkpoint, then ``--resume``.

The command line runs as a child process (``_child.py``: ``python -m gannorm`` with markers on stdout
and an optionally slow checkpoint write or step, so that the test can kill it at a chosen moment). After
every kill each checkpoint on disk must load; after the last resume the checkpoint must equal an
uninterrupted run's bitwise (every tensor: G, D, the EMA, both optimizers, the RNG states), and every
log must hold each step once, in order, with the uninterrupted run's values.

Three seeds, seven SIGKILLs each (21 in all, each a new child process). The kill schedule is drawn
from ``random.Random(1000 + seed)``: the first kill comes in a new run's first steps (after its step-0
checkpoint), the others at a shuffled mix of moments (mid-checkpoint-write, a random point after a
given step, a random time after start-up) and their steps or delays. Where a kill lands
within a step depends on the machine's speed, so the steps reached may vary from one run to the next;
what is asserted holds wherever it lands.
"""
from __future__ import annotations

import csv
import json
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from gannorm.app.training import train
from gannorm.runfolder import load_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

CHILD = Path(__file__).with_name("_child.py")
STEPS = 80
CHECKPOINT_EVERY = 4
EVAL_EVERY = 2
DIAGNOSTICS_EVERY = 3
KILLS_PER_SEED = 7            # three seeds: 21 SIGKILLs in all, each a new child process
SEEDS = (0, 1, 2)
START_TIMEOUT = 120.0         # generous: a loaded 2-core machine starts python + torch in 3-5 s


def overrides(out_dir: Path, seed: int) -> list[str]:
    """ring8 with a tiny MLP; every log gets rows (health warnings forced by tiny thresholds)."""
    return [f"train.out_dir={out_dir}", "train.run_name=r", f"train.seed={seed}", f"train.steps={STEPS}",
            "train.threads=1", "train.progress=false", "train.tensorboard=false", "model.width=0.125",
            "data.options={n: 2000}", "train.batch_size_d=32", "train.batch_size_g=32", "train.n_dis=2",
            "train.log_every=1", f"train.checkpoint_every={CHECKPOINT_EVERY}", "train.sample_every=1000",
            f"train.eval_every={EVAL_EVERY}", "train.eval_num_samples=200", f"diagnostics.every={DIAGNOSTICS_EVERY}",
            "diagnostics.batch_size=16", "train.ema_decay=0.9", "optim.lr_decay=linear",
            "diagnostics.explode_growth=1e-6", "diagnostics.saturate_gap=1e-9",
            "train.best_metric=none"]  # best checkpoints: tests/training/test_best_checkpoint.py


# ------------------------------------------------------------------------------------------ the child
class Child:
    """``gannorm train`` in a child process; its stdout markers are read by a thread into a queue."""

    started: list["Child"] = []  # every child of this module, killed at the end of its test if still running

    def __init__(self, args: list[str], log: Path, **env: str) -> None:
        self.log = log
        self.stderr = log.open("ab")
        self.proc = subprocess.Popen([sys.executable, str(CHILD), "train", *args], stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True, env={**os.environ, "OMP_NUM_THREADS": "1", **env})
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        Child.started.append(self)

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, wanted, timeout: float = START_TIMEOUT) -> str | None:
        """The first stdout line for which ``wanted(line)`` holds; None when the child ends first or the
        timeout passes."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self.lines.put(None)  # stay at the end
                return None
            self.seen.append(line)
            if wanted(line):
                return line
        return None

    def kill(self, sig: int = signal.SIGKILL) -> bool:
        """Send ``sig``; True if the child was still running (a real kill), False if it had ended."""
        alive = self.proc.poll() is None
        if alive:
            self.proc.send_signal(sig)
        return alive

    def finish(self, timeout: float = START_TIMEOUT) -> int:
        try:
            rc = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.stderr.close()
        self.reader.join(10)
        while not self.lines.empty():  # what it printed after the moment waited for
            line = self.lines.get()
            if line is not None:
                self.seen.append(line)
        return rc

    def last_step(self) -> int:
        """The last G step it computed (0 if none)."""
        return max([int(line.split()[1]) for line in self.seen if line.startswith("STEP ")], default=0)

    def stderr_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(autouse=True)
def _no_child_outlives_its_test():
    yield
    while Child.started:
        child = Child.started.pop()
        if child.proc.poll() is None:  # a test failed between a start and its finish
            child.proc.kill()
            child.proc.wait()


def marker(name: str, number: int | None = None):
    """A test for stdout lines ``NAME`` or ``NAME n`` with ``n >= number``."""
    def wanted(line: str) -> bool:
        parts = line.split()
        return bool(parts) and parts[0] == name and (number is None or int(parts[1]) >= number)
    return wanted


def step_of_checkpoint(run: Path) -> int | None:
    return int(load_checkpoint(run / "checkpoint.pt")["step"]) if (run / "checkpoint.pt").is_file() else None


# ------------------------------------------------------------------------------------------ comparisons
def flatten(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from flatten(v, f"{prefix}{k}/")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from flatten(v, f"{prefix}{i}/")
    else:
        yield prefix, obj


def assert_same_checkpoint(a: dict, b: dict) -> None:
    """Every leaf equal: tensors bitwise (``torch.equal``, same dtype), everything else ``==`` (but the
    config's output folder, which differs by design)."""
    fa, fb = dict(flatten(a)), dict(flatten(b))
    fa.pop("config/train/out_dir/"), fb.pop("config/train/out_dir/")
    assert fa.keys() == fb.keys()
    for key in ("G/", "D/", "G_ema/", "opt_g/state/", "opt_d/state/"):
        assert any(k.startswith(key) and isinstance(v, torch.Tensor) for k, v in fa.items()), key
    for k, va in fa.items():
        vb = fb[k]
        if isinstance(va, torch.Tensor):
            assert isinstance(vb, torch.Tensor) and va.dtype == vb.dtype and torch.equal(va, vb), k
        else:
            assert va == vb, k


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def stable(rows: list[dict]) -> list[dict]:
    """The records without their wall-clock fields (training speed, evaluation seconds)."""
    out = []
    for row in rows:
        row = {k: v for k, v in row.items() if k != "it_per_s"}
        if isinstance(row.get("protocol"), dict):
            row["protocol"] = {k: v for k, v in row["protocol"].items() if k != "seconds"}
        out.append(row)
    return out


def csv_rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    drop = rows[0].index("it_per_s")
    return [[c for i, c in enumerate(r) if i != drop] for r in rows]


def due_steps(every: int, at_start: bool) -> list[int]:
    """The steps a periodic record is due at: every ``every`` steps, the last one, and 0 with ``at_start``."""
    return sorted({*range(every, STEPS + 1, every), STEPS, *([0] if at_start else [])})


def assert_same_logs(run: Path, ref: Path) -> None:
    """Each log holds each step once, in order, with the uninterrupted run's steps and values."""
    metrics, ref_metrics = jsonl(run / "metrics.jsonl"), jsonl(ref / "metrics.jsonl")
    training = [r["step"] for r in metrics if "loss_d" in r]
    assert training == list(range(1, STEPS + 1))
    assert [r["step"] for r in metrics if "diag/lipschitz_upper" in r] == due_steps(DIAGNOSTICS_EVERY, True)
    assert [r["step"] for r in metrics if "eval/modes" in r] == due_steps(EVAL_EVERY, False)
    assert stable(metrics) == stable(ref_metrics)
    assert [r["step"] for r in jsonl(run / "eval.jsonl")] == due_steps(EVAL_EVERY, False)
    assert stable(jsonl(run / "eval.jsonl")) == stable(jsonl(ref / "eval.jsonl"))
    assert [r["step"] for r in jsonl(run / "diagnostics.jsonl")] == due_steps(DIAGNOSTICS_EVERY, True)
    assert jsonl(run / "diagnostics.jsonl") == jsonl(ref / "diagnostics.jsonl")
    health = jsonl(run / "health.jsonl")
    assert health and health == jsonl(ref / "health.jsonl")
    keys = [(h["step"], h["rule"], h["layer"]) for h in health]
    assert keys == sorted(keys, key=lambda k: k[0]) and len(set(keys)) == len(keys)
    rows = csv_rows(run / "metrics.csv")
    assert rows[0][:2] == ["step", "loss_d"] and [int(r[0]) for r in rows[1:] if r[1]] == list(range(1, STEPS + 1))
    assert rows == csv_rows(ref / "metrics.csv")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run of a seed (trained in this process, once per module)."""
    runs: dict[int, Path] = {}

    def get(seed: int) -> Path:
        if seed not in runs:
            result = train("ring8", overrides(tmp_path_factory.mktemp(f"reference-{seed}"), seed))
            assert result.status == "finished" and result.step == STEPS
            runs[seed] = result.run_dir
        return runs[seed]
    return get


def temporaries(run: Path) -> list[str]:
    return sorted(p.name for p in run.rglob("*") if p.name.endswith(".tmp"))


def test_the_uninterrupted_run_logs_each_step_once(reference):
    ref = reference(0)
    assert [r["step"] for r in jsonl(ref / "metrics.jsonl") if "loss_d" in r] == list(range(1, STEPS + 1))
    assert [int(r[0]) for r in csv_rows(ref / "metrics.csv")[1:]] == list(range(1, STEPS + 1))


# ------------------------------------------------------------------------------------------ SIGKILL
def moment(kind: str, start: int, rng: random.Random):
    """When to SIGKILL a session that starts at step ``start``: (the child's environment, a description,
    a function that waits for that moment)."""
    if kind == "first":  # a new run, after its step-0 checkpoint and before the next one: G step target+1 pauses
        target = rng.randint(1, CHECKPOINT_EVERY - 2)
        return ({"GANNORM_CHILD_SLOW_STEP": str(target + 1)}, f"after step {target} of a new run",
                lambda c: c.wait_for(marker("SLOW-STEP")))
    if kind == "write":  # the k-th checkpoint write pauses with half its bytes written
        k = rng.randint(1, 2)
        return ({"GANNORM_CHILD_SLOW_WRITE": str(k)}, f"mid-write of checkpoint write {k}",
                lambda c: c.wait_for(marker("CKPT-HALF", k)))
    if kind == "step":  # a random point in the logs and checkpoint of a step, or in the next step
        target = min(start + rng.randint(1, 2 * CHECKPOINT_EVERY - 1), STEPS - 1)
        delay = rng.uniform(0.0, 0.03)

        def wait(c: Child) -> None:
            c.wait_for(marker("STEP", target))
            time.sleep(delay)
        return {}, f"{delay * 1e3:.0f} ms after step {target}", wait
    # "startup": a random time after python + torch are up (config, models, log truncation), at most 3 steps in
    delay = rng.uniform(0.0, 2.5)

    def wait_startup(c: Child) -> None:
        c.wait_for(marker("READY"))
        c.wait_for(marker("STEP", start + 3), timeout=delay)
    return {}, f"{delay:.2f} s after start-up", wait_startup


def plan(seed: int) -> tuple[list[str], random.Random]:
    """The seed's kinds of kill, in order, and the generator of their moments: the first session is
    killed in its first steps, the others at a shuffled mix of mid-write, in-step and start-up kills."""
    rng = random.Random(1000 + seed)
    kinds = ["write", "write", "step", "step", "startup", "startup"][: KILLS_PER_SEED - 1]
    rng.shuffle(kinds)
    return ["first", *kinds], rng


def assert_checkpoints_load(run: Path, reached: int, aim: str) -> None:
    """Every checkpoint on disk loads; the run's is the last one due by step ``reached``, or the one
    before it (when the kill came before or during the newest one's write); status.json is whole."""
    for path in run.glob("*.pt"):
        state = load_checkpoint(path)
        assert 0 <= state["step"] <= STEPS and state["step"] % CHECKPOINT_EVERY == 0, (path, aim)
    saved, due = step_of_checkpoint(run), reached // CHECKPOINT_EVERY * CHECKPOINT_EVERY
    assert saved is None or due - CHECKPOINT_EVERY <= saved <= due, (saved, reached, aim)
    if (run / "status.json").is_file():
        assert json.loads((run / "status.json").read_text())["status"] in ("running", "interrupted", "finished")


@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_anywhere_then_resume_equals_the_uninterrupted_run(tmp_path, seed, reference):
    out, run = tmp_path / "runs", tmp_path / "runs" / "r"
    kills, aims, mid_write = 0, [], 0
    kinds, rng = plan(seed)
    for kind in kinds:
        start = step_of_checkpoint(run)
        assert start is None or kind != "first"
        env, aim, wait = moment(kind, start or 0, rng)
        child = Child(["--resume", str(run)] if start is not None else ["ring8", *overrides(out, seed)],
                      tmp_path / "child.log", **env)
        wait(child)
        killed = child.kill()
        rc = child.finish()
        assert killed or rc == 0, child.stderr_text()[-3000:]
        kills += killed
        aims.append(f"{aim} (step {child.last_step()})" if killed else f"{aim} (not reached: the child ended first)")
        assert_checkpoints_load(run, max(child.last_step(), start or 0), aim)
        mid_write += any(n.startswith(".checkpoint.pt") for n in temporaries(run))
        if run.is_dir() and step_of_checkpoint(run) is None:  # killed before its first checkpoint: start again
            shutil.rmtree(run)
    print(f"seed {seed}: {kills} SIGKILLs: " + "; ".join(aims))
    assert kills == KILLS_PER_SEED, "; ".join(aims)
    child = Child(["--resume", str(run)], tmp_path / "child.log")
    assert child.finish() == 0, child.stderr_text()[-3000:]
    assert mid_write, "no kill landed in the middle of a checkpoint write"
    ref = reference(seed)
    assert_same_checkpoint(load_checkpoint(run / "checkpoint.pt"), load_checkpoint(ref / "checkpoint.pt"))
    assert_same_logs(run, ref)
    assert json.loads((run / "status.json").read_text())["status"] == "finished"
    assert temporaries(run) == [], "a resumed run leaves the temporaries of killed writes behind"


# ------------------------------------------------------------------------------------------ SIGINT twice
def interrupt_twice(tmp_path: Path, second_at, **env: str) -> tuple[Path, int, list[str]]:
    """Start a new run, SIGINT it, then SIGINT it again at ``second_at``; (run, exit status, every marker
    the child printed). The slow moment pauses for 60 s and ``finish`` waits at most 30 s for the exit."""
    out, run = tmp_path / "runs", tmp_path / "runs" / "r"
    child = Child(["ring8", *overrides(out, 0)], tmp_path / "child.log", **env)
    second_at(child)
    assert child.kill(signal.SIGINT)
    rc = child.finish(timeout=30)
    return run, rc, child.seen


def assert_interrupted_and_resumable(tmp_path: Path, run: Path, rc: int, reference) -> None:
    assert rc == 130, rc
    saved = step_of_checkpoint(run)
    assert saved == CHECKPOINT_EVERY
    status = json.loads((run / "status.json").read_text())
    assert status["status"] == "interrupted" and status["step"] >= saved, status
    assert status.get("checkpoint_step", status["step"]) == saved, status
    child = Child(["--resume", str(run)], tmp_path / "child.log")
    assert child.finish() == 0, child.stderr_text()[-3000:]
    ref = reference(0)
    assert_same_checkpoint(load_checkpoint(run / "checkpoint.pt"), load_checkpoint(ref / "checkpoint.pt"))
    assert_same_logs(run, ref)
    assert temporaries(run) == []


def first_sigint(child: Child, when) -> None:
    assert child.wait_for(when), child.seen
    assert child.kill(signal.SIGINT)
    end = time.monotonic() + 30
    while "got signal" not in child.stderr_text():  # the handler has run: the next SIGINT is a second one
        assert time.monotonic() < end and child.proc.poll() is None, child.stderr_text()[-2000:]
        time.sleep(0.01)


def test_a_second_sigint_during_a_step_exits_at_once_and_the_run_resumes(tmp_path, reference):
    slow = CHECKPOINT_EVERY + 3  # G step 7 pauses: steps 5-6 are logged but not saved
    run, rc, seen = interrupt_twice(tmp_path, lambda c: first_sigint(c, marker("SLOW-STEP")),
                                    GANNORM_CHILD_SLOW_STEP=str(slow))
    assert f"STEP {slow}" not in seen, seen  # it exited during the pause: the slow step never ran
    assert json.loads((run / "status.json").read_text())["step"] == slow - 1
    assert_interrupted_and_resumable(tmp_path, run, rc, reference)


def _second_during_final_write(child: Child) -> None:
    # writes 1 and 2 are the checkpoints of steps 0 and 4; the first SIGINT after step 5 stops the run
    # after step 5, 6 or 7, and write 3 is the checkpoint the stop request saves
    first_sigint(child, marker("STEP", CHECKPOINT_EVERY + 1))
    assert child.wait_for(marker("CKPT-HALF", 3)), child.seen


def test_a_second_sigint_during_the_stop_checkpoint_exits_at_once_and_the_run_resumes(tmp_path, reference):
    run, rc, seen = interrupt_twice(tmp_path, _second_during_final_write, GANNORM_CHILD_SLOW_WRITE="3")
    assert "CKPT-DONE 3" not in seen, seen  # it exited during the paused write: that write never ended
    assert_interrupted_and_resumable(tmp_path, run, rc, reference)
