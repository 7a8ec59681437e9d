"""The BigGAN, projection and CelebA-HQ paper presets load, build their full-size networks and take one training
step at batch 2 on tiny fake data in the real formats (what the GPU runs of docs/reproduction.md start from)."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gannorm import config as C
from gannorm.app.training import train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from data_fakes import cifar_batches, write_cifar_tar  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]

STEP = ["train.steps=1", "train.batch_size_d=2", "train.batch_size_g=2", "train.eval_every=0", "train.best_metric=none",
        "train.progress=false", "train.tensorboard=false", "diagnostics.every=0", "train.num_samples_grid=2",
        "train.threads=1", "train.ema_start=0", "train.n_dis=1"]
CIFAR = ["biggan_cifar10", "biggan_cifar10_cr", "biggan_cifar10_pgn", "biggan_cifar10_pgn_cr", "projection_cifar10"]
CELEBAHQ = [f"celebahq{r}_{m}" for r in (128, 256) for m in ("sn", "gn", "pgn")]


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar_tar(root / "cifar-10-python.tar.gz", cifar_batches(per_batch=4))
    return root


@pytest.fixture(scope="module")
def faces_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("celebahq")
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, size=(256, 256, 3), dtype=np.uint8)).save(root / f"{i:05d}.png")
    return root


def test_the_preset_lists_are_complete():
    names = set(C.preset_names())
    assert set(CIFAR + CELEBAHQ) <= names
    assert all(C.load(n).model.num_classes == 10 for n in CIFAR)


@pytest.mark.parametrize("name", CIFAR)
def test_a_cifar10_conditional_preset_takes_a_step(name, cifar_root, tmp_path):
    result = train(name, [f"data.root={cifar_root}", f"train.out_dir={tmp_path}", *STEP])
    assert result.status == "finished" and result.step == 1


def _settings(name: str) -> dict:
    """A preset's settings without its ``about`` text."""
    return {k: v for k, v in dataclasses.asdict(C.load(name)).items() if k != "about"}


@pytest.mark.parametrize("method", ["sn", "gn", "pgn"])
def test_each_256_px_preset_is_its_128_px_twin_at_256(method):
    """So the 128-px presets' steps cover the 256-px GN and PGN ones (at about 25 s a step, only SN steps at 256)."""
    big, small = _settings(f"celebahq256_{method}"), _settings(f"celebahq128_{method}")
    assert big["data"]["resolution"] == 256 and small["data"]["resolution"] == 128
    big["data"]["resolution"] = small["data"]["resolution"]
    assert big == small


@pytest.mark.parametrize("name", [n for n in CELEBAHQ if n.startswith("celebahq128") or n == "celebahq256_sn"])
def test_a_celebahq_preset_takes_a_step(name, faces_root, tmp_path):
    result = train(name, [f"data.root={faces_root}", f"train.out_dir={tmp_path}", *STEP])
    assert result.status == "finished" and result.step == 1
