"""Builders of tiny fake dataset files in the real on-disk formats (the tests write them under tmp_path).

A plain helper module (not a conftest) imported by the tests in this folder."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np


def add_tar_member(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


# ------------------------------------------------------------------------------------------- cifar

def cifar_batches(per_batch: int = 4, seed: int = 0) -> list[dict]:
    """5 batches in the real format: dicts with bytes keys, b'data' uint8 [n, 3072], b'labels' list."""
    rng = np.random.default_rng(seed)
    out = []
    for b in range(5):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, size=per_batch)]
        out.append({b"batch_label": f"training batch {b + 1} of 5".encode(), b"labels": labels,
                    b"data": data, b"filenames": [f"img_{b}_{i}.png".encode() for i in range(per_batch)]})
    return out


def write_cifar_tar(path: Path, batches: list[dict], extra: dict[str, bytes] | None = None,
                    skip: tuple[int, ...] = (), first: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in (first or {}).items():
            add_tar_member(tar, name, payload)
        add_tar_member(tar, "cifar-10-batches-py/batches.meta", pickle.dumps({b"label_names": [b"x"]}, protocol=2))
        for i, batch in enumerate(batches, 1):
            if i not in skip:
                add_tar_member(tar, f"cifar-10-batches-py/data_batch_{i}", pickle.dumps(batch, protocol=2))
        add_tar_member(tar, "cifar-10-batches-py/test_batch", pickle.dumps(batches[0], protocol=2))
        for name, payload in (extra or {}).items():
            add_tar_member(tar, name, payload)
    return path


# ------------------------------------------------------------------------------------------- stl10

def stl_images(n: int = 5, seed: int = 0) -> np.ndarray:
    """Upright uint8 images [n, 3, 96, 96] with an asymmetric pattern: a bright bar in the top rows
    of the left part, so a transposed or flipped read would be caught."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 100, size=(n, 3, 96, 96), dtype=np.uint8)
    img[:, :, 2:6, 4:60] = 250  # horizontal bar near the top, left of centre
    img[:, 0, 80, 90] = 7  # a marked pixel (row 80, column 90) in the red plane
    return img


def stl_bytes(images: np.ndarray) -> bytes:
    """The file layout: per image, 3 planes stored column-major (i.e. [c, col, row] in C order)."""
    return np.ascontiguousarray(images.transpose(0, 1, 3, 2)).tobytes()


# ------------------------------------------------------------------------------------------ celeba

def celeba_image(seed: int) -> np.ndarray:
    """A 218-high x 178-wide RGB image: 255 outside the official crop, a pattern inside it."""
    rng = np.random.default_rng(seed)
    img = np.full((218, 178, 3), 255, dtype=np.uint8)
    img[45:173, 25:153] = rng.integers(0, 200, size=(128, 128, 3), dtype=np.uint8)
    img[45, 25] = (1, 2, 3)  # top-left corner of the crop
    img[172, 152] = (4, 5, 6)  # bottom-right corner of the crop
    return img


def png_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return path


def write_mnist_csv(path: Path, n: int = 20, seed: int = 0, columns: int = 785) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, size=(n, columns - 1))
    labels = np.arange(n) % 10
    table = np.concatenate([pixels, labels[:, None]], axis=1)
    with gzip.open(path, "wt") as f:
        np.savetxt(f, table, fmt="%d", delimiter=",")
    return pixels, labels


def children() -> set[int]:
    """The live child processes of this one (from /proc; empty where there is no /proc)."""
    out = set()
    if not os.path.isdir("/proc"):
        return out
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and fields[0] != "Z":
            out.add(int(pid))
    return out

