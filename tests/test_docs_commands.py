"""Every ``gannorm ...`` command the README and docs/ show is one the real command line accepts.

Commands on their own line in a shell block are parsed whole by the CLI's own parser (a documented command that
would exit 2 fails here), and a ``gannorm train`` one is also loaded and validated as a config. Inline mentions
(``gannorm eval --metric``, ``gannorm sample|eval|export --checkpoint best``) are fragments: their subcommands and
the options they name must exist.
"""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gannorm import config as C
from gannorm.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"```(?:bash|sh|console)\n(.*?)```", re.S)
LINE_START = re.compile(r"^(?:\$\s*)?(?:\S*\.venv/bin/|python3? -m )?(gannorm\s.*)$")
PLACEHOLDERS = ("[", "<", "...", "|")


def shell_commands() -> list[tuple[str, str]]:
    """``(page, command)`` for every shell-block line that starts with ``gannorm`` (comments dropped)."""
    out = []
    for page in PAGES:
        for block in SHELL_BLOCK.findall(page.read_text()):
            for line in block.splitlines():
                match = LINE_START.match(line.split(" #")[0].strip())
                if match and not any(p in match.group(1) for p in PLACEHOLDERS):
                    out.append((page.name, match.group(1)))
    return out


def inline_mentions() -> list[tuple[str, str]]:
    return [(page.name, m) for page in PAGES for m in re.findall(r"`(gannorm [^`]+)`", page.read_text())]


def subparsers() -> dict:
    parser = build_parser()
    return next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices


def test_the_pages_show_commands():
    assert len(shell_commands()) >= 15 and len(inline_mentions()) >= 100


@pytest.mark.parametrize("page,command", shell_commands())
def test_a_shell_command_parses_and_its_config_validates(page, command):
    argv = shlex.split(command)[1:]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:
        pytest.fail(f"{page}: `{command}` exits {exit_.code} in the CLI's parser")
    if argv[0] == "train" and not getattr(args, "resume", None):
        config = getattr(args, "config", None)
        overrides = list(getattr(args, "overrides", []) or [])
        if config and "=" in config:  # no preset: the first argument is an override
            config, overrides = None, [config, *overrides]
        C.validate(C.load(config or "digits", overrides))  # no config: the digits preset, as the CLI


@pytest.mark.parametrize("page,mention", inline_mentions())
def test_an_inline_mention_names_real_subcommands_and_options(page, mention):
    tokens = shlex.split(mention.replace("[", " ").replace("]", " "))
    commands = subparsers()
    names = tokens[1].split("|") if len(tokens) > 1 else []
    for name in names:
        assert name in commands, f"{page}: `{mention}`: no subcommand {name!r}"
    for token in tokens[2:]:
        if token.startswith("-") and not token.startswith("---"):
            option = token.split("=")[0].rstrip(")")
            for name in names:
                assert option in commands[name]._option_string_actions, \
                    f"{page}: `{mention}`: gannorm {name} has no option {option}"
