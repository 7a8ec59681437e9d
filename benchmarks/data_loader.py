"""Does the lazy loader keep up with training? Images/s it delivers against images/s a training step consumes.

For each setting -- the SNGAN CNN at 32 px (preset ``sngan_cifar10_cnn``: batch 128, n_dis 1) and the SNGAN
ResNet at 128 px (preset ``bssn_imagenet_resnet``: D batch 16, n_dis 5, G batch 32) -- this writes a folder of
generated images (smooth random pictures, a little larger than the resolution so each is cropped and resized,
as real data is), then measures in one process:

* ``loader img/s``: a lazy ``imagefolder`` (``data.in_memory=false``, ``--workers`` processes) delivering
  64-image batches, with a trainer's other draws (flips, z) between them so the next batch is decoded ahead;
* ``train img/s``: real images a training iteration consumes (``n_dis x batch_size_d`` per iteration) with the
  same images held in memory, timed on ``trainer.train_step()``;
* ``ratio``: loader / train (above 1: the loader keeps up, with room to spare);
* ``ms/iter`` in memory and lazy, and the lazy run's overhead: what decoding costs a real run once it overlaps
  with the step (prefetch hits: batches that were decoded ahead).

Run (on the machine that trains; ``--device cuda`` or ``auto``)::

    python benchmarks/data_loader.py                     # several minutes on a CPU (the ResNet step is slow)
    python benchmarks/data_loader.py --quick             # smoke run: tiny widths, few images and steps
    python benchmarks/data_loader.py --format jpg --source-scale 3   # ImageNet-like JPEGs of ~3x the size
"""
from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gannorm import config as config_mod
from gannorm.data import load_dataset
from gannorm.training import Trainer


@dataclass
class Setting:
    name: str
    preset: str
    resolution: int


SETTINGS = [Setting("SNGAN CNN 32", "sngan_cifar10_cnn", 32), Setting("SNGAN ResNet 128", "bssn_imagenet_resnet", 128)]
QUIET = ["train.progress=false", "train.tensorboard=false", "train.eval_every=0", "train.best_metric=none",
         "train.sample_every=1000000",
         "train.checkpoint_every=1000000", "diagnostics.every=0"]


def write_images(root: Path, n: int, side: int, fmt: str, seed: int = 0) -> Path:
    """``n`` smooth random RGB pictures (8x8 noise, bilinear up to side x 0.9 side) as PNG or JPEG files."""
    rng = np.random.default_rng(seed)
    size = (side, max(1, int(side * 0.9)))
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        im = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(size, Image.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, format="JPEG" if fmt == "jpg" else "PNG", quality=90)
        (root / f"{i // 1000:03d}").mkdir(exist_ok=True)
        (root / f"{i // 1000:03d}" / f"{i:07d}.{fmt}").write_bytes(buf.getvalue())
    return root


def loader_rate(root: Path, resolution: int, workers: int, batches: int) -> tuple[float, str]:
    """Images/s of 64-image batches from a lazy imagefolder, and its prefetch counts."""
    ds = load_dataset("imagefolder", root, resolution, in_memory=False, workers=workers)
    gen = torch.Generator().manual_seed(0)

    def draw() -> None:
        ds.sample(64, gen)
        torch.rand(64, generator=gen)            # a trainer's flips ...
        torch.randn(64, 128, generator=gen)      # ... and latent vectors between two batches

    try:
        for _ in range(4):  # start the workers, learn the pattern of draws
            draw()
        start = time.perf_counter()
        for _ in range(batches):
            draw()
        seconds = time.perf_counter() - start
        s = ds.stats
        return 64 * batches / seconds, f"{s.prefetched}/{s.batches}"
    finally:
        ds.close()


def step_times(setting: Setting, root: Path, in_memory: bool, args) -> tuple[list[float], int, str]:
    """Seconds per training iteration (after a warm-up), images consumed per iteration, prefetch counts."""
    overrides = [*QUIET, "data.name=imagefolder", f"data.root={root}", f"data.resolution={setting.resolution}",
                 f"train.device={args.device}", f"train.out_dir={args.out}", f"train.steps={args.steps + 1}",
                 f"train.threads={args.threads}", f"data.in_memory={str(in_memory).lower()}",
                 f"data.workers={args.workers}"]
    if args.quick:
        overrides += ["model.width=0.125"]
    cfg = config_mod.load(setting.preset, overrides)
    trainer = Trainer(cfg)
    try:
        trainer.train_step()  # warm-up (and the workers' start)
        times = []
        for _ in range(args.steps):
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            trainer.train_step()
            if trainer.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        stats = getattr(trainer.data, "stats", None)
        hits = f"{stats.prefetched}/{stats.batches}" if stats is not None else "-"
        return times, cfg.train.n_dis * cfg.train.batch_size_d, hits
    finally:
        trainer.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=3000, help="images per generated folder (default 3000)")
    p.add_argument("--workers", type=int, default=4, help="data.workers (default 4)")
    p.add_argument("--batches", type=int, default=40, help="timed loader batches of 64 (default 40)")
    p.add_argument("--steps", type=int, default=10, help="timed training iterations (default 10)")
    p.add_argument("--device", default="auto", help="train.device (default auto)")
    p.add_argument("--threads", type=int, default=0, help="train.threads (default 0: torch's default)")
    p.add_argument("--format", choices=("png", "jpg"), default="png")
    p.add_argument("--source-scale", type=float, default=1.25, help="source image side / resolution (default 1.25)")
    p.add_argument("--only", choices=[x.preset for x in SETTINGS], default=None,
                   help="run one setting (default: all)")
    p.add_argument("--quick", action="store_true", help="smoke run: 200 images, 3 batches, 1 step, width 0.125")
    args = p.parse_args()
    if args.quick:
        args.images, args.batches, args.steps, args.workers = 200, 3, 1, min(args.workers, 2)
    with tempfile.TemporaryDirectory() as tmp:
        args.out = Path(tmp) / "runs"
        print(f"# lazy imagefolder ({args.images} {args.format.upper()} images, {args.source_scale}x the resolution, "
              f"{args.workers} workers) vs training; torch {torch.__version__}, device {args.device}"
              f"{', width 0.125 (quick)' if args.quick else ''}\n")
        print("| setting | loader img/s (64/batch) | train img/s | ratio | ms/iter in memory | ms/iter lazy | "
              "lazy overhead | prefetched |")
        print("|---|---|---|---|---|---|---|---|")
        for s in [x for x in SETTINGS if args.only in (None, x.preset)]:
            root = write_images(Path(tmp) / s.preset, args.images, round(s.resolution * args.source_scale), args.format)
            rate, _ = loader_rate(root, s.resolution, args.workers, args.batches)
            mem, per_iter, _ = step_times(s, root, True, args)
            lazy, _, hits = step_times(s, root, False, args)
            t_mem, t_lazy = statistics.median(mem), statistics.median(lazy)
            consumed = per_iter / t_mem
            print(f"| {s.name} | {rate:.0f} | {consumed:.0f} | {rate / consumed:.2f} | {t_mem * 1e3:.0f} | "
                  f"{t_lazy * 1e3:.0f} | {100 * (t_lazy / t_mem - 1):+.0f}% | {hits} |", flush=True)
    print("\nratio: loader img/s / train img/s. lazy overhead: median iteration time, lazy vs in memory. "
          "prefetched: batches of the lazy run decoded ahead / all its batches.")


if __name__ == "__main__":
    main()
