"""Every normalization follows its model through ``.double()``, ``.to("meta")`` and ``.cuda()``.

A parametrization's state (power-iteration vectors, gammas, MSN's gain, bias and running mean) must
move with ``nn.Module._apply`` like any parameter or buffer; a subclass that shadows ``_apply`` (strict
SN once did) leaves its vectors behind on the old device or dtype.
"""
import copy

import pytest
import torch

import gannorm
from gannorm.networks import build_discriminator

#: a value for each option some method requires (looked up by option, never by method)
REQUIRED = {"scale": 1.3}
SHAPE = (3, 16, 16)
METHODS = gannorm.METHODS.names()
pytestmark = pytest.mark.usefixtures("one_thread")

ARCHS = ["cnn", "dscnn"]  # the SNGAN CNN, and a depthwise-separable D (DSSN's exact DFT sigma)


def build(method, arch="cnn"):
    options = {o: REQUIRED[o] for o in gannorm.METHODS.get(method).required_options()}
    torch.manual_seed(0)
    return build_discriminator(arch, SHAPE, width=0.125, normalization=method, normalization_options=options)


def tensors(model):
    """Every parameter and buffer, including the parametrizations' vectors, by state-dict name."""
    return dict(model.state_dict(keep_vars=True))


def test_the_models_hold_state_to_move():
    d = build("strict_sn")
    assert any(k.endswith("_u") for k in tensors(d)) and any(k.endswith("_v") for k in tensors(d))
    assert any(k.endswith("msn.running_mean") for k in tensors(build("msn")))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_double_moves_every_tensor_and_computes_the_same_function(method, arch):
    d32 = build(method, arch).eval()
    d64 = copy.deepcopy(d32).double()
    wrong = {k: t.dtype for k, t in tensors(d64).items() if t.is_floating_point() and t.dtype != torch.float64}
    assert not wrong, f"{method}: still not float64 after .double(): {wrong}"
    x = torch.rand(3, *SHAPE) * 2 - 1
    y64 = d64(x.double())
    assert y64.dtype == torch.float64
    torch.testing.assert_close(y64.float(), d32(x), rtol=1e-4, atol=1e-5)
    d64.train()(x.double()).sum().backward()  # the training-mode iteration runs in float64 too
    assert all(t.dtype == torch.float64 for t in tensors(d64).values() if t.is_floating_point())


@pytest.mark.parametrize("method", METHODS)
def test_to_meta_moves_every_tensor(method):
    d = build(method).to("meta")
    stray = sorted(k for k, t in tensors(d).items() if not t.is_meta)
    assert not stray, f"{method}: not on the meta device after .to('meta'): {stray}"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("method", METHODS)
def test_cuda_moves_every_tensor_and_runs(method, arch):
    d_cpu = build(method, arch).eval()
    d = copy.deepcopy(d_cpu).cuda()
    stray = sorted(k for k, t in tensors(d).items() if not t.is_cuda)
    assert not stray, f"{method}: not on cuda after .cuda(): {stray}"
    x = torch.rand(3, *SHAPE) * 2 - 1
    y = d(x.cuda())
    assert y.is_cuda
    torch.testing.assert_close(y.cpu(), d_cpu(x), rtol=1e-3, atol=1e-4)
    d.train()(x.cuda()).sum().backward()
    assert all(t.is_cuda for t in tensors(d).values())
