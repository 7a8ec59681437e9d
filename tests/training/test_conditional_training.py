"""Class-conditional training end to end (``model.num_classes``, ``docs/conditional.md``).

Labels travel with the seeded stream: the real batch's labels come from the same draws as its images, G's
labels are drawn at the data's class frequencies from the same stream, so an unconditional run's stream is
unchanged, a conditional run resumes bitwise, and N ranks equal one process with the same global batch.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from gannorm import config as config_mod
from gannorm.app.training import resume, train
from gannorm.errors import ConfigError
from gannorm.runfolder import RunFolder
from gannorm.training import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125", "model.num_classes=10",
        "normalization.method=bssn", "normalization.options={scale: 1.2}", "train.batch_size_d=16",
        "train.batch_size_g=16", "train.log_every=2", "train.sample_every=5", "train.checkpoint_every=5",
        "train.progress=false", "train.tensorboard=false", "train.threads=1", "train.num_samples_grid=20"]


def cfg(out: Path, *extra: str):
    return config_mod.load(None, [*TINY, f"train.out_dir={out}", *extra])


def state(run_dir: Path) -> dict:
    return RunFolder.open(run_dir).load_checkpoint()


def assert_bitwise(a: dict, b: dict) -> None:
    for key in ("G", "D"):
        assert a[key].keys() == b[key].keys()
        for k in a[key]:
            assert torch.equal(a[key][k], b[key][k]), f"{key}.{k}"


class Spy:
    """Records every call's labels to a module (wrapping its forward)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.labels: list[torch.Tensor | None] = []
        original = module.forward

        def forward(x, y=None):
            self.labels.append(None if y is None else y.clone())
            return original(x, y)

        module.forward = forward


def test_a_conditional_step_feeds_real_labels_to_d_and_drawn_labels_to_g(tmp_path):
    trainer = Trainer(cfg(tmp_path, "train.steps=1"))
    assert trainer.G.num_classes == trainer.D.num_classes == 10
    g, d = Spy(trainer.G), Spy(trainer.D)
    # the labels of the real batch are those of the images the stream draws
    gen = torch.Generator().set_state(trainer.rng.get_state())
    x_expected, y_expected = trainer.data.sample_labelled(16, gen)
    trainer.train_step()
    assert torch.equal(d.labels[0], y_expected)             # D(real, y_real)
    assert torch.equal(d.labels[1], g.labels[0])            # D(fake, y_fake) with G's labels
    assert all(lab is not None and lab.dtype == torch.int64 and len(lab) == 16 for lab in g.labels + d.labels)
    assert 0 <= int(torch.cat(g.labels).min()) and int(torch.cat(g.labels).max()) < 10


def test_an_unconditional_run_draws_the_same_stream_as_before(tmp_path):
    """model.num_classes=0 draws no labels: its real batches are sample()'s."""
    trainer = Trainer(config_mod.load(None, [*TINY[:4], *TINY[5:], f"train.out_dir={tmp_path}", "train.steps=1"]))
    assert not trainer.conditional
    gen = torch.Generator().set_state(trainer.rng.get_state())
    expected = trainer.data.sample(16, gen)
    real, labels = trainer._real_batch()
    assert labels is None and torch.equal(real, expected)


def test_a_conditional_run_on_unlabelled_data_or_the_wrong_class_count_is_one_line(tmp_path):
    with pytest.raises(ConfigError, match=r"model\.num_classes: dataset 'digits' has 10 classes, not 7"):
        Trainer(cfg(tmp_path, "model.num_classes=7"))
    assert not any(tmp_path.iterdir())  # nothing left behind


def test_the_sample_grid_has_one_class_per_row(tmp_path):
    trainer = Trainer(cfg(tmp_path, "train.steps=1"))
    y = trainer.fixed_labels()
    assert y.tolist()[:10] == [0] * 5 + [1] * 5 and y.tolist()[-5:] == [3] * 5  # 20 samples: 5 columns, 4 rows


def test_a_conditional_run_resumes_bitwise(tmp_path):
    extra = ["train.ema_decay=0.9", "train.diffaug=color,translation,cutout", "train.steps=8"]
    full = train(cfg(tmp_path / "a", *extra))
    trainer = Trainer(cfg(tmp_path / "b", *extra))

    class StopAt:
        every_rank = False

        def on_start(self, trainer, resumed):
            pass

        def on_step(self, trainer, scalars):
            if trainer.step == 5:
                trainer.request_stop(signal.SIGTERM)

        def on_end(self, trainer, status):
            pass

    trainer.callbacks.append(StopAt())
    part = trainer.run()
    assert part.status == "interrupted" and part.step == 5
    done = resume(part.run_dir)
    assert done.step == 8
    assert_bitwise(state(full.run_dir), state(done.run_dir))


CHILD = """
import sys
from gannorm.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_conditional_run_killed_and_resumed_equals_the_uninterrupted_one(tmp_path):
    """SIGKILL (no handler runs) after the step-3 checkpoint; the resumed run ends bitwise as the straight one."""
    args = [*TINY, "train.steps=400", "train.checkpoint_every=3", "train.diffaug=translation",
            f"train.out_dir={tmp_path / 'killed'}", "train.run_name=r"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "train", "digits", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    run = tmp_path / "killed" / "r"
    deadline = time.monotonic() + 240
    def saved_step():
        return RunFolder(run).checkpoint_step() if (run / "checkpoint.pt").exists() else None

    try:
        while (saved_step() or 0) < 3:  # the step-0 checkpoint comes first
            assert time.monotonic() < deadline and proc.poll() is None, "no checkpoint was written"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    at = state(run)["step"]
    assert 3 <= at < 400
    end = at + 3
    done = resume(run, [f"train.steps={end}"])
    assert done.status == "finished" and done.step == end
    straight = train("digits", [*TINY, f"train.out_dir={tmp_path / 'straight'}", f"train.steps={end}",
                                "train.checkpoint_every=3", "train.diffaug=translation"])
    assert_bitwise(state(straight.run_dir), state(run))


def test_conditional_gn_and_penalties_train(tmp_path):
    """GN on D(x, y) (double backward at fixed y) and R1 with the real labels train without error."""
    for extra in (["normalization.method=none", "normalization.options={}", "normalization.function=gn"],
                  ["train.penalty=r1"], ["train.penalty=wgan_gp", "train.loss=wasserstein"], ["train.cr_weight=2"]):
        result = train(cfg(tmp_path / extra[-1].replace("=", "_"), "train.steps=2", *extra))
        assert result.status == "finished"
        assert all(torch.isfinite(torch.tensor(v)) for v in result.last.values())


def test_sn_in_g_and_on_d_s_class_embedding(tmp_path):
    """normalization.g_method=sn: every conv/linear of G has sigma 1 (SVD), its conditional BN tables stay plain
    (BigGAN's SN in G); D's projection embedding is normalized with D's method."""
    from gannorm.normalizations import is_normalized, reset_power_iteration
    trainer = Trainer(cfg(tmp_path, "train.steps=1", "normalization.g_method=sn", "normalization.method=sn",
                          "normalization.options={}"))
    reset_power_iteration(trainer.G, 300)
    reset_power_iteration(trainer.D, 300)
    checked = 0
    for name, module in [*trainer.G.named_modules(), *trainer.D.named_modules()]:
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Embedding)):
            table = name.endswith((".gain", ".bias"))
            assert is_normalized(module) != table, name
            if not table:
                w = module.weight.detach().double()
                w = (w.transpose(0, 1) if isinstance(module, torch.nn.ConvTranspose2d) else w).flatten(1)
                assert float(torch.linalg.svdvals(w)[0]) == pytest.approx(1.0, rel=1e-3), name
                checked += 1
    assert checked >= 10 and is_normalized(trainer.D.head.embed)
    assert torch.isfinite(torch.tensor(trainer.train_step()["loss_g"]))


@pytest.mark.slow
def test_a_conditional_run_on_two_ranks_equals_one_process(tmp_path):
    from test_distributed import assert_same_run, single_and_two  # the existing contract (same folder)
    overrides = ["data.resolution=8", "model.width=0.125", "model.num_classes=10", "train.batch_size_d=16",
                 "train.batch_size_g=16", "train.diffaug=color,translation,cutout", "train.num_samples_grid=8",
                 "diagnostics.batch_size=8", "optim.eps=1e-3", "train.real_hflip=true"]
    one, two, _ = single_and_two(tmp_path, "digits", overrides, steps=3)
    for run in (one, two):
        assert resume(run, ["train.steps=4", "train.threads=1"]).status == "finished"
    assert_same_run(two, one, 4)


def test_diffaugment_sits_between_g_and_d_in_the_g_step_and_its_gradient_reaches_g(tmp_path):
    """D sees DiffAugment(G(z, y)) with the parameters drawn from the trainer's stream, and the G step's
    gradient reaches every G weight through the (differentiable) augmentation."""
    trainer = Trainer(cfg(tmp_path, "train.steps=1", "train.diffaug=color,translation,cutout"))
    z, y = trainer._z(16), trainer._fake_labels(16)
    with torch.no_grad():
        fake = trainer.G(z, y)  # train mode, batch statistics: what the step's forward computes
    params = trainer.diffaug.draw(16, tuple(fake.shape[1:]), torch.Generator().set_state(trainer.rng.get_state()))
    expected = trainer.diffaug.apply(fake, params)
    assert not torch.allclose(expected, fake)
    seen = []
    forward = trainer.D.forward
    trainer.D.forward = lambda x, labels=None: (seen.append(x.detach().clone()), forward(x, labels))[1]
    _, ok = trainer._g_step(z, y)
    assert ok and len(seen) == 1
    torch.testing.assert_close(seen[0], expected, rtol=1e-5, atol=1e-6)
    weights = [p for name, p in trainer.G.named_parameters() if name.endswith("weight") and ".bn" not in name]
    assert weights and all(p.grad is not None and torch.isfinite(p.grad).all() for p in weights)
    assert all(float(p.grad.abs().sum()) > 0 for p in weights if p.dim() > 1)
