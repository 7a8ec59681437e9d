"""checkpoint_best.pt: saved at each evaluation that beats the earlier ones, recovered on resume."""
import json
import signal

import pytest
import torch

from gannorm import config as config_mod
from gannorm.app.training import resume
from gannorm.cli import main
from gannorm.config import ConfigError, best_metric
from gannorm.runfolder import BestRecord, RunFolder
from gannorm.training import Callback, Trainer, default_callbacks
from gannorm.training import callbacks as callbacks_mod

pytestmark = pytest.mark.usefixtures("one_thread")

RING8 = ["data.name=ring8", "data.options={n: 1000}", "model.arch=mlp", "model.width=0.25", "model.z_dim=4",
         "train.batch_size_d=16", "train.batch_size_g=16", "train.log_every=1", "train.sample_every=1000",
         "train.checkpoint_every=1000", "train.eval_every=2", "train.eval_num_samples=100", "train.progress=false",
         "train.tensorboard=false"]


def cfg(tmp_path, *extra):
    return config_mod.load(None, [*RING8, f"train.out_dir={tmp_path}", "train.run_name=r", *extra])


class StopAt(Callback):
    """Stops the run after G step ``step`` (as SIGTERM does) and keeps a copy of G at the steps in ``keep``."""

    def __init__(self, step, keep=()):
        self.step, self.keep, self.kept = step, keep, {}

    def on_step(self, trainer, scalars):
        if trainer.step in self.keep:
            self.kept[trainer.step] = {k: v.clone() for k, v in trainer.G.state_dict().items()}
        if trainer.step == self.step:
            trainer.request_stop(signal.SIGTERM)


def scripted_values(monkeypatch, values):
    """The trainer's evaluations return ``values[step]`` as the ``modes`` metric (lower is better)."""
    def fake(generator, mode, data, z_dim, options, device="cpu"):
        return {"metrics": {"modes": {"value": values.pop(0)}}, "protocol": {"generator_mode": mode}}
    monkeypatch.setattr(callbacks_mod, "evaluate_generator", fake)


def test_a_worse_evaluation_after_resume_keeps_the_best(tmp_path, monkeypatch):
    scripted_values(monkeypatch, [5.0, 3.0])            # steps 2 and 4: step 4 is the best so far
    trainer = Trainer(cfg(tmp_path, "train.steps=10"))
    stop = StopAt(5, keep=(4,))
    trainer.callbacks.append(stop)
    assert trainer.run().status == "interrupted"
    folder = RunFolder.open(trainer.run_dir)
    assert folder.read_best() == BestRecord("modes", 4, 3.0, "raw", True)
    scripted_values(monkeypatch, [4.0, 3.5, 3.0])       # steps 6, 8, 10: worse, worse, a tie
    assert resume(trainer.run_dir).status == "finished"
    assert [(e.step, e.metrics["modes"]["value"]) for e in folder.read_eval()] == \
        [(2, 5.0), (4, 3.0), (6, 4.0), (8, 3.5), (10, 3.0)]
    best = folder.load_checkpoint("best")
    assert best["step"] == 4 and best["best"] == {"metric": "modes", "step": 4, "value": 3.0, "generator": "raw",
                                                  "lower_is_better": True}
    assert all(torch.equal(best["G"][k], v) for k, v in stop.kept[4].items())  # the state of step 4
    assert json.loads(folder.best_file.read_text())["step"] == 4
    assert folder.load_checkpoint()["step"] == 10


def test_which_record_is_better():
    low, high = BestRecord("fid", 4, 3.0, "ema", True), BestRecord("is", 4, 3.0, "ema", False)
    assert BestRecord("fid", 6, 2.0, "ema", True).better_than(low)
    assert not BestRecord("fid", 6, 3.0, "ema", True).better_than(low)         # a tie keeps the earlier step
    assert BestRecord("is", 6, 4.0, "ema", False).better_than(high)
    assert not BestRecord("is", 6, 2.0, "ema", False).better_than(high)
    assert not BestRecord("fid", 6, float("nan"), "ema", True).better_than(None)  # never a non-finite value
    assert BestRecord("fid", 6, 9.0, "ema", True).better_than(None)
    assert BestRecord("fid", 6, 9.0, "ema", True).better_than(BestRecord("cfd", 2, 0.1, "ema", True))


def test_resume_saves_a_best_that_the_killed_run_had_not_recorded(tmp_path, monkeypatch):
    """Killed after checkpoint_best.pt but before best.json: the evaluation at the resumed step is saved again."""
    scripted_values(monkeypatch, [5.0, 3.0])
    trainer = Trainer(cfg(tmp_path, "train.steps=6"))
    trainer.callbacks.append(StopAt(4))
    trainer.run()
    folder = RunFolder.open(trainer.run_dir)
    folder.best_file.write_text(json.dumps(BestRecord("modes", 2, 5.0, "raw").to_json()))  # the stale record
    scripted_values(monkeypatch, [4.0])
    resume(trainer.run_dir)
    assert folder.read_best() == BestRecord("modes", 4, 3.0, "raw", True)
    assert folder.load_checkpoint("best")["step"] == 4


def test_a_real_run_stopped_and_resumed_ends_with_the_best_evaluation(tmp_path):
    """No scripted values: ring8's energy distance, a stop after step 5, a resume to 12."""
    trainer = Trainer(cfg(tmp_path, "train.steps=12", "train.eval_metrics=[modes]", "optim.lr_d=1e-3",
                          "optim.lr_g=1e-3"))
    trainer.callbacks.append(StopAt(5))
    trainer.run()
    resume(trainer.run_dir)
    folder = RunFolder.open(trainer.run_dir)
    values = {e.step: e.metrics["modes"]["value"] for e in folder.read_eval()}
    assert sorted(values) == [2, 4, 6, 8, 10, 12]
    step = min(values, key=lambda s: (values[s], s))  # the best, the earliest on a tie
    best = folder.load_checkpoint("best")
    assert best["step"] == step and best["best"]["value"] == values[step]
    assert folder.read_best().step == step


def test_best_metric_resolution_and_errors():
    base = ["data.name=digits", "train.eval_every=10"]
    assert best_metric(config_mod.load(None, base)) == "cfd"          # the dataset's first metric
    assert best_metric(config_mod.load(None, [*base, "train.eval_metrics=[ckid, cis]"])) == "ckid"
    assert best_metric(config_mod.load(None, [*base, "train.best_metric=cis"])) == "cis"
    assert best_metric(config_mod.load(None, [*base, "train.best_metric=none"])) is None
    assert best_metric(config_mod.load(None, ["train.eval_every=0"])) is None
    names = [type(cb).__name__ for cb in default_callbacks(config_mod.load(None, base))]
    assert names.index("Evaluation") < names.index("BestCheckpoint") < names.index("Checkpoints")
    for extra, message in [(["train.best_metric=fdi"], "'fdi' is not one of none, fid"),
                           (["train.best_metric=fid"], "fid is not evaluated during training"),
                           (["train.eval_every=0", "train.best_metric=cfd"], "needs evaluations during training")]:
        with pytest.raises(ConfigError, match="config key train.best_metric: ") as err:
            config_mod.validate(config_mod.load(None, [*base, *extra]))
        assert message in str(err.value) and "\n" not in str(err.value)


def test_commands_take_the_best_checkpoint(tmp_path, monkeypatch, capsys):
    scripted_values(monkeypatch, [1.0, 2.0])  # the best is step 2; the latest checkpoint is step 4
    trainer = Trainer(cfg(tmp_path, "train.steps=4"))
    trainer.run()
    run = str(trainer.run_dir)
    assert main(["sample", run, "-n", "16", "-o", str(tmp_path / "best.png"), "--checkpoint", "best"]) == 0
    assert main(["sample", run, "-n", "16", "-o", str(tmp_path / "last.png")]) == 0
    assert (tmp_path / "best.png").read_bytes() != (tmp_path / "last.png").read_bytes()
    other = Trainer(cfg(tmp_path, "train.steps=1", "train.eval_every=0", "train.run_name=plain"))
    other.run()
    capsys.readouterr()
    assert main(["sample", str(other.run_dir), "-o", str(tmp_path / "x.png"), "--checkpoint", "best"]) == 2
    err = capsys.readouterr().err
    assert "has no checkpoint_best.pt" in err and err.count("\n") == 1
