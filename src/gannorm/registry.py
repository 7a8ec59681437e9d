"""A tiny registry: one per family (normalizations, losses, networks, datasets, metrics, penalties).

A new method is one file plus one ``REGISTRY.register(...)`` call. An entry is usually a small frozen
dataclass that carries what callers need (the function, its capabilities, a ``description``), so no
caller dispatches on names. Lookups of unknown names fail with a one-line error that lists the
known ones. A registry may be given a ``check(name, obj)`` that refuses an inconsistent entry at
registration time.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generic, Iterator, TypeVar

from .errors import GannormError

T = TypeVar("T")


class UnknownNameError(GannormError, KeyError, ValueError):
    """Raised for a name that is not registered; ``str()`` is a readable one-line message.

    It is a ``KeyError`` (a failed lookup) and a ``ValueError`` (a bad argument value), so either
    ``except`` clause catches it."""

    def __str__(self) -> str:  # KeyError quotes its message; we do not want that
        return str(self.args[0])


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    obj: T
    description: str


class Registry(Generic[T]):
    def __init__(self, family: str, check: Callable[[str, T], None] | None = None) -> None:
        self.family = family
        self._check = check
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, obj: T, description: str | None = None) -> T:
        """Add ``obj`` under ``name``; ``description`` defaults to ``obj.description`` (or "")."""
        if name in self._entries:
            raise ValueError(f"{self.family} {name!r} is already registered")
        if self._check is not None:
            self._check(name, obj)
        if description is None:
            description = str(getattr(obj, "description", ""))
        self._entries[name] = Entry(name, obj, description)
        return obj

    def get(self, name: str) -> T:
        try:
            return self._entries[name].obj
        except KeyError:
            raise UnknownNameError(
                f"unknown {self.family} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        return list(self._entries)

    def entries(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())

    def __contains__(self, name: object) -> bool:
        return name in self._entries
