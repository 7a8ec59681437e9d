"""Evaluation during training by per-metric protocols (train.eval_protocol): what eval.jsonl records, a seeded
real subset and a reference statistics file, and the checks made before the first step. Tiny runs, one thread."""
import math

import pytest
from conftest import DIGITS_CNN, LOG_EVERY_STEP, QUIET as SHARED_QUIET, RING8_MLP

from gannorm import config as config_mod
from gannorm.app.evaluation import evaluate_run, format_results
from gannorm.app.training import train
from gannorm.cli import main
from gannorm.errors import ConfigError
from gannorm.metrics.evaluate import EvalOptions
from gannorm.runfolder import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")

QUIET = [*SHARED_QUIET, *LOG_EVERY_STEP]
RING8 = [*RING8_MLP, *QUIET]
DIGITS = [*DIGITS_CNN, "normalization.method=sn", "normalization.options={}", "train.batch_size_d=16",
          "train.batch_size_g=16", *QUIET]


def cfg(tmp_path, base, *extra):
    return config_mod.load(None, [*base, f"train.out_dir={tmp_path}", *extra])


def test_each_number_in_eval_jsonl_carries_its_protocol(tmp_path, monkeypatch):
    monkeypatch.setenv("GANNORM_CACHE", str(tmp_path / "cache"))  # the digits classifier is trained here, once
    result = train(cfg(tmp_path, DIGITS, "train.steps=2", "train.eval_every=2", "train.eval_num_samples=100",
                       "train.eval_metrics=[cfd, cis]", "train.best_metric=cis", "train.seed=5",
                       "train.eval_protocol={cfd: {num_samples: 120, num_real: 60}, cis: {num_samples: 200, "
                       "splits: 4}}"))
    folder = RunFolder.open(result.run_dir)
    (record,) = folder.read_eval()
    assert record.step == 2 and set(record.metrics) == {"cfd", "cis"}
    assert record.protocol["metrics"] == {"cfd": {"num_generated": 120, "num_real": 60},
                                          "cis": {"num_generated": 200, "splits": 4}}
    assert (record.protocol["num_generated"], record.protocol["num_real"]) == (200, 60)
    assert "seeded permutation (seed 5)" in record.protocol["real_split"]  # the real subset follows train.seed
    assert folder.read_config().train.eval_protocol["cis"] == {"num_samples": 200, "splits": 4}
    assert folder.read_best().metric == "cis"
    # gannorm eval by the run's own protocol gives the same numbers for the same generator and step
    out = evaluate_run(result.run_dir, EvalOptions(progress=False), tmp_path / "again.json",
                       use_training_protocol=True)
    again = out["results"]["raw"]
    assert again["protocol"]["metrics"] == record.protocol["metrics"]
    assert again["metrics"]["cfd"]["value"] == pytest.approx(record.metrics["cfd"]["value"], rel=1e-6)
    text = format_results(out)
    assert "120 generated vs 60 real" in text and "200 generated; splits 4" in text


def test_a_seeded_real_subset_on_ring8(tmp_path):
    result = train(cfg(tmp_path, RING8, "train.steps=4", "train.eval_every=2",
                       "train.eval_protocol.modes.num_samples=150", "train.eval_protocol.modes.num_real=100"))
    records = RunFolder.open(result.run_dir).read_eval()
    assert [r.step for r in records] == [2, 4]
    assert all(r.protocol["metrics"]["modes"] == {"num_generated": 150, "num_real": 100} for r in records)


@pytest.fixture(scope="module")
def digits_stats(tmp_path_factory):
    """Inception statistics of 6 digits images through the offline fid-helper network."""
    path = tmp_path_factory.mktemp("stats") / "digits6.npz"
    assert main(["fid-stats", "digits", "--resolution", "8", "-n", "6", "-o", str(path), "--backend",
                 "fid-helper"]) == 0
    return path


def test_fid_against_a_reference_file_during_training(tmp_path, digits_stats):
    result = train(cfg(tmp_path, DIGITS, "train.steps=1", "train.eval_every=1", "train.eval_metrics=[fid]",
                       f"train.eval_protocol={{fid: {{num_samples: 4, reference: '{digits_stats}'}}}}"))
    (record,) = RunFolder.open(result.run_dir).read_eval()
    assert record.protocol["metrics"]["fid"] == {"num_generated": 4, "reference": str(digits_stats)}
    assert record.protocol["num_real"] == 0  # the file replaces the real images: none were read
    assert math.isfinite(record.metrics["fid"]["value"]) and record.metrics["fid"]["value"] > 0


def test_a_missing_reference_file_is_refused_by_the_config(tmp_path):
    with pytest.raises(ConfigError, match=r"^config key train\.eval_protocol\.fid\.reference: no statistics file "
                                          r"nope\.npz; write it with 'gannorm fid-stats DATASET -o nope\.npz'"):
        train(cfg(tmp_path, DIGITS, "train.eval_every=1", "train.eval_metrics=[fid]",
                  "train.eval_protocol.fid.reference=nope.npz"))


def test_what_an_evaluation_needs_is_checked_before_the_first_step(tmp_path, monkeypatch):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an npz")
    with pytest.raises(ConfigError, match=r"^config key train\.eval_protocol\.fid\.reference: ") as err:
        train(cfg(tmp_path, DIGITS, "train.steps=3", "train.eval_every=3", "train.eval_metrics=[fid]",
                  "train.run_name=bad", f"train.eval_protocol.fid.reference={bad}"))
    assert "\n" not in str(err.value)
    assert not RunFolder.open(tmp_path / "bad").read_metrics()  # no training step ran
    # IS needs the Inception logits: with only the fid-helper network (no logits) the run stops at once
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))
    monkeypatch.delenv("GANNORM_INCEPTION_WEIGHTS", raising=False)
    with pytest.raises(ConfigError, match="metric is needs logits, which the inception backend in use does not"):
        train(cfg(tmp_path, DIGITS, "train.steps=3", "train.eval_every=3", "train.eval_metrics=[is]",
                  "train.eval_protocol.is.splits=2", "train.run_name=is"))
    assert not RunFolder.open(tmp_path / "is").read_metrics()


def test_evaluation_during_training_runs_on_the_trainers_device(tmp_path, monkeypatch):
    """The evaluation during training (its start check and each evaluation) builds its feature extractors (the
    Inception network on image data) on the trainer's device, so a GPU run evaluates on its GPU, not the CPU.
    A fake trainer on ``cuda:1`` stands in for a GPU run; the evaluation itself is recorded, not run."""
    import torch
    from types import SimpleNamespace

    from gannorm.training import callbacks

    seen = []
    monkeypatch.setattr(callbacks, "check_evaluation",
                        lambda data, options, where, **kw: seen.append(("check", options.device)))

    def fake_evaluation(generator, mode, data, z_dim, options, device):
        seen.append(("evaluate", options.device, str(device)))
        return {"metrics": {"cfd": {"value": 1.5}}, "protocol": {}}

    monkeypatch.setattr(callbacks, "evaluate_generator", fake_evaluation)
    c = cfg(tmp_path, DIGITS, "train.steps=2", "train.eval_every=2")
    trainer = SimpleNamespace(cfg=c, device=torch.device("cuda", 1), step=2, data=None, ema=None, last={},
                              ranks=SimpleNamespace(distributed=False, main=False), sampler=lambda: None)
    evaluation = callbacks.Evaluation(c)
    evaluation.on_start(trainer, resumed=False)
    evaluation.on_step(trainer, {})
    assert seen == [("check", "cuda:1"), ("evaluate", "cuda:1", "cuda:1")]
    assert trainer.last == {"eval/cfd": 1.5} and trainer.last_eval.step == 2
