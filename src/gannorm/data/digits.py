"""``digits``: scikit-learn's bundled 8x8 handwritten digits (1,797 images, 10 classes), offline.

Pixel values 0..16 are mapped to 0..255 (``x * 255 / 16``), then enlarged with bilinear
interpolation (``torch.nn.functional.interpolate``, ``align_corners=False``; antialiasing is
irrelevant when enlarging) and rounded to uint8. One channel; labels 0-9 are kept (class names "0".."9").
"""
from __future__ import annotations

from pathlib import Path

import torch

from .base import Dataset, DatasetError, loader, quantize, resize

RESOLUTIONS = (8, 16, 32)


CLASS_NAMES = tuple(str(d) for d in range(10))


@loader("digits", resolutions=RESOLUTIONS, default=32, labels="")
def load_digits(root: Path | None, resolution: int) -> Dataset:
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise DatasetError("digits: needs scikit-learn, which bundles the data "
                           "(pip install scikit-learn, or pip install 'gannorm[digits]')") from None
    bunch = sk_load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) * (255.0 / 16.0)
    data = quantize(resize(images, resolution, antialias=True))
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    return Dataset("digits", data, "image", labels=labels, source="sklearn.datasets.load_digits",
                   class_names=CLASS_NAMES)
