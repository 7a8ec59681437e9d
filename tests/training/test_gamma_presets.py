"""The BSSN code's SN-with-gamma baselines on CIFAR-10, STL-10 and CelebA: the STL-10 and CelebA presets are the
CIFAR-10 one on their data (as the ``bssn_*_ndis5`` presets differ), and each takes one training step at batch 2 on
tiny fake data in the real formats."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from gannorm import config as C
from gannorm.app.training import train
from gannorm.runfolder import RunFolder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from data_fakes import (celeba_image, cifar_batches, png_bytes, stl_bytes, stl_images,  # noqa: E402
                        write_cifar_tar, write_zip)

pytestmark = pytest.mark.usefixtures("one_thread")

DATASETS = ("cifar10", "stl10", "celeba")
STEP = ["train.steps=1", "train.batch_size_d=2", "train.batch_size_g=2", "train.eval_every=0", "train.best_metric=none",
        "train.progress=false", "train.tensorboard=false", "diagnostics.every=0", "train.num_samples_grid=2",
        "train.threads=1", "train.n_dis=1", "model.width=0.0625"]


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


@pytest.mark.parametrize("dataset", ["stl10", "celeba"])
def test_a_gamma_preset_differs_from_the_cifar10_one_as_the_block_c_presets_do(dataset):
    gamma, base = flat(C.to_dict(C.load(f"sngan_gamma_{dataset}"))), flat(C.to_dict(C.load("sngan_gamma_cifar10")))
    ndis5, ndis5_base = (flat(C.to_dict(C.load(f"bssn_{d}_ndis5"))) for d in (dataset, "cifar10"))
    differing = {k for k in gamma if gamma[k] != base[k] and not k.startswith("about.")}
    assert differing == {k for k in ndis5 if ndis5[k] != ndis5_base[k] and not k.startswith("about.")}
    assert differing == {"data.name", "data.resolution"}
    assert all(gamma[k] == ndis5[k] for k in differing)
    assert gamma["normalization.method"] == "sn_gamma_shared" and gamma["train.penalty"] == "wgan_gp"
    assert gamma["train.steps"] == ndis5["train.steps"] == 400_000  # block C: 400k iterations on every dataset


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    root = tmp_path_factory.mktemp("gamma_data")
    (root / "cifar").mkdir()
    write_cifar_tar(root / "cifar" / "cifar-10-python.tar.gz", cifar_batches(per_batch=4))
    (root / "stl" / "stl10_binary").mkdir(parents=True)
    (root / "stl" / "stl10_binary" / "unlabeled_X.bin").write_bytes(stl_bytes(stl_images(4)))
    (root / "celeba").mkdir()
    write_zip(root / "celeba" / "img_align_celeba.zip",
              {f"img_align_celeba/{i + 1:06d}.png": png_bytes(celeba_image(i)) for i in range(4)})
    return {"cifar10": root / "cifar", "stl10": root / "stl", "celeba": root / "celeba"}


@pytest.mark.parametrize("dataset", DATASETS)
def test_a_gamma_preset_takes_a_step(dataset, roots, tmp_path):
    result = train(f"sngan_gamma_{dataset}", [f"data.root={roots[dataset]}", f"train.out_dir={tmp_path}", *STEP])
    assert result.status == "finished" and result.step == 1
    state = RunFolder(result.run_dir).load_checkpoint()
    resolution = {"cifar10": 32, "stl10": 48, "celeba": 64}[dataset]
    assert state["data_shape"] == [3, resolution, resolution]
    gammas = [v for k, v in state["D"].items() if k.endswith("gamma")]
    assert gammas and all(torch.equal(g, gammas[0]) for g in gammas)  # one gamma shared by every layer
    assert all(torch.isfinite(v).all() for v in state["G"].values() if v.is_floating_point())
