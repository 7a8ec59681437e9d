"""gannorm.validate: what counts as a number, the range words, and the one-line errors of require()."""
from __future__ import annotations

import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gannorm.errors import ConfigError, GannormError, InputError, OptionError
from gannorm.validate import bounds_text, in_bounds, is_int, is_real, problem, require

NON_NUMBERS = [True, False, np.bool_(True), "1", "1.5", b"1", None, [1], (1,), {1: 1}, 1 + 0j,
               torch.tensor(1), torch.tensor(1.5), object()]


@pytest.mark.parametrize("x", NON_NUMBERS, ids=repr)
def test_non_numbers_are_neither_real_nor_int(x):
    assert not is_real(x) and not is_real(x, finite=False) and not is_int(x)


@pytest.mark.parametrize("x", [0, -3, 2**200, np.int8(-1), np.int64(7), np.uint32(3)], ids=repr)
def test_integers_are_ints_and_reals(x):
    assert is_int(x) and is_real(x) and is_real(x, finite=False)


@pytest.mark.parametrize("x", [0.5, -1e300, np.float32(0.25), np.float64(3.0), Fraction(1, 3)], ids=repr)
def test_finite_floats_are_reals_not_ints(x):
    assert is_real(x) and not is_int(x)


@pytest.mark.parametrize("x", [math.nan, math.inf, -math.inf, np.float32("nan"), np.float64("-inf")], ids=repr)
def test_non_finite_is_real_only_when_asked(x):
    assert not is_real(x) and is_real(x, finite=False) and not is_int(x)


@given(st.integers())
def test_every_python_int_is_int(n):
    assert is_int(n) and is_real(n)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_float_is_real_iff_finite(x):
    assert is_real(x) == math.isfinite(x)
    assert not is_int(x)


@given(st.floats(allow_nan=False, allow_infinity=False, width=32), st.floats(-10, 10), st.floats(-10, 10),
       st.booleans(), st.booleans())
@settings(max_examples=300)
def test_in_bounds_matches_the_comparisons(x, lo, hi, lo_open, hi_open):
    expect = (x > lo if lo_open else x >= lo) and (x < hi if hi_open else x <= hi)
    assert in_bounds(x, lo, hi, min_exclusive=lo_open, max_exclusive=hi_open) == expect
    assert in_bounds(x, lo, None, min_exclusive=lo_open) == (x > lo if lo_open else x >= lo)
    assert in_bounds(x, None, hi, max_exclusive=hi_open) == (x < hi if hi_open else x <= hi)
    assert in_bounds(x)


@pytest.mark.parametrize("kw, text", [
    (dict(min=1), ">= 1"), (dict(min=0, min_exclusive=True), "> 0"), (dict(max=10), "<= 10"),
    (dict(max=0.5, max_exclusive=True), "< 0.5"), (dict(min=0, max=1, min_exclusive=True), "in (0, 1]"),
    (dict(min=0, max=2**32, max_exclusive=True), "in [0, 2**32)"), (dict(min=1, max=2**63 - 1), f"in [1, {2**63 - 1}]"),
    (dict(max=2**16), "<= 2**16"), (dict(max=1024), "<= 1024"), ({}, ""),
])
def test_bounds_text(kw, text):
    assert bounds_text(**kw) == text


@pytest.mark.parametrize("value, kw, rule", [
    (0, dict(kind="int", min=1), "an integer >= 1"),
    (True, dict(kind="int", min=0), "an integer >= 0"),
    (1.0, dict(kind="int"), "an integer"),
    ("3", dict(kind="int", min=0), "an integer >= 0"),
    (math.nan, dict(min=0), "a finite number >= 0"),
    (math.inf, dict(min=0, min_exclusive=True), "a finite number > 0"),
    (0, dict(min=0, max=1, min_exclusive=True), "a finite number in (0, 1]"),
    (2**32, dict(kind="int", min=0, max=2**32, max_exclusive=True), "an integer in [0, 2**32)"),
    (-1, dict(kind="int", min=0, optional=True), "an integer >= 0 or None"),
    (True, dict(kind="any", choices=(1, 2)), "one of 1, 2"),
    ("b", dict(kind="any", choices=("a", "c")), "one of a, c"),
])
def test_problem_names_the_rule(value, kw, rule):
    assert problem(value, **kw) == rule


@pytest.mark.parametrize("value, kw", [
    (1, dict(kind="int", min=1)), (np.int64(5), dict(kind="int", min=0, max=5)), (0.5, dict(min=0, max=1)),
    (None, dict(optional=True, min=3)), (2, dict(kind="any", choices=(1, 2))), ("a", dict(kind="any", choices="ab")),
    (np.float32(0.1), dict(min=0, min_exclusive=True)),
])
def test_problem_passes_good_values(value, kw):
    assert problem(value, **kw) is None
    assert require(value, name="x", **kw) is value


@given(st.one_of(st.integers(), st.floats(), st.booleans(), st.text(max_size=5), st.none()))
@settings(max_examples=300)
def test_require_int_refuses_exactly_what_is_not_an_int_in_range(value):
    good = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 100
    try:
        assert require(value, name="count", kind="int", min=0, max=100, max_exclusive=True) is value
        assert good
    except ValueError as err:
        assert not good
        assert str(err).startswith("count must be an integer in [0, 100), got ")


@pytest.mark.parametrize("error", [ValueError, ConfigError, InputError])
def test_require_raises_the_callers_error_with_one_line(error):
    with pytest.raises(error) as info:
        require(-2, name="width", min=0, min_exclusive=True, error=error, why="it multiplies every channel",
                fix="use width=0.5")
    assert type(info.value) is error
    assert str(info.value) == "width must be a finite number > 0, got -2 (it multiplies every channel); use width=0.5"


def test_require_option_error_carries_the_option():
    with pytest.raises(OptionError) as info:
        require(0, name="n_power_iterations", kind="int", min=1, error=OptionError)
    assert info.value.option == "n_power_iterations" and isinstance(info.value, GannormError)
    assert str(info.value) == "n_power_iterations must be an integer >= 1, got 0"


@pytest.mark.parametrize("value, shown", [
    (10**400, "an integer of 401 digits"), ("x" * 1000, "a str of 1000 chars: 'xxx"), (True, "True"),
    (math.nan, "nan"), ("3", "'3'"),
])
def test_require_shows_the_value_bounded(value, shown):
    with pytest.raises(ValueError) as info:
        require(value, name="n", kind="int", min=0, max=10)
    text = str(info.value)
    assert "\n" not in text and len(text) < 200
    assert re.match(r"n must be an integer in \[0, 10\], got ", text) and shown in text


def test_library_callers_reject_through_require():
    """A few callers, each with its own error type: the message is require()'s."""
    from gannorm.metrics.mixtures import sliced_wasserstein
    from gannorm.networks import build_generator
    from gannorm.penalties import weight_clip_

    with pytest.raises(ConfigError, match=r"^z_dim must be an integer >= 1, got True$"):
        build_generator("mlp", (2,), z_dim=True)
    with pytest.raises(OptionError, match=r"^c must be a finite number > 0, got nan \(weights are clipped"):
        weight_clip_(torch.nn.Linear(2, 2), math.nan)
    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0, got -1$"):
        sliced_wasserstein(x, x, seed=-1)
