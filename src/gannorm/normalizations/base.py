"""The shared machinery of every power-iteration normalization.

A normalization is a ``torch.nn.utils.parametrize`` parametrization: after registration
``layer.weight`` *is* the effective weight ``scale * W / sigma(W)``. Subclasses say how sigma is
made up (one matrix, two reshapings, the convolution operator); this base class owns the
semantics users rely on:

* **Training vs eval.** In training mode the forward runs ``n_power_iterations`` from the stored
  vectors; in eval mode it uses the stored vectors as they are (deterministic, like torch).
* **Update policy.** ``update="forward"`` (torch's default) persists the iteration on every training
  forward. ``update="step"`` is the cadence of the official BSN/SNGAN TensorFlow code
  (``docs/methods.md``): the forward refines the stored vectors on the fly without
  saving them, and :func:`gannorm.update_power_iteration` -- called once after each optimizer step,
  by hand or through :func:`gannorm.update_after_step` -- persists one iteration on the post-step
  weights. Under ``"step"``, D(real), D(fake) and the G step all see the same sigma.
* **No graph through u, v.** The iteration runs under ``no_grad`` and sigma is ``<u, W v>`` with
  constant u, v (torch, Miyato's Chainer code). ``grad_through_vectors=True`` reproduces the
  official TF code, where gradients also flow through the on-the-fly iteration.
* **float32 under autocast.** The iteration and sigma are computed in float32 with autocast off,
  whatever the weight's dtype; the result is cast back to the weight's dtype.
* **Two forwards, one backward.** Persisted vectors are written with ``copy_`` into the buffers,
  but sigma is computed from the fresh tensors, so a graph built by an earlier forward never sees
  a buffer that was modified after it (pytorch#66363).
"""
from __future__ import annotations

from typing import Iterator, cast

import torch
from torch import Tensor, nn

from . import power_iteration as pi
from .options import check_options
TRANSPOSED_CONVS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)  # weight [in, out/g, *k]


class _DivideBySigma(torch.autograd.Function):
    """``scale * W / sigma(W)`` with u, v constant, and a hand-written backward.

    ``dL/dW = (scale / sigma) G - (scale <G, W> / sigma^2) dsigma/dW`` where ``dsigma/dW`` is
    ``u v^T`` in the layout of each estimated matrix (see :meth:`PowerIterationNorm.add_sigma_grad`).
    One pass for ``<G, W>``, one for the scaled copy of G, one fused rank-one update per sigma:
    cheaper than autograd through ``vdot(u, W v)`` and the division.
    """

    @staticmethod
    def forward(ctx, weight, sigma, norm, *vectors):
        ctx.save_for_backward(weight, sigma, *vectors)
        ctx.norm = norm
        return weight * (norm.scale / sigma)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        weight, sigma, *flat = ctx.saved_tensors
        norm = ctx.norm
        vectors = list(zip(flat[0::2], flat[1::2]))
        coef = norm.scale / sigma
        grad_w = grad.contiguous() * coef  # contiguous: add_sigma_grad updates views of it in place
        alpha = -coef * torch.vdot(grad.reshape(-1), weight.reshape(-1)) / sigma
        norm.add_sigma_grad(grad_w, alpha, vectors, weight)
        return (grad_w, None, None) + (None,) * len(flat)


def check_common_options(n_power_iterations: int, eps: float, update: str, warmup: int, scale: float = 1.0,
                         grad_through_vectors: bool = False) -> None:
    """The range checks of :mod:`.options` (a one-line :class:`gannorm.errors.OptionError`)."""
    check_options(dict(n_power_iterations=n_power_iterations, eps=eps, update=update, warmup=warmup, scale=scale,
                       grad_through_vectors=grad_through_vectors))


class PowerIterationNorm(nn.Module):
    """Base parametrization ``W -> scale * W / combine(sigma_1, ..., sigma_k)``.

    Subclasses register one ``(u, v)`` buffer pair per estimated singular value and implement
    :meth:`maps` (the linear maps whose norms are estimated, built from the float32 weight) and
    optionally :meth:`combine`.
    """

    #: names of the buffer pairs, e.g. ``(("_u", "_v"),)``; set by subclasses
    vector_names: tuple[tuple[str, str], ...] = ()
    #: names used in :meth:`sigma_estimates` for each pair
    sigma_names: tuple[str, ...] = ()

    def __init__(self, *, n_power_iterations: int, eps: float, scale: float, update: str,
                 grad_through_vectors: bool, warmup: int) -> None:
        super().__init__()
        check_common_options(n_power_iterations, eps, update, warmup, scale, grad_through_vectors)
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        self.scale = float(scale)
        self.update = update
        self.grad_through_vectors = bool(grad_through_vectors)
        self.warmup = warmup

    # ----------------------------------------------------------------- subclass interface
    def maps(self, weight: Tensor) -> list[tuple[pi.LinearMap, pi.LinearMap]]:
        raise NotImplementedError

    def combine(self, sigmas: list[Tensor]) -> Tensor:
        return sigmas[0]

    def add_sigma_grad(self, out: Tensor, alpha: Tensor, vectors: list[tuple[Tensor, Tensor]],
                       weight: Tensor) -> None:
        """``out += alpha * d combine(sigmas) / dW`` for constant vectors (generic: by autograd)."""
        with torch.enable_grad():
            w = weight.detach().requires_grad_(True)
            sig = self.combine([pi.rayleigh_sigma(apply, u, v) for (apply, _), (u, v) in zip(self.maps(w), vectors)])
            (g,) = torch.autograd.grad(sig, w)
        out.add_(g * alpha)

    def initial_vectors(self, weight: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Random unit starting vectors, one pair per map (drawn from the global RNG)."""
        raise NotImplementedError

    # ----------------------------------------------------------------- helpers
    def _init_buffers(self, weight: Tensor) -> None:
        with torch.no_grad():
            w = weight.detach().float()
            for (un, vn), (u, v) in zip(self.vector_names, self.initial_vectors(w)):
                self.register_buffer(un, pi.normalize(u, self.eps))
                self.register_buffer(vn, pi.normalize(v, self.eps))
            self.reset(weight, self.warmup)

    def _stored(self) -> Iterator[tuple[Tensor, Tensor]]:
        for un, vn in self.vector_names:
            yield getattr(self, un), getattr(self, vn)

    def _persist(self, vectors: list[tuple[Tensor, Tensor]]) -> None:
        with torch.no_grad():
            for (un, vn), (u, v) in zip(self.vector_names, vectors):
                getattr(self, un).copy_(u)
                getattr(self, vn).copy_(v)

    @staticmethod
    def _float(weight: Tensor) -> Tensor:
        return weight.float() if weight.dtype in (torch.float16, torch.bfloat16) else weight

    def _snapshot(self, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
        """Copies of the stored vectors: a graph never holds a buffer that a later forward rewrites."""
        return [(u.to(dtype, copy=True), v.to(dtype, copy=True)) for u, v in self._stored()]

    def _iterate_all(self, maps, n: int, dtype: torch.dtype) -> list[tuple[Tensor, Tensor]]:
        return [pi.iterate(apply, adjoint, u, v, n, self.eps)
                for (apply, adjoint), (u, v) in zip(maps, self._snapshot(dtype))]

    # ----------------------------------------------------------------- public API
    @torch.no_grad()
    def reset(self, weight: Tensor, n_iterations: int | None = None) -> None:
        """Re-run ``n_iterations`` (default: ``warmup``) iterations from the stored vectors and save them."""
        n = self.warmup if n_iterations is None else n_iterations
        if n <= 0:
            return
        with torch.autocast(device_type=weight.device.type, enabled=False):
            w = self._float(weight.detach())
            self._persist(self._iterate_all(self.maps(w), n, w.dtype))

    @torch.no_grad()
    def reinitialize(self, weight: Tensor, n_iterations: int | None = None) -> None:
        """Draw fresh random vectors, then run ``n_iterations`` (default: ``warmup``) iterations."""
        w = weight.detach().float()
        self._persist([(pi.normalize(u, self.eps), pi.normalize(v, self.eps)) for u, v in self.initial_vectors(w)])
        self.reset(weight, n_iterations)

    @torch.no_grad()
    def update_vectors(self, weight: Tensor) -> None:
        """Persist ``n_power_iterations`` iterations on ``weight`` (the ``"step"`` cadence)."""
        self.reset(weight, self.n_power_iterations)

    @torch.no_grad()
    def sigma_estimates(self, weight: Tensor) -> dict[str, float]:
        """The current estimates ``<u, A v>`` from the stored vectors, without iterating."""
        with torch.autocast(device_type=weight.device.type, enabled=False):
            w = self._float(weight.detach())
            sig = [pi.rayleigh_sigma(apply, u, v) for (apply, _), (u, v) in zip(self.maps(w), self._snapshot(w.dtype))]
            out = {"sigma": float(self.combine(sig))}
            if len(sig) > 1:
                out.update({name: float(s) for name, s in zip(self.sigma_names, sig)})
        return out

    def forward(self, weight: Tensor) -> Tensor:
        with torch.autocast(device_type=weight.device.type, enabled=False):
            w = self._float(weight)
            maps = self.maps(w)
            if self.training and self.grad_through_vectors:
                # the TF behaviour: autograd through the on-the-fly iteration and sigma
                vectors = self._iterate_all(maps, self.n_power_iterations, w.dtype)
                if self.update == "forward":
                    self._persist([(u.detach(), v.detach()) for u, v in vectors])
                sigma = self.combine([pi.rayleigh_sigma(apply, u, v) for (apply, _), (u, v) in zip(maps, vectors)])
                out = w / sigma if self.scale == 1.0 else (self.scale * w) / sigma
                return out.to(weight.dtype)
            with torch.no_grad():
                if self.training:
                    results = [pi.iterate_with_sigma(apply, adjoint, u, v, self.n_power_iterations, self.eps)
                               for (apply, adjoint), (u, v) in zip(maps, self._snapshot(w.dtype))]
                    vectors = [(u, v) for u, v, _ in results]
                    sigma = self.combine([cast(Tensor, s) for _, _, s in results])  # not None: n >= 1
                    if self.update == "forward":
                        self._persist(vectors)
                else:
                    vectors = self._snapshot(w.dtype)
                    sigma = self.combine([pi.rayleigh_sigma(apply, u, v) for (apply, _), (u, v) in zip(maps, vectors)])
            flat = [t for pair in vectors for t in pair]
            out = _DivideBySigma.apply(w, sigma, self, *flat)
        return out.to(weight.dtype)

    def extra_repr(self) -> str:
        return (f"scale={self.scale}, n_power_iterations={self.n_power_iterations}, eps={self.eps}, "
                f"update={self.update!r}, grad_through_vectors={self.grad_through_vectors}")
