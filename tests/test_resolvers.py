"""The shared resolvers: device names (gannorm.devices), preset/sweep names or YAML paths
(gannorm.fileio.resolve_shipped), and the rank base under Shards and Ranks (gannorm.world)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from gannorm.config import PRESET_DIR, resolve_path
from gannorm.devices import resolve_device
from gannorm.errors import ConfigError, GannormError
from gannorm.fileio import resolve_shipped
from gannorm.metrics.sharding import Shards
from gannorm.training.distributed import Ranks
from gannorm.world import RankPlace


# ------------------------------------------------------------------------------------------ devices
def test_cpu_and_auto_without_a_gpu(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.parametrize("name, error, what, message", [
    ("tpu", GannormError, "--device", "--device 'tpu' is not a device (auto, cpu, cuda or cuda:N)"),
    ("meta", ConfigError, "config key train.device:",
     "config key train.device: 'meta' is not a device training runs on (auto, cpu, cuda or cuda:N)"),
    (2.5, GannormError, "--device", "--device 2.5 is not a device (auto, cpu, cuda or cuda:N)"),
    (None, GannormError, "--device", "--device None is not a device (auto, cpu, cuda or cuda:N)"),
])
def test_a_bad_name_is_one_line_naming_where_it_came_from(name, error, what, message):
    task = "training" if error is ConfigError else "evaluation"
    with pytest.raises(error) as info:
        resolve_device(name, what=what, task=task, error=error)
    assert type(info.value) is error and str(info.value) == message


def test_cuda_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^config key train\.device: cuda asks for a GPU, but none is available; "
                                          r"use cpu or auto$"):
        resolve_device("cuda", what="config key train.device:", error=ConfigError)


def test_a_gpu_index_past_the_last(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("auto") == torch.device("cuda")
    with pytest.raises(GannormError,
                       match=r"^--device cuda:2 names GPU 2, but this machine has 2 \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2", what="--device")


# ------------------------------------------------------------------------------------------ name or path
def _hint(name: str) -> str:
    return f"known: a, b (not {name})"


def test_a_name_is_the_shipped_file_and_a_yaml_path_is_itself(tmp_path):
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "a.yaml").write_text("x: 1\n")
    mine = tmp_path / "mine.yml"
    mine.write_text("x: 2\n")
    kw = dict(folder=shipped, what="thing", kind="preset", hint=_hint)
    assert resolve_shipped("a", **kw) == shipped / "a.yaml"
    assert resolve_shipped(str(mine), **kw) == mine
    assert resolve_shipped(mine, **kw) == mine
    with pytest.raises(ConfigError, match=r"^unknown preset 'b'; known: a, b \(not b\)$"):
        resolve_shipped("b", **kw)
    with pytest.raises(ConfigError, match=r"^thing file '.*nope\.yaml' not found \(or give a preset name: known"):
        resolve_shipped(str(tmp_path / "nope.yaml"), **kw)
    with pytest.raises(ConfigError, match=r"^thing '.*shipped' is a directory; give a YAML file in it or a preset "):
        resolve_shipped(str(shipped), **kw)
    with pytest.raises(ConfigError, match=r"^thing file: 'a\\x00b' is not a usable path"):
        resolve_shipped("a\x00b", **kw)


def test_presets_and_sweeps_resolve_through_it():
    from gannorm.app.sweep.spec import SWEEP_DIR, _resolve, sweep_names

    assert resolve_path("digits") == PRESET_DIR / "digits.yaml"
    name = sweep_names()[0]
    assert _resolve(name) == SWEEP_DIR / f"{name}.yaml"
    with pytest.raises(ConfigError, match=r"^unknown sweep 'nosuch'; known: " + name):
        _resolve("nosuch")


# ------------------------------------------------------------------------------------------ ranks
@pytest.mark.parametrize("cls", [RankPlace, Shards, Ranks])
def test_the_rank_base(cls):
    assert issubclass(cls, RankPlace)
    one = cls()
    assert (one.world, one.rank, one.distributed, one.main) == (1, 0, False, True)
    three = cls(3, 2)
    assert three.distributed and not three.main
    assert cls.current() == one  # no process group in the tests
    assert RankPlace.comm_device() == torch.device("cpu")
    with pytest.raises(ValueError, match="rank 3 does not fit a world of 3"):
        cls(3, 3)
    with pytest.raises(ValueError, match="rank 0 does not fit a world of 0"):
        cls(0, 0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        three.rank = 0  # type: ignore[misc]


def test_ranks_keep_their_own_fields():
    r = Ranks(4, 3, 1, 30.0)
    assert (r.world, r.rank, r.local_rank, r.timeout, r.loss_scale) == (4, 3, 1, 30.0, 0.25)
