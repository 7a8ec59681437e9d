"""Mean spectral normalization (MSN; Subramanian and Chong, IEEE CASE 2019, arXiv 1907.04003).

MSN is SN on every layer followed, at chosen layers, by *mean-only* batch normalization with a learned
per-channel gain and bias and no variance division (``docs/methods.md``)::

    y_c = gamma_c * (h_c - mu_c) + beta_c

``mu_c`` is the batch mean over (N, H, W) in training and the running mean (momentum 0.1) in eval.
In the official MSN-GAN discriminator (the SNGAN CNN D) it follows the 2nd and 3rd stride-2
convolutions and the final 3x3 convolution, before the LeakyReLU; gannorm's rule for any model is
the same: after every strided convolution but the first, and after the last convolution. The
official layers rescale the weight *in place* by ``W / sigma`` (a projection); gannorm uses the SN
parametrization, which is the same normalized weight. gamma is unconstrained, so the layer's
Lipschitz constant is ``max |gamma_c|``, not 1. The batch mean couples samples, so GN/PGN refuse it.

MSN is not only a weight normalization, so :func:`gannorm.remove_normalization` does more for it than for the
others: it folds the *eval-mode* mean-only BN (running mean, gain, bias) into the layer's weight and
bias (:func:`fold_mean_norm`). The plain network left behind computes what the MSN model computes in
eval mode; the training-mode batch mean is gone.
"""
from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from ..errors import LayerTypeError
from .options import check_option


class MeanOnlyBatchNorm(nn.Module):
    """``gamma * (x - mean) + beta`` per channel (dim 1); batch mean in training, running mean in eval."""

    couples_samples = True  # read by gannorm.gradnorm.check_per_sample
    running_mean: Tensor

    def __init__(self, num_features: int, momentum: float = 0.1) -> None:
        super().__init__()
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        dims = [d for d in range(x.ndim) if d != 1]
        if self.training:
            mean = x.mean(dim=dims)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
        else:
            mean = self.running_mean.to(x.dtype)
        shape = [1, -1] + [1] * (x.ndim - 2)
        return self.weight.to(x.dtype).view(shape) * (x - mean.view(shape)) + self.bias.to(x.dtype).view(shape)


_TARGETS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)  # output channels on dim 0 of the weight


def _apply_msn(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    return cast(MeanOnlyBatchNorm, module.msn)(output)


def attach_mean_norm(module: nn.Module, momentum: float = 0.1) -> nn.Module:
    """Follow ``module``'s output with a :class:`MeanOnlyBatchNorm` (a submodule ``msn`` + a forward hook).

    ``module`` is a Conv1d/2d/3d or a Linear layer; the new parameters take its device and (float) dtype.

    Args:
        module: a Conv1d/2d/3d or Linear layer, changed in place.
        momentum: the running mean's momentum, in (0, 1].

    Returns:
        ``module``.

    Example::

        >>> conv = attach_mean_norm(nn.Conv2d(1, 2, 1))
        >>> out = conv(torch.arange(8.0).reshape(2, 1, 2, 2))       # training mode: the batch mean is removed
        >>> out.mean(dim=(0, 2, 3)).abs().max() < 1e-6
        tensor(True)
    """
    if not isinstance(module, _TARGETS):
        raise LayerTypeError(f"mean-only batch norm follows a Conv1d/2d/3d or Linear layer, got "
                             f"{type(module).__name__}")
    check_option("momentum", momentum)
    channels = cast(int, module.out_channels if hasattr(module, "out_channels") else module.out_features)
    like = next(module.parameters())
    module.msn = MeanOnlyBatchNorm(channels, momentum).to(like.device, torch.promote_types(like.dtype, torch.float32))
    module.register_forward_hook(_apply_msn)
    return module


@torch.no_grad()
def fold_mean_norm(module: nn.Module) -> nn.Module:
    """Undo :func:`attach_mean_norm`, folding the eval-mode mean-only BN into the layer: a plain layer remains.

    In eval mode the layer computes ``gamma_c * (W x + b - running_mean_c) + beta_c``, an affine map of
    ``x``; afterwards ``weight`` is ``gamma_c * W`` (row c) and ``bias`` is
    ``gamma_c * (b - running_mean_c) + beta_c`` (a bias is created if the layer had none), so the
    layer computes exactly that function in either mode, and the batch-mean (training) behaviour is
    gone. ``weight`` must be a plain tensor (remove its parametrizations first).

    Args:
        module: a layer with a mean-only batch norm, changed in place.

    Returns:
        ``module``, a plain layer.

    Example::

        >>> conv = attach_mean_norm(nn.Conv2d(1, 2, 1))
        >>> _ = conv(torch.arange(8.0).reshape(2, 1, 2, 2))
        >>> x = torch.ones(1, 1, 2, 2)
        >>> before = conv.eval()(x)
        >>> torch.allclose(fold_mean_norm(conv)(x), before), hasattr(conv, "msn")
        (True, False)
    """
    msn, module = cast(MeanOnlyBatchNorm, module.msn), cast("nn.Linear | _ConvNd", module)
    hooks = module._forward_hooks
    for key in [k for k, hook in hooks.items() if hook is _apply_msn]:
        del hooks[key]
    del module.msn
    weight = module.weight
    gain = msn.weight.to(weight.dtype)
    shift = msn.bias.to(weight.dtype) - gain * msn.running_mean.to(weight.dtype)
    weight.mul_(gain.view(-1, *[1] * (weight.ndim - 1)))
    if module.bias is None:
        module.bias = nn.Parameter(shift.clone())
    else:
        module.bias.mul_(gain).add_(shift)
    return module


def msn_targets(layers: list[tuple[str, nn.Module]]) -> list[str]:
    """Every strided convolution but the first, and the last convolution (the official placement).

    Args:
        layers: ``(name, layer)`` pairs in module order.

    Returns:
        the names of the layers MSN follows.

    Example::

        >>> convs = [("a", nn.Conv2d(3, 8, 4, 2)), ("b", nn.Conv2d(8, 8, 4, 2)), ("c", nn.Conv2d(8, 8, 3))]
        >>> msn_targets(convs + [("head", nn.Linear(8, 1))])
        ['b', 'c']
    """
    convs = [(n, m) for n, m in layers if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    strided = [n for n, m in convs if max(m.stride) > 1]
    targets = strided[1:] + ([convs[-1][0]] if convs else [])
    return list(dict.fromkeys(targets))
