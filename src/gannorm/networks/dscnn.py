"""A depthwise-separable variant of the SNGAN standard CNN discriminator.

Same layer list, widths and resolutions as :class:`~gannorm.networks.sngan_cnn.SNGANCNNDiscriminator`,
but every k x k conv except the first (whose input has only the 1-3 image channels, kept an
ordinary conv) is a depthwise k x k conv (``groups = cin``, same stride and padding, no activation)
followed by a pointwise 1x1 conv to ``cout`` and LeakyReLU(``slope``). Final linear to one logit.
Init as the CNN: convs truncated normal 0.02, linear normal 0.02, biases 0. The generator of the
``dscnn`` arch is the SNGAN CNN generator.
"""
from __future__ import annotations

from torch import nn

from .sngan_cnn import SNGANCNNDiscriminator


class DSCNNDiscriminator(SNGANCNNDiscriminator):
    """conv3 64 -> [dw4/2 -> pw 64] -> [dw3 -> pw 128] -> [dw4/2 -> pw 128] -> [dw3 -> pw 256]
    -> [dw4/2 -> pw 256] -> [dw3 -> pw 512] -> linear 1 (channel counts times ``width``).

    Input ``[B, channels, resolution, resolution]``, output ``[B, 1]`` logits.
    """

    def block(self, index: int, cin: int, cout: int, k: int, stride: int) -> list[nn.Module]:
        if index == 0:
            return super().block(index, cin, cout, k, stride)
        return [nn.Conv2d(cin, cin, k, stride, padding=1, groups=cin), nn.Conv2d(cin, cout, 1)]
