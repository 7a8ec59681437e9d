"""Per layer of the SNGAN CNN discriminator: the convolution kernels a double backward runs, native vs fastgrad.

For each conv of the official SNGAN CNN D at 32x32 (full width, batch 64, fp32, CPU) this times

* ``forward``       -- ``conv2d(x, W)``;
* ``input grad``    -- the transposed convolution ``A_W^T gy`` (PyTorch's ``convolution_backward``,
                       input part only), which GN's ``grad_x`` pass runs once per layer;
* ``native 2nd``    -- PyTorch's ``_convolution_double_backward`` given ``ggI`` (what the GN D step and
                       the gradient penalties pay per layer when they differentiate ``grad_x D``);
* ``fastgrad 2nd``  -- the same two outputs (``d/dgy`` and ``d/dW``) as ``gannorm.fastgrad`` computes
                       them: one forward convolution plus one weight gradient.

Each number is the median of ``--reps`` timings, the variants interleaved; the last column is the
per-layer ratio native / fastgrad. Run alone (2 torch threads on a busy 2-core machine are erratic)::

    python benchmarks/double_backward.py
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

LAYERS = [(3, 64, 3, 1, 32), (64, 64, 4, 2, 32), (64, 128, 3, 1, 16), (128, 128, 4, 2, 16),
          (128, 256, 3, 1, 8), (256, 256, 4, 2, 8), (256, 512, 3, 1, 4)]  # c_in, c_out, k, stride, size


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--reps", type=int, default=9)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"# SNGAN CNN D convolutions, batch {args.batch}, fp32, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, median of {args.reps}\n")
    print("| layer | forward ms | input grad ms | native 2nd ms | fastgrad 2nd ms | native / fastgrad |")
    print("|---|---|---|---|---|---|")
    totals = [0.0, 0.0, 0.0, 0.0]
    for ci, co, k, s, n in LAYERS:
        x, w = torch.randn(args.batch, ci, n, n), torch.randn(co, ci, k, k)
        gy = torch.randn_like(torch.conv2d(x, w, None, s, 1))
        ggi = torch.randn_like(x)
        geom = ([s, s], [1, 1], [1, 1], False, [0, 0], 1)
        fns = {
            "forward": lambda: torch.conv2d(x, w, None, s, 1),
            "input": lambda: torch.ops.aten.convolution_backward(gy, x, w, None, *geom, [True, False, False]),
            "native": lambda: torch.ops.aten._convolution_double_backward(
                ggi, None, None, gy, w, x, [s, s], [1, 1], [1, 1], False, [0, 0], 1, [True, True, False]),
            "fastgrad": lambda: (torch.conv2d(ggi, w, None, s, 1),
                                 torch.ops.aten.convolution_backward(gy, ggi, w, None, *geom, [False, True, False])),
        }
        times: dict[str, list[float]] = {name: [] for name in fns}
        for fn in fns.values():
            fn()  # warm-up
        for _ in range(args.reps):
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        ms = [statistics.median(times[name]) * 1e3 for name in fns]
        totals = [a + b for a, b in zip(totals, ms)]
        print(f"| {ci}->{co} k{k} s{s} @{n} | " + " | ".join(f"{m:.2f}" for m in ms) + f" | {ms[2] / ms[3]:.2f} |")
    print("| **all 7** | " + " | ".join(f"{m:.1f}" for m in totals) + f" | {totals[2] / totals[3]:.2f} |")


if __name__ == "__main__":
    main()
