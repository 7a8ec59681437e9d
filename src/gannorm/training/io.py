"""Atomic file writes and safe checkpoint loading."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ..fileio import atomic_write, atomic_write_text  # noqa: F401  (re-exported)


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint with ``weights_only=True`` (tensors, containers and plain values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors, truncated files
        raise ValueError(f"checkpoint {path} cannot be loaded safely: {str(err).splitlines()[0]}") from None
