"""The paper presets' ``about`` headers, ``gannorm list --presets``, their evaluation protocols and the commands
of docs/reproduction.md."""
import dataclasses
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import yaml

from gannorm import config as C
from gannorm.cli import main
from gannorm.errors import ConfigError
from gannorm.metrics.evaluate import metric_protocols
from gannorm.metrics.frechet import save_statistics
from gannorm.metrics.protocol import MetricProtocol

PAPER_FAMILIES = ("sngan_", "bssn_", "gn_", "pgn_", "biggan_", "celebahq", "projection_")
PAPER_PRESETS = [n for n in C.preset_names() if n.startswith(PAPER_FAMILIES)]
OWN_JOBS = [n for n in C.preset_names() if not n.startswith(PAPER_FAMILIES)]


def test_the_families_are_all_there():
    assert len([n for n in PAPER_PRESETS if n.startswith(("gn_", "pgn_"))]) == 24
    pgn = [n for n in PAPER_PRESETS if n.startswith("pgn_")]
    assert len(pgn) == 16
    assert {n + "_code" for n in pgn if not n.endswith("_code")} == {n for n in pgn if n.endswith("_code")}
    assert len([n for n in PAPER_PRESETS if n.startswith("bssn_")]) == 10
    assert {"sngan_cifar10_cnn", "sngan_cifar10_resnet", *GAMMA} <= set(PAPER_PRESETS)
    assert {"digits", "ring8", "digits_cond"} <= set(OWN_JOBS)
    assert {n for n in PAPER_PRESETS if n.startswith(("biggan_", "celebahq", "projection_"))} == set(CONDITIONAL)


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
        if name.startswith("pgn_") and name.endswith("_code"):  # the EDGAN code's choices
            assert cfg.about.follows == "code" and cfg.train.steps == 200_000
            assert ("the paper says hinge" in text) == ("_cnn" in name) and cfg.train.loss == ("ns" if "_cnn" in name
                                                                                             else "hinge")
            assert ("the paper says 500k" in text) == ("stl10" in name)
            # the CNN code's N(0, 0.02) init departs from the paper's Kaiming-normal; the ResNet code's G and D are it
            assert ("Kaiming-normal" in text) == ("_cnn" in name)
            assert cfg.model.d_init == ("normal" if "_cnn" in name else "kaiming")
        elif name.startswith("pgn_"):  # the PGN paper: hinge everywhere, Kaiming-normal G and D, 500k steps on STL-10
            assert cfg.about.follows == "paper" and cfg.train.loss == "hinge" and cfg.model.d_init == "kaiming"
            assert cfg.train.steps == (500_000 if "stl10" in name else 200_000)
            assert "the paper says hinge" not in text and "the paper says 500k" not in text
            assert cfg.model.g_init == "kaiming"  # as the paper says: no longer a deviation
        # the GN-GAN code's ResNet G is Kaiming-normal (every conv and linear): the ResNet presets of its family
        code_resnet_g = cfg.model.arch == "resnet" and name.startswith(("gn_", "pgn_", "celebahq"))
        paper_g = name.startswith("pgn_") and not name.endswith("_code")
        assert cfg.model.g_init == ("kaiming" if code_resnet_g or paper_g else "official"), name
        assert "no G init option" not in text and "G keeps its official init" not in text, name
        if name.startswith(("gn_", "pgn_")):  # the code's networks: G's BatchNorm2d(512), ResNet D bias + Kaiming
            if "_cnn" in name:
                assert cfg.model.g_options == {"bottom_bn": "channel"}
                if cfg.about.follows == "code":  # the code's N(0, 0.02) CNN init, no longer a deviation
                    assert cfg.model.d_init == "normal" and "D init:" not in text
            else:
                assert cfg.model.d_options == {"pool": "mean", "linear_bias": True} and cfg.model.d_init == "kaiming"
                assert "D init: variance scaling" not in text
        if name.startswith("gn_"):
            assert "first-order" in text and cfg.normalization.first_order_g
        if name.startswith(("gn_", "pgn_", "biggan_", "celebahq")):  # the GN-GAN code: the whole state dict
            # averaged, train-mode samples
            assert (cfg.train.ema_buffers, cfg.train.sample_mode) == ("average", "train")
        else:
            assert (cfg.train.ema_buffers, cfg.train.sample_mode) == ("copy", "eval")
        if name.startswith("bssn_"):  # the TF code differentiates through the on-the-fly iteration
            assert cfg.normalization.options["grad_through_vectors"] is True and "gradient through" not in text
    for name in OWN_JOBS:
        cfg = C.load(name)
        assert (cfg.train.ema_buffers, cfg.train.sample_mode) == ("copy", "eval")


PGN_PAPER = [n for n in PAPER_PRESETS if n.startswith("pgn_") and not n.endswith("_code")]


@pytest.mark.parametrize("name", PGN_PAPER)
def test_each_pgn_code_preset_differs_from_the_paper_preset_only_in_the_documented_keys(name):
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
        return out
    paper, code = C.load(name), C.load(name + "_code")
    a, b = flat(C.to_dict(paper)), flat(C.to_dict(code))
    assert set(a) == set(b)
    differing = {k for k in a if a[k] != b[k] and not k.startswith("about.")}
    expected = set()
    if "_cnn" in name:
        expected |= {"train.loss", "model.d_init", "model.g_init"}
        assert (a["train.loss"], b["train.loss"]) == ("hinge", "ns")
        assert (a["model.d_init"], b["model.d_init"]) == ("kaiming", "normal")
        assert (a["model.g_init"], b["model.g_init"]) == ("kaiming", "official")
    if "stl10" in name:
        expected.add("train.steps")
        assert (a["train.steps"], b["train.steps"]) == (500_000, 200_000)
    assert differing == expected
    assert (paper.about.follows, code.about.follows) == ("paper", "code")
    assert paper.about.paper == code.about.paper and paper.about.code == code.about.code
    # the raw files: the same keys, nothing defaulted differently
    raw_a, raw_b = (yaml.safe_load(C.resolve_path(n).read_text()) for n in (name, name + "_code"))
    assert raw_a.keys() == raw_b.keys() and raw_a["data"] == raw_b["data"] and raw_a["optim"] == raw_b["optim"]
    assert raw_a["normalization"] == raw_b["normalization"]


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


# ------------------------------------------------------------------------------------- evaluation protocols
#: the BSSN code's SN-with-gamma baselines (same_gamma-CNN), on its three datasets
GAMMA = [f"sngan_gamma_{d}" for d in ("cifar10", "stl10", "celeba")]
BSSN_CODE = [n for n in PAPER_PRESETS if n.startswith("bssn_")] + GAMMA
GN_CODE = [n for n in PAPER_PRESETS if n.startswith(("gn_", "pgn_"))]
SNGAN_COLLECTIONS = ["sngan_cifar10_cnn", "sngan_cifar10_resnet"]
#: the class-conditional and CelebA-HQ presets (the PGN paper's BigGAN and CelebA-HQ experiments, the projection D)
BIGGAN = ["biggan_cifar10", "biggan_cifar10_cr", "biggan_cifar10_pgn", "biggan_cifar10_pgn_cr"]
CELEBAHQ = [f"celebahq{r}_{m}" for r in (128, 256) for m in ("sn", "gn", "pgn")]
CONDITIONAL = [*BIGGAN, *CELEBAHQ, "projection_cifar10"]
#: the training-set sizes of the paper datasets (gannorm.data), to resolve num_real: all and the caps
DATASET_SIZES = {"cifar10": 50_000, "stl10": 100_000, "celeba": 202_599, "imagefolder": 1_281_167, "celebahq": 30_000}


def resolved(name):
    cfg = C.load(name)
    C.validate(cfg)
    options = C.evaluation_options(cfg)
    return cfg, metric_protocols(options.metrics, options, DATASET_SIZES[cfg.data.name])


def test_every_paper_preset_evaluates_during_training():
    assert set(BSSN_CODE) | set(GN_CODE) | set(SNGAN_COLLECTIONS) | set(CONDITIONAL) == set(PAPER_PRESETS)
    for name in PAPER_PRESETS:
        cfg, plans = resolved(name)
        metrics = {"fid"} if name in CELEBAHQ else {"fid", "is"}  # the PGN paper reports FID on CelebA-HQ
        assert cfg.train.eval_every > 0 and set(plans) == metrics and C.best_metric(cfg) == "fid", name
        if name in CELEBAHQ:
            continue
        assert plans["is"].num_samples == 50_000 and plans["is"].settings["splits"] == 10, name
        assert "evaluation: the code's" in " ".join(cfg.about.deviations), name


@pytest.mark.parametrize("name", BSSN_CODE)
def test_the_bssn_code_protocol(name):
    """Every 10k iterations; IS on 50k samples with the first 1000 logits; FID on 10k generated vs 5k real."""
    cfg, plans = resolved(name)
    assert cfg.train.eval_every == 10_000 and cfg.train.sample_mode == "eval"
    assert plans["is"] == MetricProtocol(50_000, None, {"splits": 10, "logits": 1000})
    assert plans["fid"] == MetricProtocol(10_000, 5_000, {"reference": None})


@pytest.mark.parametrize("name", CELEBAHQ)
def test_the_gn_gan_code_celebahq_protocol(name):
    """Every 1k steps, FID on 10k samples against the whole training set (the GN-GAN code's CelebA-HQ configs)."""
    cfg, plans = resolved(name)
    assert cfg.train.eval_every == 1_000 and cfg.data.name == "celebahq" and cfg.train.steps == 100_000
    assert plans["fid"] == MetricProtocol(10_000, DATASET_SIZES["celebahq"], {"reference": None})
    assert (cfg.train.n_dis, cfg.train.batch_size_d, cfg.train.ema_decay, cfg.train.real_hflip) == (5, 64, 0.9999, True)


def test_the_biggan_presets_follow_the_pgn_paper():
    """Batch 50, 4 D steps per G step, 125k G steps, flips, EMA 0.9999, K = 10; SN in G (the BigGAN code); PGN or
    SN on D; CR on the _cr ones only."""
    for name in BIGGAN:
        cfg = C.load(name)
        t, n = cfg.train, cfg.normalization
        assert (t.batch_size_d, t.batch_size_g, t.n_dis, t.steps, t.real_hflip, t.ema_decay) == (50, 50, 4, 125_000,
                                                                                                   True, 0.9999)
        assert cfg.model.arch == "biggan" and cfg.model.num_classes == 10 and n.g_method == "sn"
        assert (n.function, n.method) == (("pgn", "none") if "_pgn" in name else ("none", "sn"))
        assert (t.cr_weight > 0) == name.endswith("_cr")


@pytest.mark.parametrize("name", GN_CODE + SNGAN_COLLECTIONS + BIGGAN + ["projection_cifar10"])
def test_the_gn_gan_and_pytorch_gan_collections_protocol(name, tmp_path):
    """Every 5k steps; IS and FID on 50k samples, FID against the whole training set (or its statistics file)."""
    cfg, plans = resolved(name)
    size = DATASET_SIZES[cfg.data.name]
    assert cfg.train.eval_every == 5_000
    assert plans["is"] == MetricProtocol(50_000, None, {"splits": 10, "logits": 1008})
    assert plans["fid"] == MetricProtocol(50_000, size, {"reference": None})
    stats = tmp_path / "train.npz"
    save_statistics(stats, np.zeros(4), np.eye(4))
    with_file = C.load(name, [f"train.eval_protocol.fid.reference={stats}"])  # the preset's num_real stays; unused
    options = C.evaluation_options(with_file)
    assert metric_protocols(options.metrics, options, size)["fid"] == MetricProtocol(50_000, None,
                                                                                      {"reference": str(stats)})


def test_a_preset_evaluating_fewer_metrics_keeps_the_others_protocol_unused():
    cfg = C.load("bssn_cifar10_scale", ["train.eval_metrics=[fid]"])
    C.validate(cfg)
    options = C.evaluation_options(cfg)
    assert set(metric_protocols(options.metrics, options, 50_000)) == {"fid"}


# ------------------------------------------------------------------------------------- docs/reproduction.md
REPRODUCTION = Path(__file__).resolve().parents[1] / "docs" / "reproduction.md"


def commands(prefix):
    """Every ``prefix ...`` command written in backticks on the reproduction page, split as a shell would."""
    return [shlex.split(m) for m in re.findall(r"`(" + re.escape(prefix) + r" [^`]+)`", REPRODUCTION.read_text())]


def test_every_training_command_on_the_reproduction_page_validates():
    trains = [argv for argv in commands("gannorm train") if argv[2] != "PRESET"]  # PRESET: the page's pattern
    assert len(trains) >= 35
    for argv in trains:
        preset, overrides = argv[2], [a.replace("=DIR", "=/data") for a in argv[3:]]
        assert "data.root=/data" in overrides, argv
        C.validate(C.load(preset, overrides))
    assert {argv[2] for argv in trains} == set(PAPER_PRESETS)  # every paper preset has its cells


def test_every_sweep_on_the_reproduction_page_is_shipped():
    sweeps = {argv[2] for argv in commands("gannorm sweep")} - {"NAME"}  # NAME: the page's pattern
    assert sweeps == {f"bssn_{d}_{b}" for d in ("cifar10", "stl10", "celeba") for b in ("scale", "lr", "ndis5")}
    assert all((C.PRESET_DIR / "sweeps" / f"{name}.yaml").is_file() for name in sweeps)


def test_the_reproduction_page_claims_no_result():
    text = REPRODUCTION.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`gannorm train" in line]
    assert rows and all(line.rstrip().endswith("| not run (needs a GPU) |") for line in rows)
