"""Batch and layer normalization after a discriminator's layers: the baselines of the SNGAN paper.

Miyato et al. (2018) compare spectral normalization against batch normalization (Ioffe and Szegedy
2015), layer normalization (Ba et al. 2016) and weight normalization (:mod:`.weight_norm`) in the
discriminator. Here the two feature normalizations follow every Conv/ConvTranspose/Linear layer of a
model **but the first and the last** (the last is D's output layer; placement in module order, see
:func:`inner_layers`), attached like MSN's mean-only batch norm: a submodule of the layer (``bn`` or
``ln``) and a forward hook that passes the layer's output through it, before the activation.

* **batch_norm** -- :class:`ChannelBatchNorm`: torch's batch norm over the channel dim (dim 1) of an
  output of any rank (``[N, C]``, ``[N, C, L]``, ``[N, C, H, W]``, ...), statistics over every other
  dim, a learned per-channel gain and bias, running statistics for eval mode (torch's defaults,
  ``momentum=0.1``, ``eps=1e-5``). It mixes the samples of a batch, so GN/PGN refuse it. Its eval-mode
  form is an affine map per channel, which :func:`fold_post_norm` folds into the layer.
* **layer_norm** -- ``nn.GroupNorm(1, C)``: each sample normalized over all its features
  ``(C, H, W)`` (over ``C`` for a Linear), then a learned *per-channel* gain and bias (not per element:
  ``nn.LayerNorm((C, H, W))`` would tie the discriminator to one input size and have ``C*H*W`` gains).
  Per sample, so GN/PGN accept it. It divides by a data-dependent standard deviation, so it is not
  affine: it cannot be folded into the layer, and :func:`gannorm.remove_normalization` refuses a model that has it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, cast

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from ..errors import InputError
from .base import TRANSPOSED_CONVS
from .options import FEATURE_NORM_CHECKS, check_option

Layers = Sequence[tuple[str, nn.Module]]


class ChannelBatchNorm(nn.modules.batchnorm._BatchNorm):
    """``torch``'s batch norm over dim 1 of an input of any rank >= 2 (one module for Linear and Conv outputs)."""

    couples_samples = True  # read by gannorm.gradnorm.check_per_sample (a _BatchNorm is refused there anyway)

    def _check_input_dim(self, input: Tensor) -> None:  # noqa: A002 (torch's name)
        if input.dim() < 2:
            raise ValueError(f"batch norm needs an input [N, C, ...], got shape {tuple(input.shape)}")


def _apply_bn(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    return cast(nn.Module, module.bn)(output)


def _apply_ln(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    return cast(nn.Module, module.ln)(output)


@dataclass(frozen=True)
class PostNorm:
    """One kind of normalization that follows a layer: the submodule's attribute name, its forward hook,
    how to make it (``make(channels, eps, momentum)``), and whether its eval-mode form is affine (foldable)."""

    attr: str
    hook: Callable[[nn.Module, tuple, Tensor], Tensor]
    make: Callable[[int, float, float], nn.Module]
    foldable: bool


BATCH_NORM = PostNorm("bn", _apply_bn, lambda c, eps, momentum: ChannelBatchNorm(c, eps, momentum), True)
LAYER_NORM = PostNorm("ln", _apply_ln, lambda c, eps, momentum: nn.GroupNorm(1, c, eps), False)
POST_NORMS = (BATCH_NORM, LAYER_NORM)


def out_channels(module: nn.Module) -> int:
    """The channel count of a Conv/ConvTranspose/Linear output (dim 1 of the output)."""
    return cast(int, module.out_channels if hasattr(module, "out_channels") else module.out_features)


def inner_layers(layers: Layers, method: str) -> Layers:
    """Every layer but the first and the last (in module order); fewer than 3 layers is a one-line error."""
    if len(layers) < 3:
        raise InputError(f"{method} follows every layer but the first and the last with a normalization, but the "
                         f"model has only {len(layers)} normalizable layer(s); use a deeper model or another method")
    return layers[1:-1]


def attach_post_norm(module: nn.Module, kind: PostNorm, eps: float = 1e-5, momentum: float = 0.1) -> nn.Module:
    """Follow ``module``'s output with a new ``kind`` normalization (a submodule ``kind.attr`` + a forward hook).

    The new parameters take the layer's device and (float) dtype. Returns the module.
    """
    check_option("momentum", momentum, FEATURE_NORM_CHECKS)
    check_option("eps", eps, FEATURE_NORM_CHECKS)
    like = next(module.parameters())
    norm = kind.make(out_channels(module), float(eps), float(momentum))
    setattr(module, kind.attr, norm.to(like.device, torch.promote_types(like.dtype, torch.float32)))
    module.register_forward_hook(kind.hook)
    return module


def post_norm(module: nn.Module) -> tuple[PostNorm, nn.Module] | None:
    """The normalization :func:`attach_post_norm` put after ``module`` (kind and submodule), or None."""
    hooks = set(module._forward_hooks.values())
    for kind in POST_NORMS:
        if kind.hook in hooks:
            return kind, getattr(module, kind.attr)
    return None


def detach_post_norm(module: nn.Module) -> nn.Module:
    """Remove the hook and the submodule of :func:`attach_post_norm` (the layer then computes its plain output)."""
    found = post_norm(module)
    if found is None:
        return module
    kind, _ = found
    hooks = module._forward_hooks
    for key in [k for k, hook in hooks.items() if hook is kind.hook]:
        del hooks[key]
    delattr(module, kind.attr)
    return module


def _scale_output_channels_(weight: Tensor, gain: Tensor, module: nn.Module) -> None:
    """``weight`` times ``gain[c]`` for every output channel c, in place (ConvTranspose: [in, out/g, *k])."""
    if isinstance(module, TRANSPOSED_CONVS):
        groups = module.groups
        view = weight.view(groups, weight.shape[0] // groups, weight.shape[1], *weight.shape[2:])
        view.mul_(gain.view(groups, 1, -1, *[1] * (weight.ndim - 2)))
    else:
        weight.mul_(gain.view(-1, *[1] * (weight.ndim - 1)))


@torch.no_grad()
def fold_post_norm(module: nn.Module) -> nn.Module:
    """Undo :func:`attach_post_norm` for a batch norm, folding its eval-mode affine map into the layer.

    In eval mode the layer computes ``a_c * (W x + b)_c + s_c`` with ``a_c = gamma_c / sqrt(var_c + eps)``
    and ``s_c = beta_c - a_c * mean_c`` (running statistics); afterwards ``weight`` has every output
    channel c scaled by ``a_c`` and ``bias`` is ``a_c * b_c + s_c`` (created if the layer had none). The
    plain layer computes that function in either mode. ``weight`` must be a plain tensor (remove its
    parametrizations first). A layer norm cannot be folded (it is not affine): a one-line ``ValueError``.
    """
    found = post_norm(module)
    if found is None:
        return module
    kind, norm = found
    if not kind.foldable:
        raise InputError(f"a {type(norm).__name__} after {type(module).__name__} is not affine and cannot be folded "
                         "into its weight")
    module, norm = cast("nn.Linear | _ConvNd", module), cast(ChannelBatchNorm, norm)
    assert norm.running_mean is not None and norm.running_var is not None  # attach_post_norm tracks them
    weight = module.weight
    gain = (norm.weight / torch.sqrt(norm.running_var + norm.eps)).to(weight.dtype)
    shift = norm.bias.to(weight.dtype) - gain * norm.running_mean.to(weight.dtype)
    detach_post_norm(module)
    _scale_output_channels_(weight, gain, module)
    if module.bias is None:
        module.bias = nn.Parameter(shift.clone())
    else:
        module.bias.mul_(gain).add_(shift)
    return module


def apply_post_norm(layers: Layers, kind: PostNorm, method: str, eps: float, momentum: float = 0.1) -> None:
    """Attach ``kind`` after every layer of ``layers`` but the first and the last."""
    for _, m in inner_layers(layers, method):
        attach_post_norm(m, kind, eps, momentum)
