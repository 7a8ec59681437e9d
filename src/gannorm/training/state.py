"""Process-wide state the trainer needs for itself and gives back: torch's thread count and global RNG.

A library called from a user's program must not change that program's global state. The trainer
seeds the global RNG to build its models and draws from it while training; these helpers run such
code on a private copy of the generator state and restore the caller's afterwards.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


def _rng_devices(device: torch.device) -> list[int]:
    if device.type == "cuda" and torch.cuda.is_available():
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


_CPU = torch.device("cpu")


@contextlib.contextmanager
def private_rng(state: torch.Tensor | None = None, *, seed: int | None = None,
                device: torch.device = _CPU) -> Iterator[None]:
    """Within the block the global RNG starts from ``state`` (or ``seed``); the caller's RNG is restored
    afterwards, whatever the block drew from it."""
    with torch.random.fork_rng(devices=_rng_devices(device)):
        if seed is not None:
            torch.manual_seed(seed)
        if state is not None:
            torch.set_rng_state(state)
        yield


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` within the block (0: leave it), the caller's count restored after."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)
