"""Typed configs: YAML, overrides, one-line errors, presets."""
import dataclasses
import typing

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
    ("train.stepz=1", "unknown config key 'train.stepz'; did you mean train.steps? (every key of train: "),
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


# ------------------------------------------------------------------------------------------ files
@pytest.mark.parametrize("content,message", [
    ("train:\n  steps: [1\n", r"is not valid YAML: .* at line 3, column 1 \(while parsing a flow sequence started "
                              r"at line 2\); fix the syntax"),
    ("- 1\n- 2\n", r"must hold a mapping of sections .*got a list"),
    ("hello\n", r"must hold a mapping of sections .*got a str"),
])
@pytest.mark.parametrize("reader", [C.load, C.load_variants])
def test_a_yaml_file_that_is_not_a_mapping_of_sections_is_one_line(tmp_path, content, message, reader):
    # load_variants reads the file first on `gannorm train FILE`: it once let PyYAML's error through
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(C.ConfigError, match=f"config file {path} " + message) as err:
        reader(str(path))
    assert "\n" not in str(err.value)


def test_a_binary_yaml_file_is_one_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(C.ConfigError, match="is not a text file"):
        C.load(str(path))


def test_an_unknown_preset_suggests_close_names():
    with pytest.raises(C.ConfigError, match=r"unknown preset 'digit'; did you mean digits or digits32\? known: "
                                            r"digits, .* \('gannorm list' shows all\)") as err:
        C.load("digit")
    assert len(str(err.value)) < 200


# ------------------------------------------------------------------------------------------ ranges
#: one out-of-range value per numeric key (independent of gannorm.config.RANGES, which must list the same keys)
OUT_OF_RANGE = {
    "data.resolution": 0, "data.workers": -1, "model.width": 0.0, "model.z_dim": 0, "model.num_classes": -1,
    "normalization.function_eps": -1e-3,
    "optim.lr_d": -1e-4, "optim.lr_g": 0.0, "optim.betas_d": [1.5, 0.9], "optim.betas_g": [0.5, 1.0],
    "optim.eps": 0.0, "optim.lr_decay_start": -1, "train.steps": 0, "train.n_dis": 0, "train.batch_size_d": 0,
    "train.batch_size_g": -2, "train.penalty_weight": -1.0, "train.penalty_every": 0, "train.weight_clip": -0.01,
    "train.ortho_reg": -1e-4, "train.cr_weight": -5.0, "train.cr_translate": 0.7, "train.ema_decay": 1.0,
    "train.ema_start": -1, "train.seed": -1, "train.threads": -1, "train.eval_every": -1, "train.dist_timeout": 0.0,
    "train.eval_num_samples": 1, "train.log_every": 0, "train.sample_every": 0, "train.checkpoint_every": 0,
    "train.num_samples_grid": 0, "diagnostics.every": -1, "diagnostics.batch_size": 1,
    "diagnostics.explode_growth": 0.0, "diagnostics.explode_abs": -1.0, "diagnostics.vanish_ratio": 0.0,
    "diagnostics.saturate_gap": -30.0,
}


def test_every_numeric_key_has_a_range():
    numeric = set()
    for section in ("data", "model", "normalization", "optim", "train", "diagnostics"):
        hints = typing.get_type_hints(type(getattr(C.Config(), section)))
        for name, tp in hints.items():
            if any(t in (int, float) for t in (tp, *typing.get_args(tp))):
                numeric.add(f"{section}.{name}")
    assert numeric == set(OUT_OF_RANGE) == {key for key, _ in C.RANGES}


@pytest.mark.parametrize("key", sorted(OUT_OF_RANGE))
def test_an_out_of_range_number_names_its_key(key):
    value = OUT_OF_RANGE[key]
    cfg = C.load("digits", [f"{key}={value}"])
    with pytest.raises(C.ConfigError, match=rf"^config key {key}: must be .*, got ") as err:
        validate(cfg)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("key", ["optim.lr_d", "model.width", "train.penalty_weight", "train.ema_decay",
                                 "normalization.function_eps", "diagnostics.explode_abs"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_float_key_must_be_finite(key, value):
    with pytest.raises(C.ConfigError, match=rf"^config key {key}: must be .*, got {value}$"):
        validate(C.load("digits", [f"{key}={value}"]))


def test_the_edges_of_the_ranges_are_accepted():
    validate(C.load("digits", ["train.ema_decay=0", "train.cr_translate=0", "train.weight_clip=0",
                               "train.penalty_weight=0", "normalization.function_eps=0", "optim.betas_d=[0.0, 0.999]",
                               "train.eval_num_samples=2", "train.eval_metrics=[cfd]", "train.seed=0",
                               "train.threads=0", "data.resolution=null",
                               "train.penalty_weight=null"]))  # cfd: 2 samples suffice


# ------------------------------------------------------------------------------------------ options
@pytest.mark.parametrize("override,message", [
    ("normalization.options.scale=0", r"config key normalization\.options\.scale: .*> 0"),
    ("normalization.options.scale=-1.4", r"config key normalization\.options\.scale: .*-1\.4"),
    ("normalization.options.n_power_iterations=0", r"config key normalization\.options\.n_power_iterations: .*>= 1"),
    ("normalization.options={}", r"config key normalization\.options\.scale: method 'bssn' needs it"),
    ("normalization.options.scael=1.4", r"config key normalization\.options: scael is not an option of method 'bssn'"),
    ("model.g_options={depth: 3}", r"config key model\.g_options: depth is not an option of network 'cnn' "
                                   r"\(allowed: slope, bottom_bn, extra_convs\)"),
    ("model.d_options={pool: avg}", r"config key model\.d_options: pool is not an option of network 'cnn'"),
    ("data.options={lmit: 3}",
     r"config key data\.options: lmit is not an option of dataset 'digits' \(allowed: none\)"),
    ("data.options={n: 3, m: 2}", r"config key data\.options: m, n are not options of dataset 'digits'"),
    ("model.arch=mlp", r"config key model\.arch: network 'mlp' is for vectors, but dataset 'digits' holds images; "
                       r"use one of cnn, dscnn, resnet"),
    ("data.resolution=12", r"config key data\.resolution: network 'cnn' supports any multiple of 8 .*not 12"),
    ("train.penalty=gp", r"config key train\.penalty: 'gp' is not one of none, wgan_gp"),
    ("train.eval_metrics=[fid, fidd]", r"config key train\.eval_metrics: 'fidd' is not one of"),
    ("model.d_init=he", r"config key model\.d_init: 'he' is not one of official, lecun"),
])
def test_method_network_and_dataset_options_are_checked(override, message):
    with pytest.raises(C.ConfigError, match=message) as err:
        validate(C.load("digits", [override]))
    assert "\n" not in str(err.value)


def test_a_vector_dataset_needs_a_vector_network():
    with pytest.raises(C.ConfigError, match="network 'cnn' is for images, but dataset 'ring8' holds vectors; "
                                            "use one of mlp"):
        validate(C.load("ring8", ["model.arch=cnn"]))
    validate(C.load("ring8"))


def test_option_errors_of_a_method_become_config_errors(monkeypatch):
    """A method's own check (``MethodSpec.check_options``) is reported under its full config key."""
    from gannorm.errors import OptionError
    from gannorm.normalizations import METHODS

    class Spec:  # a stand-in entry whose check refuses everything
        def __init__(self, real):
            self.real = real

        def __getattr__(self, name):
            return getattr(self.real, name)

        def check_options(self, options):
            raise OptionError("warmup", "warmup must be an integer >= 0, got -1")

    real = METHODS.get("sn")
    monkeypatch.setitem(METHODS._entries, "sn", dataclasses.replace(METHODS._entries["sn"], obj=Spec(real)))
    with pytest.raises(C.ConfigError, match=r"^config key normalization\.options\.warmup: warmup must be an integer"):
        validate(C.load("digits", ["normalization.method=sn", "normalization.options={}"]))


# ------------------------------------------------------------------------------------- train.eval_protocol
@pytest.mark.parametrize("overrides,message", [
    (["train.eval_protocol.fidd.num_samples=5"], r"config key train\.eval_protocol: 'fidd' is not a metric; known: "),
    (["train.eval_protocol.fid.num_samples=1"], r"config key train\.eval_protocol\.fid\.num_samples: must be an "
                                                r"integer >= 2, got 1"),  # checked, though digits does not evaluate fid
    (["train.eval_protocol.cis.splits=0"], r"config key train\.eval_protocol\.cis\.splits: must be an integer >= 1, "
                                           r"got 0"),
    (["train.eval_protocol.cis.num_samples=5"], r"config key train\.eval_protocol\.cis\.splits: 10 splits need at "
                                                r"least 10 generated samples, but num_samples is 5"),
    (["train.eval_num_samples=5"], r"config key train\.eval_protocol\.cis\.splits: 10 splits need at least 10 "
                                   r"generated samples, but num_samples is 5"),  # the default count, too
    (["train.eval_protocol.cfd.num_real=1"], r"config key train\.eval_protocol\.cfd\.num_real: must be an integer "
                                             r">= 2 or all, got 1"),
    (["train.eval_protocol.cis.num_real=100"], r"config key train\.eval_protocol\.cis\.num_real: cis reads no real "
                                               r"images; drop num_real"),
    (["train.eval_protocol.ckid.subset_size=2000"], r"config key train\.eval_protocol\.ckid\.subset_size: 2000 is more "
                                                    r"than the samples it draws from \(1000"),
    (["train.eval_metrics=[fid]", "train.eval_protocol.fid.reference=missing.npz"],
     r"config key train\.eval_protocol\.fid\.reference: no statistics file missing\.npz; write it with "
     r"'gannorm fid-stats DATASET -o missing\.npz'"),
    (["train.eval_protocol=[fid]"], r"config key train\.eval_protocol: \['fid'\] is not a mapping"),
])
def test_the_evaluation_protocol_is_checked(overrides, message):
    with pytest.raises(C.ConfigError, match="^" + message) as err:
        validate(C.load("digits", overrides))  # digits evaluates cfd, cis and ckid on 1,000 samples
    assert "\n" not in str(err.value)


def test_the_protocol_is_checked_when_it_is_used_or_given():
    validate(C.load("digits", ["train.eval_every=0", "train.eval_num_samples=5"]))  # nothing evaluates: no check
    with pytest.raises(C.ConfigError, match=r"train\.eval_protocol\.cis\.splits: must be"):
        validate(C.load("digits", ["train.eval_every=0", "train.eval_protocol.cis.splits=-1"]))  # a typo still is


def test_evaluation_options_carry_the_protocol():
    cfg = C.load("digits", ["train.seed=7", "train.eval_num_samples=300",
                            "train.eval_protocol={cis: {num_samples: 500, splits: 5}}"])
    options = C.evaluation_options(cfg)
    assert options.metrics == ("cfd", "cis", "ckid") and options.num_samples == 300 and options.seed == 7
    assert options.protocol == {"cis": {"num_samples": 500, "splits": 5}} and options.progress is False
    options.protocol["cis"]["splits"] = 2  # a copy of the mapping: the config is not changed through it
    assert cfg.train.eval_protocol == {"cis": {"num_samples": 500, "splits": 5}}
