"""The command line: list, demo, errors."""
import subprocess
import sys

import pytest
from conftest import TINY_DIGITS

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


TINY = [*TINY_DIGITS, "train.steps=3"]


def test_train_then_sample(tmp_path, capsys):
    assert main(["train", "digits", *TINY, f"train.out_dir={tmp_path}", "train.run_name=r"]) == 0
    out = capsys.readouterr().out
    run = tmp_path / "r"
    assert "run finished at generator step 3" in out and str(run / "samples.png") in out
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
    for limit in ("0", "-1", "nan", "inf"):  # checked before the run folder is read
        assert main(["sample", str(tmp_path), "-n", "4", "--memory-limit", limit]) == 2
        err = capsys.readouterr().err.strip()
        want = f"gannorm: error: --memory-limit must be a finite number > 0, got {float(limit)} (MiB)"
        assert err.startswith(want), err


def test_list_shows_networks_datasets_losses_presets(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ["resnet", "mlp", "cifar10", "ring8", "hinge", "wasserstein", "digits", "bssn_cifar10_scale"]:
        assert word in out


def test_comparison_preset_trains_every_variant(tmp_path, capsys):
    assert main(["train", "compare_digits", *TINY, f"train.out_dir={tmp_path}", "train.eval_every=0"]) == 0
    out = capsys.readouterr().out
    for name in ["none", "sn", "bssn", "gn", "pgn", "wgan_gp", "r1", "batch_norm", "layer_norm", "weight_norm"]:
        assert f"| {name} | finished | 3 |" in out
        assert (tmp_path / f"compare_digits-{name}" / "checkpoint.pt").is_file()


def test_overrides_may_follow_options(tmp_path, capsys):

    rc = main(["experiment", "variance", "--out", str(tmp_path), "--only", "lecun", "train.steps=1",
               "diagnostics.every=1", "model.width=0.125", "train.progress=false"])
    assert rc == 0 and (tmp_path / "experiment-variance" / "lecun" / "diagnostics.jsonl").is_file()
    with pytest.raises(SystemExit) as e:
        main(["experiment", "variance", "--out", str(tmp_path), "--bogus"])
    assert e.value.code == 2


# ------------------------------------------------------------------------------------------ errors
def test_a_bug_shows_its_traceback_and_says_so(monkeypatch, capsys):
    """Only user mistakes are one line: any other exception is gannorm's bug (traceback, exit 1)."""
    import gannorm.cli as cli

    def broken(args):
        raise ValueError("an internal invariant failed")

    monkeypatch.setattr(cli, "_cmd_list", broken)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ValueError: an internal invariant failed" in err
    assert err.strip().splitlines()[-1].startswith("gannorm: this is a bug in gannorm (ValueError)")


@pytest.mark.parametrize("error,line", [
    (__import__("gannorm.errors").errors.GannormError("two\n  lines"), "gannorm: error: two lines"),
    (PermissionError(13, "Permission denied", "/x/y.png"),
     "gannorm: error: Permission denied: /x/y.png (check the path and its permissions)"),
    (FileNotFoundError("no statistics file at s.npz"), "gannorm: error: no statistics file at s.npz"),
])
def test_user_errors_and_file_errors_are_one_line_exit_2(monkeypatch, capsys, error, line):
    import gannorm.cli as cli

    def fails(args):
        raise error

    monkeypatch.setattr(cli, "_cmd_list", fails)
    assert main(["list"]) == 2
    assert capsys.readouterr().err == line + "\n"


def test_argparse_errors_have_the_same_form(capsys):
    with pytest.raises(SystemExit) as e:
        main(["sample", "run", "-n", "many"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gannorm: error: argument -n/--num: invalid int value: 'many' (see 'gannorm sample --help')")
    assert err.count("\n") == 1


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", "digits", *TINY, "train.steps=2", "train.eval_every=0", "diagnostics.every=0",
                 f"train.out_dir={out}", "train.run_name=r"]) == 0
    return out / "r"


def test_sample_refuses_an_existing_output_unless_overwrite(tiny_run, tmp_path, capsys):
    out = tmp_path / "g.png"
    out.write_bytes(b"older")
    assert main(["sample", str(tiny_run), "-n", "4", "-o", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == b"older"
    assert main(["sample", str(tiny_run), "-n", "4", "-o", str(out), "--overwrite"]) == 0
    assert out.read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.png"]  # no temporary file left


def test_sample_creates_missing_folders_of_its_output(tiny_run, tmp_path):
    assert main(["sample", str(tiny_run), "-n", "4", "-o", str(tmp_path / "a" / "b" / "g.png")]) == 0
    assert (tmp_path / "a" / "b" / "g.png").is_file()


@pytest.mark.parametrize("args,message", [
    (["-n", "0"], "the number of samples must be >= 1, got 0 (-n)"),
    (["-o", "{tmp}/g.jpg"], "output {tmp}/g.jpg must be a .png file (give -o NAME.png)"),
    (["-o", "{tmp}"], "output {tmp} is a folder; give a file name (e.g. -o {tmp}/out.png)"),
])
def test_sample_arguments_are_checked(tiny_run, tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["sample", str(tiny_run), *args]) == 2
    assert capsys.readouterr().err == f"gannorm: error: {message.replace('{tmp}', str(tmp_path))}\n"
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args,message", [
    (["--metric", "fidd"], "gannorm: error: unknown metric 'fidd'; known: "),
    (["--num-samples", "1"], "gannorm: error: --num-samples must be >= 2, got 1"),
    (["--metric", "fid", "--num-samples", "4", "--inception-weights", "{tmp}/none.pth"],
     "gannorm: error: FID Inception weights not found: weights_path='{tmp}/none.pth' does not exist"),
    (["--reference", "{tmp}/ref.npz"], "gannorm: error: --reference: {tmp}/ref.npz: not an npz archive"),
])
def test_eval_arguments_are_checked_before_any_work(tiny_run, tmp_path, capsys, args, message):
    import numpy as np
    with open(tmp_path / "ref.npz", "wb") as fh:  # a single .npy array under an .npz name
        np.save(fh, np.zeros(3))
    before = sorted(tmp_path.iterdir())
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["eval", str(tiny_run), *args, "-o", str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message.replace("{tmp}", str(tmp_path))) and err.count("\n") == 1
    assert sorted(tmp_path.iterdir()) == before


def test_fid_stats_refuses_an_existing_output(tmp_path, capsys):
    out = tmp_path / "s.npz"
    out.write_bytes(b"older")
    assert main(["fid-stats", "digits", "-o", str(out)]) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == b"older"


def test_a_model_that_cannot_be_built_leaves_no_run_folder(tmp_path):
    """The run folder is created only once the data and both networks are built."""
    rc = main(["train", "digits", *TINY, "model.d_options={extra_convs: -1}", f"train.out_dir={tmp_path}"])
    assert rc != 0 and not any(tmp_path.iterdir())
    rc = main(["train", "digits", *TINY, "data.name=npy", f"data.root={tmp_path / 'missing.npy'}",
               f"train.out_dir={tmp_path}"])
    assert rc == 2 and not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------------ --precision
@pytest.mark.parametrize("command", [["eval", "RUN"], ["fid-stats", "digits", "-o", "s.npz"]])
def test_a_bad_precision_is_one_line_and_exit_2(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, "--precision", "fp16"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gannorm: error: argument --precision: invalid choice: 'fp16'") and err.count("\n") == 1


def test_eval_passes_the_precision_on_and_warns_about_a_reference_of_another(tiny_run, tmp_path, capsys, monkeypatch):
    """--precision reaches the evaluation's options; a reference file of another precision is one line on stderr."""
    import numpy as np
    import gannorm.app.evaluation as evaluation
    from gannorm.metrics.evaluate import save_inception_statistics
    seen = []

    def fake_evaluation(generator, mode, data, z_dim, options, device="cpu"):
        seen.append(options.inception_precision)
        return {"metrics": {"fid": {"value": 1.5}},
                "protocol": {"num_generated": 4, "num_real": 0, "real_split": "none",
                             "inception_precision": options.inception_precision,
                             "metrics": {"fid": {"num_generated": 4, "reference": str(ref)}}}}
    monkeypatch.setattr(evaluation, "evaluate_generator", fake_evaluation)
    ref = tmp_path / "ref.npz"
    save_inception_statistics(ref, np.zeros(3), np.eye(3), "fp32")
    args = ["eval", str(tiny_run), "--metric", "fid", "--num-samples", "4", "--reference", str(ref),
            "-o", str(tmp_path / "e.json")]
    assert main([*args, "--precision", "bf16"]) == 0
    out, err = capsys.readouterr()
    assert seen and set(seen) == {"bf16"}
    (line,) = err.splitlines()
    assert line.startswith(f"gannorm: warning: fid compares bf16 Inception features with {ref}, computed in fp32; ")
    assert "Inception in bf16" in out
    seen.clear()
    assert main([*args, "--overwrite"]) == 0  # the default, fp32, as the file was: no warning
    out, err = capsys.readouterr()
    assert seen and set(seen) == {"fp32"} and err == "" and "Inception in" not in out
