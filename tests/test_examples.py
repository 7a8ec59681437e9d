"""The scripts in examples/ (your own training loop with gannorm) run with their CI settings (``--tiny``) and print
what they promise: a normalized D whose effective weights have sigma ~1 (checked against an SVD), losses that
move, probe records whose Lipschitz lower bound stays under the upper one, each health rule once per layer, and
finite FID/KID on folders of PNGs that rank a noisy copy farther than a second sample."""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gannorm.diagnostics import ProbeRecord

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(script: str, *args: str, cwd: Path) -> str:
    """Run ``examples/<script>`` in a fresh process with ``GANNORM_EXAMPLES_TINY=1``; its stdout."""
    env = {**os.environ, "GANNORM_EXAMPLES_TINY": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / script), *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def result_line(out: str) -> dict[str, str]:
    line = next(row for row in out.splitlines() if row.startswith("RESULT "))
    return dict(item.split("=", 1) for item in line.split()[1:])


def test_a_normalized_d_in_a_plain_loop(tmp_path):
    out = run_example("train_digits.py", "--method", "sn", "--out", "grid.png", cwd=tmp_path)
    result = result_line(out)
    assert result["steps"] == "3" and result["method"] == "sn"
    first, last = float(result["first_loss_d"]), float(result["last_loss_d"])
    assert math.isfinite(first) and math.isfinite(last) and first != last  # D trained
    svd = {m[1]: float(m[2]) for m in re.finditer(r"layer (\S+): sigma\(W_eff\) by SVD ([\d.]+), estimate of "
                                                  r"sigma\(W\) ([\d.]+)", out)}
    assert len(svd) == 8  # the SNGAN CNN D: 7 convs + linear, all normalized
    # W / sigma_estimate, and a power-iteration estimate never exceeds the true sigma: >= 1, and close to it
    assert all(0.999 <= s <= 1.1 for s in svd.values()), svd
    assert (tmp_path / "grid.png").stat().st_size > 0


def test_gradient_normalization_wraps_d(tmp_path):
    result = result_line(run_example("train_digits.py", "--method", "gn", cwd=tmp_path))
    # GN's output f / (||grad f|| + |f|) is bounded by 1: the hinge D loss stays in [0, 4] and G's in [-1, 1]
    assert 0.0 <= float(result["last_loss_d"]) <= 4.0 and -1.0 <= float(result["last_loss_g"]) <= 1.0
    assert result["first_loss_d"] != result["last_loss_d"]


def test_probes_and_health_warnings_in_a_loop(tmp_path):
    out = run_example("diagnostics_in_loop.py", "--explode-abs", "1e-3", "--jsonl", "d.jsonl", cwd=tmp_path)
    bounds = re.findall(r"probe step (\d+): loss_d \S+ Lipschitz bounds: lower (\S+) <= upper (\S+)", out)
    assert [int(s) for s, _, _ in bounds] == [0, 1, 2]  # --tiny: 2 steps, a probe at each and at the end
    assert all(0 < float(lo) <= float(up) and math.isfinite(float(up)) for _, lo, up in bounds), bounds
    warnings = re.findall(r"HEALTH exploding_gradient (\S+):", out)
    assert len(warnings) == len(set(warnings)) == 8  # every layer's gradient is over 1e-3, reported once
    records = [ProbeRecord.from_json(json.loads(line)) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r.step for r in records] == [0, 1, 2] and set(records[0].layers) == set(warnings)
    for record in records:  # an SN D: every layer has its sigma estimate and finite gradient norms
        assert all(layer.sigma is not None and layer.sigma > 0 and math.isfinite(layer.grad_raw)
                   for layer in record.layers.values())


@pytest.mark.slow  # the FID Inception on CPU: about 15 s of CPU
def test_fid_of_folders_of_pngs(tmp_path):
    out = run_example("folder_metrics.py", cwd=tmp_path)
    assert "features: FID Inception" in out
    results = {r["folder"]: r for r in (dict(i.split("=", 1) for i in line.split()[1:])
                                        for line in out.splitlines() if line.startswith("RESULT "))}
    assert set(results) == {"other", "noisy"} and all(r["n"] == "12" for r in results.values())
    fd = {k: float(r["fd"]) for k, r in results.items()}
    assert all(math.isfinite(v) and v > 0 for v in fd.values())
    assert fd["noisy"] > fd["other"]  # a noisy copy is farther from the digits than other digits are
    assert float(results["noisy"]["kid"]) > float(results["other"]["kid"])
