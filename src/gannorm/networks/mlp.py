"""MLP generator and discriminator for vector data (2-D Gaussian mixtures and the like).

``depth`` is the number of hidden layers (each ``Linear(hidden) -> activation``), followed by an
output ``Linear``; ``depth=0`` is a single linear map. G uses ReLU and a linear output (no tanh);
D uses LeakyReLU(``slope``, default 0.2) and outputs ``[B, 1]`` logits. No BatchNorm anywhere, so
D has no batch coupling (safe for GN and gradient penalties). Deep Ds (``depth=16`` and more)
are where vanishing and exploding gradients show.

**Class-conditional** (``num_classes > 0``; 0 is the unconditional network bit for bit): G looks up a
learned class embedding ``embed`` (``nn.Embedding(num_classes, z_dim)``, N(0, 1): a one-hot input's
LeCun init) and concatenates it to z, so its first layer takes ``2 * z_dim`` inputs; D's output layer
becomes a :class:`ProjectionHead` ``head`` on its last hidden layer (the output linear plus a class
embedding ``N(0, 1/hidden)``, LeCun like the linear). Both take ``(input, y)``.

Initialisation: LeCun normal, ``W ~ N(0, 1/fan_in)``, biases 0 -- the initialisation the BSSN
paper ties SN to (docs/methods.md), and framework-independent (torch's default is
``U(+-1/sqrt(fan_in))``, i.e. variance ``1/(3 fan_in)``, with random biases). Re-initialise with
:func:`gannorm.init_weights` for other schemes (it also works on already normalized layers).
"""
from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..init import init_weights, raw_weight
from ..validate import require
from .blocks import channels as _ch
from .conditional import ProjectionHead, check_num_classes, require_labels


def _check(depth: int, hidden: int) -> None:
    require(depth, name="depth", kind="int", min=0, error=ConfigError)
    require(hidden, name="hidden", kind="int", min=1, error=ConfigError)


def _stack(n_in: int, n_out: int, depth: int, hidden: int, activation) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(n_in if i == 0 else hidden, hidden), activation()]
    layers.append(nn.Linear(hidden if depth else n_in, n_out))
    return nn.Sequential(*layers)


class MLPGenerator(nn.Module):
    """z ``[B, z_dim]`` -> depth x (Linear(hidden) -> ReLU) -> Linear(dim) ``[B, dim]``.

    ``num_classes > 0``: ``[z, embed(y)]`` is the input; forward ``(z, y)``.
    """

    def __init__(self, dim: int = 2, z_dim: int = 128, depth: int = 4, hidden: int = 128, width: float = 1.0,
                 num_classes: int = 0) -> None:
        super().__init__()
        _check(depth, hidden)
        self.num_classes = check_num_classes(num_classes)
        self.z_dim, self.depth, self.hidden = z_dim, depth, _ch(hidden, width)
        if self.num_classes:
            self.embed = nn.Embedding(self.num_classes, z_dim)
            # G's input embedding stays plain, as BigGAN's (a plain attribute, as in conditional.py)
            self.embed.skip_normalization = True  # type: ignore[assignment]
        self.net = _stack(z_dim * (2 if self.num_classes else 1), dim, depth, self.hidden, nn.ReLU)
        self.data_shape = (dim,)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        init_weights(self, "lecun")
        if self.num_classes:
            nn.init.normal_(raw_weight(self.embed), 0.0, 1.0)

    def forward(self, z: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            y = require_labels(self, y, z.shape[0])
            z = torch.cat([z, self.embed(y)], dim=1)
        return self.net(z)

    def lipschitz_structure(self) -> list[list[tuple[str, nn.Module]]]:
        """The forward as one ``(name, module)`` chain (see :mod:`gannorm.diagnostics.lipschitz`)."""
        return [[("net", self.net)]]


class MLPDiscriminator(nn.Module):
    """x ``[B, dim]`` -> depth x (Linear(hidden) -> LeakyReLU(slope)) -> Linear(1) ``[B, 1]``.

    ``num_classes > 0``: ``net`` holds the hidden layers only and a projection head ``head`` (the output
    linear plus a class embedding) follows; forward ``(x, y)``.
    """

    def __init__(self, dim: int = 2, depth: int = 4, hidden: int = 128, width: float = 1.0,
                 slope: float = 0.2, num_classes: int = 0) -> None:
        super().__init__()
        _check(depth, hidden)
        self.num_classes = check_num_classes(num_classes)
        self.depth, self.hidden, self.slope = depth, _ch(hidden, width), slope
        self.net = _stack(dim, 1, depth, self.hidden, lambda: nn.LeakyReLU(slope))
        if self.num_classes:
            last = cast(nn.Linear, self.net[-1])
            self.net = cast(nn.Sequential, self.net[:-1])
            self.head = ProjectionHead(last.in_features, self.num_classes, linear=last)
        self.data_shape = (dim,)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        init_weights(self, "lecun")
        if self.num_classes:
            nn.init.normal_(raw_weight(self.head.embed), 0.0, self.head.linear.in_features ** -0.5)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        if self.num_classes:
            y = require_labels(self, y, x.shape[0])
            return self.head(self.net(x), y)
        return self.net(x)

    def lipschitz_structure(self) -> list[list[tuple[str, nn.Module]]]:
        """The forward as one ``(name, module)`` chain (see :mod:`gannorm.diagnostics.lipschitz`); a conditional
        D ends with its ``head``, which takes the labels too (no rule bounds it)."""
        return [[("net", self.net), ("head", self.head)]] if self.num_classes else [[("net", self.net)]]
