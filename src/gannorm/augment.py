"""Augmentations: consistency regularization's flips and shifts, and DiffAugment.

**Consistency regularization** (CR-GAN, Zhang et al. 2020). ``flip_translate(x, translate, generator)``:
per image, a horizontal flip with probability 0.5 and an integer translation by up to
``translate * size`` pixels in x and y, the uncovered border filled with -1 (black in [-1, 1]).
GN-GAN-CR uses ``translate=0.2`` (+-6 px at 32), CR-GAN 1/8 (+-4 px).

**DiffAugment** (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN Training"): the same
random, differentiable transformation applied to every image D sees, real and fake, in the D and the G
step, so G is trained through it. Images are in [-1, 1], as in the reference code. The ops
(:data:`DIFFAUG_OPS`), each with its own random numbers per image:

* ``color``: brightness ``x + b`` with ``b ~ U(-0.5, 0.5)``; then saturation ``(x - m) * s + m`` with
  ``s ~ U(0, 2)`` and ``m`` the mean over the channels at each pixel; then contrast ``(x - m) * c + m`` with
  ``c ~ U(0.5, 1.5)`` and ``m`` the mean of the whole image.
* ``translation``: the image moves by integer ``(dy, dx)``, each uniform in ``[-H // 8, H // 8]``
  (``W // 8``): ``out[i, j] = x[i - dy, j - dx]``, and 0 where that pixel lies outside the image (zero
  padding, as the reference; 0 is mid-grey in [-1, 1]).
* ``cutout``: a ``H // 2 x W // 2`` square whose top-left corner is ``(cy - H // 4, cx - W // 4)``, the
  centre ``cy`` uniform in ``[0, H]`` for an even square side (``[0, H - 1]`` for an odd one), ``cx`` alike,
  is set to 0 (the part inside the image).

The design is seeded and shardable: :meth:`DiffAugment.draw` draws *every* random number of a global batch
on the CPU from an explicit ``torch.Generator`` (the same numbers on every rank and every device),
:meth:`DiffAugmentParams.select` takes one rank's rows, and :meth:`DiffAugment.apply` applies them with
tensor ops only (gathers and masks, no loop over images), differentiable with respect to ``x``, on ``x``'s
device. So applying a rank's rows gives exactly those rows of the augmented global batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputError
from .registry import Registry
from .validate import require


def flip_translate(x: Tensor, translate: float = 0.125, generator: torch.Generator | None = None) -> Tensor:
    """A random horizontal flip (probability 1/2) and an integer shift by up to ``translate`` of the size, per
    image, with the uncovered border filled with -1 (black in [-1, 1]): consistency regularization's ``T``.

    Args:
        x: images ``[N, C, H, W]``.
        translate: the largest shift, as a fraction of the size.
        generator: the CPU generator of the draws.

    Returns:
        the transformed images, shaped like ``x``.

    Example::

        >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
        >>> y = flip_translate(x, translate=0.0, generator=torch.Generator().manual_seed(0))
        >>> torch.equal(y, x) or torch.equal(y, x.flip(-1))           # no shift: x or its mirror image
        True
    """
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=generator) < 0.5
    max_dy, max_dx = int(translate * h), int(translate * w)
    dy = torch.randint(-max_dy, max_dy + 1, (n,), generator=generator)
    dx = torch.randint(-max_dx, max_dx + 1, (n,), generator=generator)
    x = torch.where(flip.view(n, 1, 1, 1).to(x.device), x.flip(-1), x)
    padded = F.pad(x, (max_dx, max_dx, max_dy, max_dy), value=-1.0)
    out = torch.stack([padded[i, :, max_dy - int(dy[i]): max_dy - int(dy[i]) + h,
                              max_dx - int(dx[i]): max_dx - int(dx[i]) + w] for i in range(n)])
    return out


def consistency_loss(d_x: Tensor, d_tx: Tensor) -> Tensor:
    """``mean_i (D(T(x_i)) - D(x_i))^2`` on the discriminator outputs (no stop-gradient, as GN-GAN-CR).

    Args:
        d_x: D's outputs on the images.
        d_tx: D's outputs on their transformed copies.

    Returns:
        the scalar loss.

    Example::

        >>> consistency_loss(torch.tensor([1.0, 2.0]), torch.tensor([2.0, 0.0]))
        tensor(2.5000)
    """
    return (d_tx - d_x).square().mean()


# ---------------------------------------------------------------------------------------------- DiffAugment
Params = dict[str, Tensor]


@dataclass(frozen=True)
class DiffAugOp:
    """One DiffAugment op: ``draw(n, (C, H, W), generator) -> {name: tensor [n]}`` on the CPU, and
    ``apply(x, params) -> x'`` (params on ``x``'s device), differentiable with respect to ``x``."""

    draw: Callable[[int, tuple[int, int, int], torch.Generator | None], Params]
    apply: Callable[[Tensor, Params], Tensor]
    description: str


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator) * (high - low) + low


def _draw_color(n: int, shape: tuple[int, int, int], generator: torch.Generator | None) -> Params:  # noqa: ARG001
    return {"brightness": _uniform(n, -0.5, 0.5, generator), "saturation": _uniform(n, 0.0, 2.0, generator),
            "contrast": _uniform(n, 0.5, 1.5, generator)}


def _per_image(v: Tensor, x: Tensor) -> Tensor:
    return v.to(x.dtype).view(-1, *[1] * (x.ndim - 1))


def _apply_color(x: Tensor, p: Params) -> Tensor:
    x = x + _per_image(p["brightness"], x)
    m = x.mean(dim=1, keepdim=True)
    x = (x - m) * _per_image(p["saturation"], x) + m
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - m) * _per_image(p["contrast"], x) + m


def _draw_translation(n: int, shape: tuple[int, int, int], generator: torch.Generator | None) -> Params:
    sy, sx = shape[1] // 8, shape[2] // 8
    return {"dy": torch.randint(-sy, sy + 1, (n,), generator=generator),
            "dx": torch.randint(-sx, sx + 1, (n,), generator=generator)}


def _shifted_index(size: int, shift: Tensor) -> tuple[Tensor, Tensor]:
    """Per image, the source index ``i - shift`` of every output position (clamped) and whether it is inside."""
    src = torch.arange(size, device=shift.device).view(1, -1) - shift.view(-1, 1)
    return src.clamp(0, size - 1), (src >= 0) & (src < size)


def _apply_translation(x: Tensor, p: Params) -> Tensor:
    n, c, h, w = x.shape
    rows, rows_in = _shifted_index(h, p["dy"])
    cols, cols_in = _shifted_index(w, p["dx"])
    out = x.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w))
    out = out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))
    inside = rows_in.view(n, 1, h, 1) & cols_in.view(n, 1, 1, w)
    return torch.where(inside, out, torch.zeros((), dtype=x.dtype, device=x.device))


def _draw_cutout(n: int, shape: tuple[int, int, int], generator: torch.Generator | None) -> Params:
    (h, w), (ch, cw) = shape[1:], (shape[1] // 2, shape[2] // 2)
    return {"cy": torch.randint(0, h + (1 - ch % 2), (n,), generator=generator),
            "cx": torch.randint(0, w + (1 - cw % 2), (n,), generator=generator)}


def _in_band(size: int, centre: Tensor, side: int) -> Tensor:
    """``[n, size]``: whether each position lies in ``[centre - side // 2, centre - side // 2 + side)``."""
    pos = torch.arange(size, device=centre.device).view(1, -1)
    start = (centre - side // 2).view(-1, 1)
    return (pos >= start) & (pos < start + side)


def _apply_cutout(x: Tensor, p: Params) -> Tensor:
    n, _, h, w = x.shape
    hole = _in_band(h, p["cy"], h // 2).view(n, 1, h, 1) & _in_band(w, p["cx"], w // 2).view(n, 1, 1, w)
    return torch.where(hole, torch.zeros((), dtype=x.dtype, device=x.device), x)


DIFFAUG_OPS: Registry[DiffAugOp] = Registry("DiffAugment op")
DIFFAUG_OPS.register("color", DiffAugOp(_draw_color, _apply_color, "brightness + U(-0.5, 0.5), saturation x U(0, 2) "
                                        "around the channel mean, contrast x U(0.5, 1.5) around the image mean"))
DIFFAUG_OPS.register("translation", DiffAugOp(_draw_translation, _apply_translation, "integer shift by up to 1/8 "
                                              "of the size in y and x, zero padding"))
DIFFAUG_OPS.register("cutout", DiffAugOp(_draw_cutout, _apply_cutout, "a square of half the size at a random "
                                         "centre set to 0"))


@dataclass(frozen=True)
class DiffAugmentParams:
    """The random numbers of one DiffAugment draw: for ``n`` images of shape ``image_shape``, one dict of
    ``[n]`` tensors per op of ``ops`` (CPU tensors as drawn; :meth:`to` moves them)."""

    n: int
    image_shape: tuple[int, int, int]
    ops: tuple[str, ...]
    values: tuple[Params, ...]

    def __len__(self) -> int:
        return self.n

    def select(self, rows: Tensor | Sequence[int]) -> DiffAugmentParams:
        """The parameters of the images ``rows`` (an index tensor, e.g. one rank's shard of a global batch).

        Args:
            rows: int64 indices in ``[0, n)`` (or a boolean mask of length ``n``).

        Returns:
            a :class:`DiffAugmentParams` of ``len(rows)`` images, in the order of ``rows``.

        Example::

            local = params.select(torch.arange(rank, n, world_size))
        """
        idx = torch.as_tensor(rows).cpu()
        if idx.dtype == torch.bool and tuple(idx.shape) == (self.n,):
            idx = idx.nonzero().flatten()
        if idx.dtype == torch.bool or idx.is_floating_point() or idx.ndim != 1 or (
                idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.n)):
            raise InputError(f"rows must be a 1-D integer index tensor with values in [0, {self.n}) (or a boolean "
                             f"mask of length {self.n}), got {tuple(idx.shape)} {idx.dtype}")
        values = tuple({k: v[idx] for k, v in d.items()} for d in self.values)
        return DiffAugmentParams(int(idx.numel()), self.image_shape, self.ops, values)

    def to(self, device: torch.device | str) -> DiffAugmentParams:
        """The same parameters on ``device``."""
        values = tuple({k: v.to(device) for k, v in d.items()} for d in self.values)
        return DiffAugmentParams(self.n, self.image_shape, self.ops, values)


def _parse_policy(policy: str | Sequence[str]) -> tuple[str, ...]:
    names = policy.split(",") if isinstance(policy, str) else list(policy)
    if not all(isinstance(p, str) for p in names):
        raise InputError(f"a DiffAugment policy is a comma-separated string or a sequence of op names "
                         f"({', '.join(DIFFAUG_OPS.names())}), got {policy!r}")
    names = [p.strip() for p in names if p.strip()]
    for p in names:
        DIFFAUG_OPS.get(p)  # an unknown op: a one-line error listing the known ones
    return tuple(names)


class DiffAugment:
    """Differentiable augmentation (Zhao et al. 2020) with a seeded, shardable draw (see the module doc).

    Args:
        policy: op names of :data:`DIFFAUG_OPS` applied in order, as a comma-separated string
            (``"color,translation,cutout"``, the paper's choice) or a sequence; empty: the identity.

    Example::

        aug = DiffAugment("color,translation,cutout")
        params = aug.draw(global_batch, (3, 32, 32), generator)   # every random number, on the CPU
        x_aug = aug.apply(x_local, params.select(rank_rows))      # this rank's rows, on x's device
        d_out = D(aug(x, generator))                              # or draw and apply in one call
    """

    def __init__(self, policy: str | Sequence[str] = "color,translation,cutout") -> None:
        self.policy = _parse_policy(policy)
        self.ops = tuple(DIFFAUG_OPS.get(p) for p in self.policy)

    def __repr__(self) -> str:
        return f"DiffAugment({','.join(self.policy)!r})"

    def draw(self, n: int, image_shape: Sequence[int], generator: torch.Generator | None = None) -> DiffAugmentParams:
        """Draw the random numbers of every op for ``n`` images, on the CPU, from ``generator``, in policy order.

        Args:
            n: the (global) batch size.
            image_shape: ``(C, H, W)`` of one image.
            generator: a CPU ``torch.Generator`` (None: the global RNG).

        Returns:
            the :class:`DiffAugmentParams` of the batch.

        Example::

            params = DiffAugment("translation").draw(64, (3, 32, 32), torch.Generator().manual_seed(0))
        """
        require(n, name="DiffAugment.draw: n", kind="int", min=0, error=InputError)
        shape = tuple(int(s) for s in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise InputError(f"DiffAugment draws for images of shape (C, H, W), got image_shape={tuple(image_shape)}")
        values = tuple(op.draw(int(n), shape, generator) for op in self.ops)
        return DiffAugmentParams(int(n), shape, self.policy, values)

    def apply(self, x: Tensor, params: DiffAugmentParams) -> Tensor:
        """Apply drawn parameters to ``x`` ``[n, C, H, W]`` (differentiable w.r.t. ``x``, on ``x``'s device).

        Args:
            x: images in [-1, 1], one per row of ``params``.
            params: from :meth:`draw` (or its :meth:`DiffAugmentParams.select`), for this policy.

        Returns:
            the augmented images, same shape and dtype as ``x``.

        Example::

            y = aug.apply(x, aug.draw(len(x), x.shape[1:], generator))
        """
        if params.ops != self.policy:
            raise InputError(f"these parameters were drawn for the policy {','.join(params.ops)!r}, not "
                             f"{','.join(self.policy)!r}; draw them with this DiffAugment")
        if x.ndim != 4 or len(x) != params.n or tuple(x.shape[1:]) != params.image_shape:
            raise InputError(f"DiffAugment parameters for {params.n} images of shape {params.image_shape} cannot "
                             f"augment a batch of shape {tuple(x.shape)}; draw them for this batch "
                             "(or select its rows)")
        params = params.to(x.device)
        for op, values in zip(self.ops, params.values):
            x = op.apply(x, values)
        return x

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``apply(x, draw(len(x), x.shape[1:], generator))``."""
        return self.apply(x, self.draw(len(x), tuple(x.shape[1:]), generator))
