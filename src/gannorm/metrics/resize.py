"""How images are resized to the Inception network's 299x299 input: a registry of named resize modes.

FID numbers computed with different resizes differ (by a few percent at 32 px), so a result and a
statistics file say which one they used. Every mode maps float32 ``(N, C, H, W)`` images on the [0, 255]
scale (see :func:`gannorm.metrics.inception.to_uint8_range`) to ``(N, C, size, size)`` on the same scale;
the normalization to the network's range, ``(x - 128) / 128``, follows in every mode.

* ``legacy_tensorflow`` (the default): TF1's ``resize_bilinear(align_corners=False)``, bit-exact
  (:func:`gannorm.metrics.inception.resize_bilinear_tf1`); what the original TF FID code, torch-fidelity
  and StyleGAN's metrics network do.
* ``clean``: clean-fid's ``clean`` mode: each channel a PIL mode ``"F"`` (float32) image resized with
  ``Image.resize((size, size), Image.BICUBIC)`` (PIL widens the filter when it shrinks, i.e. antialiases),
  then clipped to [0, 255].
* ``pytorch_bilinear``: ``F.interpolate(x, size, mode="bilinear", align_corners=False)`` without
  antialiasing (half-pixel centres), the resize of pytorch-fid and of clean-fid's ``legacy_pytorch`` mode.
  Only the resize is theirs: pytorch-fid also maps [0, 1] inputs by ``2x - 1`` instead of ``(x - 128) / 128``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ..registry import Registry

__all__ = [
    "DEFAULT_RESIZE",
    "RESIZE_MODES",
    "ResizeMode",
    "resize_bilinear_tf1",
    "resize_mode",
    "resize_pil_bicubic",
    "resize_torch_bilinear",
]

#: the resize of every result and statistics file that records none
DEFAULT_RESIZE = "legacy_tensorflow"


@dataclass(frozen=True)
class ResizeMode:
    """A registered resize: ``fn(x, size) -> y`` on float32 [0, 255] images, and its capabilities.

    ``differentiable``: gradients flow through ``fn`` (``FIDInceptionV3(quantize=False)`` under autograd
    needs it).
    """

    fn: Callable[[Tensor, int], Tensor]
    description: str
    differentiable: bool = True


def resize_pil_bicubic(x: Tensor, size: int) -> Tensor:
    """Each channel of ``x`` resized by PIL's bicubic filter on a float32 (mode ``"F"``) image, then clipped to
    [0, 255]: clean-fid's ``make_resizer("PIL", False, "bicubic", (size, size))``.

    Args:
        x: float ``(N, C, H, W)`` images on the [0, 255] scale (any device; computed on the CPU).
        size: the output's height and width.

    Returns:
        float32 ``(N, C, size, size)`` on ``x``'s device.

    Example:
        >>> resize_pil_bicubic(torch.full((1, 3, 8, 8), 7.0), 4).unique()
        tensor([7.])
    """
    arr = x.detach().to("cpu", torch.float32).numpy()
    out = np.empty(arr.shape[:2] + (size, size), dtype=np.float32)
    for n in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            img = Image.fromarray(np.ascontiguousarray(arr[n, c]), mode="F")
            out[n, c] = np.asarray(img.resize((size, size), resample=Image.Resampling.BICUBIC))
    return torch.from_numpy(out.clip(0.0, 255.0)).to(x.device)


def resize_torch_bilinear(x: Tensor, size: int) -> Tensor:
    """``F.interpolate(x, (size, size), mode="bilinear", align_corners=False)`` (no antialiasing): pytorch-fid's
    resize.

    Args:
        x: float ``(N, C, H, W)``.
        size: the output's height and width.

    Returns:
        ``(N, C, size, size)`` in ``x``'s dtype.

    Example:
        >>> resize_torch_bilinear(torch.ones(1, 3, 4, 4), 2).shape
        torch.Size([1, 3, 2, 2])
    """
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def resize_bilinear_tf1(x: Tensor, size: int | Sequence[int] = 299) -> Tensor:
    """Bilinear resize exactly as TF1's ``tf.image.resize_bilinear(align_corners=False)`` (no half-pixel centers).

    For each output row ``i`` (likewise columns): ``scale = in / out`` (float32), ``src = i * scale``,
    ``lo = floor(src)``, ``hi = min(lo + 1, in - 1)``, ``w = src - lo``; the output is
    ``top + (bottom - top) * wy`` with ``top = x[lo_y, lo_x] + (x[lo_y, hi_x] - x[lo_y, lo_x]) * wx`` (and
    ``bottom`` the same on row ``hi_y``), in the dtype of ``x`` -- the operation order of TF's CPU kernel
    (TF 1.15 writes ``hi = min(ceil(src), in - 1)``, which gives the same values since ``w = 0`` whenever
    ``ceil(src) = lo``). float32 results are bit-exact against a numpy port of that kernel (tested; TF
    itself is not run here). This is not PyTorch's ``F.interpolate(..., align_corners=False)``, which
    uses half-pixel centers (``src = (i + 0.5) * scale - 0.5``); the TF1 formula shifts the image by up to half
    an input pixel and never reads past the last row/column.

    Args:
        x: float tensor ``(N, C, H, W)``.
        size: output ``(H_out, W_out)`` or one int for a square output.
    """
    if x.dim() != 4:
        raise ValueError(f"resize_bilinear_tf1 expects an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"resize_bilinear_tf1 expects a floating point tensor, got {x.dtype}")
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    in_h, in_w = x.shape[-2:]
    if (in_h, in_w) == (out_h, out_w):
        return x
    lo_y, hi_y, wy = _tf1_source_index(in_h, out_h, x.dtype, x.device)
    lo_x, hi_x, wx = _tf1_source_index(in_w, out_w, x.dtype, x.device)
    wx = wx.view(1, 1, 1, out_w)
    if in_h <= out_h:
        # Upsampling rows: interpolate along x once per *input* row, then pick the rows. Each output value
        # still gets exactly TF's top/bottom expressions, with far fewer full-size temporaries.
        left = x.index_select(3, lo_x)
        rows = (x.index_select(3, hi_x) - left).mul_(wx).add_(left)
        top = rows.index_select(2, lo_y)
        bottom = rows.index_select(2, hi_y)
    else:
        rows_lo = x.index_select(2, lo_y)
        rows_hi = x.index_select(2, hi_y)
        left = rows_lo.index_select(3, lo_x)
        top = (rows_lo.index_select(3, hi_x) - left).mul_(wx).add_(left)
        left = rows_hi.index_select(3, lo_x)
        bottom = (rows_hi.index_select(3, hi_x) - left).mul_(wx).add_(left)
    return bottom.sub_(top).mul_(wy.view(1, 1, out_h, 1)).add_(top)


def _tf1_source_index(in_size: int, out_size: int, dtype: torch.dtype, device) -> tuple[Tensor, Tensor, Tensor]:
    # TF1 CalculateResizeScale (align_corners=False): static_cast<float>(in) / out, in float32;
    # the source coordinate is static_cast<float>(i) * scale, also in float32 (for float64 input too).
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    src = torch.arange(out_size, dtype=torch.float32) * scale
    lo = torch.floor(src)
    lerp = (src - lo).to(dtype=dtype, device=device)
    lo = lo.to(torch.long)
    hi = torch.clamp(lo + 1, max=in_size - 1)
    return lo.to(device), hi.to(device), lerp


RESIZE_MODES: Registry[ResizeMode] = Registry("resize mode")
RESIZE_MODES.register("legacy_tensorflow", ResizeMode(
    resize_bilinear_tf1, "TF1 resize_bilinear (align_corners=False, no half-pixel centres), bit-exact: the "
                         "original TF FID code, torch-fidelity, StyleGAN's metrics (the default)"))
RESIZE_MODES.register("clean", ResizeMode(
    resize_pil_bicubic, "clean-fid's clean mode: PIL bicubic per channel on float32 images (antialiased when "
                        "shrinking), clipped to [0, 255]", differentiable=False))
RESIZE_MODES.register("pytorch_bilinear", ResizeMode(
    resize_torch_bilinear, "torch.nn.functional.interpolate bilinear, align_corners=False, no antialias "
                           "(pytorch-fid's resize)"))


def resize_mode(name: str) -> ResizeMode:
    """The registered resize mode ``name``; an unknown name is a one-line error listing the known ones.

    Args:
        name: ``legacy_tensorflow``, ``clean`` or ``pytorch_bilinear``.

    Returns:
        Its :class:`ResizeMode`.

    Example:
        >>> resize_mode("clean").differentiable
        False
    """
    if not isinstance(name, str):
        return RESIZE_MODES.get(repr(name))
    return RESIZE_MODES.get(name)
