"""Reading members of tar and zip archives in place (nothing is extracted to disk), with path checks.

Every member name passes :func:`safe_member_name`: an absolute name or one with a ``..`` component
makes the whole archive refused (a :class:`DatasetError`), even though nothing is written to disk,
since such an archive is malformed or hostile. So does any member that is not a regular file or a
directory -- a symbolic or hard link (in a tar, or a symlink stored in a zip), a device, a FIFO: a
dataset archive holds plain files, and a link could make a later extraction by some other tool write
outside its folder.
"""
from __future__ import annotations

import contextlib
import pickle
import re
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import IO, Callable, Iterator

import numpy as np

from .base import DatasetError

_DRIVE = re.compile(r"^[A-Za-z]:")


def safe_member_name(name: str, archive: str | Path = "archive") -> str:
    """The member ``name`` normalised (``/`` separators, no ``.`` or empty components, no trailing ``/``).

    Raises :class:`DatasetError` if it is absolute (``/x``, ``\\x``, ``C:x``), contains a ``..``
    component (``/`` and ``\\`` both count as separators), contains a NUL byte or is empty.
    """
    if not isinstance(name, str):
        raise DatasetError(f"{archive}: refusing archive member with a non-text name {name!r}")
    norm = name.replace("\\", "/")
    if "\x00" in norm:
        raise DatasetError(f"{archive}: refusing archive member {name!r} (NUL byte in name)")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise DatasetError(f"{archive}: refusing archive member {name!r} (absolute path)")
    parts = norm.split("/")
    if ".." in parts:
        raise DatasetError(f"{archive}: refusing archive member {name!r} ('..' in path)")
    clean = "/".join(p for p in parts if p not in ("", "."))
    if not clean:
        raise DatasetError(f"{archive}: refusing archive member with an empty name {name!r}")
    return clean


@contextlib.contextmanager
def read_errors(what: str, path: str | Path, expected: str = "") -> Iterator[None]:
    """Turn low-level read failures (corrupt gzip/tar/zip/pickle, truncated files) into a DatasetError."""
    try:
        yield
    except DatasetError:
        raise
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, pickle.UnpicklingError,
            ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
        exp = f"; expected {expected}" if expected else ""
        raise DatasetError(f"{what}: cannot read {path} ({type(e).__name__}: {e}){exp}") from e


def iter_tar(path: str | Path, select: Callable[[str], bool],
             what: str = "archive") -> Iterator[tuple[str, int, IO[bytes]]]:
    """Stream through a (possibly compressed) tar, yielding ``(name, size, file)`` for the regular
    members whose normalised name satisfies ``select``.

    The archive is read sequentially (``r|*``), so each ``file`` must be consumed before asking
    for the next member. Every member seen is checked with :func:`safe_member_name` and
    :func:`_check_tar_kind` (links and special files are refused); iteration may be stopped early
    (the archive is then closed).
    """
    with read_errors(what, path):
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                name = safe_member_name(member.name, path)
                _check_tar_kind(member, path)
                if member.isfile() and select(name):
                    f = tar.extractfile(member)
                    if f is not None:
                        yield name, member.size, f


def _check_tar_kind(member: tarfile.TarInfo, archive: str | Path) -> None:
    if member.isfile() or member.isdir():
        return
    if member.issym() or member.islnk():
        kind = "symbolic link" if member.issym() else "hard link"
        raise DatasetError(f"{archive}: refusing archive member {member.name!r} (a {kind} to {member.linkname!r}; "
                           "a dataset archive holds regular files only)")
    raise DatasetError(f"{archive}: refusing archive member {member.name!r} (a device, FIFO or other special file; "
                       "a dataset archive holds regular files only)")


def zip_names(zf: zipfile.ZipFile, path: str | Path) -> list[tuple[str, str]]:
    """``(original, normalised)`` names of the regular file members, all names checked first.

    A member stored as a symbolic link (Unix mode in ``external_attr``) is refused like an unsafe name.
    """
    out = []
    for info in zf.infolist():
        clean = safe_member_name(info.filename, path)
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(f"{path}: refusing archive member {info.filename!r} (a symbolic link; a dataset "
                               "archive holds regular files only)")
        if not info.is_dir():
            out.append((info.filename, clean))
    return out


# --------------------------------------------------------------------------- restricted unpickling

def _codecs_encode(obj, encoding="utf-8", errors="strict"):
    # Python 3 pickles bytes with protocol < 3 as _codecs.encode(str, "latin1"); allow only that.
    if not isinstance(obj, str) or encoding.replace("_", "-").lower() not in ("latin1", "latin-1"):
        raise DatasetError(f"refusing _codecs.encode with encoding {encoding!r}")
    return obj.encode("latin1", errors)


def _allowed_globals() -> dict[tuple[str, str], object]:
    reconstruct = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, wherever this numpy keeps it
    frombuffer = np.zeros(1).__reduce_ex__(5)[0]  # numpy's _frombuffer (pickle protocol 5)
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _codecs_encode,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = reconstruct
    if getattr(frombuffer, "__name__", "") == "_frombuffer":
        for mod in ("numpy.core.numeric", "numpy._core.numeric"):
            allowed[(mod, "_frombuffer")] = frombuffer
    return allowed


class SafeUnpickler(pickle.Unpickler):
    """An unpickler for pickled dicts/lists of numpy arrays only (``encoding="bytes"``, as for
    Python 2 pickles like CIFAR's). Any global other than numpy's array/dtype reconstruction is
    refused with a :class:`DatasetError`, so loading a hostile pickle cannot run code."""

    _ALLOWED: dict[tuple[str, str], object] | None = None

    def __init__(self, file: IO[bytes], source: str = "pickle") -> None:
        super().__init__(file, encoding="bytes")
        self.source = source
        if SafeUnpickler._ALLOWED is None:
            SafeUnpickler._ALLOWED = _allowed_globals()

    def find_class(self, module: str, name: str):
        try:
            return (self._ALLOWED or {})[(module, name)]  # set by __init__
        except KeyError:
            raise DatasetError(f"{self.source}: refusing to unpickle {module}.{name} "
                               "(only numpy arrays are allowed)") from None


def safe_unpickle(file: IO[bytes], source: str = "pickle"):
    """``pickle.load`` through :class:`SafeUnpickler`."""
    return SafeUnpickler(file, source).load()
