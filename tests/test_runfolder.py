"""The run folder: atomic creation, typed records, atomic truncation on resume, safe checkpoints."""
import json
import math
import os

import pytest
import torch

from gannorm import runfolder as rf
from gannorm.errors import GannormError, RunFolderError
from gannorm.runfolder import EvalRecord, MetricsRow, RunFolder, Status


def test_create_never_reuses_a_folder(tmp_path):
    a = RunFolder.create(tmp_path / "runs", "x")
    b = RunFolder.create(tmp_path / "runs", "x")
    c = RunFolder.create(tmp_path / "runs", "x")
    assert [p.path.name for p in (a, b, c)] == ["x", "x-2", "x-3"]
    assert all(p.path.is_dir() for p in (a, b, c))


def test_create_under_a_file_is_a_one_line_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunFolderError, match="cannot create a run folder in .*train.out_dir") as err:
        RunFolder.create(tmp_path / "file" / "sub", "x")
    assert "\n" not in str(err.value) and isinstance(err.value, GannormError)


@pytest.mark.parametrize("make,match", [
    (lambda p: p / "missing", "does not exist"),
    (lambda p: (p / "f").write_text("") or p / "f", "it is a file"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "is not a run folder"),
])
def test_open_refuses_what_is_not_a_run_folder(tmp_path, make, match):
    with pytest.raises(RunFolderError, match=match):
        RunFolder.open(make(tmp_path))


def test_records_round_trip_through_the_files(tmp_path):
    run = RunFolder.create(tmp_path, "r")
    run.append_metrics(MetricsRow(3, {"loss_d": 0.5, "bad": float("nan"), "big": float("inf")}))
    run.append_eval(EvalRecord(4, "ema", {"cfd": {"value": 1.5}}, {"num_generated": 10}))
    run.write_status(Status("diverged", 7, reason="non-finite loss", checkpoint_step=5))
    line = json.loads(run.metrics_file.read_text())
    assert line == {"step": 3, "loss_d": 0.5, "bad": "nan", "big": "inf"}  # JSON has no NaN: strings on disk
    (row,) = run.read_metrics()
    assert row.step == 3 and row.values["loss_d"] == 0.5 and math.isnan(row.values["bad"])
    assert row.values["big"] == float("inf")
    assert run.read_eval() == [EvalRecord(4, "ema", {"cfd": {"value": 1.5}}, {"num_generated": 10})]
    assert run.read_status() == Status("diverged", 7, reason="non-finite loss", checkpoint_step=5)
    assert "seconds" not in json.loads(run.status_file.read_text())  # unset fields are not written


def _fill(run: RunFolder, steps) -> None:
    for s in steps:
        run.append_metrics(MetricsRow(s, {"loss": float(s)}))
        run.append_eval(EvalRecord(s, "raw", {"m": {"value": float(s)}}))
        for path in (run.diagnostics_file, run.health_file):
            with path.open("a") as fh:
                fh.write(json.dumps({"step": s, "layers": {}}) + "\n")


def test_truncate_keeps_each_step_at_most_once(tmp_path):
    run = RunFolder.create(tmp_path, "r")
    _fill(run, range(0, 11))
    with run.metrics_file.open("a") as fh:
        fh.write('{"step": 11, "lo')  # the torn last line of a killed run
    run.truncate_logs(5)
    _fill(run, range(6, 9))  # the resumed run records 6.. again
    for name in rf.LOGS:
        steps = [json.loads(line)["step"] for line in (run.path / name).read_text().splitlines()]
        assert steps == list(range(0, 9)), name
    with run.metrics_csv.open() as fh:
        rows = fh.read().splitlines()
    assert rows[0] == "step,loss" and [int(r.split(",")[0]) for r in rows[1:]] == list(range(0, 9))


def test_truncation_is_atomic(tmp_path, monkeypatch):
    run = RunFolder.create(tmp_path, "r")
    _fill(run, range(0, 4))
    before = run.metrics_file.read_text()

    def fail(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        run.truncate_logs(1)
    assert run.metrics_file.read_text() == before  # the old file, whole
    assert sorted(p.name for p in run.path.iterdir() if p.name.startswith(".")) == []  # no temporary left


def test_load_counts_unreadable_lines(tmp_path):
    run = RunFolder.create(tmp_path, "r")
    _fill(run, range(2))
    with run.eval_file.open("a") as fh:
        fh.write("not json\n[1, 2]\n")
    records = run.load()
    assert [r.step for r in records.metrics] == [0, 1] and [r.step for r in records.eval] == [0, 1]
    assert [r.step for r in records.diagnostics] == [0, 1] and records.skipped == {rf.EVAL: 2}


def test_checkpoints_load_safely_and_say_what_is_wrong(tmp_path):
    run = RunFolder.create(tmp_path, "r")
    with pytest.raises(RunFolderError, match="has no checkpoint.pt"):
        run.load_checkpoint()
    run.save_checkpoint({"step": 3, "w": torch.ones(2)})
    assert run.checkpoint_step() == 3
    data = run.checkpoint.read_bytes()
    run.checkpoint.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(RunFolderError, match="truncated, damaged") as err:
        run.load_checkpoint()
    assert "weights_only" not in str(err.value) and "\n" not in str(err.value)
    assert run.checkpoint_step() is None


def test_reset_logs_removes_every_log(tmp_path):
    run = RunFolder.create(tmp_path, "r")
    _fill(run, range(3))
    run.reset_logs()
    assert not any((run.path / n).exists() for n in (*rf.LOGS, rf.METRICS_CSV))


def test_concurrent_creation_gives_distinct_folders(tmp_path):
    """Many threads claiming the same name at once: each gets its own folder (check-then-create would race)."""
    import threading

    got, barrier = [], threading.Barrier(8)

    def claim():
        barrier.wait()
        got.append(RunFolder.create(tmp_path, "same").path)

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8 and sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in got)


# ------------------------------------------------------------------------------------------ damaged records
def _ended_run(tmp_path, step=6, steps=6, every=3, evals=(3, 6), status=""):
    """A hand-made run folder: a checkpoint at ``step`` of ``steps``, evaluations at ``evals``, ``status.json``
    holding ``status`` (None: no file)."""
    run = RunFolder.create(tmp_path, "r")
    rf.save_checkpoint(run.checkpoint, {"step": step, "config": {"train": {"steps": steps, "eval_every": every}}})
    for s in evals:
        run.append_eval(EvalRecord(s, "raw", {"modes": {"value": 8.0}}))
    if status is not None:
        run.status_file.write_text(status)
    return run


@pytest.mark.parametrize("status", ["", '{"status": "fini', "[1, 2]", '{"status": "finished", "step": "x"}', None])
def test_an_ended_run_without_a_readable_status_is_recovered_as_finished(tmp_path, status):
    run = _ended_run(tmp_path, status=status)
    assert run.read_status() is None  # never an exception
    check = run.check_records()
    assert check.status.status == "finished" and check.status.step == 6
    assert ("status.json unreadable" if status is not None else "status.json missing") in check.damage
    assert "recovered as finished" in check.damage and "final evaluation" in check.damage


@pytest.mark.parametrize("kwargs,why", [
    ({"step": 4}, "at G step 4 of 6"),                           # stopped early: interrupted, diverged or failed
    ({"evals": (3,)}, "no evaluation at that step"),             # the final evaluation is missing
])
def test_a_run_whose_end_cannot_be_told_is_damaged(tmp_path, kwargs, why):
    check = _ended_run(tmp_path, **kwargs).check_records()
    assert check.status.status == "damaged" and why in check.damage and "how the run ended is unknown" in check.damage


def test_recovery_without_evaluations_needs_only_the_checkpoint(tmp_path):
    check = _ended_run(tmp_path, every=0, evals=()).check_records()
    assert check.status.status == "finished" and "final evaluation" not in check.damage


def test_an_unloadable_checkpoint_is_damaged(tmp_path):
    run = _ended_run(tmp_path)
    run.checkpoint.write_bytes(b"not a checkpoint")
    check = run.check_records()
    assert check.status.status == "damaged" and "no loadable checkpoint.pt" in check.damage


def test_readable_records_have_no_damage_and_a_new_folder_has_no_status(tmp_path):
    assert RunFolder.create(tmp_path, "empty").check_records() == rf.RecordCheck(None, None)
    run = _ended_run(tmp_path, status=json.dumps({"status": "diverged", "step": 4}))
    assert run.check_records() == rf.RecordCheck(Status("diverged", 4), None)


def test_unreadable_evaluations_and_config_of_a_finished_run_are_reported(tmp_path):
    run = _ended_run(tmp_path, status=json.dumps({"status": "finished", "step": 6}))
    with run.eval_file.open("a") as fh:
        fh.write('{"step": 7, "metr\n')
    run.config_file.write_text("train: [unclosed\n")
    check = run.check_records()
    assert check.status == Status("finished", 6)
    assert check.damage == "config.yaml unreadable; eval.jsonl: 1 unreadable line"
