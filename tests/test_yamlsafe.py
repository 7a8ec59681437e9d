"""The limited YAML loader (gannorm.yamlsafe) and the one name rule (gannorm.fileio.safe_name / safe_path).

Every value the loader returns is compared with PyYAML's own ``safe_load`` (the independent reference);
every refusal is one line naming where and the fix.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gannorm import yamlsafe
from gannorm.config import PRESET_DIR
from gannorm.errors import ConfigError, GannormError
from gannorm.fileio import MAX_NAME_BYTES, MAX_NAME_CHARS, safe_name, safe_path
from gannorm.yamlsafe import MAX_DEPTH, MAX_NODES, YamlError, summary


def alias_bomb(levels: int = 9, fan: int = 9, key: str | None = None) -> str:
    """The classic "billion laughs": ``levels`` anchors, each a list of ``fan`` aliases of the previous one
    (fan**levels strings once expanded, from well under 1 KB of text)."""
    names = [f"l{i}" for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * fan)}]"]
    lines += [f"{b}: &{b} [{', '.join(['*' + a] * fan)}]" for a, b in zip(names, names[1:])]
    body = "\n".join(lines)
    if key is None:
        return body + "\n"
    return f"{key}:\n" + "\n".join("  " + line for line in lines) + "\n"


def test_the_bomb_is_small_and_refused_at_once(monkeypatch):
    """"At once" without a clock: the refusal comes from one pass over the parser's events (no more events
    than the text's own, a few per alias) and before any Python object is built."""
    text = alias_bomb()
    assert len(text) < 1024
    events, real_parse = list(yaml.parse(text)), yaml.parse
    seen = []

    def counting_parse(stream, Loader):
        for event in real_parse(stream, Loader=Loader):
            seen.append(event)
            yield event

    def no_construction(*_args, **_kwargs):
        raise AssertionError("the bomb reached the constructor")

    monkeypatch.setattr(yamlsafe.yaml, "parse", counting_parse)
    monkeypatch.setattr(yamlsafe.yaml, "load", no_construction)
    with pytest.raises(YamlError, match=rf"expands to more than {MAX_NODES} values \(aliases"):
        yamlsafe.load(text)
    assert 0 < len(seen) <= len(events) < 200  # the text's events, not 9**9 expanded values


def test_aliases_within_the_limit_load_as_pyyaml_loads_them():
    text = ("base: &b {lr: 0.001, betas: [0.5, 0.999]}\nrun: {<<: *b, lr: 0.01}\ncopy: *b\n"
            + alias_bomb(levels=3, fan=9))  # 9**3 = 729 strings: allowed
    assert yamlsafe.load(text) == yaml.safe_load(text)
    assert yamlsafe.load(text)["run"] == {"lr": 0.01, "betas": [0.5, 0.999]}


def test_the_node_count_includes_every_expanded_alias():
    ok = alias_bomb(levels=2, fan=90)   # l0: 1 + 90 nodes; l1: 1 + 90 * 91 = 8191; the root 1 + 2 keys + both
    assert yamlsafe.load(ok) == yaml.safe_load(ok)
    assert yamlsafe.load(ok, max_nodes=1 + 2 + 91 + 8191) == yaml.safe_load(ok)
    with pytest.raises(YamlError, match="expands to more than 8284 values"):
        yamlsafe.load(ok, max_nodes=1 + 2 + 91 + 8191 - 1)


@pytest.mark.parametrize("depth, refused", [(MAX_DEPTH, False), (MAX_DEPTH + 1, True), (5000, True)])
def test_nesting_depth_is_bounded_without_recursion_errors(depth, refused):
    for text in ("[" * depth + "]" * depth, "- " * depth + "x", "{a: " * depth + "1" + "}" * depth):
        if refused:
            with pytest.raises(YamlError, match=f"nesting deeper than {MAX_DEPTH} levels"):
                yamlsafe.load(text)
        else:
            assert yamlsafe.load(text) == yaml.safe_load(text)


def test_depth_through_aliases_is_bounded():
    inner = "[" * 40 + "]" * 40
    text = f"a: &a {inner}\nb: [[[[[[[[[[[[[[[[[[[[[[[[[[*a]]]]]]]]]]]]]]]]]]]]]]]]]]\n"
    with pytest.raises(YamlError, match="once aliases are expanded"):
        yamlsafe.load(text)


def test_a_node_that_contains_its_own_alias_is_refused():
    with pytest.raises(YamlError, match=r"alias \*x at line 1 refers to a node that contains it"):
        yamlsafe.load("a: &x [1, *x]")


def test_duplicate_keys_are_refused_with_the_key_and_line():
    with pytest.raises(YamlError, match=r"the key 'steps' appears twice in one mapping \(again at line 3\)"):
        yamlsafe.load("train:\n  steps: 10\n  steps: 20\n")
    with pytest.raises(YamlError, match="the key 'a' appears twice"):
        yamlsafe.load("{a: 1, b: 2, a: 3}")
    # a merge key's entries may be overridden: that is what merging is for
    assert yamlsafe.load("x: &x {a: 1}\ny: {<<: *x, a: 2}")["y"] == {"a": 2}


@pytest.mark.parametrize("text, match", [
    ("1: x", r"the key 1 at line 1 is read as int, not text; quote it \('1':\)"),
    ("on: x", r"the key on at line 1 is read as bool"),
    ("null: x", r"the key null at line 1 is read as NoneType"),
    ("[a]: x", r"a list is used as a key at line 1"),
])
def test_keys_are_text(text, match):
    with pytest.raises(YamlError, match=match):
        yamlsafe.load(text)


def test_only_plain_data_is_built():
    assert yamlsafe.load("when: 2024-01-02\nat: 2024-01-02 10:00:00") == {"when": "2024-01-02",
                                                                          "at": "2024-01-02 10:00:00"}
    for tag in ("binary aGk=", "set {a: null}", "omap [{a: 1}]", "pairs [{a: 1}]", "timestamp 2024-01-02"):
        with pytest.raises(YamlError, match=f"the tag '{tag.split()[0]}' at line 1 is not supported"):
            yamlsafe.load(f"x: !!{tag}")
    with pytest.raises(YamlError, match="not valid YAML: could not determine a constructor") as err:
        yamlsafe.load("x: !!python/object:os.system {}")
    assert err.value.syntax


def test_a_number_past_pythons_digit_limit_is_one_line():
    with pytest.raises(YamlError, match=r"a value cannot be read: 'Exceeds the limit \(4300 digits\)"):
        yamlsafe.load("n: 1" + "0" * 5000)


def test_syntax_errors_are_one_line_and_marked():
    with pytest.raises(YamlError, match=r"^not valid YAML: expected the node content.* at line 2") as err:
        yamlsafe.load("a: [1,\n")
    assert err.value.syntax and "\n" not in str(err.value)


def test_every_shipped_yaml_loads_as_pyyaml_loads_it():
    files = sorted(PRESET_DIR.glob("*.yaml")) + sorted((PRESET_DIR / "sweeps").glob("*.yaml"))
    assert len(files) > 20
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert yamlsafe.load(text) == yaml.safe_load(text), path.name


@pytest.mark.parametrize("make, starts", [
    (lambda: "x" * 10**6, "a str of 1000000 chars: 'xxxx"),
    (lambda: list(range(10**6)), "a list of 1000000 items: [0, 1, 2"),
    (lambda: 10**100000, "an integer of 100001 digits"), (lambda: {"a": [1] * 10**5}, "a dict of 1 item: {'a': [1, 1"),
    (lambda: "short", "'short'"), (lambda: 3.5, "3.5"), (lambda: None, "None"),
], ids=["str", "list", "int", "dict", "short", "float", "none"])
def test_summary_is_bounded(make, starts):
    text = summary(make())
    assert text.startswith(starts) and len(text) < 160


def test_summary_of_a_structure_that_contains_itself():
    loop: list = []
    loop.append(loop)
    assert len(summary(loop)) < 160


# ------------------------------------------------------------------------------------------ names
BAD_NAMES = {"../../../ESCAPED": "holds '/'", "/tmp/x/y": "holds '/'", "a/b": "holds '/'", "a\\b": r"holds '\\\\'",
             "a\x00b": r"control character '\\x00'", "a\nb": r"control character '\\n'", "tab\there": "control",
             "del\x7f": "control", "": "it is empty", ".": "names a folder itself", "..": "names a folder itself",
             "x" * (MAX_NAME_CHARS + 1): "longer than", "\u00e9" * 101: "longer than"}


@pytest.mark.parametrize("name", list(BAD_NAMES), ids=[repr(n)[:20] for n in BAD_NAMES])
def test_safe_name_refuses(name):
    with pytest.raises(ConfigError, match=f"^variant: .* is not a plain name \\(.*{BAD_NAMES[name]}") as err:
        safe_name(name, "variant")
    assert "\n" not in str(err.value) and len(str(err.value)) < 300


@pytest.mark.parametrize("value", [None, 3, 2.5, True, ["a"], {"a": 1}, b"a", Path("a")])
def test_safe_name_refuses_what_is_not_text(value):
    with pytest.raises(ConfigError, match="it must be text"):
        safe_name(value, "variant")


@pytest.mark.parametrize("name", ["bssn", "bssn-c1.4", "lr_2e-4", "a.b", "\u00e9t\u00e9", "x" * MAX_NAME_CHARS, "..a"])
def test_safe_name_accepts_plain_names(name):
    assert safe_name(name, "variant") == name
    assert len(name.encode()) <= MAX_NAME_BYTES


def test_safe_path():
    assert safe_path(Path("runs") / "a", "--out") == "runs/a"
    assert safe_path("/abs/x", "--out") == "/abs/x"
    for bad, why in [("a\x00b", "control character"), ("", "it is empty"), (3, "text or a pathlib.Path"),
                     ("a/" + "x" * 300, "longer than"), (b"runs", "text or a pathlib.Path")]:
        with pytest.raises(GannormError, match=f"--out: .* is not a usable path \\(.*{why}"):
            safe_path(bad, "--out")
