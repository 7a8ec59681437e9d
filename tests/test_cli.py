"""The command line: list, demo, errors."""
import subprocess
import sys

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
    from gannorm.demo import run_demo
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
