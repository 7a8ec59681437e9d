"""Sweeps: spec expansion with stable ids, the results store, restart after SIGKILL, the lock, Ray."""
import json
import os
import signal
import sqlite3
import subprocess
import sys

import pytest
from conftest import child_pids, is_dead, wait_until

from gannorm.app.sweep import DB, expand, load_sweep, read_results, rebuild, run_sweep, sweep_names
from gannorm.app.sweep.runner import is_stale, sweep_lock
from gannorm.errors import ConfigError, GannormError

TINY = ["train.steps=12", "model.d_options={hidden: 16}", "model.g_options={hidden: 16}",
        "train.checkpoint_every=4", "train.tensorboard=false", "train.batch_size_d=16", "train.batch_size_g=16",
        "train.eval_num_samples=200"]


def sweep_file(tmp_path, name="tiny", seeds=2, grid=True, extra=()):
    spec = {"base": "ring8", "overrides": [*TINY, *extra],
            "variants": {"sn": ["normalization.method=sn"], "none": ["normalization.method=none"]},
            "seeds": seeds, "metric": "modes"}
    if grid:
        spec["grid"] = {"optim.lr_d": [2.0e-4, 1.0e-3]}
    path = tmp_path / f"{name}.yaml"
    path.write_text(json.dumps(spec))  # JSON is YAML
    return path


def rows(folder):
    with sqlite3.connect(folder / DB) as con:
        return con.execute("SELECT run_id, status, final FROM runs ORDER BY run_id").fetchall()


def test_expansion_is_variants_x_cells_x_seeds_with_stable_ids(tmp_path):
    spec = load_sweep(str(sweep_file(tmp_path, seeds=3)))
    runs = expand(spec)
    assert len(runs) == 2 * 2 * 3 and len({r.run_id for r in runs}) == 12
    assert [r.run_id for r in runs] == [r.run_id for r in expand(load_sweep(str(sweep_file(tmp_path, seeds=3))))]
    assert {(r.variant, r.cell["optim.lr_d"], r.seed) for r in runs} == {
        (v, lr, s) for v in ("sn", "none") for lr in (2.0e-4, 1.0e-3) for s in range(3)}
    # the headline metric is evaluated at the end even though the base config does not evaluate
    assert any(o.startswith("train.eval_every=") for o in runs[0].overrides)


@pytest.mark.parametrize("body,match", [
    ({"overrides": []}, "at least a 'base:'"),
    ({"base": "ring8", "seedz": 2}, "unknown key"),
    ({"base": "ring8", "grid": {"train.seed": [1, 2]}}, "set by the sweep"),
    ({"base": "ring8", "seeds": 0}, "seeds must be"),
    ({"base": "ring8", "metric": "fidd"}, "metric 'fidd'"),
    ({"base": "ring8", "success": {"below": 3}}, "success must be"),
    ({"base": "ring8", "variants": {"x": ["normalization.method=nope"]}}, "normalization.method"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, body, match):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(body))
    with pytest.raises(ConfigError, match=match) as err:
        load_sweep(str(path))
    assert "\n" not in str(err.value)


def test_a_sweep_records_every_run_once_and_a_restart_skips_them(tmp_path):
    out = tmp_path / "out"
    first = run_sweep(str(sweep_file(tmp_path)), out, workers=2)
    assert first.ran == 8 and len(first.results.runs) == 8
    assert all(r.status == "finished" and r.final["modes"] > 0 for r in first.results.runs)
    before = rows(out)
    again = run_sweep(str(sweep_file(tmp_path)), out, workers=2)
    assert (again.ran, again.skipped) == (0, 8) and rows(out) == before
    # the store is an index over the run folders: rebuilt from them, it holds the same
    (out / DB).unlink()
    assert is_stale(out)
    rebuild(out)
    assert rows(out) == before and not is_stale(out)
    res = read_results(out / DB)
    assert res.metric == "modes" and res.lower_is_better and res.grid_keys == ["optim.lr_d"]
    assert all(len(res.series[r.run_id]) >= 1 for r in res.runs)


def test_runs_are_deterministic_whatever_the_worker_count(tmp_path):
    a = run_sweep(str(sweep_file(tmp_path, seeds=1, grid=False)), tmp_path / "a", workers=1, threads=1)
    b = run_sweep(str(sweep_file(tmp_path, seeds=1, grid=False)), tmp_path / "b", workers=2, threads=1)
    assert {r.run_id: r.final for r in a.results.runs} == {r.run_id: r.final for r in b.results.runs}


def test_a_second_driver_on_the_same_folder_is_refused(tmp_path):
    (tmp_path / "out").mkdir()
    with sweep_lock(tmp_path / "out"):
        with pytest.raises(GannormError, match="another gannorm sweep is running"):
            run_sweep(str(sweep_file(tmp_path)), tmp_path / "out")


def spawned_workers(parent: int) -> set[int]:
    """The child processes of ``parent`` that multiprocessing spawned (its pool's workers)."""
    def cmdline(pid: int) -> bytes:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return f.read()
        except OSError:
            return b""
    return {pid for pid in child_pids(parent) if b"spawn_main" in cmdline(pid)}


def sweep_in_background(tmp_path, name: str):
    """``gannorm sweep`` of 8 runs of 40 steps on 2 workers into ``tmp_path / name``, started as a subprocess:
    ``(sweep file, out folder, process, finished_runs)``, the last counting the finished runs while it runs."""
    spec = sweep_file(tmp_path, extra=["train.steps=40"])
    out = tmp_path / name
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gannorm", "sweep", str(spec), "--out", str(out), "--workers", "2", "--no-report"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def finished_runs() -> int:
        assert proc.poll() is None, "the sweep ended before the test could signal it mid-way"
        return len([p for p in out.glob("runs/*/status.json") if '"finished"' in p.read_text()])
    return spec, out, proc, finished_runs


def test_sigkill_then_restart_records_each_run_exactly_once(tmp_path):
    """The driver is killed mid-sweep (its workers die with it); started again, it resumes partial runs
    from their checkpoints, and ends with the same per-run results as an uninterrupted sweep."""
    spec, out, proc, finished_runs = sweep_in_background(tmp_path, "killed")
    wait_until(lambda: finished_runs() >= 2, 300, "two finished runs")  # some runs ended, others part-way
    workers = wait_until(lambda: spawned_workers(proc.pid), 60, "the sweep's worker processes")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len([p for p in out.glob("runs/*/status.json") if '"finished"' in p.read_text()]) < 8  # mid-sweep
    # the workers get SIGKILL from the kernel when the driver dies (PR_SET_PDEATHSIG): wait until they have
    wait_until(lambda: all(is_dead(pid) for pid in workers), 60, f"the workers {sorted(workers)} to die")
    restarted = run_sweep(str(spec), out, workers=2)
    run_sweep(str(spec), tmp_path / "reference", workers=2)
    got = rows(out)
    assert len(got) == 8 and len({r[0] for r in got}) == 8 and all(r[1] == "finished" for r in got)
    assert got == rows(tmp_path / "reference")  # bitwise the same final metrics
    assert restarted.skipped >= 2


def test_ctrl_c_stops_the_sweep_and_a_restart_finishes_it(tmp_path):
    """SIGINT to the sweep's driver ends the sweep: no queued run is started (before the fix the driver's
    executor trained every queued run before it exited, 8 of 8 here); a restart then finishes every run with
    the numbers of an uninterrupted sweep. (The driver passes the signal on to its workers, which run in their
    own process group: the runs in training checkpoint and end 'interrupted'.) Before runs were handed over one
    per free worker, the pool's own queue held up to three more runs that a Ctrl-C could not cancel (seen: 2 runs
    started at the signal, 7 at exit)."""
    spec, out, proc, finished_runs = sweep_in_background(tmp_path, "interrupted")
    wait_until(lambda: finished_runs() >= 1, 300, "a finished run")
    started = len(list(out.glob("runs/*")))
    proc.send_signal(signal.SIGINT)
    wait_until(lambda: proc.poll() is not None, 120, "the sweep to exit after Ctrl-C")
    folders = len(list(out.glob("runs/*")))
    # only the runs training when the signal came: the driver hands a worker one run at a time (2 workers; one
    # more in case a run ended between the count and the signal)
    assert folders < 8 and folders <= started + 3, (started, folders)
    restarted = run_sweep(str(spec), out, workers=2)
    run_sweep(str(spec), tmp_path / "reference", workers=2)
    assert rows(out) == rows(tmp_path / "reference") and len(rows(out)) == 8
    assert restarted.skipped >= 1


def test_ray_tasks_give_the_same_runs_as_local_workers(tmp_path):
    """The same sweep as Ray tasks on a local Ray instance: the same run ids and bitwise the same results."""
    spec = str(sweep_file(tmp_path, seeds=1))
    local = run_sweep(spec, tmp_path / "local", workers=2, threads=1)
    remote = run_sweep(spec, tmp_path / "ray", workers=2, threads=1, ray=True)
    assert remote.ran == 4 and all(r.status == "finished" for r in remote.results.runs)
    assert {r.run_id: r.final for r in remote.results.runs} == {r.run_id: r.final for r in local.results.runs}


def test_a_diverging_run_is_a_failed_result_not_a_crash(tmp_path):
    path = tmp_path / "boom.yaml"
    path.write_text(json.dumps({"base": "ring8", "overrides": TINY, "seeds": 1, "metric": "modes",
                                "variants": {"ok": [], "boom": ["optim.lr_d=1.0e30", "optim.lr_g=1.0e30"]}}))
    outcome = run_sweep(str(path), tmp_path / "out")
    status = {r.variant: r.status for r in outcome.results.runs}
    assert status == {"ok": "finished", "boom": "diverged"}
    boom = next(r for r in outcome.results.runs if r.variant == "boom")
    assert "non-finite" in boom.error
    from gannorm.stability import summarize
    summary = summarize([boom.final.get("modes", float("nan"))])
    assert (summary.n, summary.successes) == (1, 0)  # counted as a run and a failure


@pytest.mark.parametrize("name", sweep_names())
def test_every_shipped_sweep_loads_and_expands(name):
    spec = load_sweep(name)
    runs = expand(spec)
    n_cells = 1
    for values in spec.grid.values():
        n_cells *= len(values)
    assert len(runs) == len(spec.variants) * n_cells * len(spec.seeds) == len({r.run_id for r in runs})


@pytest.mark.slow
def test_a_50_run_sweep_records_every_run_once_with_the_driver_memory_flat(tmp_path):
    spec = sweep_file(tmp_path, seeds=25, grid=False, extra=["train.steps=3", "train.checkpoint_every=3"])
    rss = []

    def announce(message):
        with open("/proc/self/status") as fh:
            rss.append(next(int(line.split()[1]) / 1024 for line in fh if line.startswith("VmRSS:")))

    outcome = run_sweep(str(spec), tmp_path / "out", workers=2, threads=1, announce=announce)
    got = rows(tmp_path / "out")
    assert len(got) == 50 and len({r[0] for r in got}) == 50 and all(r[1] == "finished" for r in got)
    per_run = rss[1:]  # the first message comes before any run
    assert len(per_run) == 50
    growth = max(per_run[10:]) - per_run[10]
    assert growth < 15, f"driver RSS grew {growth:.1f} MB over the last 40 runs ({per_run[10]:.0f} MB at run 10)"
    assert outcome.ran == 50


def test_run_ids_hash_only_changed_values(tmp_path):
    """A key set to its default, or the preset's ``about`` text, leaves the id alone; a real change moves it."""
    from gannorm.app.sweep.spec import _run_id
    from gannorm import config as config_mod
    base = config_mod.load("ring8")
    same = config_mod.load("ring8", [f"train.ema_buffers={base.train.ema_buffers}", "about.paper=something else"])
    moved = config_mod.load("ring8", ["optim.lr_d=0.00123"])
    assert _run_id("v", 0, same) == _run_id("v", 0, base)
    assert _run_id("v", 0, moved) != _run_id("v", 0, base)
    opts = config_mod.load("ring8", ["normalization.method=ssn", "normalization.options={scale: 1.4}"])
    assert _run_id("v", 0, opts) != _run_id("v", 0, base)


@pytest.mark.parametrize("name", ["ring8", "digits", "compare_digits"])
def test_a_run_id_hashes_no_default_value(name):
    """Every value a run id hashes differs from its default, section by section (the train section was
    hashed whole: the keys left out of ids were taken out of the config but not of the defaults, so every
    new train key with a default changed every id)."""
    from gannorm import config as config_mod
    from gannorm.app.sweep.spec import NOT_IN_ID, id_values
    defaults = config_mod.to_dict(config_mod.Config())
    hashed = id_values(config_mod.load(name, ["train.threads=1", "train.progress=false"]))

    def leaves(tree, default, path=""):
        for key, value in tree.items():
            if isinstance(value, dict) and isinstance(default.get(key), dict):
                yield from leaves(value, default[key], f"{path}{key}.")
            else:
                yield f"{path}{key}", value, default.get(key, "<no default>")

    found = list(leaves(hashed, defaults))
    assert found and all(value != default for _, value, default in found), found
    assert not any(key in NOT_IN_ID or key.split(".")[0] in NOT_IN_ID for key, _, _ in found)
    assert "train.ema_buffers" not in {key for key, _, _ in found}


def test_a_sweep_run_is_gannorm_train_of_its_config(tmp_path, monkeypatch):
    """A BSSN run in a sweep worker whose process has 2 threads (``train.threads=1``) equals a run of its
    ``config.yaml`` in this process on 1 thread: ``train.threads`` governs the whole run, building the models
    (BSSN's warm-up power iterations) included. Built on the process's count, they differed."""
    import torch

    from gannorm import config as config_mod
    from gannorm.runfolder import RunFolder
    from gannorm.training import Trainer
    spec = {"base": "digits", "overrides": ["train.steps=3", "model.d_options={extra_convs: 2}", "diagnostics.every=0",
                                            "train.checkpoint_every=3", "train.sample_every=100",
                                            "train.tensorboard=false", "train.eval_num_samples=100"],
            "variants": {"bssn": ["normalization.method=bssn", "normalization.options={scale: 1.4}"]},
            "seeds": 1, "metric": "cfd"}
    path = tmp_path / "bssn.yaml"
    path.write_text(json.dumps(spec))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the spawned worker's own count
    outcome = run_sweep(str(path), tmp_path / "sweep", workers=1, threads=1)
    (row,) = outcome.results.runs
    swept = RunFolder.open(row.run_dir)
    cfg = config_mod.load(str(swept.path / "config.yaml"),
                          [f"train.out_dir={tmp_path / 'again'}", "train.eval_every=0"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        again = Trainer(cfg).run()
    finally:
        torch.set_num_threads(before)
    a, b = swept.load_checkpoint(), RunFolder.open(again.run_dir).load_checkpoint()
    for net in ("G", "D"):
        assert all(torch.equal(a[net][k], b[net][k]) for k in a[net]), net
