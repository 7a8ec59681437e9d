"""Load state dicts written with torch's spectral norm into gannorm-normalized models.

torch has two spectral-norm layouts and converts between neither (``docs/methods.md``):

* the old hook API ``torch.nn.utils.spectral_norm``: ``<layer>.weight_orig``, ``<layer>.weight_u``,
  ``<layer>.weight_v`` (``weight_v`` missing in pre-1.0 files);
* the parametrization ``torch.nn.utils.parametrizations.spectral_norm``:
  ``<layer>.parametrizations.weight.original``, ``<layer>.parametrizations.weight.0._u`` / ``._v``.

gannorm's SN uses the second layout with the same buffer names and meaning (u: left singular
vector, length ``out``; v: right, length ``in*k*k``), so those files load as they are. BSN's
first pair ``_u1/_v1`` is the SN pair. A plain ``<layer>.weight`` (an unnormalized model) becomes the
raw weight of a normalized layer. Vectors the file does not have keep the model's current values.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from . import power_iteration as pi
from .base import PowerIterationNorm
from .spectral import matricize


def convert_state_dict(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Return a copy of ``state_dict`` rewritten to ``model``'s keys; load it with ``model.load_state_dict``.

    Every normalized layer of ``model`` takes its raw weight (and vectors, where present) from
    whichever layout the file uses. Keys of unnormalized layers pass through unchanged.

    Args:
        state_dict: a state dict in torch's old (``weight_orig``/``weight_u``) or new (parametrize) layout, or
            gannorm's.
        model: the normalized model to load it into.

    Returns:
        a new state dict with ``model``'s keys.

    Example::

        >>> old = torch.nn.utils.spectral_norm(nn.Linear(3, 2))     # torch's old hook-based SN
        >>> from gannorm.normalizations import spectral_norm
        >>> new = spectral_norm(nn.Linear(3, 2))
        >>> new.load_state_dict(convert_state_dict(old.state_dict(), new))
        <All keys matched successfully>
        >>> torch.equal(new.parametrizations.weight.original, old.weight_orig)
        True
    """
    sd = dict(state_dict)
    out: dict[str, torch.Tensor] = {}
    target = model.state_dict()
    consumed: set[str] = set()
    for name, module in model.named_modules():
        plist = getattr(getattr(module, "parametrizations", None), "weight", None)
        if plist is None:
            continue
        pre = f"{name}." if name else ""
        new = f"{pre}parametrizations.weight."
        norm = next((p for p in plist if isinstance(p, PowerIterationNorm)), None)
        raw = next((k for k in (new + "original", pre + "weight_orig", pre + "weight") if k in sd), None)
        if raw is None:
            continue
        out[new + "original"] = sd[raw]
        consumed.add(raw)
        if norm is not None:
            _convert_vectors(sd, raw, norm, f"{new}{list(plist).index(norm)}.", (new, pre), target, out, consumed)
    for k, val in sd.items():
        if k not in consumed and k not in out:
            out[k] = val
    for k, val in target.items():  # vectors the file lacks keep the model's current values
        if k not in out and ".parametrizations." in k and k.rsplit(".", 1)[-1].startswith(("_u", "_v")):
            out[k] = val.clone()
    return out


def _convert_vectors(sd: dict[str, torch.Tensor], raw: str, norm: PowerIterationNorm, dst: str,
                     prefixes: tuple[str, str], target: Mapping[str, torch.Tensor],
                     out: dict[str, torch.Tensor], consumed: set[str]) -> None:
    """Copy one layer's power-iteration vectors from the file's layout (``new`` parametrize or ``old`` hook
    keys, ``prefixes = (new, old)``) to the model's keys under ``dst``; keep the model's when they differ in shape."""
    first_u, first_v = norm.vector_names[0]
    dst_u, dst_v = dst + first_u, dst + first_v
    new, pre = prefixes
    for src_u, src_v in ((f"{new}0._u", f"{new}0._v"), (pre + "weight_u", pre + "weight_v")):
        if src_u not in sd:
            continue
        consumed.update({src_u, src_v})
        u = sd[src_u]
        if target[dst_u].shape != u.shape:
            return  # e.g. strict SN: its vectors live in feature-map space; keep the model's
        if src_v in sd:
            v = sd[src_v]
        else:  # pre-1.0 files have no v: one half-iteration v = normalize(W^T u)
            mat = matricize(sd[raw].float(), getattr(norm, "dim", 0))
            v = pi.normalize(torch.mv(mat.t(), u.float()), norm.eps)
        out[dst_u], out[dst_v] = u, v
        return
