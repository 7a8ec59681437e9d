"""A write that fails (a full disk, a read-only place) keeps the previous checkpoint and says which path."""
import errno
import os
import tempfile

import pytest
import torch
from conftest import RING8_32

from gannorm import config as config_mod
from gannorm import runfolder
from gannorm.cli import main
from gannorm.runfolder import RunFolder
from gannorm.training import Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = [*RING8_32, "train.steps=12",
        "train.checkpoint_every=4"]


def _disk_fills_after(monkeypatch, n_saves: int) -> list[int]:
    """torch.save in the run folder writes half its bytes and then fails with ENOSPC from save ``n_saves + 1``."""
    calls, real_save = [], torch.save

    def save(obj, fh, *args, **kwargs):
        calls.append(1)
        if len(calls) <= n_saves:
            return real_save(obj, fh, *args, **kwargs)
        fh.write(b"\0" * 1000)  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(runfolder.torch, "save", save)
    return calls


def test_a_full_disk_keeps_the_previous_checkpoint_and_names_the_path(tmp_path, monkeypatch):
    trainer = Trainer(config_mod.load("ring8", [*BASE, f"train.out_dir={tmp_path}"]))
    _disk_fills_after(monkeypatch, 2)  # the checkpoints of step 0 and step 4 succeed; step 8's fails
    with pytest.raises(OSError) as err:
        trainer.run()
    folder = RunFolder.open(trainer.run_dir)
    assert err.value.errno == errno.ENOSPC and str(folder.checkpoint) in str(err.value)
    monkeypatch.undo()
    assert folder.load_checkpoint()["step"] == 4  # the previous one, whole
    assert not [p for p in os.listdir(folder.path) if p.endswith(".tmp")]  # no temporary left behind
    status = folder.read_status()
    assert (status.status, status.checkpoint_step) == ("failed", 4) and "No space left" in status.reason


def test_a_read_only_place_is_a_one_line_error_naming_the_path(tmp_path, monkeypatch, capsys):
    run = tmp_path / "runs"

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    rc_args = ["train", "ring8", *BASE, f"train.out_dir={run}", "train.run_name=r"]
    assert main(rc_args) == 0
    before = RunFolder.open(run / "r").load_checkpoint()
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    rc = main(["train", "--resume", str(run / "r"), "train.steps=16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc != 0 and err[-1].startswith("gannorm: error:") and "Read-only file system" in err[-1]
    assert str(run / "r") in err[-1] and "Traceback" not in "\n".join(err)
    monkeypatch.undo()
    after = RunFolder.open(run / "r").load_checkpoint()
    assert after["step"] == before["step"] == 12
    assert all(torch.equal(before["G"][k], after["G"][k]) for k in before["G"])
