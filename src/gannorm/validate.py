"""The one check of a number a user gave: its type, its range, and the one-line error that refuses it.

Every option, argument and config value that must be a number goes through here, so that the same
value gets the same answer and the same message everywhere:

- :func:`is_real` and :func:`is_int` say what counts as a number. A ``bool`` is never a number (``True``
  is not a width of 1). NumPy scalars count (``numpy.int64(3)`` is an integer, ``numpy.float32(0.5)`` a
  real): they are :class:`numbers.Integral` / :class:`numbers.Real`. A torch tensor, even a 0-d one, is
  not a number: pass ``tensor.item()``. A string is never a number (the config layer parses text first).
- :func:`bounds_text` says a range in words (``>= 1``, ``in (0, 1]``, ``in [0, 2**32)``), :func:`problem`
  says what a value breaks (``None`` when it is fine), and :func:`require` raises the project's one-line
  error: ``<name> must be <rule>, got <value> (<why>); <fix>``.

The error type is the caller's: :class:`gannorm.errors.OptionError` for a registered entry's option (it
carries the option's name), :class:`~gannorm.errors.ConfigError`, :class:`~gannorm.errors.InputError`,
a dataset's error, or plain ``ValueError`` for a library argument.
"""
from __future__ import annotations

import math
import numbers
import reprlib
from collections.abc import Collection
from typing import Any, Literal

from .errors import OptionError

Kind = Literal["real", "int", "any"]

__all__ = ["Kind", "bounds_text", "in_bounds", "is_int", "is_real", "problem", "require", "shown"]

#: about how many characters a value takes in a message
SHOWN_CHARS = 60
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = SHOWN_CHARS


def is_real(x: Any, finite: bool = True) -> bool:
    """Whether ``x`` is a real number: not a bool, not a string, not a tensor; finite unless ``finite=False``.

    Args:
        x: any value.
        finite: also require ``x`` to be finite (no NaN, no infinity).

    Returns:
        True for ints, floats and NumPy scalars of those kinds (finite ones, by default).

    Example:
        >>> is_real(0.5), is_real(True), is_real(float("nan")), is_real(float("inf"), finite=False)
        (True, False, False, True)
    """
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return False
    if not finite:
        return True
    try:
        return math.isfinite(x)
    except OverflowError:  # an integer past float's range is finite
        return True


def is_int(x: Any) -> bool:
    """Whether ``x`` is an integer: a Python or NumPy integer, never a bool (nor ``1.0``).

    Args:
        x: any value.

    Returns:
        True for ``int`` and ``numpy.integer`` values other than ``True``/``False``.

    Example:
        >>> is_int(3), is_int(True), is_int(3.0)
        (True, False, False)
    """
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _bound(v: float) -> str:
    """A bound in words: powers of two from 2**16 on as ``2**k`` (``2**32``), others as written."""
    if isinstance(v, int) and v >= 2**16 and v & (v - 1) == 0:
        return f"2**{v.bit_length() - 1}"
    return f"{v}"


def bounds_text(min: float | None = None, max: float | None = None, *,
                min_exclusive: bool = False, max_exclusive: bool = False) -> str:
    """A range in words: ``>= 1``, ``> 0``, ``<= 10``, ``in (0, 1]``, ``in [0, 2**32)``; ``""`` for none.

    Args:
        min, max: the bounds (None: unbounded on that side).
        min_exclusive, max_exclusive: whether the bound itself is excluded.

    Returns:
        The text that completes "must be a number ...".

    Example:
        >>> bounds_text(0, 2**32, max_exclusive=True)
        'in [0, 2**32)'
    """
    if min is not None and max is not None:
        return f"in {'(' if min_exclusive else '['}{_bound(min)}, {_bound(max)}{')' if max_exclusive else ']'}"
    if min is not None:
        return f"{'>' if min_exclusive else '>='} {_bound(min)}"
    if max is not None:
        return f"{'<' if max_exclusive else '<='} {_bound(max)}"
    return ""


def in_bounds(x: Any, min: float | None = None, max: float | None = None, *,
              min_exclusive: bool = False, max_exclusive: bool = False) -> bool:
    """Whether the number ``x`` lies within the bounds (see :func:`bounds_text`); it is not type-checked.

    Example:
        >>> in_bounds(1.0, 0, 1, min_exclusive=True), in_bounds(0, 0, 1, min_exclusive=True)
        (True, False)
    """
    if min is not None and (x <= min if min_exclusive else x < min):
        return False
    return max is None or (x < max if max_exclusive else x <= max)


def shown(value: Any) -> str:
    """``value`` for a one-line message: its repr, bounded (a long string or container is cut, a huge
    integer is its number of digits); no YAML needed, so a library can use it.

    Example:
        >>> shown(0.5), shown(10**400), shown("x" * 100)[:22]
        ('0.5', 'an integer of 401 digits', "a str of 100 chars: 'x")
    """
    if is_int(value) and abs(int(value)).bit_length() > 3 * SHOWN_CHARS:
        return f"an integer of {math.floor(abs(int(value)).bit_length() * math.log10(2)) + 1} digits"
    if isinstance(value, str) and len(value) > SHOWN_CHARS:
        return f"a str of {len(value)} chars: {value[:SHOWN_CHARS]!r}..."
    try:
        return _REPR.repr(value)
    except ValueError:  # an integer inside a container past int-to-text's limit
        return f"a {type(value).__name__}"


_NOUNS = {"real": "a finite number", "int": "an integer", "any": "a value"}


def problem(value: Any, *, kind: Kind = "real", min: float | None = None,
            max: float | None = None, min_exclusive: bool = False, max_exclusive: bool = False,
            choices: Collection[Any] | None = None, optional: bool = False) -> str | None:
    """What ``value`` must be, in words, if it is not that; ``None`` if it is fine.

    Args:
        value: the value to check.
        kind: ``"real"`` (a finite number, :func:`is_real`), ``"int"`` (:func:`is_int`), or ``"any"``
            (only ``choices`` apply).
        min, max, min_exclusive, max_exclusive: the bounds (:func:`bounds_text`).
        choices: the values allowed (compared with ``==``; a bool never matches a number).
        optional: ``None`` is allowed too.

    Returns:
        ``None``, or the rule that completes "must be ...", such as ``"an integer >= 1"``.

    Example:
        >>> problem(0, kind="int", min=1)
        'an integer >= 1'
        >>> problem(2, kind="int", min=1) is None
        True
    """
    if optional and value is None:
        return None
    if choices is not None:
        ok = any(value == c and isinstance(value, bool) == isinstance(c, bool) for c in choices)
        rule = f"one of {', '.join(str(c) for c in choices)}"
    else:
        typed = is_int(value) if kind == "int" else is_real(value) if kind == "real" else True
        ok = typed and in_bounds(value, min, max, min_exclusive=min_exclusive, max_exclusive=max_exclusive)
        rule = " ".join(t for t in (_NOUNS[kind], bounds_text(min, max, min_exclusive=min_exclusive,
                                                              max_exclusive=max_exclusive)) if t)
    return None if ok else rule + (" or None" if optional else "")


def require(value: Any, *, name: str, kind: Kind = "real", min: float | None = None,
            max: float | None = None, min_exclusive: bool = False, max_exclusive: bool = False,
            choices: Collection[Any] | None = None, optional: bool = False,
            error: type[Exception] = ValueError, why: str = "", fix: str = "") -> Any:
    """``value`` if it is what :func:`problem` asks for, else a one-line ``error``.

    The message is ``<name> must be <rule>, got <value>`` then `` (<why>)`` and ``; <fix>`` when given;
    the value is shown bounded (a huge integer or string stays one short line, :func:`shown`).

    Args:
        value: the value to check.
        name: how the message names it (``"scale"``, ``"config key train.steps"``, ``"ring8: option n"``).
        kind, min, max, min_exclusive, max_exclusive, choices, optional: the rule (:func:`problem`).
        error: the exception class; an :class:`~gannorm.errors.OptionError` gets ``name`` as its option.
        why: what the value does (why the rule holds).
        fix: what to do instead.

    Returns:
        ``value`` itself, unchanged.

    Example:
        >>> require(8, name="width", kind="int", min=1)
        8
        >>> require(0, name="width", kind="int", min=1)
        Traceback (most recent call last):
        ...
        ValueError: width must be an integer >= 1, got 0
    """
    rule = problem(value, kind=kind, min=min, max=max, min_exclusive=min_exclusive, max_exclusive=max_exclusive,
                   choices=choices, optional=optional)
    if rule is None:
        return value
    message = f"{name} must be {rule}, got {shown(value)}{f' ({why})' if why else ''}{f'; {fix}' if fix else ''}"
    if issubclass(error, OptionError):
        raise error(name, message)
    raise error(message)
