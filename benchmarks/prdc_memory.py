"""Peak memory of precision/recall/density/coverage (``gannorm.metrics.prdc``) against a full distance matrix.

Each measurement runs in a fresh child process: it makes ``N x D`` real and ``M x D`` generated float32 features
(standard normal, the generated ones shifted), records its resident memory, resets the kernel's peak counter
(``/proc/self/clear_refs``), computes the four numbers and reads the peak (``VmHWM``). The difference is the
computation's working memory besides its inputs (Python's tracemalloc does not see torch's allocations, the
kernel does). It is printed next to the formula of docs/metrics.md and next to what one N x M float64 distance
matrix needs (the authors' ``prdc`` package holds three such matrices, N x N, M x M and N x M, in float32).
With ``--device cuda`` the features are computed on the GPU and the GPU's peak allocation is reported instead.
With ``--reference`` the authors' package (``pip install prdc``) is measured the same way, for a small N only.

Run::

    python benchmarks/prdc_memory.py                      # 50,000 x 50,000 2048-d features (minutes on a CPU)
    python benchmarks/prdc_memory.py --n 3000 --reference # small, with the package for comparison
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

MIB = 2 ** 20


def _status(key: str) -> int:
    """A ``/proc/self/status`` entry in bytes (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status (Linux only)")


def child(args: argparse.Namespace) -> dict:
    """Runs in the child process: the features, then one computation, its peak memory and time."""
    import numpy as np
    import torch
    if args.which == "reference":
        from prdc import compute_prdc
    else:
        from gannorm.metrics import prdc
    rng = np.random.default_rng(0)
    real = rng.standard_normal((args.n, args.d), dtype=np.float32)
    fake = rng.standard_normal((args.m, args.d), dtype=np.float32)
    fake += 0.1
    warm = real[:2 * args.k + 2]  # loads the kernels' code pages before the measurement (they are not working memory)
    compute_prdc(warm, warm, args.k) if args.which == "reference" else prdc(warm, warm, args.k, args.chunk_size)
    if args.device != "cpu":
        real, fake = torch.from_numpy(real).to(args.device), torch.from_numpy(fake).to(args.device)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:  # the peak (VmHWM) restarts from the current resident set
            f.write("5")
    t0 = time.perf_counter()
    if args.which == "reference":
        out = {k: float(v) for k, v in compute_prdc(real, fake, args.k).items()}
    else:
        out = prdc(real, fake, nearest_k=args.k, chunk_size=args.chunk_size)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated() if args.device != "cpu" else _status("VmHWM")
    return {"working": peak - before, "seconds": seconds, "result": out}


def measure(args: argparse.Namespace, which: str) -> dict:
    cmd = [sys.executable, __file__, "--child", which, "--n", str(args.n), "--m", str(args.m), "--d", str(args.d),
           "--k", str(args.k), "--chunk-size", str(args.chunk_size), "--device", args.device]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def formula(n: int, m: int, d: int, k: int, c: int) -> int:
    """docs/metrics.md's estimate of the working memory: ``8 (3 c D + 2 c^2 + 4 c (k + 1) + 2 (N + M))`` bytes."""
    return 8 * (3 * c * d + 2 * c * c + 4 * c * (k + 1) + 2 * (n + m))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--n", type=int, default=50_000, help="real features (default 50000)")
    parser.add_argument("--m", type=int, default=None, help="generated features (default: --n)")
    parser.add_argument("--d", type=int, default=2048, help="feature dimension (default 2048, Inception pool3)")
    parser.add_argument("--k", type=int, default=5, help="nearest_k (default 5)")
    parser.add_argument("--chunk-size", type=int, default=1024, help="rows per block (default 1024)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or a CUDA device")
    parser.add_argument("--reference", action="store_true", help="also measure the prdc package (small --n!)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.m = args.m or args.n
    if args.child:
        args.which = args.child
        print(json.dumps(child(args)))
        return
    inputs = 4 * (args.n + args.m) * args.d
    print(f"N = {args.n}, M = {args.m}, D = {args.d}, k = {args.k}, chunk_size = {args.chunk_size}, "
          f"device {args.device}; inputs (float32): {inputs / MIB:,.1f} MiB")
    print(f"  one full N x M distance matrix (float64): {8 * args.n * args.m / MIB:,.1f} MiB; the package's three "
          f"(float32): {4 * (args.n ** 2 + args.m ** 2 + args.n * args.m) / MIB:,.1f} MiB")
    print(f"  the formula's estimate of gannorm's working memory: "
          f"{formula(args.n, args.m, args.d, args.k, args.chunk_size) / MIB:,.1f} MiB")
    for which in ("gannorm", "reference") if args.reference else ("gannorm",):
        got = measure(args, which)
        numbers = ", ".join(f"{k} {v:.4f}" for k, v in got["result"].items())
        print(f"  {which:9s} measured peak working memory {got['working'] / MIB:,.1f} MiB in {got['seconds']:.1f} s "
              f"({numbers})")


if __name__ == "__main__":
    main()
