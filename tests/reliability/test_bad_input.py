"""Every user mistake on the command line: one line naming the problem, exit 2, no traceback, nothing left behind.

Each case runs ``python -m gannorm ...`` as a subprocess in a fresh folder (its inputs created there
first) and checks: exit status 2; at most a few lines on stderr, the first ``gannorm: error: ...``
matching the case's pattern; no ``Traceback``; and the folder exactly as before (no run folder, no
output file, no input file touched). The runs the checkpoint cases need are copies of one tiny run
trained once per module with the command line.
"""
from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml
from conftest import NO_EVAL, TINY_DIGITS, listing

pytestmark = pytest.mark.slow

#: a tiny job, so that a case that wrongly passes the checks still ends in seconds
TINY = [*TINY_DIGITS, "train.steps=2", *NO_EVAL]


def gannorm(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("GANNORM_INCEPTION_WEIGHTS", None)
    return subprocess.run([sys.executable, "-m", "gannorm", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A 2-step run of the default job (a BSSN CNN on 8x8 digits), trained with the command line."""
    where = tmp_path_factory.mktemp("trained")
    proc = gannorm(["train", "digits", *TINY, "train.out_dir=.", "train.run_name=run"], where)
    assert proc.returncode == 0, proc.stderr
    return where / "run"


# ------------------------------------------------------------------------------------------ inputs
def text(name: str, content: str) -> Callable[[Path, Path], None]:
    return lambda tmp, run: (tmp / name).write_text(content)


def npy(name: str, array: np.ndarray) -> Callable[[Path, Path], None]:
    return lambda tmp, run: np.save(tmp / name, array)


def folder(name: str, files: dict[str, bytes] | None = None) -> Callable[[Path, Path], None]:
    def make(tmp: Path, run: Path) -> None:
        (tmp / name).mkdir()
        for file, content in (files or {}).items():
            (tmp / name / file).write_bytes(content)
    return make


def truncated_cifar(tmp: Path, run: Path) -> None:
    """A cifar-10-python.tar.gz of five valid (small) batches, cut in the middle."""
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for i in range(1, 6):
            batch = {b"data": rng.integers(0, 256, (16, 3072), dtype=np.uint8), b"labels": [0] * 16}
            blob = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/data_batch_{i}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    (tmp / "c10").mkdir()
    (tmp / "c10" / "cifar-10-python.tar.gz").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def copy_run(edit: Callable[[Path], None] | None = None) -> Callable[[Path, Path], None]:
    """A copy of the trained run as ``run/``, then ``edit(run)``."""
    def make(tmp: Path, run: Path) -> None:
        shutil.copytree(run, tmp / "run")
        if edit is not None:
            edit(tmp / "run")
    return make


def edit_config(**changes: object) -> Callable[[Path], None]:
    """Change ``section.key`` values (given as ``section__key=value``) in the run's config.yaml."""
    def edit(run: Path) -> None:
        cfg = yaml.safe_load((run / "config.yaml").read_text())
        for key, value in changes.items():
            section, name = key.split("__")
            cfg[section][name] = value
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return edit


def edit_checkpoint_width(run: Path) -> None:
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    state["config"]["model"]["width"] = 0.25
    torch.save(state, run / "checkpoint.pt")


def truncate_checkpoint(run: Path) -> None:
    data = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(data[: len(data) // 2])


def both(*makers: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def make(tmp: Path, run: Path) -> None:
        for m in makers:
            m(tmp, run)
    return make


BAD_WEIGHTS = text("bad.pth", "not the Inception weights")


# ------------------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class Case:
    id: str
    args: list[str]
    error: str                                            # a regex the error line must contain
    setup: Callable[[Path, Path], None] | None = None     # (tmp, trained run) -> the case's input files
    pending: str = ""                                     # why the case is expected to fail for now


def train(*overrides: str, config: str = "digits") -> list[str]:
    return ["train", config, *TINY, *overrides]


CASES = [
    # -- config syntax
    Case("yaml-syntax", ["train", "bad.yaml"], r"config file bad\.yaml is not valid YAML: .* at line 3",
         text("bad.yaml", "train:\n  steps: [1\n")),
    Case("yaml-list", ["train", "l.yaml"], r"config file l\.yaml must hold a mapping of sections.*got a list",
         text("l.yaml", "- 1\n- 2\n")),
    Case("yaml-string", ["train", "s.yaml"], r"config file s\.yaml must hold a mapping.*got a str",
         text("s.yaml", "hello\n")),
    Case("unknown-section", train("trian.steps=1"), r"unknown config key 'trian'; allowed: data, model"),
    Case("unknown-key", train("train.stepz=1"), r"unknown config key 'train\.stepz'; did you mean train\.steps\?"),
    Case("wrong-type", train("train.steps=abc"), r"config key train\.steps: 'abc' is not int"),
    Case("override-syntax", train("train.steps"), r"override 'train\.steps' is not key=value"),
    # -- numbers out of range
    Case("steps-0", train("train.steps=0"), r"config key train\.steps: must be >= 1, got 0"),
    Case("lr-negative", train("optim.lr_d=-1e-4"), r"config key optim\.lr_d: must be > 0, got -0\.0001"),
    Case("betas-1.5", train("optim.betas_d=[1.5,0.9]"), r"config key optim\.betas_d: must be in \[0, 1\)"),
    Case("n-dis-0", train("train.n_dis=0"), r"config key train\.n_dis: must be >= 1, got 0"),
    Case("batch-0", train("train.batch_size_d=0"), r"config key train\.batch_size_d: must be >= 1, got 0"),
    Case("ema-decay-1", train("train.ema_decay=1"), r"config key train\.ema_decay: must be in \[0, 1\), got 1"),
    Case("width-0", train("model.width=0"), r"config key model\.width: must be > 0, got 0"),
    Case("bssn-scale-0", train("normalization.options.scale=0"), r"config key normalization\.options\.scale: .*> 0"),
    Case("bssn-scale-negative", train("normalization.options.scale=-1.4"),
         r"config key normalization\.options\.scale: .*got -1\.4"),
    Case("power-iterations-0", train("normalization.options.n_power_iterations=0"),
         r"config key normalization\.options\.n_power_iterations: .*>= 1"),
    Case("penalty-weight-negative", train("train.penalty=r1", "train.penalty_weight=-1"),
         r"config key train\.penalty_weight: must be >= 0, got -1"),
    Case("cr-translate-0.7", train("train.cr_translate=0.7"),
         r"config key train\.cr_translate: must be in \[0, 0\.5\)"),
    Case("function-eps-negative", train("normalization.function=gn", "normalization.function_eps=-1"),
         r"config key normalization\.function_eps: must be >= 0"),
    # -- unknown names
    Case("unknown-preset", ["train", "nosuchpreset"], r"unknown preset 'nosuchpreset'; known: .*digits"),
    Case("unknown-method", train("normalization.method=bsssn"), r"normalization\.method: 'bsssn' is not one of .*bssn"),
    Case("unknown-arch", train("model.arch=resnett"), r"model\.arch: 'resnett' is not one of .*resnet"),
    Case("unknown-dataset", train("data.name=cifar100"), r"data\.name: 'cifar100' is not one of .*cifar10"),
    Case("unknown-loss", train("train.loss=hing"), r"train\.loss: 'hing' is not one of .*hinge"),
    Case("unknown-penalty", train("train.penalty=gp"), r"train\.penalty: 'gp' is not one of none, .*wgan_gp"),
    Case("unknown-metric", train("train.eval_metrics=[fidd]"), r"train\.eval_metrics: 'fidd' is not one of .*fid"),
    Case("unknown-function", train("normalization.function=gnn"), r"normalization\.function: 'gnn' is not one of"),
    # -- data files and archives
    Case("cifar10-root-without-archive", train("data.name=cifar10", "data.root=empty", "data.resolution=32"),
         r"cifar10: expected cifar-10-python\.tar\.gz or cifar-10-batches-py/ in empty", folder("empty")),
    Case("cifar10-truncated-archive", train("data.name=cifar10", "data.root=c10", "data.resolution=32"),
         r"cifar10: cannot read c10/cifar-10-python\.tar\.gz.*unexpected end of data", truncated_cifar),
    Case("npy-not-npy", train("data.name=npy", "data.root=x.npy"), r"npy: x\.npy is some other file, not a single",
         text("x.npy", "hello")),
    Case("npy-wrong-shape", train("data.name=npy", "data.root=x.npy"), r"npy: x\.npy has shape \(4, 5\); expected",
         npy("x.npy", np.zeros((4, 5), np.uint8))),
    Case("npy-nan", train("data.name=npy", "data.root=x.npy"), r"npy: x\.npy holds NaN or infinite values",
         npy("x.npy", np.full((4, 8, 8, 1), np.nan, np.float32))),
    Case("imagefolder-empty", train("data.name=imagefolder", "data.root=imgs"), r"imagefolder: no image files",
         folder("imgs", {"notes.txt": b"no images here"})),
    Case("imagefolder-corrupt-image", train("data.name=imagefolder", "data.root=imgs"),
         r"imagefolder: cannot read imgs/a\.png", folder("imgs", {"a.png": b"not a png"})),
    # -- run folders and checkpoints
    Case("resume-other-arch", ["train", "--resume", "run"],
         r"checkpoint run/checkpoint\.pt holds the (generator|discriminator) (with|without) \S+",
         copy_run(edit_config(model__arch="dscnn"))),
    Case("resume-other-method", ["train", "--resume", "run"],
         r"checkpoint run/checkpoint\.pt holds the discriminator (with|without) \S+",
         copy_run(edit_config(normalization__method="none", normalization__options={}))),
    Case("resume-truncated-checkpoint", ["train", "--resume", "run"],
         r"checkpoint run/checkpoint\.pt cannot be loaded: it is truncated", copy_run(truncate_checkpoint)),
    Case("sample-truncated-checkpoint", ["sample", "run", "-n", "4", "-o", "g.png"],
         r"checkpoint run/checkpoint\.pt cannot be loaded", copy_run(truncate_checkpoint)),
    Case("sample-checkpoint-other-width", ["sample", "run", "-n", "4", "-o", "g.png"],
         r"checkpoint run/checkpoint\.pt holds the generator with \S+ of shape \[\d+(, \d+)*\], the config builds",
         copy_run(edit_checkpoint_width)),
    # -- Inception weights
    Case("eval-inception-wrong-hash", ["eval", "run", "--metric", "fid", "--num-samples", "8",
                                       "--inception-weights", "bad.pth", "-o", "e.json"],
         r"SHA-256 mismatch for bad\.pth", both(copy_run(), BAD_WEIGHTS)),
    Case("fid-stats-wrong-hash", ["fid-stats", "digits", "--resolution", "16", "-n", "8", "-o", "s.npz",
                                  "--inception-weights", "bad.pth"], r"SHA-256 mismatch for bad\.pth", BAD_WEIGHTS),
    # -- outputs
    Case("out-dir-under-a-file", train("train.out_dir=/dev/null/x"),
         r"cannot create a run folder in /dev/null/x: Not a directory; choose another place with train\.out_dir"),
    Case("sample-into-proc", ["sample", "run", "-n", "4", "-o", "/proc/x.png"],
         r"cannot write /proc/x\.png: folder /proc does not accept new files", copy_run()),
    Case("sample-under-a-file", ["sample", "run", "-n", "4", "-o", "/dev/null/x.png"],
         r"cannot write /dev/null/x\.png: /dev/null is not a folder", copy_run()),
    Case("sample-existing-output", ["sample", "run", "-n", "4", "-o", "g.png"],
         r"output g\.png already exists; pass --overwrite", both(copy_run(), text("g.png", "an older grid"))),
    Case("fid-stats-existing-output", ["fid-stats", "digits", "-o", "s.npz"],
         r"output s\.npz already exists; pass --overwrite", text("s.npz", "older statistics")),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.pending, strict=True)]
                                               if c.pending else []) for c in CASES])
def test_user_mistake_is_one_line_exit_2_and_leaves_nothing(case, tmp_path, trained_run):
    if case.setup is not None:
        case.setup(tmp_path, trained_run)
    before = listing(tmp_path)
    proc = gannorm(case.args, tmp_path)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert 1 <= len(lines) <= 3, proc.stderr
    assert lines[0].startswith("gannorm: error: "), proc.stderr
    assert len(lines[0]) < 600, lines[0]
    assert __import__("re").search(case.error, lines[0]), lines[0]
    assert listing(tmp_path) == before  # no run folder, no output file, no input touched


def test_the_table_is_large_enough():
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder(tmp_path, trained_run):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        proc = gannorm(["sample", str(trained_run), "-n", "4", "-o", "ro/g.png"], tmp_path)
    finally:
        ro.chmod(0o755)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("gannorm: error: cannot write ro/g.png: folder ro does not accept new files")
    assert not any(ro.iterdir())


# ------------------------------------------------------------------------------------------ load_state_checked
def test_load_state_checked_names_the_first_mismatch(tmp_path):
    from torch import nn

    from gannorm.errors import RunFolderError
    from gannorm.runfolder import load_state_checked

    def net(width):
        return nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 1))

    good = net(4).state_dict()
    target = net(4)
    load_state_checked(target, good, "the discriminator", tmp_path / "c.pt")
    assert all(torch.equal(a, b) for a, b in zip(target.state_dict().values(), good.values()))
    with pytest.raises(RunFolderError, match=r"^checkpoint \S+c\.pt holds the discriminator with 0\.weight of shape "
                                             r"\[8, 2\], the config builds \[4, 2\]: the config \(model\.arch"):
        load_state_checked(net(4), net(8).state_dict(), "the discriminator", tmp_path / "c.pt")
    missing = {k: v for k, v in good.items() if k != "2.bias"}
    with pytest.raises(RunFolderError, match=r"holds the generator without 2\.bias \(the config builds it with "
                                             r"shape \[1\]\)"):
        load_state_checked(net(4), missing, "the generator", "c.pt")
    with pytest.raises(RunFolderError, match=r"holds the generator with 3\.weight of shape \[1\], which the config "
                                             r"does not build"):
        load_state_checked(net(4), {**good, "3.weight": torch.zeros(1)}, "the generator", "c.pt")
    with pytest.raises(RunFolderError, match=r"holds no weights for the generator \(got a NoneType\)"):
        load_state_checked(net(4), None, "the generator", "c.pt")
    untouched = net(4)
    before = {k: v.clone() for k, v in untouched.state_dict().items()}
    with pytest.raises(RunFolderError):
        load_state_checked(untouched, {**net(8).state_dict(), "2.bias": torch.ones(1)}, "the generator", "c.pt")
    assert all(torch.equal(before[k], v) for k, v in untouched.state_dict().items())  # nothing loaded
