"""``celebahq``: CelebA-HQ, 30,000 square high-quality faces, read from a folder of image files.

The usual distributions are folders of square PNG or JPG files at 1024, 512, 256 or 128 px (for
example ``data256x256/00001.jpg``, ``celeba_hq/*.png`` or ``CelebA-HQ-img/0.jpg``). ``root`` is
that folder (its images are found recursively, as ``imagefolder`` finds them), or a folder holding
several ``data<S>x<S>/`` folders, of which the smallest one with ``S >= resolution`` is read. Each
image is EXIF-rotated, converted to RGB and resized to ``resolution`` (64, 128, 256 (default), 512 or
1024) with Pillow's bilinear filter, antialiased when shrinking: the same decoder as ``imagefolder``.
An image that is not square, or smaller than ``resolution`` (no upscaling), is a one-line error:
the first image is checked when the dataset is loaded, every image when it is decoded. Unlabelled.
Option ``limit`` keeps the first ``limit`` images (sorted by path).

At 256 px the 30,000 decoded images are 5.9 GB, so ``in_memory="auto"`` reads them lazily on most
machines (``data.in_memory``); only the file names are then held in memory.
"""
from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from .archives import read_errors
from .base import DatasetError, check_limit, loader, need_root
from .folder import EXTENSIONS, FolderReader, list_images

RESOLUTIONS = (64, 128, 256, 512, 1024)
HINT = "a folder of the square CelebA-HQ images (PNG/JPG at 1024, 512, 256 or 128 px)"
_SIZED = re.compile(r"^data(\d+)x(\d+)$")


class CelebAHQReader(FolderReader):
    """The image files of a CelebA-HQ folder: :class:`~gannorm.data.folder.FolderReader`, refusing an
    image that is not square or is smaller than the resolution."""

    def __init__(self, root: Path, files, resolution: int) -> None:
        super().__init__(root, files, 3, resolution)
        self.name = "celebahq"

    def check(self, image: Image.Image, file: Path) -> None:
        w, h = image.size
        side = self.shape[-1]
        if w != h:
            raise DatasetError(f"celebahq: {file} is {w}x{h}, not square; expected the square CelebA-HQ images "
                               "(use imagefolder for other faces)")
        if w < side:
            fits = [r for r in RESOLUTIONS if r <= w]
            fix = f"choose data.resolution={fits[-1]} or use larger source images" if fits else "use larger images"
            raise DatasetError(f"celebahq: {file} is {w}x{h}, smaller than resolution {side} (images are never "
                               f"enlarged); {fix}")


def sized_folder(root: Path, resolution: int) -> Path:
    """``root``, or its ``data<S>x<S>`` sub-folder with the smallest ``S >= resolution`` if it has any."""
    sized = sorted((int(m.group(1)), p) for p in root.iterdir()
                   if p.is_dir() and (m := _SIZED.match(p.name)) and m.group(1) == m.group(2))
    if not sized:
        return root
    for side, path in sized:
        if side >= resolution:
            return path
    raise DatasetError(f"celebahq: the largest images in {root} are {sized[-1][1].name}, smaller than resolution "
                       f"{resolution} (images are never enlarged); choose data.resolution={sized[-1][0]} or less")


@loader("celebahq", resolutions=RESOLUTIONS, default=256)
def load_celebahq(root: Path | None, resolution: int, *, limit: int | None = None) -> CelebAHQReader:
    limit = check_limit("celebahq", limit)
    root = need_root("celebahq", root, HINT, "get CelebA-HQ at the resolution you train at, or larger")
    if not root.is_dir():
        raise DatasetError(f"celebahq: expected {HINT} at {root} (pass data.root=DIR)")
    with read_errors("celebahq", root, "a readable folder"):
        folder = sized_folder(root, resolution)
        files = list_images(folder).head(limit)
    if not len(files):
        raise DatasetError(f"celebahq: no image files ({', '.join(EXTENSIONS)}) under {folder}; expected {HINT}")
    reader = CelebAHQReader(folder, files, resolution)
    first = folder / files[0]
    with read_errors("celebahq", first, "a readable image"), Image.open(first) as im:
        reader.check(im, first)  # the size is in the header: a wrong folder or resolution fails now
    return reader
