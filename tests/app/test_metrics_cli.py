"""``gannorm metrics A B``: FID between two folders equals the FID of their ``gannorm fid-stats`` files, a run
side samples as ``gannorm eval`` does, arrays and folders of the same pixels give the same numbers, and bad
inputs are one-line errors.

The Inception tests use the offline fid-helper network (as the sharded fid-stats test does), built once for
the module; the others replace the Inception network by a small deterministic extractor of the same pixels
(a TF1 resize to 8x8, flattened; logits a fixed projection), so that they check the readers and the wiring,
not the network, in well under a second each.
"""
import json

import numpy as np
import pytest
import scipy.special
import torch
from PIL import Image

import gannorm.app.metrics_cli as mc
import gannorm.metrics.evaluate as ev
from gannorm.app.evaluation import evaluate_run, fid_stats
from gannorm.app.training import train
from gannorm.cli import main
from gannorm.metrics.evaluate import EvalOptions, FeatureExtractor
from gannorm.metrics.frechet import feature_statistics, frechet_distance, load_statistics, save_statistics
from gannorm.metrics.inception import preprocess
from gannorm.metrics.kid import kernel_inception_distance
from gannorm.metrics import prdc

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125", "model.z_dim=16",
        "train.batch_size_d=8", "train.batch_size_g=8", "train.steps=2", "train.log_every=2",
        "train.sample_every=1000", "train.checkpoint_every=1000", "train.eval_every=0", "train.progress=false",
        "train.tensorboard=false", "diagnostics.every=0", "train.ema_decay=0.5", "train.threads=1"]


def write_pngs(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two folders of 16x16 PNGs from different distributions (B in a sub-folder)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    one = write_pngs(root / "one", rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8))
    write_pngs(root / "two" / "nested", (rng.random((5, 16, 16, 3)) * 120).astype(np.uint8))
    return one, root / "two"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train(None, [*TINY, f"train.out_dir={out}", "train.run_name=tiny"]).run_dir


@pytest.fixture(scope="module")
def one_inception():
    """The fid-helper network built once per setting for the module (every build reads and converts its weights)."""
    real, built = ev.fid_inception_from_fid_helper, {}

    def once(**kwargs):
        key = tuple(sorted((k, str(v)) for k, v in kwargs.items()))
        if key not in built:
            built[key] = real(**kwargs)
        return built[key]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ev, "fid_inception_from_fid_helper", once)
        yield


# ------------------------------------------------------------------------------------ the Inception network
@pytest.mark.slow  # about a minute on 2 busy cores: 22 images through Inception
def test_fid_of_two_folders_equals_the_fid_of_their_fid_stats(folders, one_inception, tmp_path, capsys):
    one, two = folders
    s1, s2 = tmp_path / "one.npz", tmp_path / "two.npz"
    for folder, stats in ((one, s1), (two, s2)):
        fid_stats("imagefolder", stats, root=str(folder), resolution=16, backend="fid-helper", progress=False)
    want = frechet_distance(*load_statistics(s1), *load_statistics(s2))
    out = tmp_path / "r.json"
    assert main(["metrics", str(one), str(two), "--metric", "fid", "--backend", "fid-helper", "-o", str(out)]) == 0
    printed = capsys.readouterr().out.splitlines()
    result = json.loads(out.read_text())
    assert result["metrics"]["fid"]["value"] == pytest.approx(want, rel=1e-5) and want > 1
    assert printed == [f"fid    {result['metrics']['fid']['value']:.4f}"]
    assert result["protocol"]["metrics"]["fid"] == {"generated": "a", "real": "b", "num_generated": 4, "num_real": 5,
                                                    "reference": None}
    assert (result["a"]["images"], result["b"]["images"]) == (4, 5)
    # a statistics file on either side: the same FID
    assert main(["metrics", str(s2), str(one), "--backend", "fid-helper", "-o", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["metrics"]["fid"]["value"] == pytest.approx(want, rel=1e-5)


@pytest.mark.slow
def test_a_run_samples_as_gannorm_eval_does(run, folders, one_inception, tmp_path):
    _, two = folders
    stats = tmp_path / "two.npz"
    fid_stats("imagefolder", stats, root=str(two), resolution=16, backend="fid-helper", progress=False)
    evaluated = evaluate_run(run, EvalOptions(metrics=("fid",), num_samples=6, reference_stats=str(stats),
                                              inception_backend="fid-helper", progress=False), tmp_path / "e.json")
    out = tmp_path / "m.json"
    assert main(["metrics", str(run), str(two), "--num-samples", "6", "--backend", "fid-helper", "-o", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["a"]["kind"] == "run" and result["a"]["generator"] == "ema" and result["a"]["images"] == 6
    want = evaluated["results"]["ema"]["metrics"]["fid"]["value"]
    assert result["metrics"]["fid"]["value"] == pytest.approx(want, rel=1e-5) and want > 1


# ------------------------------------------------------------------------------------ a stand-in extractor
PROJECTION = torch.randn(3 * 64, 1008, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def stand_in_features(x):
    f = preprocess(x, size=8).flatten(1).double()
    return {"features": f.numpy(), "logits": (f @ PROJECTION).numpy()}


def stand_in(options, specs):  # noqa: ARG001
    return FeatureExtractor(stand_in_features, {"network": "stand-in"}, frozenset({"features", "logits"}))


@pytest.fixture
def no_inception(monkeypatch):
    monkeypatch.setattr(mc, "_build_inception", stand_in)
    monkeypatch.setattr(mc, "FEATURE_DIM", 3 * 64)  # the stand-in's features


def hand_is(logits, splits=10):
    p = scipy.special.softmax(logits[:, :1008], axis=1)
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(0, keepdims=True)
        scores.append(np.exp(np.mean(np.sum(part * (np.log(part) - np.log(py)), axis=1))))
    return np.mean(scores)


def test_sample_npz_folder_and_float_array_of_the_same_pixels_agree(run, folders, no_inception, tmp_path):
    _, two = folders
    npz = tmp_path / "x.npz"
    assert main(["sample", str(run), "-n", "12", "-o", str(npz)]) == 0
    u = np.load(npz)["samples"]  # uint8 [12, 8, 8, C]
    rgb = np.repeat(u, 3, axis=3) if u.shape[3] == 1 else u
    folder = write_pngs(tmp_path / "pngs", rgb)
    np.save(tmp_path / "f.npy", rgb.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1)
    args = ["--metric", "fid,kid,is", "--seed", "3"]
    results = []
    for side in (npz, folder, tmp_path / "f.npy"):
        out = tmp_path / f"{side.name}.json"
        assert main(["metrics", str(side), str(two), *args, "-o", str(out)]) == 0
        results.append(json.loads(out.read_text())["metrics"])
    fake = stand_in_features(torch.from_numpy(rgb.transpose(0, 3, 1, 2).copy()))
    real_images = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((two / "nested").glob("*.png"))]
    real = stand_in_features(torch.from_numpy(np.stack(real_images).transpose(0, 3, 1, 2).copy()))
    fid = frechet_distance(*feature_statistics(fake["features"]), *feature_statistics(real["features"]))
    kid, _ = kernel_inception_distance(fake["features"], real["features"], subsets=100, subset_size=5, seed=3)
    for got in results:
        assert got["fid"]["value"] == pytest.approx(fid, rel=1e-9)
        assert got["kid"]["value"] == pytest.approx(kid, rel=1e-9)
        assert got["is"]["value"] == pytest.approx(hand_is(fake["logits"]), rel=1e-9)


def test_precision_recall_density_coverage_between_two_inputs(run, no_inception, tmp_path):
    npz = tmp_path / "x.npz"
    assert main(["sample", str(run), "-n", "12", "-o", str(npz)]) == 0
    pixels = (np.random.default_rng(7).random((9, 8, 8, 3)) * 200).astype(np.uint8)
    folder = write_pngs(tmp_path / "real", pixels)
    out = tmp_path / "prdc.json"
    args = ["--metric", "precision,recall,density,coverage", "-o", str(out)]
    assert main(["metrics", str(npz), str(folder), *args]) == 0
    got = json.loads(out.read_text())["metrics"]
    u = np.load(npz)["samples"]
    rgb = np.repeat(u, 3, axis=3) if u.shape[3] == 1 else u
    fake = stand_in_features(torch.from_numpy(rgb.transpose(0, 3, 1, 2).copy()))["features"]
    real = stand_in_features(torch.from_numpy(pixels.transpose(0, 3, 1, 2).copy()))["features"]
    want = prdc(real, fake, nearest_k=5)
    assert 0 < want["recall"] + want["coverage"] + want["precision"]  # not a vacuous comparison
    for key in ("precision", "recall", "density", "coverage"):
        assert got[key]["value"] == pytest.approx(want[key], abs=1e-12)


def test_images_of_different_sizes_are_grouped_in_order():
    rng = np.random.default_rng(5)
    images = [torch.from_numpy(rng.integers(0, 256, (3, h, h), dtype=np.uint8)) for h in (8, 8, 12, 8, 8, 8)]
    batches = []

    def extract(x):
        batches.append(tuple(x.shape))
        return stand_in_features(x)

    got = mc.extract_images(images, extract, batch_size=2)
    assert batches == [(2, 3, 8, 8), (1, 3, 12, 12), (2, 3, 8, 8), (1, 3, 8, 8)]
    want = np.concatenate([stand_in_features(x[None])["features"] for x in images])
    np.testing.assert_allclose(got["features"], want, rtol=1e-12)


def test_two_statistics_files_need_no_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(mc, "_build_inception", lambda *a: pytest.fail("no network is needed"))
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(60, 4)) + 1
    save_statistics(tmp_path / "a.npz", *feature_statistics(a))
    save_statistics(tmp_path / "b.npz", *feature_statistics(b))
    assert main(["metrics", str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]) == 0
    want = frechet_distance(*feature_statistics(a), *feature_statistics(b))
    assert capsys.readouterr().out == f"fid    {want:.4f}\n"


def test_output_is_never_overwritten_without_overwrite(folders, no_inception, tmp_path, capsys):
    one, two = folders
    out = tmp_path / "r.json"
    out.write_text("keep")
    assert main(["metrics", str(one), str(two), "-o", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err and out.read_text() == "keep"
    assert main(["metrics", str(one), str(two), "-o", str(out), "--overwrite"]) == 0
    assert "fid" in json.loads(out.read_text())["metrics"]


@pytest.mark.parametrize("args, message", [
    (["--metric", "kid"], "is a statistics file: kid needs images on both sides (only fid reads statistics)"),
    (["--metric", "cfd"], "--metric cfd: gannorm metrics computes "),
    (["--metric", "intra_fid"], "intra_fid needs class labels"),
    (["--metric", "nope"], "unknown metric 'nope'"),
    (["--metric", ","], "--metric names no metric"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
])
def test_bad_requests_are_one_line_errors(folders, no_inception, tmp_path, capsys, args, message):
    one, _ = folders
    save_statistics(tmp_path / "s.npz", np.zeros(3), np.eye(3))
    assert main(["metrics", str(one), str(tmp_path / "s.npz"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gannorm: error: ") and message in err and err.count("\n") == 1


def test_too_few_images_and_statistics_as_the_measured_side(folders, no_inception, tmp_path, capsys):
    one, _ = folders
    write_pngs(tmp_path / "single", np.zeros((1, 8, 8, 3), np.uint8))
    save_statistics(tmp_path / "s.npz", np.zeros(3), np.eye(3))
    assert main(["metrics", str(tmp_path / "single"), str(one)]) == 2
    assert "holds 1 image; fid needs at least 2" in capsys.readouterr().err
    assert main(["metrics", str(tmp_path / "s.npz"), str(one), "--metric", "is"]) == 2
    assert "is a statistics file: is needs its images" in capsys.readouterr().err


@pytest.mark.slow
def test_two_ranks_give_the_numbers_of_one_process(folders, tmp_path):
    """``torchrun -m gannorm metrics`` on two gloo ranks: each reads and extracts its shard of both folders
    (blocks of 2 images: A's 4 split 2 + 2, B's 5 split 4 + 1), rank 0 gathers them and writes the numbers one
    process computes."""
    import os
    import subprocess
    import sys

    one, two = folders
    args = ["-m", "gannorm", "metrics", str(one), str(two), "--metric", "fid,kid", "--backend", "fid-helper",
            "--batch-size", "2"]
    single = tmp_path / "one.json"
    assert main([*args[2:], "-o", str(single)]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args,
           "-o", str(tmp_path / "two.json")]
    done = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("fid ") == 1  # rank 0 alone prints
    a, b = json.loads(single.read_text()), json.loads((tmp_path / "two.json").read_text())
    assert b["protocol"].pop("ranks") == 2
    for name in ("fid", "kid"):
        for key, value in a["metrics"][name].items():
            assert b["metrics"][name][key] == pytest.approx(value, rel=1e-6, abs=1e-12), (name, key)


# ------------------------------------------------------------------------------------ a class-conditional run
@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cruns")
    return train(None, [*TINY, "model.num_classes=10", f"train.out_dir={out}",
                        "train.run_name=ctiny"]).run_dir


def test_a_conditional_run_draws_its_classes_as_gannorm_eval_does(conditional_run, monkeypatch):
    import gannorm.app.metric_inputs as mi
    from gannorm.data import load_dataset
    source = mi.open_run(conditional_run, 37, 3, "latest", "cpu")
    assert source.description["labels"] == ev.CLASS_FREQUENCIES and source.description["label_seed"] == 3 + 2000
    digits = load_dataset("digits", None, 8)
    # the classes gannorm eval draws: the digits' labels at items drawn with replacement, from seed + 2000
    expected = digits.labels[torch.randint(len(digits.labels), (37,), generator=torch.Generator().manual_seed(2003))]
    calls = []
    real_generate = mi.generate
    monkeypatch.setattr(mi, "generate", lambda *a, labels=None, **k: calls.append(labels) or real_generate(
        *a, labels=labels, **k))
    source.read(0, 37)
    assert torch.equal(calls[0], torch.as_tensor(expected, dtype=torch.int64))
    # the dataset does not open here: uniform classes, and the record says why
    def missing(*args, **kwargs):
        raise mi.GannormError("no such folder: /nowhere")
    monkeypatch.setattr(mi, "load_dataset", missing)
    uniform = mi.open_run(conditional_run, 37, 3, "latest", "cpu")
    assert uniform.description["labels"].startswith("uniform over the classes") and "/nowhere" in \
        uniform.description["labels"]
    calls.clear()
    uniform.read(0, 37)
    want = torch.randint(10, (37,), generator=torch.Generator().manual_seed(2003))
    assert torch.equal(calls[0], want) and not torch.equal(calls[0], torch.as_tensor(expected, dtype=torch.int64))


# ------------------------------------------------------------------------------------ review fixes
def test_statistics_of_another_dimension_are_refused_before_any_extraction(folders, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(mc, "_build_inception", lambda *a: pytest.fail("refused before the network is built"))
    one, _ = folders
    save_statistics(tmp_path / "s8.npz", np.zeros(8), np.eye(8))
    save_statistics(tmp_path / "s4.npz", np.zeros(4), np.eye(4))
    out, s8, s4 = tmp_path / "r.json", tmp_path / "s8.npz", tmp_path / "s4.npz"
    for args, message in [([s8, s4], f"B ({s4}) holds 4-D statistics, A ({s8}) 8-D ones"),
                          ([one, s8], f"B ({s8}) holds 8-D statistics; fid of images compares Inception pool3 "
                           "features (2048-D)"),
                          ([s4, one], f"A ({s4}) holds 4-D statistics")]:
        assert main(["metrics", *map(str, args), "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gannorm: error: ") and message in err and err.count("\n") == 1
        assert not out.exists()


def test_a_value_error_of_frechet_distance_is_a_one_line_error(folders, no_inception, monkeypatch, tmp_path, capsys):
    one, _ = folders
    save_statistics(tmp_path / "s.npz", np.zeros(192), np.eye(192))
    assert main(["metrics", str(one), str(tmp_path / "s.npz")]) == 0  # the stand-in's 192-D features fit

    def refuse(*args, **kwargs):
        raise ValueError("mu and sigma\nhave other shapes")
    monkeypatch.setattr(ev, "frechet_distance", refuse)
    monkeypatch.setattr(mc, "frechet_distance", refuse)
    capsys.readouterr()
    for b in (tmp_path / "s.npz",):
        assert main(["metrics", str(one), str(b)]) == 2
        err = capsys.readouterr().err
        assert "fid against" in err and "mu and sigma have other shapes" in err and err.count("\n") == 1
    assert main(["metrics", str(tmp_path / "s.npz"), str(tmp_path / "s.npz")]) == 2
    err = capsys.readouterr().err
    assert "fid between" in err and "have other shapes" in err and err.count("\n") == 1


def test_statistics_of_another_resize_or_precision_are_warned_about(folders, no_inception, tmp_path, capsys):
    one, _ = folders
    f = stand_in_features(torch.stack([torch.from_numpy(np.asarray(Image.open(p).convert("RGB")).transpose(2, 0, 1)
                                                        .copy()) for p in sorted(one.glob("*.png"))]))["features"]
    mu, sigma = feature_statistics(np.concatenate([f, f + 1]))
    ev.save_inception_statistics(tmp_path / "clean.npz", mu, sigma, "bf16", resize="clean")
    ev.save_inception_statistics(tmp_path / "same.npz", mu, sigma, "fp32", resize="legacy_tensorflow")
    save_statistics(tmp_path / "none.npz", mu, sigma)  # records neither: legacy_tensorflow, fp32
    capsys.readouterr()
    assert main(["metrics", str(one), str(tmp_path / "clean.npz")]) == 0
    err = capsys.readouterr().err.splitlines()
    warned = [line for line in err if line.startswith("gannorm: warning: ")]
    assert len(warned) == 2
    assert "fid compares legacy_tensorflow-resized Inception features with" in warned[0] and "resize clean" in warned[0]
    assert "fid compares fp32 Inception features with" in warned[1] and "computed in bf16" in warned[1]
    for clean_side in ("a", "b"):
        pair = [tmp_path / "none.npz", tmp_path / "clean.npz"][::1 if clean_side == "b" else -1]
        assert main(["metrics", *map(str, pair)]) == 0
        warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("gannorm: warning: ")]
        assert len(warned) == 2
        assert "resize legacy_tensorflow, as it records none" in warned[0] and "resize clean)" in warned[0]
        assert "precision fp32, as it records none" in warned[1] and "precision bf16)" in warned[1]
    same, none = tmp_path / "same.npz", tmp_path / "none.npz"
    for quiet in ([one, same], [one, none], [same, none],
                  [one, tmp_path / "clean.npz", "--resize", "clean", "--precision", "bf16"]):
        assert main(["metrics", *map(str, quiet)]) == 0
        assert "warning" not in capsys.readouterr().err


def test_too_few_images_for_the_default_splits_or_nearest_k_are_refused_when_planned(folders, run, monkeypatch,
                                                                                       tmp_path, capsys):
    monkeypatch.setattr(mc, "_build_inception", lambda *a: pytest.fail("refused before the network is built"))
    one, two = folders  # 4 and 5 images
    many = write_pngs(tmp_path / "many", np.random.default_rng(4).integers(0, 256, (12, 8, 8, 3), dtype=np.uint8))
    for args, message in [([one, two, "--metric", "is"], f"A ({one}) holds 4 images; is needs at least 10 (10 splits): "
                           "give more images"),
                          ([one, many, "--metric", "kid,recall"], f"A ({one}) holds 4 images; recall needs at least 6 "
                           "(nearest_k 5): give more images"),
                          ([many, two, "--metric", "coverage"], f"B ({two}) holds 5 images; coverage needs at least 6 "
                           "(nearest_k 5): give more images"),
                          ([run, many, "--metric", "is", "--num-samples", "4"], "holds 4 images; is needs at least 10 "
                           "(10 splits): raise --num-samples")]:
        assert main(["metrics", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("gannorm: error: ") and message in err and err.count("\n") == 1
    assert mc._plan_metric("is", {"a": mc.open_source(many), "b": mc.open_source(two)}).fake == "a"  # 10 splits fit 12
