"""The command line: list, demo, errors."""
import subprocess
import sys

import pytest

from gannorm.cli import main


def test_list_shows_every_method(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ["none", "sn", "ssn", "bsn", "bssn", "sn_gamma_shared", "sn_gamma_layer", "strict_sn"]:
        assert f"  {name} " in out


def test_demo_prints_the_variance_table(capsys):
    assert main(["demo", "--width", "0.125"]) == 0
    out = capsys.readouterr().out
    assert "== bssn (scale=1.4)" in out and "var. ratio" in out


def test_demo_numbers_follow_the_theory():
    from gannorm.app.demo import run_demo
    ratios = run_demo(width=0.25, print_fn=lambda *_: None)
    # strict SN divides by a larger sigma than SN: smaller effective variance in every conv layer
    for layer, r in ratios["sn"].items():
        if layer.startswith("features"):
            assert ratios["strict_sn"][layer] < r
    # BSSN's scale multiplies the variance by scale^2 relative to BSN
    assert ratios["bssn"]["linear"] == __import__("pytest").approx(1.96 * ratios["bsn"]["linear"], rel=1e-3)


def test_no_command_prints_help_and_fails():
    proc = subprocess.run([sys.executable, "-m", "gannorm.cli"], capture_output=True, text=True)
    assert proc.returncode == 2 and "usage: gannorm" in proc.stdout


def test_python_dash_m_gannorm_is_the_command_line():
    proc = subprocess.run([sys.executable, "-m", "gannorm", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("gannorm ")
    proc = subprocess.run([sys.executable, "-m", "gannorm", "train", "nosuchpreset"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().startswith("gannorm: error: unknown preset 'nosuchpreset'")


TINY = ["data.resolution=8", "model.width=0.125", "train.batch_size_d=8", "train.batch_size_g=8",
        "train.progress=false", "train.tensorboard=false", "train.steps=3"]


def test_train_then_sample(tmp_path, capsys):
    assert main(["train", "digits", *TINY, f"train.out_dir={tmp_path}", "train.run_name=r"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "r"
    assert f"run finished at generator step 3" in out and str(run / "samples.png") in out
    assert main(["sample", str(run), "-n", "10", "-o", str(tmp_path / "g.png")]) == 0
    from PIL import Image
    img = Image.open(tmp_path / "g.png")
    assert img.size[0] >= 64 * 4  # 10 samples on a 4-column grid, each cell enlarged to >= 64 px


def test_train_without_config_takes_overrides(tmp_path, capsys):
    assert main(["train", *TINY, f"train.out_dir={tmp_path}", "train.run_name=x"]) == 0
    assert (tmp_path / "x" / "checkpoint.pt").is_file()


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", "digits", "train.stepz=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("gannorm: error: unknown config key 'train.stepz'") and "\n" not in err
    assert main(["sample", str(tmp_path), "-n", "4"]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "is not a run folder" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written
    (tmp_path / "config.yaml").write_text("train:\n  steps: 3\n")
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "has no checkpoint.pt" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


def test_list_shows_networks_datasets_losses_presets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ["resnet", "mlp", "cifar10", "ring8", "hinge", "wasserstein", "digits", "bssn_cifar10_scale"]:
        assert word in out


def test_comparison_preset_trains_every_variant(tmp_path, capsys):
    assert main(["train", "compare_digits", *TINY, f"train.out_dir={tmp_path}", "train.eval_every=0"]) == 0
    out = capsys.readouterr().out
    for name in ["none", "sn", "bssn", "gn", "pgn", "wgan_gp", "r1"]:
        assert f"| {name} | finished | 3 |" in out
        assert (tmp_path / f"compare_digits-{name}" / "checkpoint.pt").is_file()


def test_overrides_may_follow_options(tmp_path, capsys):

    rc = main(["experiment", "variance", "--out", str(tmp_path), "--only", "lecun", "train.steps=1",
               "diagnostics.every=1", "model.width=0.125", "train.progress=false"])
    assert rc == 0 and (tmp_path / "experiment-variance" / "lecun" / "diagnostics.jsonl").is_file()
    with pytest.raises(SystemExit) as e:
        main(["experiment", "variance", "--out", str(tmp_path), "--bogus"])
    assert e.value.code == 2
