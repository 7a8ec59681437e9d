"""Atomic file writes: a crash or a signal mid-write never leaves a truncated file behind."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable


TEMPORARY_SUFFIX = ".tmp"
#: the temporary files :func:`atomic_write` makes next to their target (``.<name>.<random>.tmp``)
TEMPORARY_GLOB = f".*{TEMPORARY_SUFFIX}"


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> None:
    """Write ``path`` through a temporary file in the same folder, then rename it into place.

    A crash or a signal mid-write leaves the previous file intact, never a truncated one. A failed
    write (a full disk, a read-only place) removes the temporary file and raises ``OSError`` whose
    message names ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
    except OSError as err:
        raise _naming(err, path) from err
    try:
        with os.fdopen(fd, mode) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError) and err.filename is None:
            raise _naming(err, path) from err
        raise


def _naming(err: OSError, path: Path) -> OSError:
    """The same error, naming the file the user asked for (not a temporary one)."""
    return type(err)(err.errno, f"cannot write {path}: {err.strerror or err}") if err.errno else \
        OSError(f"cannot write {path}: {err}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text), mode="w")


def claim_dir(parent: str | os.PathLike, name: str) -> Path:
    """Create and return a new folder ``parent/name``, or ``name-2``, ``name-3``, ... if taken.

    Each candidate is claimed with one ``mkdir``, which fails if the folder exists: two processes
    starting at once get two different folders, and an existing folder is never reused. ``OSError``
    (a read-only place, a file in the way) propagates to the caller, which names the config key.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    i = 1
    while True:
        path = parent / (name if i == 1 else f"{name}-{i}")
        try:
            path.mkdir()
        except FileExistsError:
            i += 1
            continue
        return path
