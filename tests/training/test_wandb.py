"""W&B logging (train.wandb=true): the run's scalars, config and sample grids reach one W&B run per run
folder, the same one after a resume; checked against a recording stand-in and with real offline wandb."""
import sys
import types

import pytest
from conftest import NO_EVAL, TINY_DIGITS

import gannorm

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [*TINY_DIGITS, "train.steps=4", "train.log_every=2", "train.sample_every=2", *NO_EVAL,
        "train.checkpoint_every=2"]


class Recorder:
    def __init__(self):
        self.inits, self.logs, self.finished = [], [], 0

    def module(self):
        rec = self

        class Run:
            def log(self, data, step):
                rec.logs.append((step, data))

            def finish(self):
                rec.finished += 1

        def init(**kwargs):
            rec.inits.append(kwargs)
            return Run()

        return types.SimpleNamespace(init=init, Image=lambda picture: ("image", picture.shape))


def test_scalars_config_and_images_reach_one_wandb_run(tmp_path, monkeypatch):
    rec = Recorder()
    monkeypatch.setitem(sys.modules, "wandb", rec.module())
    result = gannorm.train("digits", [*TINY, "train.wandb=true", "train.wandb_project=p", f"train.out_dir={tmp_path}",
                                      "train.run_name=w"])
    (init,) = rec.inits
    assert init["project"] == "p" and init["name"] == "w" and init["resume"] == "allow"
    assert init["dir"] == str(result.run_dir) and init["config"]["data"]["name"] == "digits"
    scalar_steps = [s for s, d in rec.logs if "loss_d" in d]
    assert scalar_steps == [2, 4] and rec.logs[-1][0] == 4 and rec.finished == 1
    assert [s for s, d in rec.logs if "samples" in d] == [2, 4]
    last = [d for s, d in rec.logs if "loss_d" in d][-1]
    assert last["loss_d"] == pytest.approx(result.last["loss_d"])
    # a resumed run continues the same W&B run
    gannorm.resume(result.run_dir, ["train.steps=6"])
    assert rec.inits[1]["id"] == init["id"] and rec.finished == 2


def test_real_offline_wandb_accepts_the_logs(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = gannorm.train("digits", [*TINY, "train.wandb=true", f"train.out_dir={tmp_path}", "train.run_name=w"])
    assert result.status == "finished"
    (run,) = (result.run_dir / "wandb").glob("offline-run-*")
    assert list(run.glob("run-*.wandb")) and list(run.glob("files/media/images/samples_2_*.png"))
    assert list(run.glob("files/media/images/samples_4_*.png"))


def test_wandb_missing_is_a_config_error_before_any_folder(tmp_path, monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.delitem(sys.modules, "wandb", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(gannorm.ConfigError, match="train.wandb: needs the wandb package"):
        gannorm.train("digits", [*TINY, "train.wandb=true", f"train.out_dir={tmp_path}"])
    assert not any(tmp_path.iterdir())
