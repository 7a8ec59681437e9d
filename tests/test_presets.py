"""The paper presets' ``about`` headers and ``gannorm list --presets``."""
import dataclasses

import pytest
import yaml

from gannorm import config as C
from gannorm.cli import main
from gannorm.errors import ConfigError

PAPER_FAMILIES = ("sngan_", "bssn_", "gn_", "pgn_")
PAPER_PRESETS = [n for n in C.preset_names() if n.startswith(PAPER_FAMILIES)]
OWN_JOBS = [n for n in C.preset_names() if not n.startswith(PAPER_FAMILIES)]


def test_the_families_are_all_there():
    assert len([n for n in PAPER_PRESETS if n.startswith(("gn_", "pgn_"))]) == 16
    assert len([n for n in PAPER_PRESETS if n.startswith("bssn_")]) == 10
    assert {"sngan_cifar10_cnn", "sngan_cifar10_resnet", "sngan_gamma_cifar10"} <= set(PAPER_PRESETS)
    assert {"digits", "ring8"} <= set(OWN_JOBS)


@pytest.mark.parametrize("name", PAPER_PRESETS)
def test_every_paper_preset_has_a_header(name):
    raw = yaml.safe_load(C.resolve_path(name).read_text())
    assert set(raw["about"]) == {"paper", "code", "follows", "deviations"}  # written in the file, not defaulted
    about = C.load(name).about
    assert about.paper not in ("", "none") and about.code and about.follows in ("paper", "code")
    assert about.deviations and all(isinstance(d, str) and len(d) > 20 for d in about.deviations)


@pytest.mark.parametrize("name", OWN_JOBS)
def test_own_jobs_name_no_paper(name):
    assert C.load(name).about.paper == "none"


def test_what_the_headers_say_about_each_family():
    for name in PAPER_PRESETS:
        text = " ".join(C.load(name).about.deviations)
        cfg = C.load(name)
        if name.startswith("pgn_"):
            assert ("the paper says hinge" in text) == ("_cnn" in name) and cfg.train.loss == ("ns" if "_cnn" in name
                                                                                             else "hinge")
            assert ("the paper says 500k" in text) == ("stl10" in name) and cfg.train.steps == 200_000
            assert "Kaiming-normal" in text
        if name.startswith("gn_"):
            assert "first-order" in text and cfg.normalization.first_order_g
        if name.startswith(("gn_", "pgn_")):  # the GN-GAN code: the whole state dict averaged, train-mode samples
            assert (cfg.train.ema_buffers, cfg.train.sample_mode) == ("average", "train")
        else:
            assert (cfg.train.ema_buffers, cfg.train.sample_mode) == ("copy", "eval")
        if name.startswith("bssn_"):  # the TF code differentiates through the on-the-fly iteration
            assert cfg.normalization.options["grad_through_vectors"] is True and "gradient through" not in text
    for name in OWN_JOBS:
        cfg = C.load(name)
        assert (cfg.train.ema_buffers, cfg.train.sample_mode) == ("copy", "eval")


def test_the_header_is_kept_checked_and_never_trained_on(tmp_path):
    cfg = C.load("gn_cifar10_cnn")
    assert C.from_dict(yaml.safe_load(C.dump(cfg))) == cfg  # config.yaml of a run keeps it
    plain = dataclasses.replace(cfg, about=C.AboutConfig())
    assert C.to_dict(plain) | {"about": None} == C.to_dict(cfg) | {"about": None}
    bad = tmp_path / "bad.yaml"
    bad.write_text("about: {paper: x, follows: maybe}\n")
    with pytest.raises(ConfigError, match="config key about.follows: 'maybe' is not one of paper, code, none"):
        C.load(str(bad))
    bad.write_text("about: {papers: x}\n")
    with pytest.raises(ConfigError, match="unknown config key 'about.papers'"):
        C.load(str(bad))


def test_list_presets_prints_paper_follows_and_deviations(capsys):
    assert main(["list", "--presets"]) == 0
    out = capsys.readouterr().out
    assert "normalization methods" not in out  # only the presets
    for name in PAPER_PRESETS:
        about = C.load(name).about
        block = out.split(f"\n{name}\n", 1)[1].split("\n\n", 1)[0]
        assert about.paper in block and f"follows     {about.follows} ({about.code})" in block
        assert all(d in block for d in about.deviations)
    for name in OWN_JOBS:
        assert f"\n{name}: gannorm's own job (no paper)" in out
