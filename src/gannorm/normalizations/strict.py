"""Strict spectral normalization ("SN_Conv"): the operator norm of the convolution itself.

SN divides a kernel by the norm of its ``[out, in*kh*kw]`` reshaping. The Lipschitz constant of the
layer is the norm of the *convolution operator* on the input it actually sees, which depends on
the input's spatial size, stride, padding, dilation and groups, and is always >= the reshaped
sigma (the reshaped matrix is a block of the operator). This parametrization estimates that norm
by power iteration through the convolution and its adjoint (the transposed convolution), with
``u`` living in the output feature-map space and ``v`` in the input space -- the design of
equinox's ``SpectralNorm(exact=True)``; see ``docs/methods.md``.

Linear layers and embeddings have no spatial structure: their weight is the matrix of the map (an
embedding looks up ``W^T e_y``), whose operator norm is its largest singular value, so they get plain SN
and need no input shape.
"""
from __future__ import annotations

from typing import Any, Sequence, cast

import torch
import torch.nn.functional as F
import torch.nn.grad
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd
from torch.nn.utils import parametrize

from ..errors import LayerTypeError, OptionError
from .base import PowerIterationNorm
from .spectral import SpectralNorm, _get_weight

_CONV: dict[type[nn.Module], int] = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_CONV_T: dict[type[nn.Module], int] = {nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}
_CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T_FN = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
_CONV_WEIGHT_GRAD = {1: torch.nn.grad.conv1d_weight, 2: torch.nn.grad.conv2d_weight, 3: torch.nn.grad.conv3d_weight}


def _explicit_padding(module: _ConvNd, nd: int) -> tuple[list[int] | None, tuple[int, ...]]:
    """``(pad for F.pad or None, symmetric conv padding)`` equivalent to the module's own padding.

    Integer zero padding goes to the convolution (so the adjoint is a plain transposed conv);
    ``'same'`` (possibly asymmetric) and non-zero padding modes become an explicit ``F.pad``.
    """
    if module.padding == "valid":
        return None, (0,) * nd
    if isinstance(module.padding, str) or module.padding_mode != "zeros":
        return list(module._reversed_padding_repeated_twice), (0,) * nd
    return None, tuple(module.padding)


class StrictSpectralNorm(PowerIterationNorm):
    """Parametrization ``W -> scale * W / ||conv(., W)||_op`` for a fixed input shape (what
    :func:`strict_spectral_norm` registers on a convolution; formerly named ``ConvOperatorNorm``)."""

    vector_names = (("_u", "_v"),)

    def __init__(self, module: nn.Module, weight: Tensor, input_shape: Sequence[int], *,
                 n_power_iterations: int = 1, eps: float = 1e-12, scale: float = 1.0, update: str = "forward",
                 grad_through_vectors: bool = False, warmup: int = 15) -> None:
        super().__init__(n_power_iterations=n_power_iterations, eps=eps, scale=scale, update=update,
                         grad_through_vectors=grad_through_vectors, warmup=warmup)
        kind = type(module)
        self.transposed = kind in _CONV_T
        nd = _CONV_T.get(kind) or _CONV.get(kind)
        if nd is None:
            raise LayerTypeError(f"strict spectral norm needs a Conv, ConvTranspose, Linear or Embedding layer, got "
                                 f"{kind.__name__}")
        module = cast(_ConvNd, module)
        input_shape = tuple(int(s) for s in input_shape)
        if len(input_shape) == nd + 2 and input_shape[0] == 1:
            input_shape = input_shape[1:]
        if len(input_shape) != nd + 1:
            raise OptionError("input_shape", f"input_shape for {kind.__name__} must be (C, {', '.join('HWD'[:nd])}) "
                             f"with {nd + 1} numbers, got {input_shape}")
        c_in = module.in_channels
        if input_shape[0] != c_in:
            raise OptionError("input_shape", f"input_shape {input_shape} has {input_shape[0]} channels but the "
                              f"layer expects {c_in}")
        self.nd = nd
        self.input_shape = input_shape
        self.stride = tuple(module.stride)
        self.dilation = tuple(module.dilation)
        self.groups = module.groups
        self.output_padding = tuple(getattr(module, "output_padding", (0,) * nd))
        self.pre_pad, self.padding = _explicit_padding(module, nd)
        self.padding_mode = module.padding_mode
        self._init_buffers(weight)

    # the forward operator and its adjoint -------------------------------------------------
    # (not named ``_apply``: that is nn.Module's hook through which .to(), .double() and .cuda() move the buffers)
    def _operator(self, weight: Tensor):
        conv, conv_t = _CONV_FN[self.nd], _CONV_T_FN[self.nd]
        if self.transposed:
            return lambda x: conv_t(x, weight, None, self.stride, self.padding, self.output_padding,
                                    self.groups, self.dilation)
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        pre_pad = self.pre_pad

        def apply(x: Tensor) -> Tensor:
            if pre_pad is not None:
                x = F.pad(x, pre_pad, mode=mode)
            return conv(x, weight, None, self.stride, self.padding, self.dilation, self.groups)

        return apply

    def maps(self, weight: Tensor):
        apply = self._operator(weight)
        in_shape = (1, *self.input_shape)
        conv, conv_t = _CONV_FN[self.nd], _CONV_T_FN[self.nd]
        if self.transposed:
            def adjoint(y: Tensor) -> Tensor:
                return conv(y, weight, None, self.stride, self.padding, self.dilation, self.groups)
        elif self.pre_pad is None:
            def adjoint(y: Tensor) -> Tensor:
                out_sp = y.shape[2:]
                op = tuple(n - ((o - 1) * s - 2 * p + d * (k - 1) + 1) for n, o, s, p, d, k in
                           zip(self.input_shape[1:], out_sp, self.stride, self.padding, self.dilation,
                               weight.shape[2:]))
                return conv_t(y, weight, None, self.stride, self.padding, op, self.groups, self.dilation)
        else:
            def adjoint(y: Tensor) -> Tensor:
                # explicit F.pad (asymmetric 'same' or a non-zero padding mode): the exact adjoint
                # by a vector-Jacobian product of the (linear) forward map
                with torch.enable_grad():
                    x = torch.zeros(in_shape, dtype=y.dtype, device=y.device, requires_grad=True)
                    (g,) = torch.autograd.grad(apply(x), x, y, create_graph=torch.is_grad_enabled()
                                               and weight.requires_grad)
                return g
        return [(apply, adjoint)]

    def add_sigma_grad(self, out, alpha, vectors, weight) -> None:
        """``d<u, conv(v, W)>/dW`` is the convolution's weight gradient for input v and output grad u
        (swapped for a transposed convolution: ``<u, conv_t(v, W)> = <conv(u, W), v>``)."""
        if self.pre_pad is not None:
            return super().add_sigma_grad(out, alpha, vectors, weight)
        (u, v), = vectors
        inp, grad_out = (u, v) if self.transposed else (v, u)
        g = _CONV_WEIGHT_GRAD[self.nd](inp, weight.shape, grad_out, self.stride, self.padding, self.dilation,
                                       self.groups)
        out.add_(g, alpha=float(alpha))

    def initial_vectors(self, weight: Tensor) -> list[tuple[Tensor, Tensor]]:
        v = weight.new_empty((1, *self.input_shape)).normal_()
        with torch.no_grad():
            out_shape = self._operator(weight)(torch.zeros_like(v)).shape
        return [(weight.new_empty(out_shape).normal_(), v)]

    def extra_repr(self) -> str:
        return f"input_shape={self.input_shape}, " + super().extra_repr()


def strict_spectral_norm(module: nn.Module, name: str = "weight", *, input_shape: Sequence[int], scale: float = 1.0,
                         n_power_iterations: int = 1, eps: float = 1e-12, update: str = "forward",
                         grad_through_vectors: bool = False, warmup: int = 15) -> nn.Module:
    """Normalize ``module.<name>`` by the operator norm of the layer on inputs of shape ``input_shape``.

    ``input_shape`` (required, keyword-only) is ``(C, H, W)`` for 2-D convolutions (``(C, L)``,
    ``(C, D, H, W)`` for 1-D, 3-D); it is ignored for linear layers and embeddings (``nn.Embedding``),
    which get plain SN: the operator norm of a matrix is its largest singular value. The other
    options (keyword-only) as in :func:`gannorm.spectral_norm`.

    Args:
        module: the layer, changed in place.
        name: the tensor to normalize.
        input_shape: the shape of the layer's input without the batch dim.
        scale: ``c`` in ``c * W / ||conv(., W)||_op``.
        n_power_iterations: power iterations per update.
        eps: the floor of the vectors' norms.
        update: ``"forward"`` or ``"step"``.
        grad_through_vectors: let the gradient flow through the vectors.
        warmup: iterations at registration.

    Returns:
        ``module``.

    Example::

        >>> conv = strict_spectral_norm(nn.Conv2d(1, 1, 3, padding=1, bias=False), input_shape=(1, 4, 4), warmup=300)
        >>> basis = torch.eye(16).reshape(16, 1, 4, 4)                 # the dense matrix of the convolution
        >>> dense = conv(basis).reshape(16, 16)
        >>> round(float(torch.linalg.matrix_norm(dense.detach(), 2)), 3)
        1.0
    """
    weight = _get_weight(module, name)
    options: dict[str, Any] = dict(n_power_iterations=n_power_iterations, eps=eps, scale=scale, update=update,
                                   grad_through_vectors=grad_through_vectors, warmup=warmup)
    param: PowerIterationNorm
    if isinstance(module, (nn.Linear, nn.Embedding)):
        param = SpectralNorm(weight, dim=0, **options)
    else:
        param = StrictSpectralNorm(module, weight, input_shape, **options)
    parametrize.register_parametrization(module, name, param)
    return module


#: the former name of :class:`StrictSpectralNorm` (kept so that old code and pickles keep working)
ConvOperatorNorm = StrictSpectralNorm
