"""A sweep's records under damage: an unreadable ``results.sqlite`` is set aside (never deleted) and rebuilt
from the run folders with a one-line notice, by ``gannorm report`` and ``gannorm sweep``; a run folder with
unreadable records is recorded and reported as damaged (or recovered), never silently dropped; ``report -o``
never writes over an existing file without ``--overwrite``, nor over the sweep's own records."""
from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

from gannorm.app.sweep import DB, run_sweep
from gannorm.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["train.steps=6", "model.d_options={hidden: 16}", "model.g_options={hidden: 16}", "train.checkpoint_every=3",
        "train.tensorboard=false", "train.batch_size_d=16", "train.batch_size_g=16", "train.eval_num_samples=200"]


def rows(folder: Path) -> list[tuple]:
    """The runs table as (run_id, variant, seed, status, final) rows, read with sqlite3 itself."""
    with sqlite3.connect(folder / DB) as con:
        return con.execute("SELECT run_id, variant, seed, status, final FROM runs ORDER BY run_id").fetchall()


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, Path]:
    """A finished sweep of 4 runs (2 variants x 2 seeds) on ring8; tests work on copies of its folder."""
    root = tmp_path_factory.mktemp("heal")
    spec = root / "tiny.yaml"
    spec.write_text(json.dumps({"base": "ring8", "overrides": TINY, "seeds": 2, "metric": "modes",
                                "variants": {"sn": ["normalization.method=sn"],
                                             "none": ["normalization.method=none"]}}))
    out = root / "sweep"
    outcome = run_sweep(str(spec), out, workers=1, threads=1)
    assert len(outcome.results.runs) == 4 and all(r.status == "finished" for r in outcome.results.runs)
    return spec, out


@pytest.fixture
def sweep_copy(swept, tmp_path) -> tuple[Path, Path, list[tuple]]:
    spec, out = swept
    copy = tmp_path / "sweep"
    shutil.copytree(out, copy)
    return spec, copy, rows(out)


def truncate(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])


def garble(db: Path) -> None:
    data = bytearray(db.read_bytes())
    rng = random.Random(0)
    for i in range(100, len(data), 37):  # the header's magic survives: SQLite opens it, then finds it damaged
        data[i] = rng.randrange(256)
    db.write_bytes(bytes(data))


def not_a_database(db: Path) -> None:
    db.write_text("these are not the results you are looking for\n" * 100)


def table_missing(db: Path) -> None:
    with sqlite3.connect(db) as con:
        con.execute("DROP TABLE runs")
    con.close()


DAMAGE = {"truncated": truncate, "garbled": garble, "not-a-database": not_a_database, "table-missing": table_missing}


def damaged_copies(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith(f"{DB}.damaged-") and not p.name.endswith(
        ("-wal", "-shm")))


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_report_sets_an_unreadable_store_aside_and_rebuilds_it(sweep_copy, capsys, damage):
    _, folder, before = sweep_copy
    db = folder / DB
    DAMAGE[damage](db)
    broken = db.read_bytes()
    assert main(["report", str(folder)]) == 0
    err = capsys.readouterr().err
    notices = [ln for ln in err.splitlines() if "cannot be read" in ln]
    assert len(notices) == 1 and "moved it to results.sqlite.damaged-" in notices[0], err
    assert "Traceback" not in err
    aside = damaged_copies(folder)
    assert len(aside) == 1 and aside[0].read_bytes() == broken  # set aside whole, never deleted
    assert rows(folder) == before  # rebuilt from the run folders: the same runs, statuses and final metrics
    assert (folder / "report.html").is_file()


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_sweep_sets_an_unreadable_store_aside_and_rebuilds_it(sweep_copy, damage):
    spec, folder, before = sweep_copy
    DAMAGE[damage](folder / DB)
    notices = []
    outcome = run_sweep(str(spec), folder, workers=1, threads=1, announce=notices.append)
    assert (outcome.ran, outcome.skipped) == (0, 4)
    assert len([n for n in notices if "cannot be read" in n]) == 1
    assert len(damaged_copies(folder)) == 1
    assert rows(folder) == before


def test_sweep_command_line_heals_a_truncated_store(sweep_copy, capsys):
    spec, folder, before = sweep_copy
    truncate(folder / DB)
    assert main(["sweep", str(spec), "--out", str(folder), "--workers", "1", "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and sum("cannot be read" in ln for ln in err.splitlines()) == 1
    assert rows(folder) == before


# ------------------------------------------------------------------------------------------ damaged run folders
def _runs(folder: Path) -> list[Path]:
    return sorted((folder / "runs").iterdir())


def test_a_finished_run_with_an_empty_status_is_recovered_and_reported(sweep_copy, capsys):
    """The reproduction: emptying a finished run's status.json used to record it as pending and drop it from
    its variant's statistics without a word. Its checkpoint is at train.steps with its final evaluation, so
    it is recovered as finished, counted, and reported as damaged."""
    _, folder, before = sweep_copy
    run = _runs(folder)[0]
    tags = json.loads((run / "tags.json").read_text())
    (run / "status.json").write_text("")
    os.utime(folder / DB, (1, 1))  # older than every run: the report rebuilds the store
    assert main(["report", str(folder)]) == 0
    out = capsys.readouterr().out
    assert rows(folder) == before  # the same statuses and final metrics: nothing dropped
    with sqlite3.connect(folder / DB) as con:
        damaged = con.execute("SELECT run_id, damaged FROM runs WHERE damaged IS NOT NULL").fetchall()
    assert len(damaged) == 1 and damaged[0][0] == tags["run_id"]
    assert "status.json unreadable" in damaged[0][1] and "recovered as finished" in damaged[0][1]
    line = [ln for ln in out.splitlines() if ln.startswith("damaged run folders")]
    assert line == [f"damaged run folders in {tags['variant']}: 1 of 2 ({tags['run_id']} (finished: "
                    f"{damaged[0][1]}))"]
    page = (folder / "report.html").read_text()
    assert 'id="table-damaged"' in page and tags["run_id"] in page and "1 with damaged records" in page


def test_a_run_whose_end_cannot_be_told_is_damaged_not_pending(sweep_copy, capsys):
    _, folder, _ = sweep_copy
    run = _runs(folder)[1]
    tags = json.loads((run / "tags.json").read_text())
    (run / "status.json").write_text('{"status": "fini')  # garbled
    (run / "eval.jsonl").write_text("")                     # and its evaluations lost
    os.utime(folder / DB, (1, 1))
    assert main(["report", str(folder)]) == 0
    out = capsys.readouterr().out
    status = {r[0]: r[3] for r in rows(folder)}
    assert status[tags["run_id"]] == "damaged" and list(status.values()).count("finished") == 3
    line = [ln for ln in out.splitlines() if ln.startswith("damaged run folders")]
    assert len(line) == 1 and f"{tags['run_id']} (damaged: " in line[0] and "how the run ended is unknown" in line[0]
    lines = out.splitlines()
    rule = next(i for i, ln in enumerate(lines) if set(ln) == {"-", " "})
    stability = {ln.split()[0]: ln.split()[3] for ln in lines[rule + 1: rule + 3]}  # variant, cell ("all runs"), runs
    assert stability[tags["variant"]] == "1"  # left out of the statistics: its end is unknown


# ------------------------------------------------------------------------------------------ report -o
def test_report_refuses_an_existing_output_unless_overwrite(sweep_copy, tmp_path, capsys):
    _, folder, _ = sweep_copy
    precious = tmp_path / "precious.html"
    precious.write_text("mine")
    assert main(["report", str(folder), "-o", str(precious)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--overwrite" in err
    assert precious.read_text() == "mine"
    assert main(["report", str(folder), "-o", str(precious), "--overwrite"]) == 0
    assert precious.read_text().startswith("<!DOCTYPE html>")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    text = tmp_path / "precious.txt"
    text.write_text("mine")
    assert main(["report", str(folder), "-o", str(text), "--overwrite"]) == 2  # not a page
    assert text.read_text() == "mine"


@pytest.mark.parametrize("target", ["sweep.json", DB, "runs/{run}/status.json", "runs/{run}/page.html", "runs"])
def test_report_never_writes_over_the_sweeps_own_records(sweep_copy, capsys, target):
    _, folder, before = sweep_copy
    path = folder / target.replace("{run}", _runs(folder)[0].name)
    snapshot = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for extra in ([], ["--overwrite"]):
        assert main(["report", str(folder), "-o", str(path), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("gannorm: error:")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == snapshot
    assert main(["report", str(folder)]) == 0 and rows(folder) == before  # the sweep still reads
