"""The one reading of a device name a user gives (``train.device``, ``--device``): ``auto``, ``cpu``,
``cuda`` or ``cuda:N``, checked against this machine, or a one-line error naming where the name came from."""
from __future__ import annotations

from typing import Any

import torch

from .errors import GannormError

#: the device names gannorm accepts, in words
DEVICES = "auto, cpu, cuda or cuda:N"

__all__ = ["DEVICES", "resolve_device"]


def resolve_device(name: Any, *, what: str = "device", task: str = "gannorm",
                   error: type[GannormError] = GannormError) -> torch.device:
    """The device ``name`` names (``auto``: the GPU if there is one, else the CPU).

    Args:
        name: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        what: where the name came from, first in a message (``"config key train.device:"``, ``"--device"``).
        task: what runs on the device, for the message (``"training"``, ``"evaluation"``).
        error: the exception class of a refusal (one line).

    Returns:
        A CPU or CUDA ``torch.device``; a CUDA one only if this machine has that GPU.

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise error(f"{what} {name!r} is not a device ({DEVICES})") from None
    if device.type not in ("cpu", "cuda"):
        raise error(f"{what} {name!r} is not a device {task} runs on ({DEVICES})")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise error(f"{what} {name} asks for a GPU, but none is available; use cpu or auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise error(f"{what} {name} names GPU {device.index}, but this machine has {count} (cuda:0 to "
                    f"cuda:{count - 1}); use one of those, cuda or auto")
    return device
