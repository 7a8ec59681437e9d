"""A short tour of the normalizations on the SNGAN standard-CNN discriminator (32x32).

For each method it prints, per layer: the power-iteration sigma estimate next to the exact value
(an SVD of the reshaped kernel; the dense operator norm is too large to form, so strict SN shows
its estimate after extra iterations), and the effective variance ratio ``fan_in * Var(W_eff)``
against LeCun's 1 -- the quantity the BSSN paper ties spectral normalization to.
"""
from __future__ import annotations

import copy
import time
from typing import Any, cast

import torch

from ..errors import InputError
from ..init import fans, init_weights
from ..networks import SNGANCNNDiscriminator
from ..normalizations import normalize, normalized_layers, sigmas
from ..validate import is_int, is_real

#: the widest network the demo builds (width 1.0 is the official one; memory grows as width squared)
MAX_WIDTH = 8.0
DEMO_METHODS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("sn", {}), ("bsn", {}), ("bssn", {"scale": 1.4}), ("strict_sn", {"input_shape": (3, 32, 32)}))


def _exact(method: str, w: torch.Tensor) -> float | None:
    w = w.detach().double()
    top = lambda m: float(torch.linalg.svdvals(m)[0])  # noqa: E731
    if method in ("sn", "ssn") or w.ndim == 2:
        return top(w.reshape(w.shape[0], -1))
    if method in ("bsn", "bssn"):
        return (top(w.reshape(w.shape[0], -1)) + top(w.transpose(0, 1).reshape(w.shape[1], -1))) / 2
    return None


def run_demo(seed: int = 0, width: float = 1.0, print_fn=print) -> dict[str, dict[str, float]]:
    """Print the tour; returns ``{method: {layer: variance_ratio}}``.

    A ``width`` outside (0, :data:`MAX_WIDTH`] or a ``seed`` outside [0, 2**32) is a one-line InputError.
    """
    _check(seed, width)
    torch.manual_seed(seed)
    base = init_weights(SNGANCNNDiscriminator(32, width=width), "lecun")
    x = torch.randn(8, 3, 32, 32)
    ratios: dict[str, dict[str, float]] = {}
    print_fn(f"SNGAN standard-CNN discriminator, 32x32, width {width}, LeCun-initialised raw weights")
    print_fn("variance ratio = fan_in * Var(W_eff); LeCun initialisation is 1.0")
    for method, opts in DEMO_METHODS:
        d = normalize(_copy(base), method, **opts)
        d.train()
        d(x)  # warm-up
        t0 = time.perf_counter()
        for _ in range(20):  # a few training forwards refine the estimates
            d(x)
        ms = (time.perf_counter() - t0) / 20 * 1e3
        est = sigmas(d)
        d.eval()
        opt_str = ", ".join(f"{k}={v}" for k, v in opts.items())
        print_fn(f"\n== {method}{f' ({opt_str})' if opt_str else ''}: {ms:.1f} ms per training forward (batch 8)")
        print_fn(f"{'layer':<12}{'sigma (est.)':>14}{'exact':>12}{'var. ratio':>12}")
        ratios[method] = {}
        for name, _, raw in normalized_layers(d):
            layer = d.get_submodule(name)
            exact = _exact(method, raw)
            ratio = fans(layer)[0] * float(cast(torch.Tensor, layer.weight).detach().var())
            ratios[method][name] = ratio
            exact_s = "-" if exact is None else f"{exact:.4f}"
            print_fn(f"{name:<12}{est[f'{name}/sigma']:>14.4f}{exact_s:>12}{ratio:>12.3f}")
    return ratios


def _check(seed: int, width: float) -> None:
    if not (is_real(width) and 0 < width <= MAX_WIDTH):
        raise InputError(f"--width must be > 0 and <= {MAX_WIDTH:g} (1.0: the official network), got {width}")
    if not (is_int(seed) and 0 <= seed < 2**32):
        raise InputError(f"--seed must be in [0, 2**32), got {seed}")


def _copy(model):
    return copy.deepcopy(model)
