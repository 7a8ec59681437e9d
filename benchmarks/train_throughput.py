"""How close does a full SNGAN-CNN-32 training step come to this CPU's matmul peak?

Measures, in one process and interleaved: iterations/s of one full training iteration (a D step on
64 real + 64 fake images and a G step on 64 fakes; hinge loss, Adam, SN on every D layer) of the
official-width SNGAN standard CNN at 32x32, its FLOPs counted once with
``torch.utils.flop_counter.FlopCounterMode`` (so achieved GFLOP/s = FLOPs / time), next to the GFLOP/s
of a large square matmul -- in fp32 and under ``torch.autocast("cpu", torch.bfloat16)``.

Run::

    python benchmarks/train_throughput.py            # ~2-3 minutes on 2 cores
    python benchmarks/train_throughput.py --quick    # smoke run
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import gannorm
from gannorm.losses import LOSSES
from gannorm.networks import build_discriminator, build_generator


def make_step(batch: int, dtype: torch.dtype | None, method: str):
    torch.manual_seed(0)
    G = build_generator("cnn", (3, 32, 32))
    D = build_discriminator("cnn", (3, 32, 32), normalization=method)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    loss = LOSSES.get("hinge")
    real = torch.rand(batch, 3, 32, 32) * 2 - 1
    z = torch.randn(batch, 128)

    def autocast():
        return torch.autocast("cpu", dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def step() -> None:
        with autocast():
            with torch.no_grad():
                fake = G(z)
            d_loss = loss.d(D(real).float(), D(fake).float())
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        D.requires_grad_(False)
        with autocast():
            g_loss = loss.g(D(G(z)).float())
        opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        opt_g.step()
        D.requires_grad_(True)

    return step


def count_flops(step) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def make_matmul(n: int, dtype: torch.dtype):
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    return (lambda: torch.mm(a, b)), 2 * n ** 3


def timed(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    p.add_argument("--steps", type=int, default=3, help="timed training iterations per round (default 3)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--matmul", type=int, default=2048, help="matmul size n (n x n @ n x n)")
    p.add_argument("--method", default="sn", help="D normalization (default sn)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="rounds 3, steps 1, batch 16")
    a = p.parse_args()
    if a.quick:
        a.rounds, a.steps, a.batch = 3, 1, 16
    torch.set_num_threads(a.threads)
    variants = {"fp32": None, "bf16": torch.bfloat16}
    steps = {k: make_step(a.batch, dt, a.method) for k, dt in variants.items()}
    mms = {k: make_matmul(a.matmul, torch.float32 if dt is None else dt) for k, dt in variants.items()}
    flops = {k: count_flops(s) for k, s in steps.items()}
    for s in steps.values():  # warm-up
        s()
    for mm, _ in mms.values():
        mm()
    step_t = {k: [] for k in variants}
    mm_t = {k: [] for k in variants}
    for _ in range(a.rounds):
        for k in variants:
            step_t[k].append(timed(steps[k], a.steps))
            mm_t[k].append(timed(mms[k][0], 5))
    print(f"# SNGAN standard CNN 32x32, full width, batch {a.batch}, D normalization {a.method}: one iteration = "
          f"D step + G step")
    print(f"torch {torch.__version__}, threads {a.threads}, rounds {a.rounds} x {a.steps} steps, matmul "
          f"{a.matmul}x{a.matmul}\n")
    print("| precision | GFLOP/iter | ms/iter median [min-max] | it/s | step GFLOP/s | matmul GFLOP/s | step / matmul |")
    print("|---|---|---|---|---|---|---|")
    for k in variants:
        t = statistics.median(step_t[k])
        gf = flops[k] / 1e9
        mm_gflops = statistics.median(mms[k][1] / x for x in mm_t[k]) / 1e9
        ratio = statistics.median((flops[k] / s) / (mms[k][1] / m) for s, m in zip(step_t[k], mm_t[k]))
        print(f"| {k} | {gf:.1f} | {t * 1e3:.0f} [{min(step_t[k]) * 1e3:.0f}-{max(step_t[k]) * 1e3:.0f}] | "
              f"{1 / t:.2f} | {gf / t:.0f} | {mm_gflops:.0f} | {ratio:.2f} |")
    speedup = statistics.median(f / b for f, b in zip(step_t["fp32"], step_t["bf16"]))
    print(f"\nbf16 speed-up over fp32 (median of per-round ratios): {speedup:.2f}x")
    print("step / matmul: median over rounds of (step GFLOP/s) / (matmul GFLOP/s) in the same round.")


if __name__ == "__main__":
    main()
