"""The fast-gradient convolution equals PyTorch's native one in value and in derivatives of order 1-3."""
import pytest
import torch
from torch import nn

from gannorm.fastgrad import conv2d, fast_conv_grads
from gannorm.gradnorm import gradient_normalize

GEOMETRIES = [  # (c_in, c_out, kernel, stride, padding, dilation, groups, size)
    (3, 4, 3, 1, 1, 1, 1, 6),
    (2, 4, 4, 2, 1, 1, 1, 7),     # odd size with stride 2: needs output padding in the transpose
    (4, 6, 3, 2, 0, 2, 2, 9),     # dilation and groups
    (3, 3, (1, 3), (2, 1), (0, 2), 1, 3, 5),  # depthwise, rectangular kernel
]


def _native(x, w, b, k, s, p, d, g):
    return torch.conv2d(x, w, b, s, p, d, g)


@pytest.mark.parametrize("ci,co,k,s,p,d,g,n", GEOMETRIES)
def test_values_and_gradients_match_native(ci, co, k, s, p, d, g, n):
    torch.manual_seed(0)
    ks = (k, k) if isinstance(k, int) else k
    x = torch.randn(2, ci, n, n, dtype=torch.float64, requires_grad=True)
    w = torch.randn(co, ci // g, *ks, dtype=torch.float64, requires_grad=True)
    b = torch.randn(co, dtype=torch.float64, requires_grad=True)
    ours = conv2d(x, w, b, s, p, d, g)
    ref = torch.conv2d(x, w, b, s, p, d, g)
    torch.testing.assert_close(ours, ref)
    # second order: gradient of a function of the input gradient, against the native double backward
    v = torch.randn_like(ref)
    outs = []
    for fn in (conv2d, torch.conv2d):
        (gx,) = torch.autograd.grad((fn(x, w, b, s, p, d, g) * v).sum(), x, create_graph=True)
        outs.append(torch.autograd.grad((gx.tanh() * x).sum(), (x, w, b), allow_unused=True))
    for a, r in zip(*outs):
        if r is None:
            assert a is None or a.abs().max() == 0
        else:
            torch.testing.assert_close(a, r)


@pytest.mark.parametrize("ci,co,k,s,p,d,g,n", GEOMETRIES[:3])
def test_gradcheck_to_third_order(ci, co, k, s, p, d, g, n):
    torch.manual_seed(1)
    x = torch.randn(1, ci, n, n, dtype=torch.float64, requires_grad=True)
    w = torch.randn(co, ci // g, k, k, dtype=torch.float64, requires_grad=True)
    b = torch.randn(co, dtype=torch.float64, requires_grad=True)
    f = lambda x, w, b: conv2d(x, w, b, s, p, d, g).square()  # noqa: E731 (nonlinear so 2nd order is nonzero)
    assert torch.autograd.gradcheck(f, (x, w, b))
    assert torch.autograd.gradgradcheck(f, (x, w, b))

    def grad_of_input(x, w, b):  # third order of the conv: gradgradcheck of a function built on a gradient
        (gx,) = torch.autograd.grad(f(x, w, b).sum(), x, create_graph=True)
        return gx
    assert torch.autograd.gradgradcheck(grad_of_input, (x, w, b))


def test_mode_routes_module_convs_and_keeps_graphs_after_exit():
    torch.manual_seed(2)
    d = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.1), nn.Conv2d(8, 8, 3, 1, 1, padding_mode="reflect"),
                      nn.LeakyReLU(0.1), nn.Conv2d(8, 4, 3, padding="same"), nn.Flatten(), nn.Linear(4 * 8 * 8, 1))
    d = d.double()
    x = torch.randn(5, 3, 16, 16, dtype=torch.float64)
    grads = []
    for enabled in (False, True):
        d.zero_grad()
        with fast_conv_grads(enabled):
            out = gradient_normalize(d, x)
        out.sum().backward()  # the double backward runs outside the block
        grads.append([p.grad.clone() for p in d.parameters()])
    for a, r in zip(*grads):
        torch.testing.assert_close(a, r)


def test_mode_leaves_unsupported_calls_to_torch():
    x = torch.randn(3, 6, 6, requires_grad=True)  # unbatched input
    w = torch.randn(2, 3, 3, 3)
    with fast_conv_grads():
        y = torch.conv2d(x, w)
    assert type(y.grad_fn.next_functions[0][0]).__name__ == "ConvolutionBackward0"  # native, under a squeeze
    with fast_conv_grads():
        y = torch.conv2d(x[None], w)
    assert type(y.grad_fn).__name__ == "_ConvBackward"


def test_input_gradient_alone_skips_the_weight_gradient(monkeypatch):
    import gannorm.fastgrad as fg
    calls = []
    original = fg._WeightGrad.forward
    monkeypatch.setattr(fg._WeightGrad, "forward", staticmethod(lambda *a: calls.append(1) or original(*a)))
    conv = nn.Conv2d(3, 4, 3)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    with fast_conv_grads():
        y = conv(x)
    torch.autograd.grad(y.sum(), x, retain_graph=True)
    assert calls == []  # the weight requires grad, but this pass does not need it
    y.sum().backward()
    assert calls == [1] and conv.weight.grad is not None
