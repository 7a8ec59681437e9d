"""MLP generator and discriminator for vector data (2-D Gaussian mixtures and the like).

``depth`` is the number of hidden layers (each ``Linear(hidden) -> activation``), followed by an
output ``Linear``; ``depth=0`` is a single linear map. G uses ReLU and a linear output (no tanh);
D uses LeakyReLU(``slope``, default 0.2) and outputs ``[B, 1]`` logits. No BatchNorm anywhere, so
D has no batch coupling (safe for GN and gradient penalties). Deep Ds (``depth=16`` and more)
are where vanishing and exploding gradients show.

Initialisation: LeCun normal, ``W ~ N(0, 1/fan_in)``, biases 0 -- the initialisation the BSSN
paper ties SN to (docs/methods.md), and framework-independent (torch's default is
``U(+-1/sqrt(fan_in))``, i.e. variance ``1/(3 fan_in)``, with random biases). Re-initialise with
:func:`gannorm.init_weights` for other schemes (it also works on already normalized layers).
"""
from __future__ import annotations

from torch import Tensor, nn

from ..errors import ConfigError
from ..init import init_weights
from .blocks import channels as _ch


def _check(depth: int, hidden: int) -> None:
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise ConfigError(f"depth must be an integer >= 0, got {depth!r}")
    if not isinstance(hidden, int) or isinstance(hidden, bool) or hidden < 1:
        raise ConfigError(f"hidden must be an integer >= 1, got {hidden!r}")


def _stack(n_in: int, n_out: int, depth: int, hidden: int, activation) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else hidden, hidden), activation()]
    layers.append(nn.Linear(hidden if depth else n_in, n_out))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z ``[B, z_dim]`` -> depth x (Linear(hidden) -> ReLU) -> Linear(dim) ``[B, dim]``."""

    def __init__(self, dim: int = 2, z_dim: int = 128, depth: int = 4, hidden: int = 128, width: float = 1.0) -> None:
        super().__init__()
        _check(depth, hidden)
        self.z_dim, self.depth, self.hidden = z_dim, depth, _ch(hidden, width)
        self.net = _stack(z_dim, dim, depth, self.hidden, nn.ReLU)
        self.data_shape = (dim,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self, "lecun")

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)

    def lipschitz_structure(self) -> list[list[tuple[str, nn.Module]]]:
        """The forward as one ``(name, module)`` chain (see :mod:`gannorm.diagnostics.lipschitz`)."""
        return [[("net", self.net)]]


class MLPDiscriminator(nn.Module):
    """x ``[B, dim]`` -> depth x (Linear(hidden) -> LeakyReLU(slope)) -> Linear(1) ``[B, 1]``."""

    def __init__(self, dim: int = 2, depth: int = 4, hidden: int = 128, width: float = 1.0,
                 slope: float = 0.2) -> None:
        super().__init__()
        _check(depth, hidden)
        self.depth, self.hidden, self.slope = depth, _ch(hidden, width), slope
        self.net = _stack(dim, 1, depth, self.hidden, lambda: nn.LeakyReLU(slope))
        self.data_shape = (dim,)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init_weights(self, "lecun")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def lipschitz_structure(self) -> list[list[tuple[str, nn.Module]]]:
        """The forward as one ``(name, module)`` chain (see :mod:`gannorm.diagnostics.lipschitz`)."""
        return [[("net", self.net)]]
