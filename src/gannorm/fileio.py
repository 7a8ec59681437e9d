"""Atomic file writes (a crash or a signal mid-write never leaves a truncated file behind), and the one
check every user string that becomes a path goes through (:func:`safe_name`, :func:`safe_path`)."""
from __future__ import annotations

import math
import os
import tempfile
import unicodedata
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import ConfigError


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


#: the longest name :func:`safe_name` accepts, in characters and in UTF-8 bytes (a file system allows 255:
#: the rest is room for what is added to it, such as a sweep run id's -s<seed>-<hash> or -2)
MAX_NAME_CHARS, MAX_NAME_BYTES = 128, 200


def _shown(value: Any) -> str:
    """A short repr of ``value`` (a message never shows a user's value unbounded)."""
    text = value if isinstance(value, str) else None
    if text is None:
        return f"a {type(value).__name__}" if value is not None else "null"
    return repr(text) if len(text) <= 60 else f"a name of {len(text)} characters ({text[:40]!r}...)"


def _control(text: str) -> str | None:
    """The first control character in ``text`` (NUL, newline, tab, DEL, ...), or None."""
    return next((c for c in text if unicodedata.category(c) == "Cc"), None)


def safe_name(text: Any, what: str) -> str:
    """``text`` if it is a plain name for one file or folder, else a one-line :class:`ConfigError`.

    The one rule for every user string that becomes a path component (a run name, a sweep's or a
    comparison preset's variant name, an experiment's variant): it must be text (not null, a number or a
    list), not empty, not ``.`` or ``..``, without ``/`` or ``\\`` (so never absolute and never outside
    the folder it is meant for), without control characters (NUL, newline, tab, ...), and at most
    :data:`MAX_NAME_CHARS` characters and :data:`MAX_NAME_BYTES` UTF-8 bytes.

    Args:
        text: the name the user gave.
        what: what it is, for the message (e.g. ``"config key train.run_name"``, ``"sweep s.yaml: variant"``).

    Returns:
        ``text``, unchanged.

    Raises:
        ConfigError: ``<what>: <the name> is not a plain name (<why>); give a name of letters, digits, '-',
        '_' and '.'``.

    Example:
        >>> safe_name("bssn-c1.4", "variant")
        'bssn-c1.4'
        >>> safe_name("../x", "variant")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        gannorm.errors.ConfigError: variant: '../x' is not a plain name (it holds '/'); give a name of ...
    """
    why = _name_problem(text)
    if why is not None:
        raise ConfigError(f"{what}: {_shown(text)} is not a plain name ({why}); give a name of letters, digits, "
                          "'-', '_' and '.' (a folder is made of it)")
    return text


def _name_problem(text: Any) -> str | None:
    if not isinstance(text, str):
        return "it must be text"
    if not text:
        return "it is empty"
    if text in (".", ".."):
        return "it names a folder itself"
    sep = next((c for c in ("/", "\\") if c in text), None)
    if sep is not None:
        return f"it holds {sep!r}"
    control = _control(text)
    if control is not None:
        return f"it holds the control character {control!r}"
    if len(text) > MAX_NAME_CHARS or len(text.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_CHARS} characters or {MAX_NAME_BYTES} bytes"
    return None


def safe_path(path: Any, what: str) -> str:
    """``path`` (text or a ``pathlib.Path``) as text, if it can name a file or folder; else a one-line
    :class:`ConfigError`.

    A path may be relative or absolute and hold separators (it says where the user wants things); it must
    not be empty, hold control characters (NUL, newline, ...) or a part longer than :data:`MAX_NAME_BYTES`
    bytes.

    Args:
        path: a ``str`` or ``os.PathLike``.
        what: what it is, for the message (e.g. ``"config key train.out_dir"``, ``"--out"``).

    Returns:
        The path as a ``str``.

    Example:
        >>> safe_path(Path("runs") / "a", "--out")
        'runs/a'
    """
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if isinstance(text, bytes) or not isinstance(text, str):
        why = "it must be text or a pathlib.Path"
    elif not text:
        why = "it is empty"
    elif _control(text) is not None:
        why = f"it holds the control character {_control(text)!r}"
    elif any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in text.split(os.sep)):
        why = f"a part is longer than {MAX_NAME_BYTES} bytes"
    else:
        return text
    raise ConfigError(f"{what}: {_shown(text)} is not a usable path ({why}); give a folder such as runs/")


def resolve_shipped(name_or_path: Any, *, folder: Path, what: str, kind: str,
                    hint: Callable[[str], str]) -> Path:
    """A YAML file the user names, or the name of one shipped in ``folder`` (a preset, a sweep).

    Text ending in ``.yaml``/``.yml``, or naming something that exists, is a path; anything else is the
    name of ``folder/<name>.yaml``. A problem is a one-line :class:`ConfigError`: a folder given as the
    file, a missing file, an unknown name (each with ``hint(name)``: the known names, the close ones).

    Args:
        name_or_path: a ``str`` or ``os.PathLike``.
        folder: where the shipped YAML files live.
        what: what the file is, for the messages (``"config"``, ``"sweep"``).
        kind: what a shipped one is called (``"preset"``, ``"sweep"``).
        hint: the known names for a message, given the text the user gave.

    Returns:
        The path of the YAML file (not read).

    Example:
        >>> resolve_shipped("a.yaml", folder=Path("configs"), what="config", kind="preset",
        ...                 hint=lambda n: "known: digits")  # doctest: +SKIP
        PosixPath('a.yaml')
    """
    text = safe_path(name_or_path, f"{what} file")
    path, shown = Path(text), repr(text) if len(text) <= 240 else _shown(text)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if path.is_dir():
            raise ConfigError(f"{what} {shown} is a directory; give a YAML file in it or a {kind} name")
        if not path.is_file():
            raise ConfigError(f"{what} file {shown} not found (or give a {kind} name: {hint(text)})")
        return path
    shipped = folder / f"{text}.yaml"
    if not shipped.is_file():
        raise ConfigError(f"unknown {kind} {shown}; {hint(text)}")
    return shipped


def check_npz_member(path: str | os.PathLike, key: str) -> None:
    """Refuse the array ``key`` of the ``.npz`` archive ``path`` when its ``.npy`` header claims more bytes than
    the member holds (a damaged or crafted file that would make :func:`numpy.load` allocate terabytes): only the
    header is read.

    Args:
        path: the ``.npz`` file (a zip archive).
        key: the array's name (the member ``key + ".npy"``).

    Returns:
        None; a one-line ``ValueError`` naming the member, its claimed shape and dtype and its size. A missing
        member, an unreadable archive or header raise :mod:`zipfile`'s or numpy's errors (``KeyError``,
        ``zipfile.BadZipFile``, ``ValueError``).

    Example::

        >>> check_npz_member("samples.npz", "samples")   # doctest: +SKIP
    """
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(key if key.endswith(".npy") else key + ".npy")
        with archive.open(info) as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
    if dtype.hasobject:  # pickled objects: numpy refuses them without allow_pickle
        return
    claimed = math.prod(int(n) for n in shape) * dtype.itemsize
    if claimed > info.file_size:
        raise ValueError(f"{path}: array {key!r} claims shape {tuple(shape)} of {dtype} ({claimed:,} bytes) but its "
                         f"member holds {info.file_size:,} bytes: the file is damaged or not an array file")
