"""A sweep's worker processes: they start when the driver is PID 1, an idle one survives a Ctrl-C, and a
SIGINT to the driver alone stops the runs in training (checkpointed, 'interrupted') instead of waiting for
them to train to their last step."""
from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import signal
import subprocess
import sys

from conftest import wait_until

from gannorm.app.sweep import runner
from gannorm.app.sweep.worker import die_with_parent

START = """
import os, sys
from gannorm.app.sweep.worker import die_with_parent
os.getppid = lambda: int(sys.argv[1])   # what the worker sees as its parent
die_with_parent(int(sys.argv[2]))       # what the driver says it is
print("survived", flush=True)
"""


def start_worker(seen_parent: int, driver: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", START, str(seen_parent), str(driver)], capture_output=True,
                          text=True, timeout=60)


def test_a_worker_of_a_driver_that_is_pid_1_starts():
    """A driver that is PID 1 (a container's entrypoint): its workers' parent is 1, and that is no dead parent
    (before the fix every worker exited in the pool's initializer and every run was recorded failed)."""
    done = start_worker(1, 1)
    assert done.returncode == 0 and done.stdout.strip() == "survived", done.stderr


def test_a_worker_whose_driver_died_before_it_started_exits():
    done = start_worker(1, 4242)  # the driver was 4242; the worker was reparented to 1
    assert done.returncode == 1 and "survived" not in done.stdout


def test_the_pool_passes_the_driver_pid_to_its_workers(monkeypatch):
    seen = {}

    class Pool(cf.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            seen.update(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(runner.cf, "ProcessPoolExecutor", Pool)
    monkeypatch.setattr(runner, "run_one", str)  # any picklable call of one argument
    assert list(runner._execute_local([(None, "task")], 1)) == [(None, "task", "task")]
    assert seen["initializer"] is die_with_parent and seen["initargs"] == (os.getpid(),)


def test_an_idle_worker_ignores_sigint_and_the_pool_stays_whole():
    """Before the fix an idle worker took a terminal's Ctrl-C as a KeyboardInterrupt (a traceback) and broke
    the pool; now it ignores it (a run in training has its own handlers, the next test)."""
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(1, mp_context=ctx, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
        worker = pool.submit(os.getpid).result(timeout=120)
        assert runner.interrupt_workers(pool) == [worker]
        assert os.getpgid(worker) == worker  # its own group: a terminal's Ctrl-C reaches the driver only
        assert pool.submit(os.getpid).result(timeout=60) == worker  # the same worker, alive and taking work


def test_sigint_to_the_driver_alone_interrupts_the_runs_in_training(tmp_path):
    """Before the fix the driver waited for the runs in training to reach their last step (here 4000)."""
    spec = tmp_path / "long.yaml"
    spec.write_text(json.dumps({"base": "ring8", "seeds": 3, "metric": "modes", "overrides": [
        "train.steps=4000", "model.d_options={hidden: 16}", "model.g_options={hidden: 16}",
        "train.checkpoint_every=2", "train.tensorboard=false", "train.batch_size_d=16", "train.batch_size_g=16",
        "train.eval_num_samples=200"]}))
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gannorm", "sweep", str(spec), "--out", str(out), "--workers", "2", "--threads",
           "1", "--no-report"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(list(out.glob("runs/*/checkpoint.pt"))) >= 2, 300, "two runs to checkpoint")
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    statuses = [json.loads(p.read_text()) for p in out.glob("runs/*/status.json")]
    assert len(statuses) == 2 and all(s["status"] == "interrupted" and s["step"] < 4000 for s in statuses), statuses
    assert "Traceback" not in err, err
