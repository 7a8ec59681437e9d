"""Soak: 200 short ``gannorm.train`` calls in one process leak no memory, file descriptors or threads.

A program (a notebook, a sweep worker) may call ``gannorm.train`` many times. Each call here trains a
tiny ring8 MLP for two steps, with TensorBoard on in every other call and diagnostics plus evaluation
in every tenth one, then removes its run folder. After a warm-up of 50 calls the resident memory may
grow by at most 30 MB over the remaining 150; the open file descriptors and live threads must be the
same after every call past the warm-up, and no more than before the first call; and no trainer,
module, optimizer or run folder object may outlive its call.
"""
from __future__ import annotations

import gc
import os
import shutil
import threading
import time

import pytest
import torch

import gannorm
from gannorm.runfolder import RunFolder
from gannorm.training import Trainer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

CALLS = 200
WARMUP = 50
RSS_BOUND_MB = 30.0
BASE = ["train.steps=2", "train.n_dis=1", "train.batch_size_d=16", "train.batch_size_g=16", "train.threads=1",
        "model.d_options={hidden: 8, depth: 2}", "model.g_options={hidden: 8, depth: 2}", "data.options={n: 256}",
        "train.progress=false", "train.log_every=1", "train.checkpoint_every=2", "train.sample_every=2",
        "train.num_samples_grid=16"]
WITH_DIAGNOSTICS = ["diagnostics.every=1", "diagnostics.batch_size=16", "train.eval_every=2",
                    "train.eval_num_samples=64"]


def rss_mb() -> float:
    """This process's resident memory (VmRSS in /proc/self/status), in MB."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def call(i: int, out) -> None:
    extra = [f"train.tensorboard={'true' if i % 2 == 0 else 'false'}", *(WITH_DIAGNOSTICS if i % 10 == 5 else [])]
    result = gannorm.train("ring8", [*BASE, *extra, f"train.out_dir={out}", f"train.run_name=c{i}"])
    assert result.status == "finished" and result.step == 2
    if i % 2 == 0:
        assert any((result.run_dir / "tensorboard").iterdir())
    if i % 10 == 5:
        assert (result.run_dir / "diagnostics.jsonl").is_file() and (result.run_dir / "eval.jsonl").is_file()
    shutil.rmtree(result.run_dir)


def test_200_train_calls_in_one_process_keep_memory_fds_and_threads_flat(tmp_path):
    start = time.perf_counter()
    gc.collect()  # what earlier tests in this process left to the collector (open files among it)
    before = {"rss": rss_mb(), "fds": open_fds(), "threads": threading.active_count()}
    kinds = (Trainer, RunFolder, torch.nn.Module, torch.optim.Optimizer)
    alive_before = {id(o) for o in gc.get_objects() if issubclass(type(o), kinds)}  # earlier tests' objects
    rss, fds, threads, seconds = [], [], [], []
    for i in range(CALLS):
        t0 = time.perf_counter()
        call(i, tmp_path)
        seconds.append(time.perf_counter() - t0)
        if i + 1 in (WARMUP, CALLS):
            gc.collect()
        rss.append(rss_mb())
        fds.append(open_fds())
        threads.append(threading.active_count())
    growth = rss[-1] - rss[WARMUP - 1]
    report = (f"RSS {before['rss']:.1f} MB before, {rss[WARMUP - 1]:.1f} after {WARMUP} calls, {rss[-1]:.1f} after "
              f"{CALLS} (max {max(rss[WARMUP - 1:]):.1f}); fds {before['fds']} -> {fds[WARMUP - 1]} -> {fds[-1]}; "
              f"threads {before['threads']} -> {threads[WARMUP - 1]} -> {threads[-1]}; calls {min(seconds):.3f}-"
              f"{max(seconds):.3f} s, total {time.perf_counter() - start:.1f} s")
    print(report)
    assert growth < RSS_BOUND_MB, report
    # after the warm-up, the same after every call; and no more than before the first call
    assert fds[WARMUP - 1:] == [fds[WARMUP - 1]] * (CALLS - WARMUP + 1) and fds[-1] <= before["fds"], report
    assert threads[WARMUP - 1:] == [threads[WARMUP - 1]] * (CALLS - WARMUP + 1), report
    assert threads[-1] <= before["threads"], report
    gc.collect()
    alive = [type(o).__name__ for o in gc.get_objects()  # type(): no proxy lookups
             if issubclass(type(o), kinds) and id(o) not in alive_before]
    assert alive == [], alive[:10]
