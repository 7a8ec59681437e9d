"""A lazy dataset's memory does not grow with the number of images (measured in fresh processes)."""
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")]

RES = 16
PIXELS = 3 * RES * RES  # bytes per decoded image
TRAIN_RES = 32  # the training test's resolution: 4x the 16 px pixels

# Memory of this process and its children: PSS (shared pages split between the processes that map them,
# so forked workers are not counted twice) where the kernel has smaps_rollup, else RSS.
MEASURE = textwrap.dedent("""
    import json, os, sys, torch
    torch.set_num_threads(1)
    from gannorm.data import load_dataset

    def kb(pid):
        for name, key in ((f"/proc/{pid}/smaps_rollup", "Pss:"), (f"/proc/{pid}/status", "VmRSS:")):
            try:
                with open(name) as f:
                    return next(int(line.split()[1]) for line in f if line.startswith(key))
            except (OSError, StopIteration):
                pass
        return 0

    def total():
        me, pids = str(os.getpid()), [os.getpid()]
        for p in filter(str.isdigit, os.listdir("/proc")):
            try:
                if open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1] == me:
                    pids.append(int(p))
            except OSError:
                pass
        return sum(kb(p) for p in pids) * 1024

    root, in_memory, train = sys.argv[1], sys.argv[2] == "true", sys.argv[3] == "train"
    gen = torch.Generator().manual_seed(0)
    torch.randint(10, (64,), generator=gen).float().div_(2)  # the ops a draw uses, warmed up
    if train:  # a real training run on the folder, measured at its last step (its workers still running)
        from gannorm import config
        from gannorm.training import Callback, Trainer

        class Measure(Callback):
            def on_step(self, trainer, scalars):
                self.growth = total() - start

        cfg = config.load(None, ["data.name=imagefolder", f"data.root={root}", f"data.resolution={sys.argv[5]}",
                                 f"data.in_memory={str(in_memory).lower()}", "data.workers=2", "model.width=0.125",
                                 "train.steps=15", "train.batch_size_d=64", "train.batch_size_g=64", "train.threads=1",
                                 "train.progress=false", "train.tensorboard=false", "train.sample_every=1000",
                                 "train.checkpoint_every=1000", f"train.out_dir={sys.argv[4]}"])
        start = total()
        trainer = Trainer(cfg, callbacks=[Measure()])
        trainer.run()
        print(json.dumps({"growth": trainer.callbacks[0].growth, "n": len(trainer.data)}))
        sys.exit(0)
    start = total()
    ds = load_dataset("imagefolder", root, %d, in_memory=in_memory, workers=2)
    for _ in range(30):
        ds.sample(64, gen)
        torch.rand(64, generator=gen)  # the caller's own draws between batches
    print(json.dumps({"growth": total() - start, "n": len(ds)}))
    ds.close()
""" % RES)


def _write_pngs(root, n):
    from PIL import Image
    pixels = np.random.default_rng(n).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    for i in range(n):
        folder = root / f"{i % 20:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        Image.fromarray(pixels[i]).save(buf, format="PNG", compress_level=0)
        (folder / f"{i:06d}.png").write_bytes(buf.getvalue())
    return root


# glibc raises its mmap threshold as large blocks are freed, so freed tensors stay in the heap by chance and a
# run's memory varies by tens of MB; a fixed threshold returns every large block to the system when it is freed.
FIXED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def _growth(root, in_memory, train=False, out=None):
    proc = subprocess.run([sys.executable, "-c", MEASURE, str(root), str(in_memory).lower(),
                           "train" if train else "draw", str(out), str(TRAIN_RES)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1", **FIXED_MALLOC})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {n: _write_pngs(tmp_path_factory.mktemp(f"png{n}"), n) for n in (2_000, 20_000)}


def test_memory_does_not_grow_with_the_dataset(folders):
    """2,000 and 20,000 images at 16 px, 30 batches of 64 each, two workers. Held in memory, the 18,000 more
    images cost their 13.8 MB of pixels (checked: the measurement sees them); read lazily, the growth of the
    larger dataset exceeds the smaller one's by less than a third of that (the file index, about 20 bytes
    per file, and the listing's freed heap), and is less than 1.5x the smaller one's."""
    lazy = {n: _growth(root, False) for n, root in folders.items()}
    memory = {n: _growth(root, True) for n, root in folders.items()}
    assert {r["n"] for r in lazy.values()} == {2_000, 20_000}
    pixels = (20_000 - 2_000) * PIXELS
    assert memory[20_000]["growth"] - memory[2_000]["growth"] > 0.9 * pixels
    assert lazy[20_000]["growth"] - lazy[2_000]["growth"] < pixels / 3, (lazy, memory)
    assert lazy[20_000]["growth"] < 1.5 * lazy[2_000]["growth"], (lazy, memory)


def test_training_memory_does_not_grow_with_the_dataset(folders, tmp_path):
    """A real training run (15 steps, batch 64, a tiny SNGAN CNN at 32 px) on the 2,000- and the 20,000-image
    folder, measured at its last step with a fixed malloc threshold (without it a run's own allocations vary by
    tens of MB; with it by about 1 MB): held in memory the larger folder costs its 55 MB more pixels (checked
    at 80% of that); read lazily the difference is less than a sixth of the pixels (measured: under 2 MB)."""
    lazy = {n: _growth(root, False, True, tmp_path / f"l{n}") for n, root in folders.items()}
    memory = {n: _growth(root, True, True, tmp_path / f"m{n}") for n, root in folders.items()}
    assert {r["n"] for r in lazy.values()} == {2_000, 20_000}
    pixels = (20_000 - 2_000) * 3 * TRAIN_RES * TRAIN_RES
    assert memory[20_000]["growth"] - memory[2_000]["growth"] > 0.8 * pixels, memory
    assert lazy[20_000]["growth"] - lazy[2_000]["growth"] < pixels / 6, (lazy, memory)
