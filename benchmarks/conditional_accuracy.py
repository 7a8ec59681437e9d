"""Does a conditional digits generator draw the class it is asked for? Measured on its exported TorchScript file.

Exports a trained conditional digits run (``gannorm export RUN -o G.pt``), loads the file with plain
``torch.jit.load`` (no gannorm), draws ``--per-class`` samples of each class ``k`` as ``G(z, y=k)``, and
reports how often two classifiers recognise ``k``:

* ``gannorm classifier``: the digits classifier the metrics use (``class_acc``);
* ``independent SVC``: scikit-learn's RBF support-vector classifier trained here on scikit-learn's own 8x8
  digits (pixel values 0..16), no gannorm code involved; G's 16x16 samples are averaged over 2x2 blocks to 8x8
  and mapped from [-1, 1] to 0..16. Its accuracy on held-out real digits is printed as the ceiling.

Run::

    gannorm train digits_cond                         # ~3 minutes
    python benchmarks/conditional_accuracy.py runs/digits-cnn-bssn-s0
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def svc_on_sklearn_digits(seed: int = 0):
    """An RBF SVC fit on 1,500 of scikit-learn's 8x8 digits; returns it and its accuracy on the other 297."""
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC
    digits = load_digits()
    order = np.random.default_rng(seed).permutation(len(digits.target))
    train, test = order[:1500], order[1500:]
    clf = SVC(gamma=0.001, C=10.0).fit(digits.data[train], digits.target[train])
    return clf, float((clf.predict(digits.data[test]) == digits.target[test]).mean())


def to_sklearn_pixels(x: torch.Tensor) -> np.ndarray:
    """[N, 1, 16, 16] in [-1, 1] -> [N, 64] in 0..16, the 2x2 block means (scikit-learn's 8x8 digits)."""
    small = F.avg_pool2d(x.float(), 2) if x.shape[-1] == 16 else F.interpolate(x.float(), size=8, mode="area")
    return ((small.clamp(-1, 1) + 1) * 8).flatten(1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("run", help="a conditional digits run folder")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from gannorm.app.export import export_generator
    from gannorm.metrics.classifier import get_classifier
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "G.pt"
        _, info = export_generator(args.run, path)
        g = torch.jit.load(str(path))
    classes = info.num_classes
    y = torch.arange(classes).repeat_interleave(args.per_class)
    z = torch.randn(len(y), info.z_dim, generator=torch.Generator().manual_seed(args.seed))
    with torch.no_grad():
        x = torch.cat([g(zc, yc) for zc, yc in zip(z.split(250), y.split(250))])
    clf = get_classifier("digits", resolution=x.shape[-1])
    with torch.no_grad():
        ours = clf.probs(x).argmax(1)
    svc, ceiling = svc_on_sklearn_digits(args.seed)
    theirs = torch.as_tensor(svc.predict(to_sklearn_pixels(x)))
    per_class = [(theirs[y == k] == k).float().mean().item() for k in range(classes)]
    print(f"samples: {len(y)} ({args.per_class} per class), from the TorchScript file called as G(z, y)")
    print(f"gannorm classifier recognises y: {(ours == y).float().mean().item():.3f}")
    print(f"independent SVC recognises y:    {(theirs == y).float().mean().item():.3f} (its accuracy on real "
          f"held-out digits: {ceiling:.3f})")
    print("SVC per class: " + ", ".join(f"{k}: {a:.2f}" for k, a in enumerate(per_class)))


if __name__ == "__main__":
    main()
