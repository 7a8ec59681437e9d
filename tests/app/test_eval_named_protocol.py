"""``gannorm eval RUN --protocol NAME``: a named protocol's metrics, counts and settings, recorded in the result."""
import json

import pytest

from gannorm.app.evaluation import evaluate_run
from gannorm.app.training import train
from gannorm.cli import main
from gannorm.metrics.evaluate import EvalOptions
from gannorm.metrics.protocol import EVAL_PROTOCOLS, NamedProtocol
from gannorm.registry import Entry

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["data.name=digits", "data.resolution=8", "model.arch=cnn", "model.width=0.125", "model.z_dim=16",
        "train.batch_size_d=8", "train.batch_size_g=8", "train.steps=2", "train.log_every=2",
        "train.sample_every=1000", "train.checkpoint_every=1000", "train.eval_every=0", "train.progress=false",
        "train.tensorboard=false", "diagnostics.every=0", "train.ema_decay=0.5", "train.threads=1"]
TINY_PROTOCOL = NamedProtocol("a test paper", "train", "subset", 40, 30, metrics=("cfd", "cis"),
                              settings={"cis": {"splits": 5}}, description="40 samples vs 30 real digits")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    return train(None, [*TINY, f"train.out_dir={out}", "train.run_name=tiny"]).run_dir


@pytest.fixture
def tiny_protocol(monkeypatch):
    """A protocol the digits classifier can measure in a second (the papers' take thousands of Inception images)."""
    monkeypatch.setitem(EVAL_PROTOCOLS._entries, "tiny", Entry("tiny", TINY_PROTOCOL, TINY_PROTOCOL.description))


def test_eval_with_a_named_protocol_equals_its_options_written_out(run, tiny_protocol, tmp_path, capsys):
    assert main(["eval", str(run), "--protocol", "tiny", "-o", str(tmp_path / "named.json")]) == 0
    assert "protocol tiny: a test paper" in capsys.readouterr().out
    named = json.loads((tmp_path / "named.json").read_text())
    assert named["protocol"] == {"name": "tiny", "paper": "a test paper", "real_split": "train",
                                 "real_source": "subset", "num_generated": 40, "num_real": 30,
                                 "extractor": "inception", "resize": "legacy_tensorflow"}
    written = EvalOptions(metrics=("cfd", "cis"), num_samples=40, progress=False, protocol={
        "cfd": {"num_samples": 40, "num_real": 30}, "cis": {"num_samples": 40, "splits": 5}})
    plain = evaluate_run(run, written, tmp_path / "plain.json")
    assert set(named["results"]) == set(plain["results"]) == {"ema", "raw"}
    for kind, result in named["results"].items():
        assert result["protocol"].pop("protocol_name") == "tiny"
        assert result["metrics"] == plain["results"][kind]["metrics"]
        assert result["protocol"]["metrics"] == plain["results"][kind]["protocol"]["metrics"]
        assert result["protocol"]["metrics"]["cfd"]["num_real"] == 30
        assert result["protocol"]["metrics"]["cis"] == {"num_generated": 40, "splits": 5}


@pytest.mark.parametrize("args, message", [
    (["--num-samples", "5"], "--protocol tiny fixes the sample counts; drop --num-samples and --num-real"),
    (["--metric", "ckid"], "protocol tiny defines cfd, cis, not ckid"),
    (["--reference", "stats.npz"], "protocol tiny compares with a seeded subset of 30 training images, not with a "
                                   "statistics file; drop --reference"),
    (["--resize", "clean"], "protocol tiny resizes with legacy_tensorflow, not clean; drop --resize"),
])
def test_named_protocol_conflicts_are_one_line_errors(run, tiny_protocol, tmp_path, capsys, args, message):
    assert main(["eval", str(run), "--protocol", "tiny", *args, "-o", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "x.json").exists()


def test_a_test_split_protocol_needs_statistics(run, tmp_path, capsys):
    assert main(["eval", str(run), "--protocol", "test_10k", "-o", str(tmp_path / "x.json")]) == 2
    assert "compares with the test split" in capsys.readouterr().err


def test_an_explicit_resize_other_than_the_protocol_s_is_refused_even_the_default_one(run, tmp_path, capsys):
    """train_50k_pytorch resizes with pytorch_bilinear: --resize legacy_tensorflow (the default's name) is refused,
    as any other mode (before, the default's name was taken for no --resize and silently replaced)."""
    assert main(["eval", str(run), "--protocol", "train_50k_pytorch", "--resize", "legacy_tensorflow", "-o",
                 str(tmp_path / "x.json")]) == 2
    assert ("protocol train_50k_pytorch resizes with pytorch_bilinear, not legacy_tensorflow"
            in capsys.readouterr().err)
    assert not (tmp_path / "x.json").exists()


def test_an_existing_result_is_replaced_only_with_overwrite(run, tmp_path, capsys):
    mine = tmp_path / "mine.json"
    mine.write_text('{"precious": true}')
    args = ["eval", str(run), "--metric", "cfd", "--num-samples", "20", "--num-real", "20"]
    assert main([*args, "-o", str(mine)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err and mine.read_text() == '{"precious": true}'
    assert main([*args, "-o", str(mine), "--overwrite"]) == 0
    assert "cfd" in json.loads(mine.read_text())["results"]["raw"]["metrics"]
    # the default file in the run folder: written once, then refused, then replaced with --overwrite
    default = next(iter(run.glob("eval_step*.json")), None)
    if default is not None:
        default.unlink()
    assert main(args) == 0
    default = next(run.glob("eval_step*.json"))
    before = default.read_text()
    assert main(args) == 2
    assert "an earlier evaluation of step 2); pass --overwrite" in capsys.readouterr().err
    assert default.read_text() == before
    assert main([*args, "--overwrite"]) == 0
    default.unlink()
