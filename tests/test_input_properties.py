"""Property-based tests (hypothesis) of everything that reads user text into a config: any input either loads
or raises gannorm's one-line error (a GannormError with a one-line message) -- never another exception.

The inputs mix config-shaped data (real section and key names, every kind of value, dumped as YAML in block
or flow style), YAML-significant noise, and that data with noise spliced in. The runs are derandomized and
bounded (a fixed number of examples, no example database), so CI sees the same inputs every time.
"""
from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gannorm import config as C
from gannorm.app.sweep.spec import load_sweep
from gannorm.errors import GannormError

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

SECTIONS = {f.name: [g.name for g in dataclasses.fields(f.default_factory())] for f in dataclasses.fields(C.Config)}
KEYS = [f"{section}.{key}" for section, keys in SECTIONS.items() for key in keys]
NAMES = ["digits", "ring8", "cnn", "mlp", "sn", "bssn", "hinge", "cfd", "modes", "fid", "none", "gn", "auto"]
#: characters that mean something to YAML, and a few that mean something to a file system
NOISE = st.lists(st.sampled_from(list("ab1 :-[]{},&*!|>'\"#\n\t0.%@`?~=\\/\x00\x7fé") +
                                 ["<<", "!!", "&a ", "*a", "e5", "- ", ": ", "\n  ", "null", "{n: ", "]"]),
                 max_size=40).map("".join)

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(NAMES), st.text(max_size=20), NOISE,
)
#: mapping keys: mostly names, sometimes what YAML reads as a number, a boolean or null
keys = st.one_of(st.sampled_from(NAMES), st.sampled_from(NAMES), st.text(max_size=8), st.integers(-3, 3), st.none(),
                 st.booleans())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)), max_leaves=12)
#: nesting from a little past the loader's limit to far past Python's recursion limit
deep = st.integers(60, 3000).map(lambda d: "[" * d + "]" * d)


DEFAULTS = C.to_dict(C.Config())


def near(default):
    """Values near a field's default: the default, one of its type, a name, or anything."""
    if isinstance(default, bool):
        typed = st.booleans()
    elif isinstance(default, int):
        typed = st.one_of(st.integers(-2, 70), st.integers())
    elif isinstance(default, float):
        typed = st.one_of(st.floats(-1, 2), st.floats())
    elif isinstance(default, list):
        typed = st.lists(st.one_of(st.floats(0, 1), st.sampled_from(NAMES)), max_size=3)
    elif isinstance(default, dict):
        typed = st.dictionaries(st.sampled_from(["n", "scale", "std", "depth", "limit", "fid", "is", "seed"]),
                                st.one_of(st.integers(-1, 10**9), st.floats(0, 5), values), max_size=2)
    else:
        typed = st.sampled_from(NAMES)
    return st.one_of(st.just(default), typed, typed, values)


@st.composite
def config_data(draw) -> dict:
    """A mapping shaped like a config: mostly real sections and keys, with values near their defaults."""
    data: dict = {}
    for section in draw(st.lists(st.sampled_from([*SECTIONS, *SECTIONS, "variants", "bogus"]), max_size=4,
                                 unique=True)):
        if section not in SECTIONS:
            data[section] = draw(values)
            continue
        fields = draw(st.lists(st.sampled_from(SECTIONS[section]), max_size=5, unique=True))
        data[section] = {f: draw(near(DEFAULTS[section][f])) for f in fields}
        if draw(st.integers(0, 9)) == 0:
            data[section] = draw(values)
    if data and draw(st.integers(0, 9)) == 0:  # something very deep somewhere
        data[next(iter(data))] = {"options": "__DEEP__"}
    return data


def dumped(data) -> st.SearchStrategy[str]:
    block = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    flow = yaml.safe_dump(data, default_flow_style=True, allow_unicode=True)
    return st.tuples(st.sampled_from([block, flow]), deep).map(lambda t: t[0].replace("__DEEP__", t[1]))


@st.composite
def spliced(draw, data_strategy) -> str:
    """YAML of config-shaped data, sometimes with noise spliced in at a random place."""
    text = draw(data_strategy.flatmap(dumped))
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 10))
        text = text[:at] + draw(NOISE) + text[at + cut:]
    return text


def nested(*templates: str) -> st.SearchStrategy[str]:
    """Each template (``%s``: where) with a very deep value in it."""
    return st.tuples(st.sampled_from(templates), deep).map(lambda t: t[0] % t[1])


yaml_texts = st.one_of(spliced(config_data()), NOISE, st.text(max_size=80),
                       nested("data:\n  options: {x: %s}\n", "train: %s\n", "%s"))


def _from_file(text: str, read) -> None:
    """``read(path)`` on a temporary file holding ``text`` (removed afterwards)."""
    with tempfile.TemporaryDirectory(prefix="gannorm-prop-") as folder:
        path = Path(folder) / "input.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        _loads_or_one_line(lambda: read(path))


def _loads_or_one_line(action) -> None:
    try:
        action()
    except GannormError as err:
        text = str(err)
        assert text and "\n" not in text, repr(text)
        assert len(text) < 2000, text[:300]


@SETTINGS
@given(yaml_texts)
def test_a_config_file_loads_or_is_one_line(text):
    _from_file(text, lambda path: C.validate(C.load(str(path))))


@SETTINGS
@given(config_data())
def test_a_config_dict_loads_or_is_one_line(data):
    # the Python API's path (gannorm.train(dict)): no YAML, any values
    _loads_or_one_line(lambda: C.validate(C.from_dict(data)))


override_values = st.one_of(NOISE, st.text(max_size=30), deep, values.map(lambda v: yaml.safe_dump(
    v, default_flow_style=True).strip().removesuffix("...").strip()))


@st.composite
def override(draw) -> str:
    """``key=value``: a real key with a value near its default (as YAML), or noise on either side."""
    key = draw(st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k + ".x"),
                         NOISE))
    section, _, name = key.partition(".")
    default = DEFAULTS.get(section, {}).get(name) if isinstance(DEFAULTS.get(section), dict) else None
    value = draw(st.one_of(near(default).map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip()
                                             .removesuffix("...").strip()), override_values))
    return f"{key}={value}"


@SETTINGS
@given(st.lists(override(), min_size=1, max_size=3))
def test_a_key_value_override_loads_or_is_one_line(items):
    _loads_or_one_line(lambda: C.validate(C.apply_overrides(C.Config(), items)))


overrides_lists = st.lists(st.one_of(override(), override(), NOISE), max_size=2)


@st.composite
def sweep_data(draw) -> dict:
    """A mapping shaped like a sweep file (small: at most a few runs), with any values here and there."""
    data = {"base": draw(st.one_of(st.sampled_from(["digits", "ring8"]), values)),
            "overrides": ["train.steps=2", "train.eval_every=0", *draw(overrides_lists)]}
    if draw(st.booleans()):
        data["variants"] = draw(st.one_of(st.dictionaries(st.one_of(st.sampled_from(["sn", "bssn"]), NOISE),
                                                          overrides_lists, max_size=2), values))
    if draw(st.booleans()):
        data["grid"] = draw(st.one_of(st.dictionaries(
            st.sampled_from(["optim.lr_d", "train.n_dis", "data.options", "train.run_name"]),
            st.lists(values, max_size=2), max_size=2), values))
    if draw(st.booleans()):
        data["seeds"] = draw(st.one_of(st.integers(-1, 2), st.lists(st.integers(-1, 3), max_size=2), values))
    for key in ("metric", "success"):
        if draw(st.booleans()):
            data[key] = draw(st.one_of(st.sampled_from(["cfd", "modes", "fid"]), values))
    return data


@settings(SETTINGS, max_examples=150)
@given(st.one_of(spliced(sweep_data()), NOISE, nested("base: digits\ngrid:\n  data.options: %s\n", "variants: %s\n")))
def test_a_sweep_file_loads_or_is_one_line(text):
    _from_file(text, lambda path: load_sweep(str(path)))
