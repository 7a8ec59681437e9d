"""The training loop as an engine: callbacks, caller's process state kept, each step once in every log."""
import json
import signal

import pytest
import torch
from conftest import RING8_32

from gannorm import config as config_mod
from gannorm.app.training import resume
from gannorm.runfolder import RunFolder
from gannorm.training import Callback, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = RING8_32


def cfg(tmp_path, *extra):
    return config_mod.load("ring8", [*BASE, f"train.out_dir={tmp_path}", *extra])


class Recorder(Callback):
    def __init__(self, stop_at=None, fail_at=None):
        self.events, self.stop_at, self.fail_at = [], stop_at, fail_at

    def on_start(self, trainer, resumed):
        self.events.append(("start", trainer.step, resumed))

    def on_step(self, trainer, scalars):
        self.events.append(("step", trainer.step, sorted(scalars)[:2]))
        if trainer.step == self.stop_at:
            trainer.request_stop(signal.SIGTERM)
        if trainer.step == self.fail_at:
            raise RuntimeError("boom")

    def on_end(self, trainer, status):
        self.events.append(("end", trainer.step, status))


def test_callbacks_see_every_step_and_how_the_run_ended(tmp_path):
    trainer = Trainer(cfg(tmp_path, "train.steps=4"))
    rec = Recorder()
    trainer.callbacks.append(rec)
    assert trainer.run().status == "finished"
    assert rec.events == [("start", 0, False), *[("step", s, ["d_fake", "d_real"]) for s in (1, 2, 3, 4)],
                          ("end", 4, "finished")]


def test_a_stop_request_ends_after_the_step_with_a_checkpoint(tmp_path):
    trainer = Trainer(cfg(tmp_path, "train.steps=10", "train.checkpoint_every=100"))
    trainer.callbacks.append(Recorder(stop_at=3))
    result = trainer.run()
    assert (result.status, result.step) == ("interrupted", 3)
    folder = RunFolder.open(result.run_dir)
    assert folder.checkpoint_step() == 3 and folder.read_status().status == "interrupted"


def test_run_keeps_the_callers_threads_rng_and_signal_handlers(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(1234)
    rng = torch.get_rng_state()
    handler = signal.getsignal(signal.SIGINT)
    trainer = Trainer(cfg(tmp_path, "train.steps=3", "train.threads=2"))
    assert torch.equal(torch.get_rng_state(), rng)  # building the models did not touch it
    seen = []

    class Threads(Callback):
        def on_step(self, trainer, scalars):
            seen.append(torch.get_num_threads())

    trainer.callbacks.append(Threads())
    trainer.run()
    assert seen == [2, 2, 2]  # train.threads applies inside the run ...
    assert torch.get_num_threads() == 1  # ... and the caller's count is back afterwards
    assert torch.equal(torch.get_rng_state(), rng)
    assert signal.getsignal(signal.SIGINT) is handler


def test_the_callers_global_rng_does_not_change_the_result(tmp_path):
    weights = []
    for i, seed in enumerate((1, 999)):
        torch.manual_seed(seed)
        t = Trainer(cfg(tmp_path / str(i), "train.steps=5"))
        torch.manual_seed(seed + 7)
        t.run()
        weights.append(torch.cat([p.detach().flatten() for p in t.G.parameters()]))
    assert torch.equal(weights[0], weights[1])


def test_a_crash_marks_the_run_failed_and_resume_records_each_step_once(tmp_path):
    c = cfg(tmp_path, "train.steps=8", "train.eval_every=2", "train.checkpoint_every=4", "train.log_every=1",
            "diagnostics.every=2", "diagnostics.batch_size=8", "diagnostics.bounds=false",
            "train.eval_num_samples=64", "train.best_metric=none")  # no best checkpoint: it also saves the latest
    trainer = Trainer(c)
    rec = Recorder(fail_at=6)  # after step 6's evaluation and diagnostics; the checkpoint is at step 4
    trainer.callbacks.append(rec)
    with pytest.raises(RuntimeError, match="boom"):
        trainer.run()
    folder = RunFolder.open(trainer.run_dir)
    status = folder.read_status()
    assert (status.status, status.step, status.checkpoint_step) == ("failed", 6, 4) and "boom" in status.reason
    assert rec.events[-1] == ("end", 6, "failed")
    assert [e.step for e in folder.read_eval()] == [2, 4, 6]
    result = resume(trainer.run_dir)
    assert (result.status, result.step) == ("finished", 8)
    assert [e.step for e in folder.read_eval()] == [2, 4, 6, 8]
    assert [r.step for r in folder.read_diagnostics()] == [0, 2, 4, 6, 8]
    train_rows = [json.loads(x)["step"] for x in folder.metrics_file.read_text().splitlines()
                  if "loss_d" in json.loads(x)]
    assert train_rows == list(range(1, 9))


def test_sample_grids_go_to_tensorboard_as_images(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    c = config_mod.load("digits", ["train.progress=false", "data.resolution=8", "model.width=0.125",
                                   "train.batch_size_d=8", "train.batch_size_g=8", "train.steps=4",
                                   "train.sample_every=2", "train.eval_every=0", "diagnostics.every=0",
                                   f"train.out_dir={tmp_path}"])
    result = Trainer(c).run()
    acc = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert "samples" in acc.Tags()["images"]
    events = acc.Images("samples")
    assert [e.step for e in events] == [2, 4] and events[-1].width >= 64 and events[-1].height >= 64
