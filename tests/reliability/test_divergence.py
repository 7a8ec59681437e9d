"""Divergence: a NaN or Inf in a loss, a weight, a sigma or a gradient is caught within one step; the run is
marked diverged with the step and the first non-finite quantity; the last good checkpoint and the logs stay."""
import dataclasses
import json
import math
import re

import pytest
import torch
from conftest import RING8_32

from gannorm import config as config_mod
from gannorm.runfolder import RunFolder
from gannorm.training import Callback, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = [*RING8_32, "train.steps=20",
        "train.checkpoint_every=4", "train.log_every=1"]
BREAK_AT = 6  # the injection happens after G step 6; step 7 must catch it


def _trainer(tmp_path, *extra):
    return Trainer(config_mod.load("ring8", [*BASE, f"train.out_dir={tmp_path}", *extra]))


class Inject(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_step(self, trainer, scalars):
        if trainer.step == BREAK_AT:
            with torch.no_grad():
                self.fn(trainer)


def _first_linear(model):
    return next(m for m in model.modules() if isinstance(m, torch.nn.Linear))


def _nan_weight(t):
    _first_linear(t.G).weight.fill_(float("nan"))


def _nan_sigma(t):
    par = _first_linear(t.D).parametrizations.weight[0]
    for buf in par.buffers():
        buf.fill_(float("nan"))  # the power-iteration vectors: sigma becomes NaN


def _inf_gradient(t):
    def hook(grad):
        return torch.full_like(grad, float("inf"))
    _first_linear(t.D).parametrizations.weight.original.register_hook(hook)


def _nan_loss(t):
    d = t.loss.d
    t.loss = dataclasses.replace(t.loss, d=lambda r, f: d(r, f) * float("nan"))


CASES = {
    "weight": (_nan_weight, r"weight G\.\S+ is not finite"),
    "sigma": (_nan_sigma, r"(buffer D\.\S+ is not finite|sigma D\.\S+ = nan)"),
    "gradient": (_inf_gradient, r"gradient of D\.\S+ is not finite"),
    "loss": (_nan_loss, r"loss loss_d=nan"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_non_finite_is_caught_within_one_step(tmp_path, case):
    inject, reason = CASES[case]
    trainer = _trainer(tmp_path)
    trainer.callbacks.append(Inject(inject))
    result = trainer.run()
    assert (result.status, result.step) == ("diverged", BREAK_AT)
    folder = RunFolder.open(result.run_dir)
    status = folder.read_status()
    assert status.status == "diverged" and status.step == BREAK_AT and status.checkpoint_step == 4
    assert f"at G step {BREAK_AT + 1}:" in status.reason
    assert re.search(reason, status.reason), status.reason
    # the last good checkpoint is intact and finite; the logs hold the good steps only, each once
    state = folder.load_checkpoint()
    assert state["step"] == 4
    assert all(torch.isfinite(v).all() for v in state["D"].values() if v.is_floating_point())
    steps = [json.loads(x)["step"] for x in folder.metrics_file.read_text().splitlines()]
    assert steps == list(range(1, BREAK_AT + 1))


def test_a_non_finite_gradient_is_never_applied(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.callbacks.append(Inject(_inf_gradient))
    before = {}

    class Snapshot(Callback):
        def on_step(self, t, scalars):
            if t.step == BREAK_AT:
                before.update({k: v.clone() for k, v in t.D.state_dict().items()})

    trainer.callbacks.insert(0, Snapshot())
    trainer.run()
    after = trainer.D.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if "original" in k)  # D's weights untouched


def test_diverged_run_resumes_from_the_last_good_checkpoint(tmp_path):
    trainer = _trainer(tmp_path)
    trainer.callbacks.append(Inject(_nan_weight))
    result = trainer.run()
    again = Trainer(config_mod.load(str(result.run_dir / "config.yaml")), resume=result.run_dir)
    assert again.step == 4 and all(math.isfinite(float(p.detach().sum())) for p in again.G.parameters())
