"""Sweep throughput: runs per minute of `gannorm sweep` against the same runs started one by one with
`gannorm train`, and 2 workers x 1 thread against 1 worker x 2 threads.

    python benchmarks/sweep_throughput.py [--runs 6] [--steps 150]

Run it alone on the machine (two processes with two torch threads each slow each other ~10x). It prints:
- one by one: each run as its own `gannorm train` process (train.threads=2), one after the other;
- sweep 1x2: `gannorm sweep --workers 1 --threads 2` on the same runs (same configs, same threads);
  the sweep's overhead is its wall time over the one-by-one wall time, minus 1;
- sweep 2x1: `gannorm sweep --workers 2 --threads 1`; the ratio 2x1 / 1x2 in runs per minute picks the
  default (threads per run = cores / workers).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETTING = ["data.resolution=16", "model.width=0.25", "train.eval_num_samples=300", "diagnostics.every=0",
           "train.tensorboard=false"]


def sweep_yaml(folder: Path, runs: int, steps: int) -> Path:
    spec = {"base": "digits", "overrides": [*SETTING, f"train.steps={steps}", f"train.eval_every={steps}",
                                            f"train.sample_every={steps}", f"train.checkpoint_every={steps}"],
            "variants": {"sn": ["normalization.method=sn", "normalization.options={}"]},
            "seeds": runs, "metric": "cfd"}
    path = folder / "bench.yaml"
    path.write_text(json.dumps(spec))
    return path


def timed(cmd: list[str]) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def one_by_one(folder: Path, runs: int, steps: int) -> float:
    total = 0.0
    for seed in range(runs):
        total += timed([sys.executable, "-m", "gannorm", "train", "digits", *SETTING, f"train.steps={steps}",
                        f"train.eval_every={steps}", f"train.sample_every={steps}", f"train.checkpoint_every={steps}",
                        "normalization.method=sn", "normalization.options={}",
                        f"train.seed={seed}", "train.threads=2", "train.progress=false",
                        f"train.out_dir={folder / 'single'}"])
    return total


def sweep(folder: Path, spec: Path, workers: int, threads: int, name: str) -> float:
    return timed([sys.executable, "-m", "gannorm", "sweep", str(spec), "--workers", str(workers), "--threads",
                  str(threads), "--out", str(folder / name), "--no-report"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=150)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = sweep_yaml(folder, args.runs, args.steps)
        single = one_by_one(folder, args.runs, args.steps)
        s12 = sweep(folder, spec, 1, 2, "s12")
        s21 = sweep(folder, spec, 2, 1, "s21")
    per_min = lambda seconds: 60.0 * args.runs / seconds  # noqa: E731
    print(f"{args.runs} runs of {args.steps} G steps (digits 16 px, SNGAN CNN width 0.25, SN)")
    print(f"one by one (gannorm train, 2 threads) {single:7.1f} s  {per_min(single):6.2f} runs/min")
    print(f"sweep 1 worker x 2 threads            {s12:7.1f} s  {per_min(s12):6.2f} runs/min  "
          f"overhead vs one by one {100 * (s12 / single - 1):+.1f}%")
    print(f"sweep 2 workers x 1 thread            {s21:7.1f} s  {per_min(s21):6.2f} runs/min  "
          f"2x1 / 1x2 = {s12 / s21:.2f}x")


if __name__ == "__main__":
    main()
