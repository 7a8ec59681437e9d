"""A sweep whose run ids changed (its file was edited) keeps the runs that ended under their old ids: they are
recorded and reported under their tags (variant, cell, seed), not trained again, with a one-line note naming
the config keys that differ; the report's store rebuild does the same."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from gannorm.app.sweep import DB, expand, load_results, load_sweep, run_sweep
from gannorm.app.sweep.placement import config_differences, ended_by_tags
from gannorm.runfolder import RunFolder, Status

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["train.steps=4", "model.d_options={hidden: 8}", "model.g_options={hidden: 8}", "train.checkpoint_every=4",
        "train.tensorboard=false", "train.batch_size_d=16", "train.batch_size_g=16", "train.eval_num_samples=100"]


def write_sweep(path: Path, sn: list[str], seeds: int) -> str:
    path.write_text(json.dumps({"base": "ring8", "overrides": TINY, "seeds": seeds, "metric": "modes",
                                "variants": {"sn": ["normalization.method=sn", *sn],
                                             "none": ["normalization.method=none"]}}))
    return str(path)


def test_a_finished_run_whose_id_changed_is_kept_and_the_sweep_trains_only_the_new_runs(tmp_path):
    out = tmp_path / "sweep"
    first = run_sweep(write_sweep(tmp_path / "a.yaml", [], seeds=1), out, workers=1, threads=1)
    assert first.ran == 2
    old = {r.variant: r.run_id for r in first.results.runs}
    trained = {p.name: (p / "checkpoint.pt").stat().st_mtime_ns for p in (out / "runs").iterdir()}
    # the sweep file is fixed: sn gets another lr_d (its ids change) and a second seed is added
    edited = write_sweep(tmp_path / "a.yaml", ["optim.lr_d=3.0e-4"], seeds=2)  # the same file, edited
    today = {(r.variant, r.seed): r.run_id for r in expand(load_sweep(edited))}
    assert today[("sn", 0)] != old["sn"] and today[("none", 0)] == old["none"]
    notes: list[str] = []
    second = run_sweep(edited, out, workers=1, threads=1, announce=notes.append)
    assert second.ran == 2 and second.skipped == 2  # only the seed-1 runs were trained
    got = {(r.variant, r.seed): (r.run_id, r.status) for r in second.results.runs}
    assert got == {("sn", 0): (old["sn"], "finished"), ("none", 0): (old["none"], "finished"),
                   ("sn", 1): (today[("sn", 1)], "finished"), ("none", 1): (today[("none", 1)], "finished")}
    assert not (out / "runs" / today[("sn", 0)]).exists()  # not trained again ...
    for name, mtime in trained.items():  # ... and the old folders untouched
        assert (out / "runs" / name / "checkpoint.pt").stat().st_mtime_ns == mtime
    kept = [n for n in notes if n.startswith(f"gannorm: kept {old['sn']} ")]
    assert len(kept) == 1 and "optim.lr_d" in kept[0] and today[("sn", 0)] in kept[0], notes
    assert "differs" in kept[0] and len(kept[0].splitlines()) == 1

    # the report rebuilds its store from the run folders: the same four runs, the kept one under its old id
    (out / DB).unlink()
    reported: list[str] = []
    results = load_results(out, announce=reported.append)
    assert {(r.variant, r.seed): (r.run_id, r.status) for r in results.runs} == got
    assert results.series[old["sn"]] and any(n.startswith(f"gannorm: kept {old['sn']} ") for n in reported)


def test_config_differences_names_the_changed_keys_only():
    old = {"optim": {"lr_d": 2e-4, "betas": [0.0, 0.9]}, "normalization": {"options": {"scale": 1.0}},
           "train": {"out_dir": "a", "threads": 1, "steps": 10}, "about": "x"}
    new = {"optim": {"lr_d": 1e-3, "betas": (0.0, 0.9)}, "normalization": {"options": {"scale": 1.0, "eps": 1e-12}},
           "train": {"out_dir": "b", "threads": 2, "steps": 10}, "about": "y"}
    assert config_differences(old, new) == ["normalization.options.eps", "optim.lr_d"]
    assert config_differences(old, old) == []


def _fake_run(runs: Path, name: str, status: str, variant="sn", cell=None, seed=0) -> Path:
    folder = RunFolder.create(runs, name)
    folder.write_status(Status(status, 4))
    folder.write_tags({"sweep": "x", "run_id": name, "variant": variant, "cell": cell or {}, "seed": seed})
    return folder.path


def test_only_ended_folders_are_candidates_and_the_newest_wins(tmp_path):
    runs = tmp_path / "runs"
    _fake_run(runs, "sn-s0-partial", "running")             # its checkpoint belongs to another config
    older = _fake_run(runs, "sn-s0-older", "finished")
    newer = _fake_run(runs, "sn-s0-newer", "diverged")      # a diverged run is a result too
    os.utime(older / "status.json", (time.time() - 100, time.time() - 100))
    _fake_run(runs, "none-s1-x", "finished", variant="none", cell={"optim.lr_d": 2e-4}, seed=1)
    (runs / "no-tags").mkdir()
    found = ended_by_tags(runs, skip={"none-s1-x"})
    assert found == {("sn", "{}", 0): newer}
