"""Range checks for the options of the normalizations, shared by the registry and the per-layer functions.

Every option a method takes has an :class:`OptionCheck` in :data:`OPTION_CHECKS`: what it must be and
why. :func:`check_option` raises :class:`gannorm.errors.OptionError` (one line, naming the option, the
value and the rule), so a bad value is refused before anything is built: ``scale=0`` would give a zero
discriminator, ``scale=-1.4`` a sign-flipped one, ``momentum=0`` a running mean that never moves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from ..errors import OptionError
from ..validate import is_int, is_real

UPDATE_POLICIES = ("forward", "step")


@dataclass(frozen=True)
class OptionCheck:
    """``accepts(value) -> bool``; ``rule`` completes "<option> must be ..."; ``why`` says what the option does."""

    accepts: Callable[[Any], bool]
    rule: str
    why: str = ""


def _positive_int_sequence(x: Any) -> bool:
    return isinstance(x, (tuple, list)) and len(x) > 0 and all(is_int(s) and s > 0 for s in x)


OPTION_CHECKS: dict[str, OptionCheck] = {
    "scale": OptionCheck(lambda x: is_real(x) and x > 0, "a finite number > 0",
                         "the effective weight is scale * W / sigma: 0 gives a zero layer, a negative scale flips "
                         "its sign"),
    "n_power_iterations": OptionCheck(lambda x: is_int(x) and x >= 1, "an integer >= 1",
                                      "power iterations per training forward"),
    "eps": OptionCheck(lambda x: is_real(x) and x > 0, "a finite number > 0",
                       "the floor of the norms the power iteration divides by"),
    "warmup": OptionCheck(lambda x: is_int(x) and x >= 0, "an integer >= 0",
                          "power iterations run when the normalization is attached"),
    "update": OptionCheck(lambda x: isinstance(x, str) and x in UPDATE_POLICIES, f"one of {', '.join(UPDATE_POLICIES)}",
                          "when the power-iteration vectors are persisted: every training forward or after each "
                          "optimizer step"),
    "grad_through_vectors": OptionCheck(lambda x: isinstance(x, bool), "true or false",
                                        "whether gradients flow through the power iteration"),
    "momentum": OptionCheck(lambda x: is_real(x) and 0 < x <= 1, "a number in (0, 1]",
                            "the running mean moves by momentum * (batch mean - running mean): 0 never moves it"),
    "gamma_init": OptionCheck(lambda x: is_real(x) and x > 0, "a finite number > 0",
                              "the initial gain gamma of gamma * W / sigma: 0 freezes a shared gamma at zero, a "
                              "negative gain only flips signs"),
    "input_shape": OptionCheck(_positive_int_sequence, "a sequence of positive integers such as (3, 32, 32)",
                               "the shape (C, H, W) of one model input"),
    "dim": OptionCheck(is_int, "an integer", "the weight dimension of the output channels"),
}

#: the checks of the feature normalizations (batch_norm, layer_norm), where ``eps`` is added to a variance
FEATURE_NORM_CHECKS: dict[str, OptionCheck] = {
    **OPTION_CHECKS,
    "eps": OptionCheck(lambda x: is_real(x) and x > 0, "a finite number > 0",
                       "added to the variance before its square root: 0 divides by zero on a constant feature"),
}


def check_option(name: str, value: Any, checks: Mapping[str, OptionCheck] = OPTION_CHECKS) -> None:
    """Raise :class:`OptionError` if ``value`` is not acceptable for the option ``name``.

    Args:
        name: the option.
        value: its value.
        checks: the range checks (an option without one is accepted).

    Raises:
        OptionError: ``value`` is out of range; the message names the rule and why.

    Example::

        >>> check_option("scale", 1.4)
        >>> check_option("scale", 0)
        Traceback (most recent call last):
        ...
        gannorm.errors.OptionError: scale must be a finite number > 0, got 0 (the effective weight is ...)
    """
    check = checks.get(name)
    if check is not None and not check.accepts(value):
        why = f" ({check.why})" if check.why else ""
        raise OptionError(name, f"{name} must be {check.rule}, got {value!r}{why}")


def check_options(options: Mapping[str, Any], checks: Mapping[str, OptionCheck] = OPTION_CHECKS) -> None:
    """:func:`check_option` for every item of ``options``.

    Args:
        options: ``{name: value}``.
        checks: the range checks.

    Raises:
        OptionError: the first value out of range.

    Example::

        >>> check_options({"n_power_iterations": 2, "update": "step"})
        >>> check_options({"update": "sometimes"})
        Traceback (most recent call last):
        ...
        gannorm.errors.OptionError: update must be one of forward, step, got 'sometimes' (...)
    """
    for name, value in options.items():
        check_option(name, value, checks)
