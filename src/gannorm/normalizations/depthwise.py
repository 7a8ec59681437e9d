"""Spectral normalization of depthwise-separable convolutions (Runkel et al., arXiv 2102.06496).

A depthwise ``Conv2d`` (``groups == in_channels = C``, weight ``[C*m, 1, kh, kw]``) is block
diagonal over input channels; with circular padding each block (one input channel -> its ``m``
output channels) is diagonalized by the 2-D DFT (Sedghi et al., ICLR 2019;
``docs/methods.md``), so the operator norm is exactly::

    sigma = max_c max_omega sqrt( sum_{j in group c} |DFT_N(pad(k_j))(omega)|^2 )

(for ``m == 1`` this is ``max_c max_omega |DFT(k_c)(omega)|``; for ``m > 1`` the ``m`` outputs of a
channel stack vertically, so their squared moduli add). :class:`DepthwiseSeparableSpectralNorm` computes it
*exactly on every forward* with one ``torch.fft.fft2`` of the tiny kernels -- no power iteration,
no state -- and returns ``scale * W / sigma``; gradients flow through sigma by autograd.

**Which DFT size.** ``N = (H + pad_h, W + pad_w)`` where ``pad_*`` is the total padding given to
the parametrization:

* circular padding (``padding_mode="circular"``, total padding ``k - 1``, stride 1): ``pad = 0``,
  ``N = (H, W)`` and sigma is the exact norm of the layer. With stride > 1 it is an upper bound
  (striding is a subsampling, norm <= 1).
* zero padding: ``pad`` is the layer's total zero padding. The zero-padded layer is a sub-block of
  the circular convolution on the padded ``(H + pad_h) x (W + pad_w)`` grid (its outputs are the
  non-wrapping ones), so sigma is an **upper bound** (and stride only lowers the true norm).
  Note: the DFT at the *unpadded* size ``(H, W)`` is **not** an upper bound for zero padding
  (e.g. 1-D kernel ``[1, 0, -1]`` on 2 points: DFT max 0, operator norm 1).

A kernel larger than the DFT grid is folded (wrapped) onto it first, which is what circular
convolution does, so small feature maps are handled exactly too.

Every other layer (pointwise 1x1 convs, ordinary convs, linears) gets plain SN in :func:`apply_dssn`;
``sigma(pointwise o depthwise) <= sigma_pw * sigma_dw``, so normalizing both factors gives a
``scale^2``-Lipschitz separable block.
"""
from __future__ import annotations

from typing import Sequence, TypeGuard

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..errors import InputError, OptionError
from .options import check_options
from .spectral import _get_weight, spectral_norm


def _pair(x: int | Sequence[int]) -> tuple[int, int]:
    t = (int(x), int(x)) if isinstance(x, int) else tuple(int(v) for v in x)
    if len(t) != 2:
        raise InputError(f"expected two numbers, got {x!r}")
    return t


def depthwise_sigma(weight: Tensor, channels: int, fft_size: Sequence[int]) -> Tensor:
    """The exact norm of the circular depthwise convolution with ``channels`` groups on a ``fft_size`` grid.

    ``weight`` is ``[channels*m, 1, kh, kw]``. Differentiable (autograd through the FFT).

    Args:
        weight: a depthwise kernel ``[C*m, 1, kh, kw]``.
        channels: ``C``.
        fft_size: the grid ``(n_h, n_w)`` of the circular convolution.

    Returns:
        the operator norm (a 0-dim tensor).

    Example::

        >>> k = torch.zeros(1, 1, 3, 3)
        >>> k[0, 0, 1, 1] = 2.0          # the identity kernel times 2 has operator norm 2
        >>> float(depthwise_sigma(k, 1, (4, 4)))
        2.0
    """
    n_h, n_w = _pair(fft_size)
    out, one, kh, kw = weight.shape
    if one != 1 or out % channels:
        raise ValueError(f"a depthwise weight must be [C*m, 1, kh, kw] with C={channels}, got {tuple(weight.shape)}")
    if kh > n_h or kw > n_w:  # fold the kernel onto the grid, as circular convolution does
        ah, aw = -(-kh // n_h), -(-kw // n_w)
        weight = F.pad(weight, (0, aw * n_w - kw, 0, ah * n_h - kh))
        weight = weight.reshape(out, 1, ah, n_h, aw, n_w).sum(dim=(2, 4))
    spectrum = torch.fft.fft2(weight, s=(n_h, n_w))  # [C*m, 1, n_h, n_w]
    power = (spectrum.real.square() + spectrum.imag.square()).reshape(channels, out // channels, n_h, n_w)
    return power.sum(dim=1).amax().sqrt()


class DepthwiseSeparableSpectralNorm(nn.Module):
    """Parametrization ``W -> scale * W / sigma_DFT(W)`` for a depthwise ``Conv2d`` (see the module docstring).

    ``input_size`` is the layer's input ``(H, W)``; ``padding`` the total extra grid ``(pad_h, pad_w)``
    (0 for circular padding: exact; the layer's total zero padding: an upper bound). Stateless: sigma
    is recomputed exactly on every forward, identically in training and eval mode.
    """

    def __init__(self, channels: int, input_size: Sequence[int], *, padding: Sequence[int] = (0, 0),
                 scale: float = 1.0, eps: float = 1e-12) -> None:
        super().__init__()
        h, w = _pair(input_size)
        ph, pw = _pair(padding)
        if min(h, w) < 1 or min(ph, pw) < 0:
            raise InputError(f"input_size must be positive and padding >= 0, got {(h, w)} and {(ph, pw)}")
        check_options({"scale": scale, "eps": eps})
        self.channels = int(channels)
        self.input_size = (h, w)
        self.padding = (ph, pw)
        self.fft_size = (h + ph, w + pw)
        self.scale = float(scale)
        self.eps = eps

    def sigma(self, weight: Tensor) -> Tensor:
        """The divisor (before ``scale``), in float32 or float64, differentiable."""
        with torch.autocast(device_type=weight.device.type, enabled=False):
            w = weight.float() if weight.dtype in (torch.float16, torch.bfloat16) else weight
            return depthwise_sigma(w, self.channels, self.fft_size).clamp_min(self.eps)

    @torch.no_grad()
    def sigma_estimates(self, weight: Tensor) -> dict[str, float]:
        """``{"sigma": exact DFT sigma}``, the same interface as :meth:`PowerIterationNorm.sigma_estimates`."""
        return {"sigma": float(self.sigma(weight.detach()))}

    def forward(self, weight: Tensor) -> Tensor:
        with torch.autocast(device_type=weight.device.type, enabled=False):
            w = weight.float() if weight.dtype in (torch.float16, torch.bfloat16) else weight
            return (w * (self.scale / self.sigma(w))).to(weight.dtype)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, input_size={self.input_size}, fft_size={self.fft_size}, "
                f"scale={self.scale}")


def is_depthwise(module: nn.Module) -> TypeGuard[nn.Conv2d]:
    """A ``Conv2d`` with ``groups == in_channels > 1`` (single-input-channel convs count as ordinary convs).

    Args:
        module: a layer.

    Returns:
        whether it is a depthwise convolution.

    Example::

        >>> is_depthwise(nn.Conv2d(4, 4, 3, groups=4)), is_depthwise(nn.Conv2d(4, 8, 3))
        (True, False)
    """
    return isinstance(module, nn.Conv2d) and module.groups == module.in_channels > 1


def _grid_padding(module: nn.Conv2d) -> tuple[int, int]:
    """Total padding per dim added to the input grid for the DFT (see the module docstring)."""
    if module.padding == "valid":
        total = (0, 0)
    elif isinstance(module.padding, str):  # 'same' (possibly asymmetric)
        r = module._reversed_padding_repeated_twice  # [left, right, top, bottom]
        total = (r[2] + r[3], r[0] + r[1])
    else:
        total = (2 * module.padding[0], 2 * module.padding[1])
    if module.padding_mode == "zeros":
        return total
    if module.padding_mode == "circular":
        if any(t > k - 1 for t, k in zip(total, module.kernel_size)):
            raise InputError(f"circular padding {total} larger than kernel_size - 1 {module.kernel_size} is not "
                             "supported by the depthwise DFT sigma")
        return (0, 0)
    raise InputError(f"depthwise DFT sigma supports padding_mode 'zeros' or 'circular', got {module.padding_mode!r}")


def depthwise_separable_spectral_norm(module: nn.Module, name: str = "weight", *, input_shape: Sequence[int],
                                      scale: float = 1.0, n_power_iterations: int = 1, eps: float = 1e-12,
                                      update: str = "forward", grad_through_vectors: bool = False,
                                      warmup: int = 15) -> nn.Module:
    """Register the DFT sigma on a depthwise ``Conv2d`` (``input_shape = (C, H, W)`` or ``(H, W)``),
    or plain SN (:func:`gannorm.spectral_norm` with the same options) on any other layer.

    ``n_power_iterations``, ``update``, ``grad_through_vectors`` and ``warmup`` only concern the SN
    layers (the DFT sigma is exact and stateless). Every option is keyword-only. Returns the module.

    Args:
        module: the layer, changed in place.
        name: the tensor to normalize.
        input_shape: the layer's input ``(C, H, W)`` or ``(H, W)`` (used by depthwise convs only).
        scale: ``c`` in ``c * W / sigma``.
        n_power_iterations: power iterations per update (SN layers).
        eps: the floor of sigma.
        update: ``"forward"`` or ``"step"`` (SN layers).
        grad_through_vectors: let the gradient flow through the vectors (SN layers).
        warmup: iterations at registration (SN layers).

    Returns:
        ``module``.

    Example::

        >>> conv = nn.Conv2d(2, 2, 3, padding=1, padding_mode="circular", groups=2, bias=False)
        >>> conv = depthwise_separable_spectral_norm(conv, input_shape=(2, 4, 4))
        >>> basis = torch.eye(32).reshape(32, 2, 4, 4)                 # the dense matrix of the convolution
        >>> round(float(torch.linalg.matrix_norm(conv(basis).reshape(32, 32).detach(), 2)), 4)
        1.0
    """
    if not is_depthwise(module):
        return spectral_norm(module, name, scale=scale, n_power_iterations=n_power_iterations, eps=eps,
                             update=update, grad_through_vectors=grad_through_vectors, warmup=warmup)
    if tuple(module.dilation) != (1, 1):
        raise InputError(f"depthwise DFT sigma needs dilation 1, got {module.dilation}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 3:
        if shape[0] != module.in_channels:
            raise OptionError("input_shape", f"input_shape {shape} has {shape[0]} channels but the layer expects "
                              f"{module.in_channels}")
        shape = shape[1:]
    if len(shape) != 2:
        raise OptionError("input_shape", f"input_shape for a depthwise Conv2d must be (C, H, W) or (H, W), got "
                          f"{tuple(input_shape)}")
    _get_weight(module, name)  # a one-line error if the layer has no such tensor
    param = DepthwiseSeparableSpectralNorm(module.in_channels, shape, padding=_grid_padding(module), scale=scale,
                                           eps=eps)
    parametrize.register_parametrization(module, name, param)
    return module


def apply_dssn(layers: Sequence[tuple[str, nn.Module]], input_shapes: dict[str, tuple[int, ...]],
               scale: float = 1.0, n_power_iterations: int = 1, eps: float = 1e-12, update: str = "forward",
               grad_through_vectors: bool = False, warmup: int = 15) -> None:
    """Depthwise convs: exact DFT sigma on their recorded input shape; every other layer: SN (``scale``).

    Args:
        layers: ``(name, layer)`` pairs.
        input_shapes: each depthwise layer's input shape, by name.
        scale: ``c`` in ``c * W / sigma``.
        n_power_iterations: power iterations per update (SN layers).
        eps: the floor of sigma.
        update: ``"forward"`` or ``"step"`` (SN layers).
        grad_through_vectors: let the gradient flow through the vectors (SN layers).
        warmup: iterations at registration (SN layers).

    Example::

        >>> net = nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.Conv2d(2, 4, 1))
        >>> apply_dssn(list(net.named_children()), {"0": (2, 6, 6)})
        >>> [type(m.parametrizations.weight[0]).__name__ for m in net]
        ['DepthwiseSeparableSpectralNorm', 'SpectralNorm']
    """
    for name, m in layers:
        if is_depthwise(m) and name not in input_shapes:
            raise OptionError("input_shape", f"dssn needs the input shape of depthwise layer {name!r} (pass "
                              "input_shape=(C, H, W) to gannorm.normalize)")
        depthwise_separable_spectral_norm(m, input_shape=input_shapes.get(name, ()), scale=scale, eps=eps,
                                          n_power_iterations=n_power_iterations, update=update,
                                          grad_through_vectors=grad_through_vectors, warmup=warmup)


#: the former name of :class:`DepthwiseSeparableSpectralNorm`
DepthwiseSpectralNorm = DepthwiseSeparableSpectralNorm
