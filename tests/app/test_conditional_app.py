"""A class-conditional run at the application edge: ``gannorm sample`` (one class per row, ``--class K``) and
``gannorm export`` (TorchScript called ``g(z, y)``). The run folder is a tiny trained digits run whose generator
is replaced by a hand-written conditional one (``build_generator`` patched to build it), so these tests need no
conditional network from the library."""
from __future__ import annotations

import json
import shutil
import types
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from conftest import DIGITS_CNN

from gannorm import images
from gannorm.app import sampling
from gannorm.app.export import export_generator, read_info
from gannorm.app.sampling import class_labels, conditional_options, sample, sample_z
from gannorm.app.training import train
from gannorm.cli import main
from gannorm.runfolder import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [*DIGITS_CNN, "train.batch_size_d=8", "train.batch_size_g=8", "train.steps=1", "train.log_every=1",
        "train.sample_every=1000", "train.checkpoint_every=1000", "train.eval_every=0", "train.progress=false",
        "train.tensorboard=false", "diagnostics.every=0", "train.ema_decay=0.5"]
CLASSES = 10


class TinyConditionalG(nn.Module):
    """z [B, 16] and y [B] -> [B, 1, 8, 8]: a class embedding added to the first layer, BatchNorm, tanh."""

    def __init__(self, z_dim: int = 16, num_classes: int = CLASSES) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.fc1, self.embed = nn.Linear(z_dim, 32), nn.Embedding(num_classes, 32)
        self.bn, self.fc2 = nn.BatchNorm1d(32), nn.Linear(32, 64)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = torch.relu(self.bn(self.fc1(z) + self.embed(y)))
        return torch.tanh(self.fc2(h)).view(-1, 1, 8, 8)


def conditional_g(seed: int) -> TinyConditionalG:
    torch.manual_seed(seed)
    g = TinyConditionalG()
    with torch.no_grad():  # running statistics that differ from the defaults, so that eval mode matters
        g.bn.running_mean.uniform_(-0.5, 0.5)
        g.bn.running_var.uniform_(0.5, 2.0)
    return g


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory):
    """A tiny trained digits run (an unconditional cnn generator)."""
    out = tmp_path_factory.mktemp("runs")
    return train(None, [*TINY, f"train.out_dir={out}", "train.run_name=plain"]).run_dir


@pytest.fixture(scope="module")
def run(plain_run):
    """A copy of ``plain_run`` whose checkpoint holds a conditional G (raw) and another (EMA)."""
    run_dir = plain_run.parent / "cond"
    shutil.copytree(plain_run, run_dir)
    folder = RunFolder.open(run_dir)
    state = folder.load_checkpoint("latest")
    state["G"], state["G_ema"] = conditional_g(1).state_dict(), conditional_g(2).state_dict()
    state["config"]["model"]["num_classes"] = CLASSES  # the run's config says conditional, as a real one would
    folder.save_checkpoint(state)
    return run_dir


@pytest.fixture
def conditional(monkeypatch):
    """``build_generator`` building the hand-written conditional G (the library's conditional networks stand-in)."""
    def build(arch, data_shape, z_dim, width, **options):
        assert (arch, tuple(data_shape), z_dim) == ("cnn", (1, 8, 8), 16)
        return TinyConditionalG(z_dim)
    monkeypatch.setattr(sampling, "build_generator", build)


def eager(seed: int) -> TinyConditionalG:
    g = conditional_g(0)
    g.load_state_dict(conditional_g(seed).state_dict())
    return g.eval()


def test_class_labels_and_the_build_options():
    y, per = class_labels(3, 5)
    assert per == 2 and y.tolist() == [0, 0, 1, 1, 2, 2]
    y, per = class_labels(4, 3, class_index=2)
    assert per == 3 and y.tolist() == [2, 2, 2]
    assert conditional_options(types.SimpleNamespace(num_classes=10)) == {"num_classes": 10}
    assert conditional_options(types.SimpleNamespace(num_classes=0)) == {}


def test_sample_draws_one_class_per_row_or_one_class(run, conditional):
    g = eager(2)  # the EMA copy
    x = sample(run, 20, seed=4)
    y = torch.arange(CLASSES).repeat_interleave(2)
    with torch.no_grad():
        assert torch.equal(x, g(sample_z(20, 16, 4), y))
        only = sample(run, 5, seed=4, class_index=7)
        assert torch.equal(only, g(sample_z(5, 16, 4), torch.full((5,), 7)))
        assert not torch.equal(only, g(sample_z(5, 16, 4), torch.full((5,), 6)))  # the class matters
        raw = sample(run, 5, seed=4, use_ema=False, class_index=7)
        assert torch.equal(raw, eager(1)(sample_z(5, 16, 4), torch.full((5,), 7)))


def test_sample_command_writes_a_class_per_row_grid(run, conditional, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert main(["sample", str(run), "-n", "15", "--seed", "1", "-o", str(out)]) == 0
    assert "wrote 20 samples (2 per class, one class per row)" in capsys.readouterr().out
    picture = np.asarray(Image.open(out).convert("RGB"))
    cell = 8 * 8 + 2  # 8 px enlarged to 64, padding 2
    assert picture.shape == (CLASSES * cell + 2, 2 * cell + 2, 3)
    with torch.no_grad():
        x = eager(2)(sample_z(20, 16, 1), torch.arange(CLASSES).repeat_interleave(2))
    assert np.array_equal(picture, images.class_grid(x, 2, min_cell=64))
    # row 3, column 1 is the second sample of class 3
    cell3 = picture[2 + 3 * cell: 2 + 3 * cell + 64, 2 + cell: 2 + cell + 64]
    assert np.array_equal(cell3, images.image_grid(x[7:8], min_cell=64, pad=0))
    one = tmp_path / "one.png"
    assert main(["sample", str(run), "-n", "6", "--class", "3", "-o", str(one)]) == 0
    assert "wrote 6 samples of class 3 to" in capsys.readouterr().out


def test_bad_class_is_a_one_line_error(run, conditional, tmp_path, capsys):
    assert main(["sample", str(run), "--class", "10", "-o", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--class 10: the run's generator has 10 classes; give one of 0..9") and "\n" not in err
    assert not (tmp_path / "a.png").exists()


def test_class_on_an_unconditional_run_is_a_one_line_error(plain_run, tmp_path, capsys):
    assert main(["sample", str(plain_run), "--class", "1", "-o", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not class-conditional; drop --class" in err and "\n" not in err


def test_class_grid_puts_each_class_on_its_own_row():
    x = torch.linspace(-1, 1, 4).repeat_interleave(3).view(12, 1, 1, 1).expand(12, 1, 4, 4)  # class k: one shade
    picture = images.class_grid(x, per_class=3, pad=1)
    assert picture.shape == (4 * 5 + 1, 3 * 5 + 1, 3)
    for k in range(4):
        row = picture[1 + 5 * k: 1 + 5 * k + 4, 1:-1]
        cells = row[:, np.arange(row.shape[1]) % 5 != 4]  # the padding columns out
        assert np.unique(cells).size == 1 and cells[0, 0, 0] == round((float(x[3 * k, 0, 0, 0]) + 1) * 127.5)
    with pytest.raises(ValueError, match="whole number of rows of 5"):
        images.class_grid(x, per_class=5)


def test_export_of_a_conditional_generator_takes_z_and_y(run, conditional, tmp_path, capsys):
    assert main(["export", str(run), "-o", str(tmp_path / "G.pt")]) == 0
    assert "g(torch.randn(n, 16), torch.randint(10, (n,)))" in capsys.readouterr().out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(tmp_path / "G.pt"))
    gen = torch.Generator().manual_seed(9)
    z, y = torch.randn(37, 16, generator=gen), torch.randint(CLASSES, (37,), generator=gen)
    with torch.no_grad():
        got = loaded(z, y)
        assert torch.equal(got, eager(2)(z, y))  # the EMA copy in eval mode, bit for bit
        assert not torch.equal(got, loaded(z, (y + 1) % CLASSES))
    info = read_info(tmp_path / "G.pt")
    assert (info.num_classes, info.generator, info.z_dim) == (CLASSES, "ema", 16) and "g(z, y)" in info.y
    path, raw = export_generator(run, tmp_path / "raw.pt", use_ema=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with torch.no_grad():
            assert torch.equal(torch.jit.load(str(path))(z, y), eager(1)(z, y))
    assert raw.generator == "raw"


def test_export_of_an_unconditional_generator_records_no_classes(plain_run, tmp_path):
    path, info = export_generator(plain_run, tmp_path / "G.pt")  # the run's own (unconditional) cnn generator
    assert info.num_classes == 0 and info.y == ""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = torch.jit.load(str(path))
    with torch.no_grad():
        assert torch.equal(loaded(sample_z(4, 16, 0)), sample(plain_run, 4, seed=0))


def test_eval_command_gives_the_conditional_metrics(run, conditional, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GANNORM_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eval.json"
    assert main(["eval", str(run), "--num-samples", "300", "--metric", "cfd,intra_cfd,class_acc", "-o",
                 str(out)]) == 0
    assert "intra_cfd" in capsys.readouterr().out
    result = json.loads(out.read_text())["results"]
    for kind in ("ema", "raw"):
        metrics, protocol = result[kind]["metrics"], result[kind]["protocol"]
        assert 0.0 <= metrics["class_acc"]["value"] <= 1.0 and metrics["intra_cfd"]["value"] > 0
        assert protocol["num_classes"] == CLASSES and protocol["label_seed"] == 2000
    assert result["ema"]["metrics"]["intra_cfd"] != result["raw"]["metrics"]["intra_cfd"]


def test_eval_command_refuses_a_conditional_metric_for_an_unconditional_run(plain_run, tmp_path, capsys):
    assert main(["eval", str(plain_run), "--num-samples", "40", "--metric", "class_acc", "-o",
                 str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "class_acc: needs a class-conditional generator" in err and "\n" not in err
