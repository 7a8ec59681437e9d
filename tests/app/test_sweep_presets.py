"""Every shipped sweep trains its base preset: a variant's resolved config equals the preset's (with the sweep's
own overrides) except in the keys the variant names, key by key inside mappings.

An override of a whole mapping (``"normalization.options={scale: 1.4}"``) names the keys it writes; a key of the
preset's mapping that it drops is a defect when the variant's method still takes that option (the preset's value
would have applied: the block B/C BSSN sweeps once dropped the preset's ``grad_through_vectors: true``), and
allowed when the variant switches to a method that does not take it (``scale`` for plain SN).
"""
from __future__ import annotations

from typing import Any

import pytest

from gannorm import config as C
from gannorm.app.sweep.spec import load_sweep, sweep_names
from gannorm.normalizations.model import method_options


def flat(mapping: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, dict):  # an empty mapping has no keys to compare
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def named_keys(overrides: tuple[str, ...]) -> set[str]:
    """The flat keys a variant's overrides name: ``a.b=1`` names ``a.b``; ``a.b={c: 1}`` names ``a.b.c``."""
    names = set()
    for item in overrides:
        path, value = C.parse_override(item)
        key = ".".join(path)
        names |= {f"{key}.{k}" for k in flat(value)} if isinstance(value, dict) else {key}
    return names


def dropped_but_accepted(key: str, cfg: C.Config) -> bool:
    """``normalization.options.X`` / ``g_options.X`` missing from the variant although its method takes X."""
    for section, method in (("normalization.options.", cfg.normalization.method),
                            ("normalization.g_options.", cfg.normalization.g_method)):
        if key.startswith(section):
            return key[len(section):].split(".")[0] in method_options(method)
    return True  # any other key the variant did not name must not change


@pytest.mark.parametrize("name", sweep_names())
def test_every_variant_trains_its_base_preset_but_for_what_it_names(name):
    spec = load_sweep(name)
    first_cell = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in
                  ((k, values[0]) for k, values in spec.grid.items())]
    base = C.load(spec.base, [*spec.overrides, *first_cell])
    reference = flat(C.to_dict(base))
    for variant, overrides in spec.variants.items():
        cfg = C.load(spec.base, [*spec.overrides, *first_cell, *overrides])
        resolved = flat(C.to_dict(cfg))
        named = named_keys(overrides)
        for key in set(reference) | set(resolved):
            if key.startswith("about.") or reference.get(key, "<absent>") == resolved.get(key, "<absent>"):
                continue
            if key in named:
                continue
            dropped = key in reference and key not in resolved
            assert dropped and not dropped_but_accepted(key, cfg), (
                f"sweep {name}, variant {variant}: {key} is {reference.get(key, 'absent')!r} in the preset but "
                f"{resolved.get(key, 'dropped')!r} in the run, and the variant does not name it")


def test_the_block_b_and_c_bssn_sweeps_keep_the_preset_s_gradient_through_the_vectors():
    for data in ("cifar10", "stl10", "celeba"):
        for block in ("lr", "ndis5"):
            spec = load_sweep(f"bssn_{data}_{block}")
            for overrides in spec.variants.values():
                cfg = C.load(spec.base, [*spec.overrides, *overrides])
                assert cfg.normalization.options["grad_through_vectors"] is True


def test_a_conditional_sweep_evaluates_the_conditional_metrics_too():
    """A sweep adds its headline metric to the metrics a run evaluates by default, and a class-conditional run's
    defaults include the intra-class distance and the classifier's accuracy on G(z, y)."""
    from gannorm.app.sweep.spec import expand, run_config
    spec = load_sweep("conditional_digits")
    cfg = run_config(spec, expand(spec)[0])
    assert cfg.model.num_classes == 10
    assert {"cfd", "intra_cfd", "class_acc"} <= set(C.evaluated_metrics(cfg))
