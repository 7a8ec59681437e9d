"""Loading torch's old and new spectral-norm state dicts."""
import pytest
import torch
from torch import nn

import gannorm


def net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.Flatten(),
                         nn.Linear(4 * 16 * 16, 1))


def apply_old(model):
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            torch.nn.utils.spectral_norm(m)
    return model


def apply_new(model):
    for m in model:
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            torch.nn.utils.parametrizations.spectral_norm(m)
    return model


@pytest.mark.parametrize("apply", [apply_old, apply_new])
def test_torch_sn_state_dicts_load_into_gannorm_sn(apply):
    src = apply(net())
    x = torch.randn(2, 3, 8, 8)
    for _ in range(3):
        src(x)
    src.eval()
    expected = src(x)
    ours = gannorm.normalize(net(), "sn")
    ours.load_state_dict(gannorm.convert_state_dict(src.state_dict(), ours))
    ours.eval()
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-6)


def test_old_files_without_v_and_plain_weights():
    src = apply_old(net())
    src(torch.randn(2, 3, 8, 8))
    sd = {k: v for k, v in src.state_dict().items() if not k.endswith("weight_v")}
    ours = gannorm.normalize(net(), "sn")
    ours.load_state_dict(gannorm.convert_state_dict(sd, ours))
    u = ours[0].parametrizations.weight[0]._u
    torch.testing.assert_close(u, sd["0.weight_u"])
    plain = net()
    bsn = gannorm.normalize(net(), "bsn")
    bsn.load_state_dict(gannorm.convert_state_dict(plain.state_dict(), bsn))
    torch.testing.assert_close(bsn[0].parametrizations.weight.original, plain[0].weight)


def test_sn_vectors_seed_bsn_first_pair_and_mismatches_are_refused_by_torch():
    src = apply_new(net())
    src(torch.randn(2, 3, 8, 8))
    bsn = gannorm.normalize(net(), "bsn")
    bsn.load_state_dict(gannorm.convert_state_dict(src.state_dict(), bsn))
    torch.testing.assert_close(bsn[0].parametrizations.weight[0]._u1, src[0].parametrizations.weight[0]._u)
    with pytest.raises(RuntimeError, match="size mismatch"):
        other = gannorm.normalize(nn.Sequential(nn.Conv2d(3, 5, 3)), "sn")
        other.load_state_dict(gannorm.convert_state_dict(apply_new(nn.Sequential(nn.Conv2d(3, 8, 3))).state_dict(),
                                                         other))
