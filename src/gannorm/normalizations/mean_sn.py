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
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


class MeanOnlyBatchNorm(nn.Module):
    """``gamma * (x - mean) + beta`` per channel (dim 1); batch mean in training, running mean in eval."""

    couples_samples = True  # read by gannorm.gradnorm.check_per_sample

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


def _apply_msn(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
    return module.msn(output)


def attach_mean_norm(module: nn.Module, momentum: float = 0.1) -> nn.Module:
    """Follow ``module``'s output with a :class:`MeanOnlyBatchNorm` (a submodule ``msn`` + a forward hook)."""
    channels = module.out_channels if hasattr(module, "out_channels") else module.out_features
    module.msn = MeanOnlyBatchNorm(channels, momentum).to(next(module.parameters()).device)
    module.register_forward_hook(_apply_msn)
    return module


def msn_targets(layers: list[tuple[str, nn.Module]]) -> list[str]:
    """Every strided convolution but the first, and the last convolution (the official placement)."""
    convs = [(n, m) for n, m in layers if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d))]
    strided = [n for n, m in convs if max(m.stride) > 1]
    targets = strided[1:] + ([convs[-1][0]] if convs else [])
    return list(dict.fromkeys(targets))
