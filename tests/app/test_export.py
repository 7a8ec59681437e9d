"""``gannorm export``: a TorchScript generator that loads without gannorm and samples as ``gannorm sample`` does."""
import json
import os
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import DIGITS_CNN

from gannorm.app.export import EXTRA_FILE, read_info
from gannorm.app.sampling import sample
from gannorm.app.training import train
from gannorm.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [*DIGITS_CNN, "train.batch_size_d=8", "train.batch_size_g=8", "train.steps=3", "train.log_every=3",
        "train.sample_every=3", "train.checkpoint_every=3", "train.eval_every=0", "train.progress=false",
        "train.tensorboard=false", "diagnostics.every=0", "train.ema_decay=0.5"]

# Runs in a fresh interpreter in which gannorm cannot be imported at all: only torch loads the file.
LOAD_WITHOUT_GANNORM = r"""
import json, sys
class NoGannorm:
    def find_spec(self, name, path=None, target=None):
        if name == "gannorm" or name.startswith("gannorm."):
            raise ImportError("gannorm is blocked in this process")
sys.meta_path.insert(0, NoGannorm())
import torch
torch.set_num_threads(1)
path, n, seed, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
extra = {"gannorm.json": ""}
g = torch.jit.load(path, _extra_files=extra)
info = json.loads(extra["gannorm.json"])
z = torch.randn(n, info["z_dim"], generator=torch.Generator().manual_seed(seed))
with torch.no_grad():
    first, again = g(z), g(z)
assert torch.equal(first, again)
torch.save({"x": first, "info": info, "gannorm_loaded": any(m.startswith("gannorm") for m in sys.modules)}, out)
"""


def load_elsewhere(tmp_path, model, n, seed):
    out = tmp_path / "out.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", LOAD_WITHOUT_GANNORM, str(model), str(n), str(seed), str(out)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return torch.load(out, weights_only=True)


@pytest.mark.parametrize("extra", [[], ["train.sample_mode=train", "train.ema_buffers=average"]],
                         ids=["eval-mode", "train-mode"])
def test_the_exported_generator_gives_the_samples_of_gannorm_sample(tmp_path, extra):
    run = train(None, [*TINY, *extra, f"train.out_dir={tmp_path}"]).run_dir
    model = tmp_path / "G.pt"
    assert main(["export", str(run), "-o", str(model)]) == 0
    got = load_elsewhere(tmp_path, model, n=40, seed=7)
    assert got["gannorm_loaded"] is False
    mode = "train" if extra else "eval"
    assert got["info"] == {**got["info"], "z_dim": 16, "data_shape": [1, 8, 8], "output_range": [-1.0, 1.0],
                           "sample_mode": mode, "generator": "ema", "checkpoint": "latest", "step": 3}
    expected = sample(run, 40, seed=7)  # what `gannorm sample RUN -n 40 --seed 7` draws
    assert torch.equal(got["x"], expected)
    if extra:  # batch statistics: the samples depend on the batch, unlike eval mode
        assert not torch.equal(sample(run, 20, seed=7), expected[:20])
    else:
        assert torch.equal(sample(run, 20, seed=7), expected[:20])


def test_export_of_the_raw_generator_and_its_sidecar(tmp_path):
    run = train(None, [*TINY, f"train.out_dir={tmp_path}"]).run_dir
    model = tmp_path / "raw.pt"
    assert main(["export", str(run), "-o", str(model), "--no-ema"]) == 0
    info = read_info(model)
    assert (info.generator, info.sample_mode, info.z_dim) == ("raw", "eval", 16)
    got = load_elsewhere(tmp_path, model, n=8, seed=0)
    assert torch.equal(got["x"], sample(run, 8, seed=0, use_ema=False))
    assert not torch.equal(got["x"], sample(run, 8, seed=0))  # the EMA copy differs
    extra = {EXTRA_FILE: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated from torch 2.9 on
        torch.jit.load(str(model), _extra_files=extra)
    assert json.loads(extra[EXTRA_FILE])["z"].startswith("torch.randn(n, z_dim")


def test_export_refuses_an_existing_file_and_a_wrong_suffix(tmp_path, capsys):
    run = train(None, [*TINY, "train.steps=1", f"train.out_dir={tmp_path}"]).run_dir
    (tmp_path / "G.pt").write_bytes(b"keep")
    assert main(["export", str(run), "-o", str(tmp_path / "G.pt")]) == 2
    assert "already exists" in capsys.readouterr().err and (tmp_path / "G.pt").read_bytes() == b"keep"
    assert main(["export", str(run), "-o", str(tmp_path / "G.onnx")]) == 2
    assert "must be a .pt file" in capsys.readouterr().err
