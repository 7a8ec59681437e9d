"""Hostile and careless input (issue 22): names that would write outside their folder, YAML bombs, and the
mistakes that were tracebacks or were found only after training had started.

Every case ends in one line naming the problem and the fix (exit 2 on the command line), within a time and
memory budget, and leaves nothing behind: the folder the case runs in is listed before and after.
The command-line cases run ``gannorm.cli.main`` in a child process that reports its own time (after the
import) and peak memory (its own ``VmHWM``), under a memory limit that keeps a runaway case from taking the
machine down.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import NO_EVAL, TINY_DIGITS, listing

import gannorm
from gannorm import config as C
from gannorm.app.experiments import run_experiment
from gannorm.app.sweep import run_sweep
from gannorm.app.sweep.spec import load_sweep
from gannorm.data import DatasetError
from gannorm.errors import ConfigError, GannormError
from gannorm.metrics.evaluate import EvalOptions

#: a tiny job, so that a case that wrongly passes still ends in seconds
TINY = [*TINY_DIGITS, "train.steps=2", *NO_EVAL]
RING8 = ["train.steps=2", "train.batch_size_d=16", "train.batch_size_g=16", "train.progress=false",
         "train.tensorboard=false", "train.eval_every=0", "diagnostics.every=0", "data.options={n: 256}"]
#: the memory budget for refusing a YAML bomb
BOMB_MB = 500
#: a safety net only: a runaway child fails with MemoryError long before it hurts the machine (the data
#: segment, which unlike the address space does not count the libraries torch maps)
DATA_LIMIT = 2 * 2**30

CHILD = textwrap.dedent("""
    import json, os, resource, sys, time
    limit = int(os.environ["GANNORM_TEST_DATA_LIMIT"])
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    from gannorm.cli import main
    start = time.perf_counter()
    code = main(sys.argv[1:])
    # VmHWM, this program's own peak RSS: ru_maxrss would also count the parent's memory that the fork copied
    # before exec (a test process of a gigabyte reads as a gigabyte)
    hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
    report = {"code": code, "seconds": time.perf_counter() - start, "peak_mb": int(hwm.split()[1]) / 1024}
    with open(os.environ["GANNORM_TEST_REPORT"], "w") as fh:
        json.dump(report, fh)
    sys.exit(code)
""")


def cli(args: list[str], cwd: Path, report: Path) -> tuple[subprocess.CompletedProcess, dict]:
    """``gannorm ARGS`` in a child process (in ``cwd``); its result and its report (code, seconds, peak_mb)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GANNORM_TEST_REPORT": str(report),
           "GANNORM_TEST_DATA_LIMIT": str(DATA_LIMIT)}
    proc = subprocess.run([sys.executable, "-c", CHILD, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    data = json.loads(report.read_text()) if report.is_file() else {}
    report.unlink(missing_ok=True)
    return proc, data


def assert_one_line_exit_2(proc: subprocess.CompletedProcess, pattern: str) -> None:
    import re
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in lines if line.startswith("gannorm: error: ")]
    assert len(errors) == 1, lines
    assert re.search(pattern, errors[0]), errors[0]


@pytest.fixture
def place(tmp_path):
    """``(work, report)``: a folder to run in (with a file outside it to watch) and the child's report path."""
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    return work, tmp_path / "report.json"


def alias_bomb(indent: str = "") -> str:
    """Nine levels of nine aliases (9**9 strings once expanded) in under 1 KB."""
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(indent + line for line in lines) + "\n"


def flow_bomb() -> str:
    """The same bomb as one flow mapping (an override's value)."""
    parts = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    parts += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "{" + ", ".join(parts) + "}"


# ------------------------------------------------------------------------------------ YAML bombs
def _config_bomb(work: Path) -> list[str]:
    (work / "bomb.yaml").write_text("data:\n  options:\n" + alias_bomb("    "))
    return ["train", "bomb.yaml", *TINY]


def _sweep_bomb(work: Path) -> list[str]:
    (work / "bomb.yaml").write_text("base: digits\ngrid:\n  data.options:\n    - bomb:\n" + alias_bomb("        "))
    return ["sweep", "bomb.yaml", "--out", "out"]


BOMBS = {"config data.options": _config_bomb, "sweep grid value": _sweep_bomb,
         "override value": lambda work: ["train", "digits", *TINY, f"data.options={flow_bomb()}"]}


@pytest.mark.parametrize("case", list(BOMBS))
def test_an_alias_bomb_is_refused_within_500_mb(place, case):
    """The refusal's memory, measured in the child; its speed is a benchmark (benchmarks/yaml_bomb.py), and
    tests/test_yamlsafe.py checks without a clock that it is one pass over the text's events."""
    work, report = place
    args = BOMBS[case](work)
    assert all(len(a) < 1024 for a in args) and sum(p.stat().st_size for p in work.iterdir()) < 1024
    before = listing(work)
    proc, measured = cli(args, work, report)
    assert_one_line_exit_2(proc, r"expands to more than 10000 values")
    assert measured["peak_mb"] < BOMB_MB, measured
    assert listing(work) == before


def test_deeply_nested_yaml_is_one_line_as_config_and_as_sweep(place, tmp_path):
    work, report = place
    deep = "[" * 20000 + "]" * 20000
    (work / "deep.yaml").write_text(f"data:\n  options: {{x: {deep}}}\n")
    (work / "sweep.yaml").write_text(f"base: digits\ngrid:\n  data.options: {deep}\n")
    before = listing(work)
    proc, _ = cli(["train", "deep.yaml", *TINY], work, report)
    assert_one_line_exit_2(proc, r"config file deep\.yaml: nesting deeper than 64 levels at line 2")
    with pytest.raises(ConfigError, match="sweep file .*sweep.yaml: nesting deeper than 64 levels"):
        load_sweep(str(work / "sweep.yaml"))
    assert listing(work) == before


# ------------------------------------------------------------------------------------ path traversal
HOSTILE_NAMES = ["../../../ESCAPED", "{tmp}/abs/newparent/deeper/y", "a/b", "a\\b", "a\x00b", None, "line\nbreak",
                 "", "..", "x" * 300, 7]


def _sweep_with_variant(path: Path, name, tmp: Path) -> None:
    name = name.format(tmp=tmp) if isinstance(name, str) and "{tmp}" in name else name
    body = {"base": "digits", "overrides": TINY[:5], "variants": {"ok": [], "__NAME__": ["train.n_dis=1"]},
            "seeds": 1, "metric": "cfd"}
    text = yaml.safe_dump(body).replace("__NAME__", json.dumps(name) if name is not None else "null")
    path.write_text(text)
    assert name in yaml.safe_load(text)["variants"]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=[repr(n)[:24] for n in HOSTILE_NAMES])
def test_a_sweep_variant_name_never_becomes_a_path(tmp_path, name):
    work = tmp_path / "a" / "b" / "work"
    work.mkdir(parents=True)
    sweep = work / "s.yaml"
    _sweep_with_variant(sweep, name, tmp_path)
    before = listing(tmp_path)
    with pytest.raises(ConfigError, match=r"sweep (file )?.*s\.yaml: (variant: .* is not a plain name \(|the key "
                                          r"(null|7) at line \d+ is read as (NoneType|int), not text)") as err:
        run_sweep(str(sweep), work / "out")
    assert "\n" not in str(err.value)
    assert listing(tmp_path) == before  # nothing inside the out folder, nothing outside it


def test_the_command_line_refuses_a_traversing_variant_and_writes_nothing(place, tmp_path):
    work, report = place
    _sweep_with_variant(work / "s.yaml", "../../../ESCAPED", tmp_path)
    before = listing(tmp_path)
    proc, _ = cli(["sweep", "s.yaml", "--out", "out"], work, report)
    assert_one_line_exit_2(proc, r"variant: '\.\./\.\./\.\./ESCAPED' is not a plain name \(it holds '/'\)")
    assert listing(tmp_path) == before
    assert not list(tmp_path.rglob("ESCAPED*"))


@pytest.mark.parametrize("name", ["../up", "/abs", "a\x00b", "a\nb", "a\rb", "..", "x" * 200])
def test_train_run_name_is_one_plain_name(tmp_path, name):
    file = tmp_path / "c.yaml"
    file.write_text(yaml.safe_dump({"train": {"run_name": name, "out_dir": str(tmp_path / "out")}}))
    before = listing(tmp_path)
    with pytest.raises(ConfigError, match=r"^config key train\.run_name: .* is not a plain name \("):
        gannorm.train(str(file), TINY)
    assert listing(tmp_path) == before


def test_a_null_run_name_is_the_default_name_not_none(tmp_path):
    cfg = C.load("ring8", [*RING8, f"train.out_dir={tmp_path}", "train.run_name=null"])
    assert cfg.train.run_name is None
    C.validate(cfg)


def test_a_comparison_presets_variant_names_are_checked(tmp_path):
    file = tmp_path / "cmp.yaml"
    file.write_text("train: {steps: 2}\nvariants:\n  ../out: [train.n_dis=1]\n")
    with pytest.raises(ConfigError, match=r"variant: '\.\./out' is not a plain name"):
        C.load_variants(str(file))
    file.write_text("train: {steps: 2}\nvariants:\n  null: [train.n_dis=1]\n")
    with pytest.raises(ConfigError, match=r"the key null at line 3 is read as NoneType, not text"):
        C.load_variants(str(file))


def test_an_experiments_out_folder_is_checked_before_anything_is_made(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"--out: 'a\\x00b' is not a usable path \(it holds the control"):
        run_experiment("gradients", ["train.steps=1"], out_dir="a\x00b")
    assert listing(tmp_path) == {}


# ------------------------------------------------------------------------------------ the Python API
def test_the_api_takes_a_path_as_out_dir(tmp_path):
    out = tmp_path / "runs"
    result = gannorm.train({"data": {"name": "ring8", "options": {"n": 256}}, "model": {"arch": "mlp"},
                            "train": {"out_dir": out, "run_name": "p", "steps": 2}}, RING8[1:7])
    assert result.status == "finished" and result.run_dir == out / "p"
    cfg = C.from_dict({"train": {"out_dir": Path("x") / "y"}, "data": {"root": Path("/data")}})
    assert (cfg.train.out_dir, cfg.data.root) == ("x/y", "/data")


@pytest.mark.parametrize("config, overrides, match", [
    ({"train": {"out_dir": "a\x00b"}}, TINY, r"config key train\.out_dir: 'a\\x00b' is not a usable path"),
    (["digits"], TINY, r"the config must be a preset name, a YAML path, a dict or a Config, got \['digits'\]"),
    (3, TINY, r"the config must be a preset name, .* got 3"),
    ("digits", "train.steps=2", r"overrides must be a list of key=value texts"),
    ("digits", [*TINY, Path("x")], r"an override must be text key=value"),
    ("digits", [*TINY, "train.run_name=a\x00b"], r"config key train\.run_name: 'a\\x00b' is not a plain name"),
])
def test_the_api_gives_one_line_errors(tmp_path, monkeypatch, config, overrides, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GannormError, match=match) as err:
        gannorm.train(config, overrides)
    assert "\n" not in str(err.value)
    assert listing(tmp_path) == {}


def test_an_unchecked_value_is_never_formatted_whole():
    huge = list(range(10**6))
    for mapping in ({"train": {"steps": huge}}, {"train": {"run_name": huge}}, {"model": huge},
                    {"train": {"loss": "x" * 10**6}}, {"train": {"eval_metrics": [huge]}},
                    {"optim": {"lr_d": 10**400}}, {"data": {"options": {1: 2, "n": 3}}}):
        with pytest.raises(ConfigError) as err:
            C.validate(C.from_dict(mapping))
        assert len(str(err.value)) < 400, str(err.value)[:400]
    with pytest.raises(ConfigError, match=r"must be <= 1,000,000,000, got an integer of 5001 digits"):
        C.validate(C.from_dict({"train": {"steps": 10**5000}}))


# ------------------------------------------------------------------------------------ tracebacks that were
@pytest.mark.parametrize("value, match", [
    ("10**30", r"option n must be a positive integer <= 10,000,000, got 1000000000000000000000000000000$"),
    ("1" + "0" * 400, r"option n must be a positive integer <= 10,000,000, got an integer of 401 digits"),
    ("-3", r"option n must be a positive integer"),
])
def test_a_mixtures_point_count_is_range_checked(tmp_path, value, match):
    n = str(10**30) if value == "10**30" else value
    before = listing(tmp_path)
    with pytest.raises(DatasetError, match=match):
        gannorm.train("ring8", [*RING8, f"data.options={{n: {n}}}", f"train.out_dir={tmp_path}"])
    assert listing(tmp_path) == before


def test_batch_norm_in_g_needs_two_samples_a_batch(place):
    work, report = place
    with pytest.raises(ConfigError, match=r"config key train\.batch_size_d: network 'cnn' has BatchNorm in G"):
        C.validate(C.load("digits", ["train.batch_size_d=1"]))
    with pytest.raises(ConfigError, match=r"config key train\.batch_size_g: network 'resnet'"):
        C.validate(C.load("digits", ["model.arch=resnet", "train.batch_size_g=1"]))
    C.validate(C.load("ring8", ["train.batch_size_d=1", "train.batch_size_g=1"]))  # the MLP has no BatchNorm
    proc, _ = cli(["train", "digits", *TINY, "train.batch_size_d=1"], work, report)
    assert_one_line_exit_2(proc, r"train\.batch_size_d: network 'cnn' has BatchNorm in G, which needs at least 2")
    assert listing(work) == {}


@pytest.mark.parametrize("value", ["0", "-1", "100", "nan"])
def test_demo_width_is_checked(place, value):
    work, report = place
    proc, _ = cli(["demo", f"--width={value}"], work, report)
    assert_one_line_exit_2(proc, rf"--width must be > 0 and <= 8 \(1\.0: the official network\), got {value}")


# ------------------------------------------------------------------------------------ validation first
def test_a_metric_the_dataset_cannot_give_fails_in_validate(place):
    work, report = place
    with pytest.raises(ConfigError, match=r"train\.eval_metrics: cfd cannot be computed on dataset 'ring8' "
                                          r"\(the digits classifier .*\); use one of modes"):
        C.validate(C.load("ring8", ["train.eval_metrics=[cfd]"]))
    with pytest.raises(ConfigError, match=r"modes cannot be computed on dataset 'digits'"):
        C.validate(C.load("digits", ["train.eval_metrics=[modes]"]))
    with pytest.raises(ConfigError, match=r"fid cannot be computed on dataset 'ring8' \(it holds 2-D points"):
        C.validate(C.load("ring8", ["train.eval_metrics=[fid]"]))
    proc, _ = cli(["train", "ring8", *RING8, "train.eval_metrics=[cfd]", "train.eval_every=1"], work, report)
    assert_one_line_exit_2(proc, r"cfd cannot be computed on dataset 'ring8'")
    assert listing(work) == {}


def test_eval_of_a_metric_the_run_s_dataset_cannot_give_fails_before_any_work(tmp_path):
    from gannorm.app.evaluation import evaluate_run
    run = gannorm.train("ring8", [*RING8, f"train.out_dir={tmp_path}", "train.run_name=r"]).run_dir
    before = sorted(p.name for p in run.iterdir())
    with pytest.raises(GannormError, match=r"--metric cfd cannot be computed on dataset 'ring8' .*use one of modes"):
        evaluate_run(run, EvalOptions(metrics=("cfd",), progress=False))
    assert sorted(p.name for p in run.iterdir()) == before  # no eval file written


def test_a_sweep_whose_metric_the_dataset_cannot_give_trains_nothing(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"base": "ring8", "overrides": RING8, "metric": "cfd", "seeds": 2}))
    with pytest.raises(ConfigError, match=r"metric cfd cannot be computed on dataset 'ring8' .*use metric: modes"):
        run_sweep(str(sweep), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_sweep_validates_every_run_not_only_the_first_and_last(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"base": "digits", "overrides": TINY[:5], "metric": "cfd",
                                     "grid": {"train.batch_size_d": [8, 1, 16]}}))
    with pytest.raises(ConfigError, match=r"run base \(seed 0, train\.batch_size_d=1\): config key "
                                          r"train\.batch_size_d: network 'cnn' has BatchNorm in G"):
        run_sweep(str(sweep), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_sweeps_default_metric_is_the_datasets_own(tmp_path):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(yaml.safe_dump({"base": "ring8", "overrides": RING8}))
    assert load_sweep(str(sweep)).metric == "modes"
    sweep.write_text(yaml.safe_dump({"base": "digits", "overrides": TINY[:5]}))
    assert load_sweep(str(sweep)).metric == "cfd"


# ------------------------------------------------------------------------------------ smaller ones
def test_duplicate_keys_in_a_config_file_are_refused(tmp_path):
    file = tmp_path / "c.yaml"
    file.write_text("train:\n  steps: 100\n  n_dis: 1\n  steps: 200\n")
    with pytest.raises(ConfigError, match=rf"config file {file}: the key 'steps' appears twice in one mapping "
                                          r"\(again at line 4\); keep one"):
        C.load(str(file))
    with pytest.raises(ConfigError, match=r"override data\.options: its value the key 'n' appears twice"):
        C.load("ring8", ["data.options={n: 1, n: 2}"])


@pytest.mark.parametrize("content", ["", "\n\n", "# only a comment\n", "---\n"])
def test_an_empty_config_file_is_an_error_not_the_default_job(place, content):
    work, report = place
    (work / "empty.yaml").write_text(content)
    with pytest.raises(ConfigError, match=r"config file .*empty\.yaml is empty; give at least one section"):
        C.load(str(work / "empty.yaml"))
    if content == "":
        before = listing(work)
        proc, _ = cli(["train", "empty.yaml", *TINY], work, report)
        assert_one_line_exit_2(proc, r"empty\.yaml is empty")
        assert listing(work) == before


def test_a_directory_as_config_says_it_is_a_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "configs.yaml").mkdir()
    (tmp_path / "plain").mkdir()
    for name in ("configs.yaml", "plain"):
        with pytest.raises(ConfigError, match=f"config '{name}' is a directory; give a YAML file in it"):
            C.load(name)
    with pytest.raises(ConfigError, match="sweep 'plain' is a directory"):
        load_sweep("plain")


def test_train_steps_has_an_upper_bound():
    with pytest.raises(ConfigError, match=r"config key train\.steps: must be <= 1,000,000,000, got 1000000001"):
        C.validate(C.load("digits", ["train.steps=1000000001"]))
    C.validate(C.load("digits", ["train.steps=1000000000"]))
