"""EMA, atomic writes, image grids, losses."""
import os

import numpy as np
import pytest
import torch
from torch import nn

import gannorm
from gannorm.losses import LOSSES
from gannorm import images
from gannorm.training.ema import EMA
from gannorm.fileio import atomic_write
from gannorm.errors import RunFolderError
from gannorm.runfolder import load_checkpoint, save_checkpoint


def test_ema_averages_parameters_and_copies_buffers():
    g = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    sn = gannorm.normalize(nn.Sequential(nn.Linear(4, 2)), "sn")
    model = nn.Sequential(g, sn)
    ema = EMA(model, decay=0.9)
    start = [p.detach().clone() for p in model.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model(torch.randn(5, 3))  # moves BN running stats and the SN vectors
    ema.update(model, step=1)
    for e, s, p in zip(ema.model.parameters(), start, model.parameters()):
        torch.testing.assert_close(e, 0.9 * s + 0.1 * p)
    for e, b in zip(ema.model.buffers(), model.buffers()):
        assert torch.equal(e, b)  # copied, not averaged (unit SN vectors stay unit)
    u = ema.model[1][0].parametrizations.weight[0]._u
    assert float(u.norm()) == pytest.approx(1.0, rel=1e-6)


def test_ema_copies_before_start():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.99, start=10)
    with torch.no_grad():
        model.weight.add_(1)
    ema.update(model, step=3)
    assert torch.equal(ema.model.weight, model.weight)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    path = tmp_path / "ckpt.pt"
    save_checkpoint(path, {"step": 1, "w": torch.ones(3)})

    def boom(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ckpt.pt"]  # no temporary file left behind


def test_checkpoints_refuse_pickled_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"obj": nn.Linear(2, 2)}, path)  # a pickled module, not plain tensors
    with pytest.raises(RunFolderError, match="cannot be loaded") as err:
        load_checkpoint(path)
    assert "weights_only" not in str(err.value) and "False" not in str(err.value)  # never advise unsafe loading


def test_image_grid_layout():
    x = torch.full((5, 1, 4, 4), -1.0)
    x[1] = 1.0
    grid = images.image_grid(x, nrow=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1, 3) and grid.dtype == np.uint8
    assert (grid[1:5, 6:10] == 255).all() and (grid[1:5, 1:5] == 0).all()


def test_scatter_plot_is_an_rgb_picture(tmp_path):
    pic = images.scatter_plot(torch.randn(50, 2), torch.randn(50, 2), size=64)
    assert pic.shape == (64, 64, 3)
    images.save_png(tmp_path / "s.png", pic)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name,real,fake,d,g", [
    ("hinge", [2.0, 0.5], [-2.0, 0.0], (0 + 0.5) / 2 + (0 + 1) / 2, 1.0),
    ("wasserstein", [2.0, 0.5], [-2.0, 0.0], -1.0 - 1.25, 1.0),
    ("ls", [1.0, 0.0], [0.0, 2.0], (0 + 1) / 2 / 2 + (0 + 4) / 2 / 2, ((1 + 1) / 2) / 2),
])
def test_losses_closed_forms(name, real, fake, d, g):
    loss = LOSSES.get(name)
    r, f = torch.tensor(real), torch.tensor(fake)
    assert float(loss.d(r, f)) == pytest.approx(d)
    assert float(loss.g(f)) == pytest.approx(g)


def test_ns_loss_is_bce_with_logits():
    r, f = torch.randn(7), torch.randn(7)
    loss = LOSSES.get("ns")
    bce = nn.functional.binary_cross_entropy_with_logits
    expected_d = bce(r, torch.ones(7)) + bce(f, torch.zeros(7))
    assert float(loss.d(r, f)) == pytest.approx(float(expected_d), rel=1e-6)
    assert float(loss.g(f)) == pytest.approx(float(bce(f, torch.ones(7))), rel=1e-6)


def test_bn_running_stats_can_be_frozen_while_using_batch_statistics():
    from gannorm.training.trainer import _bn_running_stats
    g = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    x = torch.randn(8, 3) * 5 + 2
    before = g[1].running_mean.clone()
    with _bn_running_stats(g, update=False):
        y = g(x)
    assert torch.equal(g[1].running_mean, before) and g[1].momentum == 0.1
    h = g[0](x)
    normalized = (h - h.mean(0)) / torch.sqrt(h.var(0, unbiased=False) + 1e-5)
    torch.testing.assert_close(y, normalized * g[1].weight + g[1].bias)
    with _bn_running_stats(g, update=True):
        g(x)
    assert not torch.equal(g[1].running_mean, before)


def test_image_grid_enlarges_small_images():
    x = torch.zeros(4, 1, 16, 16)
    x[0, 0, 0, 0] = 1.0
    grid = images.image_grid(x, nrow=2, pad=0, min_cell=64)
    assert grid.shape == (128, 128, 3)
    assert (grid[:4, :4] == 255).all() and (grid[4:8, 4:8] != 255).all()  # one pixel -> a 4x4 block
