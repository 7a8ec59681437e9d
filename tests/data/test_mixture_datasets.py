import math

import pytest
import torch

from gannorm.data import DatasetError, grid25_modes, load_dataset, ring8_modes


def _nearest(ds):
    return torch.cdist(ds.data, ds.modes).argmin(dim=1)


def test_ring8_modes_and_std():
    ds = load_dataset("ring8")
    assert ds.kind == "vector" and ds.shape == (2,) and len(ds) == 50_000
    assert ds.data.dtype == torch.float32 and ds.data.shape == (50_000, 2)
    assert ds.modes.shape == (8, 2) and ds.mode_std == 0.02
    assert torch.allclose(ds.modes.norm(dim=1), torch.full((8,), 2.0), atol=1e-6)
    angles = torch.atan2(ds.modes[:, 1].double(), ds.modes[:, 0].double()) % (2 * math.pi)
    assert torch.allclose(angles, torch.arange(8, dtype=torch.float64) * math.pi / 4, atol=1e-6)
    assert torch.equal(_nearest(ds), ds.labels)
    resid = ds.data - ds.modes[ds.labels]
    assert abs(float(resid.std()) - 0.02) < 0.0005
    for k in range(8):  # every mode is used and has the configured spread
        r = resid[ds.labels == k]
        assert len(r) > 5000 and abs(float(r.std()) - 0.02) < 0.001


def test_grid25_modes_and_std():
    ds = load_dataset("grid25")
    assert ds.modes.shape == (25, 2) and ds.mode_std == 0.05
    assert {tuple(m) for m in ds.modes.tolist()} == {(x, y) for x in (-4, -2, 0, 2, 4) for y in (-4, -2, 0, 2, 4)}
    assert torch.equal(_nearest(ds), ds.labels)
    resid = ds.data - ds.modes[ds.labels]
    assert abs(float(resid.std()) - 0.05) < 0.001
    assert torch.bincount(ds.labels, minlength=25).min() > 1500


def test_options():
    ds = load_dataset("ring8", n=1000, std=0.1, radius=3.0, seed=5)
    assert len(ds) == 1000 and ds.mode_std == 0.1
    assert torch.allclose(ds.modes, ring8_modes(3.0))
    ds = load_dataset("grid25", n=200, spacing=1.0)
    assert torch.allclose(ds.modes, grid25_modes(1.0)) and ds.modes.abs().max() == 2


def test_fixed_seeded_sample_and_deterministic_draws():
    a, b = load_dataset("ring8", n=500), load_dataset("ring8", n=500)
    assert torch.equal(a.data, b.data)
    assert not torch.equal(a.data, load_dataset("ring8", n=500, seed=1).data)
    x = a.sample(64, torch.Generator().manual_seed(3))
    y = a.sample(64, torch.Generator().manual_seed(3))
    assert torch.equal(x, y) and x.shape == (64, 2) and x.dtype == torch.float32


def test_get_returns_a_copy():
    ds = load_dataset("grid25", n=10)
    before = ds.data.clone()
    ds.get(torch.tensor([1, 2])).zero_()
    ds.get(torch.tensor(3)).zero_()
    assert torch.equal(ds.data, before)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n=0), "n must be a positive integer"), (dict(n=2.5), "n must be a positive integer"),
    (dict(std=-1), "std must be a positive number"), (dict(radius=float("inf")), "radius must be"),
    (dict(seed="x"), "seed must be an integer"), (dict(spacing=1.0), "unknown option.*allowed: n, std, radius, seed"),
    (dict(resolution=32), "resolution does not apply"),
])
def test_ring8_errors(kwargs, match):
    with pytest.raises(DatasetError, match=match):
        load_dataset("ring8", **kwargs)
