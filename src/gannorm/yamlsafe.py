"""YAML with limits: the one loader for every YAML text gannorm reads (configs, sweep files, overrides).

:func:`load` is ``yaml.safe_load`` made safe against careless and hostile text:

- **alias expansion is bounded** before any Python object is built: a first pass over the parser's
  events counts the nodes each anchor expands to, so a "billion laughs" bomb (nine levels of nine
  aliases in a 1 KB file) is refused in milliseconds (:data:`MAX_NODES` nodes in all);
- **nesting depth is bounded** (:data:`MAX_DEPTH`, aliases included), so nothing later recurses
  without end;
- **duplicate mapping keys are refused** (a duplicated key is usually a typo; YAML would keep the last);
- **keys are text**: ``1:``, ``on:`` (a boolean in YAML 1.1) or ``null:`` as a key is refused;
- only plain data is built: strings, numbers, booleans, null, lists and mappings (a date stays a
  string; ``!!binary``, ``!!set``, ``!!omap``, ``!!pairs``, ``!!timestamp`` are refused);
- every problem is a one-line :class:`YamlError` naming where and the fix; a message never shows a
  value unbounded (:func:`summary`).
"""
from __future__ import annotations

import math
from typing import Any

import yaml

from .errors import ConfigError

#: the most nodes (scalars, lists, mappings) a document may expand to, aliases expanded
MAX_NODES = 10_000
#: the deepest nesting of lists and mappings, aliases expanded
MAX_DEPTH = 64
#: the longest text read (characters)
MAX_CHARS = 4 * 1024 * 1024

_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"
_REFUSED_TAGS = ("binary", "set", "omap", "pairs", "timestamp")


class YamlError(ConfigError):
    """A YAML text gannorm refuses; ``syntax`` is True when it is not valid YAML at all (a parse error)."""

    def __init__(self, message: str, syntax: bool = False) -> None:
        super().__init__(message)
        self.syntax = syntax


def summary(value: Any, limit: int = 60) -> str:
    """A short description of ``value`` for an error message: its repr if short, else its type and a cut repr.

    Never formats more than about ``limit`` characters of the value, whatever its size (a huge list, an
    integer of a million digits, a structure that contains itself).

    Args:
        value: any object.
        limit: about how many characters of the value to show.

    Returns:
        One line, e.g. ``'abc'``, ``12``, or ``a list of 387420489 items: [[[1, 2, ...``.

    Example:
        >>> summary("x" * 1000)[:22]
        "a str of 1000 chars: '"
    """
    text, complete = _bounded_repr(value, limit)
    if complete:
        return text
    size = _size_text(value)
    if not text:
        return size
    return f"{size}: {text}..." if size else f"{text}..."


def _size_text(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int):
        return f"an integer of {max(1, math.floor(value.bit_length() * math.log10(2)) + 1)} digits"
    if isinstance(value, str):
        return f"a str of {len(value)} chars"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"a {type(value).__name__} of {len(value)} item{'' if len(value) == 1 else 's'}"
    return f"a {type(value).__name__}"


def _bounded_repr(value: Any, limit: int) -> tuple[str, bool]:
    """``(text, complete)``: the repr of ``value`` cut to about ``limit`` characters, built without
    formatting more than that (containers are walked with a shrinking budget)."""
    parts: list[str] = []
    budget = [limit]

    def emit(s: str) -> bool:
        parts.append(s[: max(budget[0], 0)])
        budget[0] -= len(s)
        return budget[0] >= 0

    def walk(v: Any) -> bool:
        if budget[0] <= 0:
            return False
        if isinstance(v, dict):
            if not emit("{"):
                return False
            for i, (k, x) in enumerate(v.items()):
                if (i and not emit(", ")) or not walk(k) or not emit(": ") or not walk(x):
                    return False
            return emit("}")
        if isinstance(v, (list, tuple)):
            open_, close = ("[", "]") if isinstance(v, list) else ("(", ")")
            if not emit(open_):
                return False
            for i, x in enumerate(v):
                if (i and not emit(", ")) or not walk(x):
                    return False
            return emit(close)
        if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 4 * limit:
            budget[0] = -1  # too long to show: the caller names its size
            return False
        if isinstance(v, str) and len(v) > limit:
            return emit(repr(v[: limit + 1]))
        try:
            return emit(repr(v))
        except Exception:  # noqa: BLE001 -- an object whose repr fails: show its type
            return emit(f"<{type(v).__name__}>")

    complete = walk(value)
    return "".join(parts), complete


class _Loader(yaml.SafeLoader):
    """SafeLoader with text-only, unique keys and without implicit timestamps."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if key_node.tag == _MERGE:
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise YamlError(_not_text(key_node, key, line))
            if key in seen:
                raise YamlError(f"the key {summary(key, 40)} appears twice in one mapping (again at line {line}); "
                                "keep one")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _not_text(node: yaml.Node, key: Any, line: int) -> str:
    if isinstance(node, yaml.ScalarNode):
        shown = node.value if len(node.value) <= 40 else node.value[:40] + "..."
        return (f"the key {shown} at line {line} is read as {type(key).__name__}, not text; quote it "
                f"('{shown}':)")
    return f"a {type(key).__name__} is used as a key at line {line}; keys are names (text)"


def _refuse_tag(loader: _Loader, node: yaml.Node) -> None:
    raise YamlError(f"the tag {node.tag.rsplit(':', 1)[-1]!r} at line {node.start_mark.line + 1} is not "
                    "supported; write plain values (text, numbers, lists, mappings)")


_Loader.yaml_implicit_resolvers = {first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP]
                                   for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _tag in _REFUSED_TAGS:
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse_tag)


def problem(err: yaml.YAMLError) -> str:
    """PyYAML's error in one line: the problem and where (its own text spans several lines).

    Args:
        err: an error PyYAML raised.

    Returns:
        e.g. ``"found character '\\t' that cannot start any token at line 3, column 1"``.

    Example:
        >>> try:
        ...     yaml.safe_load("a: [1")
        ... except yaml.YAMLError as err:
        ...     problem(err).startswith("expected ',' or ']'")
        True
    """
    what = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if not what:
        return " ".join(str(err).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    opened = f" ({context} started at line {start.line + 1})" if context and start is not None else ""
    return " ".join(f"{what}{where}{opened}".split())


def _check_events(text: str, max_nodes: int, max_depth: int) -> None:
    """Walk the parser's events (no recursion, nothing built): count the nodes every document expands
    to, aliases included, and its depth; raise :class:`YamlError` past the limits."""
    stack: list[list[Any]] = []            # open collections: [anchor, nodes, height]
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, height) of its node
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            stack.append([event.anchor, 1, 1])
            if len(stack) > max_depth:
                raise YamlError(f"nesting deeper than {max_depth} levels at line {event.start_mark.line + 1}; "
                                "a config is a few levels deep")
            continue
        if isinstance(event, yaml.ScalarEvent):
            nodes, height = 1, 0
            if event.anchor:
                anchors[event.anchor] = (1, 0)
        elif isinstance(event, yaml.AliasEvent):
            if event.anchor not in anchors:
                if any(entry[0] == event.anchor for entry in stack):
                    raise YamlError(f"the alias *{event.anchor} at line {event.start_mark.line + 1} refers to "
                                    "a node that contains it; remove the alias")
                continue  # undefined: the composer names it
            nodes, height = anchors[event.anchor]
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, nodes, height = stack.pop()
            if anchor:
                anchors[anchor] = (nodes, height)
        else:
            continue
        if not stack:
            continue
        top = stack[-1]
        top[1] += nodes
        top[2] = max(top[2], height + 1)
        if top[1] > max_nodes:
            raise YamlError(f"expands to more than {max_nodes} values (aliases *name are copied where they "
                            f"appear; line {event.start_mark.line + 1}); write the values out or use fewer aliases")
        if len(stack) - 1 + top[2] > max_depth:
            raise YamlError(f"nesting deeper than {max_depth} levels once aliases are expanded (line "
                            f"{event.start_mark.line + 1}); a config is a few levels deep")


def load(text: str, max_nodes: int = MAX_NODES, max_depth: int = MAX_DEPTH) -> Any:
    """The data a YAML text holds (``None`` for an empty one), within the limits this module states.

    Args:
        text: the YAML text (a whole file, or one ``key=value`` override's value).
        max_nodes: the most values it may expand to, aliases expanded.
        max_depth: the deepest nesting of lists and mappings, aliases expanded.

    Returns:
        Plain data: str, int, float, bool, None, list and dict (with str keys).

    Raises:
        YamlError: one line saying what is wrong and where; ``err.syntax`` is True for invalid YAML.
        The caller prefixes it with the file or key it came from.

    Example:
        >>> load("train: {steps: 10}")
        {'train': {'steps': 10}}
        >>> load("a: 1\\na: 2")
        Traceback (most recent call last):
        ...
        gannorm.yamlsafe.YamlError: the key 'a' appears twice in one mapping (again at line 2); keep one
    """
    if not isinstance(text, str):
        raise YamlError(f"expected YAML text, got {summary(text, 40)}")
    if len(text) > MAX_CHARS:
        raise YamlError(f"{len(text)} characters is too long for a config (at most {MAX_CHARS})")
    try:
        _check_events(text, max_nodes, max_depth)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 -- _Loader is a SafeLoader
    except YamlError:
        raise
    except yaml.YAMLError as err:
        raise YamlError(f"not valid YAML: {problem(err)}", syntax=True) from None
    except (ValueError, OverflowError, RecursionError) as err:  # e.g. an integer past Python's digit limit
        raise YamlError(f"a value cannot be read: {summary(str(err).split(';')[0], 100)}") from None
