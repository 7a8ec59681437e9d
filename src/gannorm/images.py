"""Sample grids and 2-D scatter plots as PNG files, with numpy and Pillow only."""
from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image, ImageDraw

from .fileio import atomic_write


def cell_factor(width: int, min_cell: int = 0) -> int:
    """The integer nearest-neighbour factor that makes an image ``width`` pixels wide at least ``min_cell`` wide."""
    return max(1, -(-min_cell // width)) if min_cell else 1


def grid_layout(n: int, nrow: int | None = None) -> tuple[int, int]:
    """``(rows, cols)`` of a grid of ``n`` images with ``nrow`` images per row (default: a square)."""
    cols = nrow or max(1, int(math.ceil(math.sqrt(n))))
    return int(math.ceil(n / cols)), cols


def grid_size(n: int, height: int, width: int, nrow: int | None = None, pad: int = 2,
              min_cell: int = 0) -> tuple[int, int]:
    """The ``(height, width)`` in pixels of :func:`image_grid`'s picture of ``n`` images ``height x width``.

    Args:
        n: the number of images.
        height: an image's height.
        width: an image's width.
        nrow: images per row (default: a square grid).
        pad: pixels between and around the cells.
        min_cell: the smallest cell width (small images are enlarged by an integer factor).

    Returns:
        The picture's height and width (it is ``uint8`` RGB: 3 bytes per pixel).

    Example::

        >>> grid_size(64, 8, 8, min_cell=64)
        (530, 530)
    """
    factor = cell_factor(width, min_cell)
    rows, cols = grid_layout(n, nrow)
    return rows * (height * factor + pad) + pad, cols * (width * factor + pad) + pad


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[N, C, H, W]`` in [-1, 1] -> ``uint8`` ``[N, H, W, C]`` in 0..255 (values outside [-1, 1] clamped)."""
    x = images.detach().float().cpu().clamp(-1, 1)
    return ((x.numpy() + 1) * 127.5).round().astype(np.uint8).transpose(0, 2, 3, 1)


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, min_cell: int = 0) -> np.ndarray:
    """``[N, C, H, W]`` in [-1, 1] -> one ``uint8`` image ``[rows*(H+pad)+pad, cols*(W+pad)+pad, 3]``.

    ``min_cell`` enlarges small images by an integer nearest-neighbour factor so that each cell is at
    least that many pixels wide (16x16 digits are hard to judge at their own size). The images are
    enlarged one at a time as they are placed, so the memory is the grid's (:func:`grid_size`) plus one cell.
    """
    n, c, h, w = images.shape
    if c not in (1, 3):
        raise ValueError(f"image grids need 1 or 3 channels, got {c}")
    factor = cell_factor(w, min_cell)
    rows, cols = grid_layout(n, nrow)
    height, width = grid_size(n, h, w, nrow, pad, min_cell)
    cell_h, cell_w = h * factor, w * factor
    grid = np.zeros((height, width, 3), dtype=np.uint8)
    for r in range(rows):
        row = to_uint8(images[r * cols:(r + 1) * cols])  # one grid row at the native size at a time
        for q, image in enumerate(row):
            if factor > 1:
                image = image.repeat(factor, axis=0).repeat(factor, axis=1)
            top, left = pad + r * (cell_h + pad), pad + q * (cell_w + pad)
            grid[top:top + cell_h, left:left + cell_w] = image  # one channel broadcasts to three
    return grid


def class_grid(images: torch.Tensor, per_class: int, pad: int = 2, min_cell: int = 0) -> np.ndarray:
    """Samples of a class-conditional generator, one class per row: ``images`` ``[K * per_class, C, H, W]`` in
    [-1, 1] ordered by class (the ``per_class`` samples of class 0, then those of class 1, ...) -> one ``uint8``
    picture with K rows of ``per_class`` cells (:func:`image_grid`).

    Args:
        images: the samples, ordered by class.
        per_class: samples per class (the columns).
        pad: pixels between cells.
        min_cell: enlarge small images to at least this many pixels per cell.

    Returns:
        ``uint8`` ``[K * (H + pad) + pad, per_class * (W + pad) + pad, 3]``.

    Example::

        >>> class_grid(torch.zeros(6, 1, 4, 4), per_class=3).shape   # 2 classes: 2 rows of 3
        (14, 20, 3)
    """
    if per_class < 1 or len(images) % per_class:
        raise ValueError(f"class grids need a whole number of rows of {per_class} samples, got {len(images)} samples")
    return image_grid(images, nrow=per_class, pad=pad, min_cell=min_cell)


def scatter_plot(fake: torch.Tensor, real: torch.Tensor | None = None, size: int = 400,
                 extent: float | None = None) -> np.ndarray:
    """2-D points as a ``uint8`` RGB picture: real in grey, generated in red."""
    pts = [p.detach().float().cpu().numpy() for p in (real, fake) if p is not None]
    if extent is None:
        extent = float(max(np.abs(p).max() for p in pts)) * 1.1 + 1e-6
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    for p, color in zip(pts, ["#999999", "#d62728"] if real is not None else ["#d62728"]):
        xy = (p[:, :2] / extent + 1) * (size - 1) / 2
        for x, y in xy:
            draw.ellipse((x - 1.5, size - 1 - y - 1.5, x + 1.5, size - 1 - y + 1.5), fill=color)
    return np.asarray(img)


def save_png(path: str | os.PathLike, array: np.ndarray) -> None:
    atomic_write(path, lambda fh: Image.fromarray(array).save(fh, format="PNG"))
