"""2-D convolution with cheap higher-order gradients, for double backprop through a discriminator.

Gradient normalization, WGAN-GP, R1 and friends differentiate the input gradient of D with respect to
D's weights. PyTorch routes that through ``aten::_convolution_double_backward``, which on CPU computes
the weight part with a generic convolution and costs 1.1-2.3x (1.5x over all seven convs of the SNGAN
CNN D) the two native kernels it could use (``python benchmarks/double_backward.py``).

A convolution is bilinear in its input ``x`` and weight ``W``, so all its derivatives of any order are
made of three linear maps, each again bilinear:

* ``conv(x, W)``                     -- the forward convolution ``A_W x``;
* ``input_grad(gy, W) = A_W^T gy``   -- a transposed convolution;
* ``weight_grad(x, gy)``             -- the weight gradient of ``<gy, conv(x, W)>``.

Each is an autograd ``Function`` whose backward is written with the other two, so first, second and
higher derivatives all run on the native forward / transposed / weight-gradient kernels.
:func:`fast_conv_grads` is a context manager that routes every ``conv2d`` call made inside it (e.g. the
forward of a discriminator with ``nn.Conv2d`` layers, parametrized or not) through these functions;
the graphs it records keep working after the context exits. Numerically the results equal PyTorch's
to rounding (tested with ``gradcheck`` and ``gradgradcheck`` against the native convolution).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import torch
from torch import Tensor
from torch.autograd import Function
from torch.overrides import TorchFunctionMode

_Geom = tuple[tuple[int, int], tuple[int, int], tuple[int, int], int]  # stride, padding, dilation, groups


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    v = tuple(int(i) for i in v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def _conv(x: Tensor, w: Tensor, b: Tensor | None, geom: _Geom) -> Tensor:
    stride, padding, dilation, groups = geom
    return torch.conv2d(x, w, b, stride, padding, dilation, groups)


def _wanted(ctx, i: int) -> bool:
    """Whether this backward pass needs the gradient of input ``i``.

    ``ctx.needs_input_grad`` only says the input requires grad; ``torch.autograd.grad(f, x)`` through a
    conv with a trainable weight must not pay for the weight gradient (PyTorch's own conv backward
    skips it the same way), so ask the engine whether the input's node runs in this pass.
    """
    if not ctx.needs_input_grad[i]:
        return False
    node = ctx.next_functions[i][0]
    if node is None:
        return False
    try:
        return bool(torch._C._will_engine_execute_node(node))
    except (AttributeError, RuntimeError):  # pragma: no cover - private API moved: compute to be safe
        return True


class _Conv(Function):
    @staticmethod
    def forward(ctx, x: Tensor, w: Tensor, b: Tensor | None, geom: _Geom) -> Tensor:
        ctx.geom = geom
        ctx.save_for_backward(x, w)
        return _conv(x, w, b, geom)

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, w = ctx.saved_tensors
        gx = _InputGrad.apply(gy, w, tuple(x.shape), ctx.geom) if _wanted(ctx, 0) else None
        gw = _WeightGrad.apply(x, gy, tuple(w.shape), ctx.geom) if _wanted(ctx, 1) else None
        gb = gy.sum((0, 2, 3)) if _wanted(ctx, 2) else None
        return gx, gw, gb, None


class _InputGrad(Function):
    """``A_W^T gy`` as a transposed convolution with the output padding that restores ``x``'s size."""

    @staticmethod
    def forward(ctx, gy: Tensor, w: Tensor, x_shape: tuple[int, ...], geom: _Geom) -> Tensor:
        ctx.geom, ctx.x_shape = geom, x_shape
        ctx.save_for_backward(gy, w)
        stride, padding, dilation, groups = geom
        out_pad = tuple(x_shape[2 + i] - ((gy.shape[2 + i] - 1) * stride[i] - 2 * padding[i]
                                         + dilation[i] * (w.shape[2 + i] - 1) + 1) for i in range(2))
        return torch.conv_transpose2d(gy, w, None, stride, padding, out_pad, groups, dilation)

    @staticmethod
    def backward(ctx, gg: Tensor):
        gy, w = ctx.saved_tensors
        # <gg, A_W^T gy> = <A_W gg, gy>
        g_gy = _Conv.apply(gg, w, None, ctx.geom) if _wanted(ctx, 0) else None
        g_w = _WeightGrad.apply(gg, gy, tuple(w.shape), ctx.geom) if _wanted(ctx, 1) else None
        return g_gy, g_w, None, None


class _WeightGrad(Function):
    """The weight gradient of ``<gy, conv(x, W)>`` (it does not depend on ``W``)."""

    @staticmethod
    def forward(ctx, x: Tensor, gy: Tensor, w_shape: tuple[int, ...], geom: _Geom) -> Tensor:
        ctx.geom = geom
        ctx.save_for_backward(x, gy)
        stride, padding, dilation, groups = geom
        w = x.new_empty(w_shape)
        return torch.ops.aten.convolution_backward(gy, x, w, None, list(stride), list(padding), list(dilation),
                                                   False, [0, 0], groups, [False, True, False])[1]

    @staticmethod
    def backward(ctx, gw: Tensor):
        x, gy = ctx.saved_tensors
        # <gw, weight_grad(x, gy)> = <gy, conv(x, gw)>
        g_x = _InputGrad.apply(gy, gw, tuple(x.shape), ctx.geom) if _wanted(ctx, 0) else None
        g_gy = _Conv.apply(x, gw, None, ctx.geom) if _wanted(ctx, 1) else None
        return g_x, g_gy, None, None


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride: int | Sequence[int] = 1,
           padding: int | Sequence[int] = 0, dilation: int | Sequence[int] = 1, groups: int = 1) -> Tensor:
    """``torch.conv2d`` (numeric padding, batched 4-D input) with native-kernel derivatives of all orders."""
    geom = (_pair(stride), _pair(padding), _pair(dilation), int(groups))
    return _Conv.apply(x, weight, bias, geom)


def _autocast_enabled(device_type: str) -> bool:
    """Whether autocast is on for ``device_type`` (``torch.is_autocast_enabled()`` alone asks about CUDA only)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no device type
        return torch.is_autocast_cpu_enabled() if device_type == "cpu" else torch.is_autocast_enabled()


def _supported(args: tuple, kwargs: dict) -> bool:
    names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
    bound = dict(zip(names, args)) | kwargs
    x, padding = bound.get("input"), bound.get("padding", 0)
    return isinstance(x, Tensor) and x.dim() == 4 and not isinstance(padding, str) and x.dtype in (
        torch.float32, torch.float64) and not _autocast_enabled(x.device.type)


class _FastConvGradMode(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.conv2d and _supported(args, kwargs):
            return conv2d(*args, **kwargs)
        return func(*args, **kwargs)


@contextlib.contextmanager
def fast_conv_grads(enabled: bool = True) -> Iterator[None]:
    """Route ``conv2d`` calls made inside the block through :func:`conv2d` (see the module doc).

    Calls it cannot take (string padding, unbatched input, half precision or autocast) go to PyTorch
    unchanged. ``enabled=False`` makes the block a no-op, for A/B comparisons.
    """
    if not enabled:
        yield
        return
    with _FastConvGradMode():
        yield
