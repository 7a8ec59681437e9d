"""Training steps per second on a GPU: the normalizations' overhead and the mixed-precision speed-up.

Each variant is a :class:`gannorm.training.Trainer` (the code ``gannorm train`` runs) of the official-width
SNGAN standard CNN at 32x32 on random 3-channel 32x32 images (an ``npy`` dataset written to a temporary
folder), batch 64, hinge loss, Adam (lr 2e-4, betas (0.5, 0.999)), ``n_dis`` 1; one timed iteration is
one ``Trainer.train_step()``: a D step on a real and a fake batch and a G step, with the trainer's data
draw, host-to-device copy and finiteness checks. The variants:

* D normalization ``none`` / ``sn`` / ``bssn`` (scale 1.0) / ``strict_sn``, in fp32;
* function-level ``gn`` on an unnormalized D, with the exact (second-order) G step, and ``gn_first_order``
  (``normalization.first_order_g=true``, as the GN presets train), in fp32; and ``gn_native``, ``gn`` with
  PyTorch's own convolution double backward instead of ``gannorm.fastgrad``'s (which was tuned on the CPU),
  to tell whether fastgrad pays on this device;
* ``sn`` under ``train.precision=bf16`` and, on a GPU only, ``fp16`` (autocast, with the trainer's GradScaler).

All trainers are built up front in one process (each with its own models, optimizers and seeded streams).
After ``--warmup`` untimed iterations each, ``--rounds`` rounds run every variant in a freshly shuffled
order for ``--steps`` individually timed iterations, with ``torch.cuda.synchronize()`` before and after
each; a round's time is the median of its iterations. Reported: the median ms/iteration over the rounds
(min-max), steps/s, each variant's ratio to ``none`` and each precision's speed-up over fp32, both the
median of the same-round ratios (not a ratio of medians), and on a GPU the memory one iteration allocates
beyond the models (peak minus resident). TF32 is left at torch's defaults (printed), as training leaves it.

Run::

    python benchmarks/gpu_throughput.py                  # on the GPU (well under a minute of timing)
    python benchmarks/gpu_throughput.py --quick          # smoke run (about 15 s on a 2-core CPU)
    python benchmarks/gpu_throughput.py --channels-last  # NHWC, as the GN presets train

Without a GPU it says so and runs on the CPU as a smoke run, with tiny sizes (width 0.125, batch 8);
``--device cpu`` runs the given sizes on the CPU.
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

import gannorm.gradnorm
from gannorm import config as config_mod
from gannorm.training import Trainer

#: (variant, overrides): the D normalizations and functions, all in fp32
NORMALIZATIONS: dict[str, list[str]] = {
    "none": ["normalization.method=none"],
    "sn": ["normalization.method=sn"],
    "bssn": ["normalization.method=bssn", "normalization.options={scale: 1.0}"],
    "strict_sn": ["normalization.method=strict_sn"],
    "gn": ["normalization.method=none", "normalization.function=gn"],
    "gn_first_order": ["normalization.method=none", "normalization.function=gn", "normalization.first_order_g=true"],
    "gn_native": ["normalization.method=none", "normalization.function=gn"],
}
#: variants whose iterations run with gannorm.fastgrad off (GN's convolutions take PyTorch's double backward)
NATIVE_GRAD = {"gn_native"}
PRECISION_METHOD = "sn"  # the D of the precision comparison


@dataclass
class Variant:
    name: str
    method: str
    function: str
    precision: str
    trainer: Trainer
    native_grad: bool = False


def resolve_device(name: str | None) -> tuple[torch.device, bool]:
    """The device to run on, and whether this is the CPU smoke run (no GPU, none asked for)."""
    if name is None:
        if torch.cuda.is_available():
            return torch.device("cuda"), False
        print("no GPU here: running on the CPU as a smoke run (width 0.125, batch 8)", file=sys.stderr)
        return torch.device("cpu"), True
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_throughput: --device cuda was asked for but no GPU is available; leave --device out for a "
                 "CPU smoke run")
    return device, False


def write_images(folder: Path, n: int, seed: int) -> Path:
    """``n`` random RGB 32x32 uint8 images as an ``.npy`` file (the ``npy`` dataset)."""
    path = folder / "images.npy"
    np.save(path, np.random.default_rng(seed).integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8))
    return path


def build(args: argparse.Namespace, device: torch.device, images: Path, out: Path) -> list[Variant]:
    base = ["data.name=npy", f"data.root={images}", "data.resolution=32", "data.in_memory=true",
            "model.arch=cnn", f"model.width={args.width}", "model.z_dim=128", "train.loss=hinge", "train.n_dis=1",
            f"train.batch_size_d={args.batch}", f"train.batch_size_g={args.batch}", "train.steps=1000000",
            f"train.channels_last={'true' if args.channels_last else 'false'}", f"train.device={device}",
            "train.progress=false", "train.tensorboard=false", f"train.out_dir={out}", f"train.seed={args.seed}"]
    plan = [(name, overrides, "fp32") for name, overrides in NORMALIZATIONS.items()]
    for precision in ("bf16", "fp16") if device.type == "cuda" else ("bf16",):
        plan.append((f"{PRECISION_METHOD}_{precision}", NORMALIZATIONS[PRECISION_METHOD], precision))
    variants = []
    for name, overrides, precision in plan:
        cfg = config_mod.load(None, [*base, *overrides, f"train.precision={precision}", f"train.run_name={name}"])
        n = cfg.normalization
        function = f"{n.function} (first-order G)" if n.first_order_g else n.function
        if name in NATIVE_GRAD:
            function += ", native double backward"
        variants.append(Variant(name, n.method, function, precision, Trainer(cfg), name in NATIVE_GRAD))
    return variants


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Keep the garbage collector out of the timed sections."""
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextlib.contextmanager
def native_double_backward() -> Iterator[None]:
    """GN without ``gannorm.fastgrad``: its ``fast_conv_grads`` block does nothing while this is open."""
    saved = gannorm.gradnorm.fast_conv_grads
    gannorm.gradnorm.fast_conv_grads = lambda enabled=True: contextlib.nullcontext()
    try:
        yield
    finally:
        gannorm.gradnorm.fast_conv_grads = saved


def iteration(v: Variant) -> None:
    with native_double_backward() if v.native_grad else contextlib.nullcontext():
        v.trainer.train_step()
    if v.trainer.non_finite is not None:
        sys.exit(f"gpu_throughput: {v.name} went non-finite ({v.trainer.non_finite})")


def step_memory(v: Variant, device: torch.device) -> float | None:
    """MiB one iteration allocates beyond what is resident before it (a GPU only)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    iteration(v)
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20


def time_rounds(variants: list[Variant], rounds: int, steps: int, sync: Callable[[], None],
                rng: random.Random) -> dict[str, list[float]]:
    """Seconds per iteration (median of the round's ``steps``), one entry per round, for each variant."""
    out: dict[str, list[float]] = {v.name: [] for v in variants}
    for _ in range(rounds):
        order = list(variants)
        rng.shuffle(order)
        for v in order:
            samples = []
            with no_gc():
                for _ in range(steps):
                    sync()
                    t0 = time.perf_counter()
                    iteration(v)
                    sync()
                    samples.append(time.perf_counter() - t0)
            out[v.name].append(statistics.median(samples))
    return out


def paired(times: dict[str, list[float]], name: str, base: str) -> float:
    """The median over rounds of ``name``'s time / ``base``'s time in the same round."""
    return statistics.median(a / b for a, b in zip(times[name], times[base]))


def describe(device: torch.device, args: argparse.Namespace) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        where = (f"{props.name} ({device}, {props.total_memory / 2 ** 30:.0f} GiB), CUDA {torch.version.cuda}, "
                 f"cudnn {torch.backends.cudnn.version()}, TF32 convolutions "
                 f"{'on' if torch.backends.cudnn.allow_tf32 else 'off'} / matmuls "
                 f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}")
    else:
        where = f"CPU, {torch.get_num_threads()} threads"
    return (f"{where}; torch {torch.__version__}; {'NHWC' if args.channels_last else 'NCHW'}; {args.rounds} rounds x "
            f"{args.steps} timed iterations after {args.warmup} warm-up")


def report(variants: list[Variant], times: dict[str, list[float]], memory: dict[str, float | None],
           device: torch.device, args: argparse.Namespace) -> None:
    print(f"# SNGAN standard CNN 32x32, width {args.width}, batch {args.batch}, hinge, Adam: one iteration = "
          f"Trainer.train_step() (D step + G step)")
    print(describe(device, args))
    if device.type != "cuda":
        print("**not GPU numbers**: no GPU here, or --device cpu" + (" (a smoke run with tiny sizes)" if args.smoke
                                                                     else ""))
    print()
    mem_col = device.type == "cuda"
    head = "| variant | D normalization | function | precision | ms/iter median [min-max] | steps/s | ratio vs none |"
    print(head + (" step memory MiB |" if mem_col else ""))
    print("|---" * (7 + mem_col) + "|")
    for v in variants:
        t = times[v.name]
        ms = [x * 1e3 for x in t]
        med = statistics.median(t)
        ratio = f"{paired(times, v.name, 'none'):.3f}" if v.precision == "fp32" else "-"
        row = (f"| {v.name} | {v.method} | {v.function} | {v.precision} | {statistics.median(ms):.2f} "
               f"[{min(ms):.2f}-{max(ms):.2f}] | {1 / med:.1f} | {ratio} |")
        print(row + (f" {memory[v.name]:.0f} |" if mem_col else ""))
    print(f"\n| precision (D: {PRECISION_METHOD}) | steps/s | speed-up over fp32 |")
    print("|---|---|---|")
    print(f"| fp32 | {1 / statistics.median(times[PRECISION_METHOD]):.1f} | 1.000 |")
    for v in variants:
        if v.precision != "fp32":
            print(f"| {v.precision} | {1 / statistics.median(times[v.name]):.1f} | "
                  f"{1 / paired(times, v.name, PRECISION_METHOD):.3f} |")
    print("\nratio vs none and speed-up: medians over rounds of same-round ratios of the median iteration times.")
    if device.type != "cuda":
        print("fp16 needs a GPU (the trainer refuses it on the CPU): not measured here.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default=None, help="cuda, cuda:N or cpu (default: cuda if there is a GPU, else a "
                                                  "CPU smoke run)")
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    p.add_argument("--steps", type=int, default=5, help="timed iterations per variant and round (default 5)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per variant first (default 3)")
    p.add_argument("--batch", type=int, default=64, help="D and G batch (default 64)")
    p.add_argument("--width", type=float, default=1.0, help="channel-width multiplier (default 1.0: official)")
    p.add_argument("--channels-last", action="store_true", help="NHWC models and batches (train.channels_last)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 1 iteration after 1 warm-up")
    a = p.parse_args()
    device, smoke = resolve_device(a.device)
    if a.threads:
        torch.set_num_threads(a.threads)
    a.smoke = smoke
    if smoke:
        a.width, a.batch = 0.125, 8
    if a.quick:
        a.rounds, a.steps, a.warmup = 2, 1, 1
    for key in ("rounds", "steps", "batch"):
        if getattr(a, key) < 1:
            sys.exit(f"gpu_throughput: --{key} must be >= 1, got {getattr(a, key)}")
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory(prefix="gpu_throughput-") as tmp:
        images = write_images(Path(tmp), max(256, 4 * a.batch), a.seed)
        variants = build(a, device, images, Path(tmp) / "runs")
        try:
            for v in variants:
                for _ in range(a.warmup):
                    iteration(v)
            memory = {v.name: step_memory(v, device) for v in variants}
            times = time_rounds(variants, a.rounds, a.steps, sync, random.Random(a.seed))
        finally:
            for v in variants:
                v.trainer.close()
    report(variants, times, memory, device, a)


if __name__ == "__main__":
    main()
