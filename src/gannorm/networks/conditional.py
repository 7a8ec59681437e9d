"""Class-conditional building blocks: conditional batch norms, the projection head, self-attention.

* :class:`ConditionalBatchNorm2d` / :class:`ConditionalBatchNorm1d` -- batch norm without its own affine
  map, followed by a per-class gain and bias looked up in two ``nn.Embedding(num_classes, C)`` tables
  (the categorical conditional batch norm of the projection cGAN, Miyato & Koyama 2018): gain rows
  start at 1 and bias rows at 0, so at initialisation it is a plain batch norm. With
  ``gain_offset=True`` the gain is ``1 + gain[y]`` instead (the class-embedding batch norm of BigGAN
  without a shared embedding, whose tables the network's init scheme fills).
* :class:`SharedConditionalBatchNorm` -- BigGAN's batch norm conditioned on a vector per sample
  (the shared class embedding, concatenated with a chunk of z): ``gain = 1 + W_g c``,
  ``bias = W_b c`` with two bias-free ``nn.Linear(cond_dim, C)``.
* :class:`ProjectionHead` -- the discriminator's output ``linear(h) + <embed(y), h>`` on pooled
  features ``h`` (the projection discriminator); the embedding is an ``nn.Embedding(num_classes, F)``
  so that a weight normalization can treat it as a layer of its own.
* :class:`SelfAttention` -- the SAGAN/BigGAN non-local block, with 1x1 ``nn.Conv2d`` projections
  (``theta``, ``phi``, ``g``, ``o``; no biases), 2x2 max-pooling on the ``phi`` and ``g`` paths and a
  learnable output gain ``gamma`` that starts at 0.

Every batch norm here keeps its statistics in a child ``bn`` (an ``nn.BatchNorm1d/2d`` with
``affine=False``), so code that looks for torch's batch norms (freezing running statistics,
synchronised batch norm) finds them. A conditional module called without labels raises
:class:`~gannorm.errors.InputError`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, InputError
from ..init import raw_weight
from ..validate import require


def check_num_classes(num_classes: int) -> int:
    """``num_classes`` if it is an integer >= 0 (0: unconditional), else a one-line :class:`ConfigError`.

    Args:
        num_classes: the number of classes a network is conditioned on.

    Returns:
        ``num_classes`` unchanged.

    Example::

        >>> check_num_classes(10)
        10
    """
    require(num_classes, name="num_classes", kind="int", min=0, error=ConfigError, why="0: unconditional")
    return num_classes


def require_labels(module: nn.Module, y: Tensor | None, batch: int) -> Tensor:
    """``y`` checked for a conditional ``module``: a tensor of ``batch`` integer class indices.

    Args:
        module: the conditional network (its ``num_classes`` is named in the message).
        y: the labels the caller passed, or None.
        batch: the batch size of the other input.

    Returns:
        ``y``.

    Raises:
        InputError: (one line) when ``y`` is missing, not an integer tensor or not of shape ``[batch]``.

    Example::

        >>> require_labels(D, torch.tensor([0, 3]), 2)  # doctest: +SKIP
    """
    name = type(module).__name__
    if y is None:
        raise InputError(f"{name} is class-conditional (num_classes={module.num_classes}): class labels are "
                         "needed, call it with y, an int64 tensor of class indices of shape [batch]")
    if not isinstance(y, Tensor) or y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
        raise InputError(f"{name}: class labels y must be an integer tensor of class indices, got "
                         f"{getattr(y, 'dtype', type(y).__name__)}")
    if tuple(y.shape) != (batch,):
        raise InputError(f"{name}: class labels y must have shape [{batch}] (one per sample), got {tuple(y.shape)}")
    return y


class _ConditionalBatchNorm(nn.Module):
    """Batch norm (no affine) followed by a per-class gain and bias (see the module docstring)."""

    _bn_type: type[nn.modules.batchnorm._BatchNorm] = nn.BatchNorm2d

    def __init__(self, num_features: int, num_classes: int, eps: float = 1e-5, momentum: float = 0.1,
                 gain_offset: bool = False) -> None:
        super().__init__()
        if check_num_classes(num_classes) < 1:
            raise ConfigError(f"a conditional batch norm needs num_classes >= 1, got {num_classes}")
        self.num_features, self.num_classes, self.gain_offset = num_features, num_classes, gain_offset
        self.bn = self._bn_type(num_features, eps=eps, momentum=momentum, affine=False)
        # tables built from given tensors: no random draw (a conditional network draws what an
        # unconditional one draws, in the same order)
        self.gain = nn.Embedding(num_classes, num_features, _weight=torch.empty(num_classes, num_features))
        self.bias = nn.Embedding(num_classes, num_features, _weight=torch.empty(num_classes, num_features))
        # gannorm.normalize leaves them plain (a plain attribute: torch's Module.__setattr__ stub takes tensors/modules)
        self.gain.skip_normalization = self.bias.skip_normalization = True  # type: ignore[assignment]
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Gain rows 1 (0 with ``gain_offset``, whose gain is ``1 + gain[y]``), bias rows 0, fresh statistics."""
        self.bn.reset_parameters()
        self.gain.weight.fill_(0.0 if self.gain_offset else 1.0)
        self.bias.weight.zero_()

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        y = require_labels(self, y, x.shape[0])
        gain = self.gain(y)
        if self.gain_offset:
            gain = 1 + gain
        shape = (x.shape[0], self.num_features) + (1,) * (x.ndim - 2)
        return self.bn(x) * gain.view(shape) + self.bias(y).view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, num_classes={self.num_classes}, gain_offset={self.gain_offset}"


class ConditionalBatchNorm2d(_ConditionalBatchNorm):
    """``BatchNorm2d(affine=False)`` then ``gain[y] * xhat + bias[y]`` per channel.

    Args:
        num_features: channels ``C`` of the input ``[B, C, H, W]``.
        num_classes: rows of the gain and bias tables (``nn.Embedding(num_classes, C)``).
        eps, momentum: of the batch norm (torch's defaults, 1e-5 and 0.1).
        gain_offset: ``False`` (default): gain ``gain[y]``, rows initialised to 1; ``True``: gain
            ``1 + gain[y]``, rows initialised to 0 (BigGAN's class-embedding batch norm).

    Returns (forward ``(x, y)``):
        A tensor like ``x``.

    Example::

        >>> cbn = ConditionalBatchNorm2d(8, num_classes=10)
        >>> cbn(torch.randn(4, 8, 5, 5), torch.tensor([0, 1, 2, 9])).shape
        torch.Size([4, 8, 5, 5])
    """

    _bn_type = nn.BatchNorm2d


class ConditionalBatchNorm1d(_ConditionalBatchNorm):
    """``BatchNorm1d(affine=False)`` then ``gain[y] * xhat + bias[y]`` per feature (input ``[B, C]``).

    Args and returns as :class:`ConditionalBatchNorm2d`.

    Example::

        >>> cbn = ConditionalBatchNorm1d(8, num_classes=3)
        >>> cbn(torch.randn(4, 8), torch.tensor([0, 1, 2, 0])).shape
        torch.Size([4, 8])
    """

    _bn_type = nn.BatchNorm1d


class SharedConditionalBatchNorm(nn.Module):
    """BigGAN's conditional batch norm: ``BatchNorm2d(affine=False)``, then ``(1 + W_g c) * xhat + W_b c``.

    Args:
        num_features: channels ``C`` of the input ``[B, C, H, W]``.
        cond_dim: length of the conditioning vector ``c`` (BigGAN: shared embedding size + z chunk size).
        eps, momentum: of the batch norm.

    Returns (forward ``(x, cond)`` with ``cond [B, cond_dim]``):
        A tensor like ``x``.

    ``W_g`` and ``W_b`` are bias-free ``nn.Linear(cond_dim, C)`` (``gain`` and ``bias``); the network's init
    scheme draws them (BigGAN: orthogonal).

    Example::

        >>> sbn = SharedConditionalBatchNorm(8, cond_dim=20)
        >>> sbn(torch.randn(4, 8, 5, 5), torch.randn(4, 20)).shape
        torch.Size([4, 8, 5, 5])
    """

    def __init__(self, num_features: int, cond_dim: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features, self.cond_dim = num_features, cond_dim
        self.bn = nn.BatchNorm2d(num_features, eps=eps, momentum=momentum, affine=False)
        self.gain = nn.Linear(cond_dim, num_features, bias=False)
        self.bias = nn.Linear(cond_dim, num_features, bias=False)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        if cond is None:
            raise InputError("SharedConditionalBatchNorm needs its conditioning vector: call it as (x, cond)")
        shape = (x.shape[0], self.num_features, 1, 1)
        return self.bn(x) * (1 + self.gain(cond)).view(shape) + self.bias(cond).view(shape)


class ProjectionHead(nn.Module):
    """The projection discriminator's output: ``linear(h) + sum(embed(y) * h, dim=1, keepdim=True)``.

    Args:
        in_features: ``F``, the length of the pooled features ``h [B, F]``.
        num_classes: rows of ``embed`` (``nn.Embedding(num_classes, F)``), >= 1.
        bias: whether ``linear`` (``nn.Linear(F, 1)``) has a bias.
        linear: an existing ``nn.Linear(F, 1)`` to use as ``linear`` (then ``bias`` is ignored).

    Returns (forward ``(h, y)``):
        ``[B, 1]`` logits.

    ``linear`` gets torch's default init and ``embed`` starts at 0 (no random draw, so a network with a
    head draws what it draws with a plain linear); the networks then draw both with their own init.

    Example::

        >>> head = ProjectionHead(16, num_classes=10)
        >>> head(torch.randn(4, 16), torch.tensor([1, 2, 3, 4])).shape
        torch.Size([4, 1])
    """

    def __init__(self, in_features: int, num_classes: int, bias: bool = True, linear: nn.Linear | None = None) -> None:
        super().__init__()
        if check_num_classes(num_classes) < 1:
            raise ConfigError(f"a projection head needs num_classes >= 1, got {num_classes}")
        if linear is not None and (linear.in_features, linear.out_features) != (in_features, 1):
            raise ConfigError(f"the projection head's linear must map {in_features} features to 1, got {linear}")
        self.num_classes = num_classes
        self.linear = nn.Linear(in_features, 1, bias=bias) if linear is None else linear
        self.embed = nn.Embedding(num_classes, in_features, _weight=torch.zeros(num_classes, in_features))

    def forward(self, h: Tensor, y: Tensor | None = None) -> Tensor:
        y = require_labels(self, y, h.shape[0])
        return self.linear(h) + (self.embed(y) * h).sum(dim=1, keepdim=True)


class SelfAttention(nn.Module):
    """The SAGAN / BigGAN self-attention block: ``x + gamma * o(attention(theta(x), phi(x), g(x)))``.

    Args:
        channels: ``C`` of the input ``[B, C, H, W]`` (H and W even); ``theta`` and ``phi`` map to
            ``C // 8`` channels, ``g`` to ``C // 2`` and ``o`` back to ``C`` (all 1x1, no bias; at least
            one channel each, for tiny widths).

    Returns (forward ``x``):
        A tensor like ``x``. ``gamma`` starts at 0, so the block starts as the identity.

    The attention map is ``softmax_j(theta_i . phi_j)`` over the positions ``j`` of the 2x2-max-pooled
    ``phi(x)``, applied to the max-pooled ``g(x)``.

    Example::

        >>> SelfAttention(16)(torch.randn(2, 16, 8, 8)).shape
        torch.Size([2, 16, 8, 8])
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.key_channels, self.value_channels = max(1, channels // 8), max(1, channels // 2)
        self.theta = nn.Conv2d(channels, self.key_channels, 1, bias=False)
        self.phi = nn.Conv2d(channels, self.key_channels, 1, bias=False)
        self.g = nn.Conv2d(channels, self.value_channels, 1, bias=False)
        self.o = nn.Conv2d(self.value_channels, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        b, _, hgt, wid = x.shape
        theta = self.theta(x).flatten(2)  # [B, C/8, N]
        phi = F.max_pool2d(self.phi(x), 2).flatten(2)  # [B, C/8, N/4]
        g = F.max_pool2d(self.g(x), 2).flatten(2)  # [B, C/2, N/4]
        beta = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # [B, N, N/4]
        o = (g @ beta.transpose(1, 2)).view(b, self.value_channels, hgt, wid)
        return x + self.gamma * self.o(o)


#: the conditional batch norms of this module whose forward takes the class labels ``(x, y)``
LABEL_NORMS = (ConditionalBatchNorm1d, ConditionalBatchNorm2d)


def class_norm(num_features: int, num_classes: int,
               dims: int = 2) -> nn.modules.batchnorm._BatchNorm | _ConditionalBatchNorm:
    """A plain ``nn.BatchNorm{dims}d`` for ``num_classes == 0``, else a conditional one (gain 1, bias 0).

    Args:
        num_features: channels (``dims=2``) or features (``dims=1``).
        num_classes: 0 (unconditional) or the number of classes.
        dims: 1 or 2.

    Returns:
        The batch norm module.

    Example::

        >>> type(class_norm(8, 0)).__name__, type(class_norm(8, 10)).__name__
        ('BatchNorm2d', 'ConditionalBatchNorm2d')
    """
    if num_classes == 0:
        return nn.BatchNorm1d(num_features) if dims == 1 else nn.BatchNorm2d(num_features)
    return (ConditionalBatchNorm1d if dims == 1 else ConditionalBatchNorm2d)(num_features, num_classes)


def with_labels(module: nn.Module, x: Tensor, y: Tensor | None) -> Tensor:
    """``module(x, y)`` for a label-conditional batch norm, else ``module(x)``.

    Args:
        module: any module.
        x: its input.
        y: class labels (used only by :data:`LABEL_NORMS`).

    Returns:
        The module's output.

    Example::

        >>> with_labels(nn.ReLU(), torch.ones(2), None)
        tensor([1., 1.])
    """
    return module(x, y) if isinstance(module, LABEL_NORMS) else module(x)


def run_with_labels(modules: nn.Sequential, x: Tensor, y: Tensor | None) -> Tensor:
    """The modules of a ``nn.Sequential`` in order, passing ``y`` to the label-conditional batch norms.

    Args:
        modules: the sequence.
        x: its input.
        y: class labels or None.

    Returns:
        The output of the last module.

    Example::

        >>> seq = nn.Sequential(nn.Linear(3, 4), ConditionalBatchNorm1d(4, 2))
        >>> run_with_labels(seq, torch.randn(5, 3), torch.zeros(5, dtype=torch.long)).shape
        torch.Size([5, 4])
    """
    for m in modules:
        x = with_labels(m, x, y)
    return x


@torch.no_grad()
def glorot_uniform_(embedding: nn.Embedding) -> nn.Embedding:
    """Glorot (Xavier) uniform on an embedding table ``[num_classes, F]`` (``fan_in = F``, ``fan_out =
    num_classes``, torch's reading): the projection cGAN's embedding init. Returns the embedding.

    Args:
        embedding: the table to draw (its trainable weight, also when it is normalized).

    Returns:
        ``embedding``.

    Example::

        >>> glorot_uniform_(nn.Embedding(10, 16)).weight.shape
        torch.Size([10, 16])
    """
    nn.init.xavier_uniform_(raw_weight(embedding))
    return embedding
