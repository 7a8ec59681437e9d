"""A depthwise-separable variant of the SNGAN standard CNN discriminator.

Same layer list, widths and resolutions as :class:`~gannorm.networks.sngan_cnn.SNGANCNNDiscriminator`,
but every k x k conv except the first (whose input has only the 1-3 image channels, kept an
ordinary conv) is a depthwise k x k conv (``groups = cin``, same stride and padding, no activation)
followed by a pointwise 1x1 conv to ``cout`` and LeakyReLU(``slope``). Final linear to one logit.
Init as the CNN: convs truncated normal 0.02, linear normal 0.02, biases 0. The generator of the
``dscnn`` arch is the SNGAN CNN generator.
"""
from __future__ import annotations

from torch import Tensor, nn

from .blocks import channels as _ch
from .blocks import normal_, trunc_normal_
from .sngan_cnn import _bottom


class DSCNNDiscriminator(nn.Module):
    """conv3 64 -> [dw4/2 -> pw 64] -> [dw3 -> pw 128] -> [dw4/2 -> pw 128] -> [dw3 -> pw 256]
    -> [dw4/2 -> pw 256] -> [dw3 -> pw 512] -> linear 1 (channel counts times ``width``).

    Input ``[B, channels, resolution, resolution]``, output ``[B, 1]`` logits.
    """

    def __init__(self, resolution: int = 32, channels: int = 3, width: float = 1.0, slope: float = 0.1) -> None:
        super().__init__()
        mg = _bottom(resolution)
        c = [_ch(n, width) for n in (64, 64, 128, 128, 256, 256, 512)]
        specs = [(channels, c[0], 3, 1), (c[0], c[1], 4, 2), (c[1], c[2], 3, 1), (c[2], c[3], 4, 2),
                 (c[3], c[4], 3, 1), (c[4], c[5], 4, 2), (c[5], c[6], 3, 1)]
        (cin0, cout0, k0, s0), rest = specs[0], specs[1:]
        layers: list[nn.Module] = [nn.Conv2d(cin0, cout0, k0, s0, padding=1), nn.LeakyReLU(slope)]
        for cin, cout, k, s in rest:
            layers += [nn.Conv2d(cin, cin, k, s, padding=1, groups=cin), nn.Conv2d(cin, cout, 1),
                       nn.LeakyReLU(slope)]
        self.features = nn.Sequential(*layers)
        self.linear = nn.Linear(mg * mg * c[6], 1)
        self.resolution, self.channels = resolution, channels
        self.data_shape = (channels, resolution, resolution)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Convs truncated normal 0.02, the linear normal 0.02, biases 0 (as the SNGAN CNN)."""
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                trunc_normal_(m, 0.02)
        normal_(self.linear, 0.02)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(self.features(x).flatten(1))
