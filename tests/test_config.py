"""Typed configs: YAML, overrides, one-line errors, presets."""
import pytest

from gannorm import config as C
from gannorm.config import validate


def test_overrides_are_typed():
    cfg = C.load(None, ["train.steps=10", "optim.lr_d=1e-4", "optim.betas_d=[0.0, 0.9]",
                        "normalization.options.scale=1.4", "data.options={limit: 5}", "train.run_name=x",
                        "data.resolution=null", "train.tensorboard=false"])
    assert cfg.train.steps == 10 and cfg.optim.lr_d == 1e-4 and cfg.optim.betas_d == (0.0, 0.9)
    assert cfg.normalization.options == {"scale": 1.4} and cfg.data.options == {"limit": 5}
    assert cfg.data.resolution is None and cfg.train.tensorboard is False


@pytest.mark.parametrize("override,message", [
    ("train.stepz=1", "unknown config key 'train.stepz'; allowed in train: steps, n_dis"),
    ("train.steps=abc", "config key train.steps: 'abc' is not int"),
    ("optim.lr_decay=cosine", "config key optim.lr_decay: 'cosine' is not one of none, linear"),
    ("trian.steps=1", "unknown config key 'trian'; allowed: data, model, normalization, optim, train"),
    ("train.steps", "override 'train.steps' is not key=value"),
    ("optim.betas_d=[0.5]", "config key optim.betas_d: [0.5] is not a list of float, float"),
    ("train=3", "config key train: expected a mapping of its fields"),
])
def test_bad_overrides_are_one_line_errors(override, message):
    with pytest.raises(C.ConfigError) as err:
        C.load(None, [override])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_yaml_file_and_errors(tmp_path):
    good = tmp_path / "x.yaml"
    good.write_text("train:\n  steps: 7\n  loss: ns\noptim:\n  lr_g: 1e-4\n")
    cfg = C.load(str(good), ["train.steps=8"])
    assert cfg.train.steps == 8 and cfg.train.loss == "ns" and cfg.optim.lr_g == 1e-4
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  steps: [1\n")
    with pytest.raises(C.ConfigError, match="not valid YAML"):
        C.load(str(bad))
    with pytest.raises(C.ConfigError, match="not found"):
        C.load(str(tmp_path / "missing.yaml"))
    with pytest.raises(C.ConfigError, match="unknown preset 'nope'; known: .*digits"):
        C.load("nope")


def test_round_trip_through_yaml():
    cfg = C.load("digits", ["optim.betas_g=[0.0, 0.9]"])
    again = C.from_dict(__import__("yaml").safe_load(C.dump(cfg)))
    assert again == cfg


@pytest.mark.parametrize("name", C.preset_names())
def test_every_preset_loads_and_validates(name):
    cfg = C.load(name)
    validate(cfg)
    from gannorm.networks import build_discriminator
    # the discriminator and normalization options of the preset are accepted (tiny width, no data needed)
    shape = (3, cfg.data.resolution, cfg.data.resolution) if cfg.data.resolution else (2,)
    if cfg.data.name == "digits" or cfg.data.name == "mnist5k":
        shape = (1, cfg.data.resolution, cfg.data.resolution)
    build_discriminator(cfg.model.arch, shape, width=1 / 64, normalization=cfg.normalization.method,
                        normalization_options=dict(cfg.normalization.options), **cfg.model.d_options)
