"""Lipschitz bounds of a discriminator: operator norms, a compositional upper bound, a gradient lower bound.

::

    from gannorm.diagnostics.lipschitz import lipschitz_upper_bound, lipschitz_lower_bound
    from gannorm.penalties import interpolates
    upper = lipschitz_upper_bound(D, (3, 32, 32))            # float, or None when no valid bound is known
    lower = lipschitz_lower_bound(D, real, fake, interpolates(real, fake))
    assert upper is None or lower <= upper * (1 + 1e-4)

* :func:`operator_norm` -- the spectral norm of the *linear part* ``x -> m(x) - m(0)`` of an affine
  module (Conv, ConvTranspose, Linear, AvgPool, padding, upsampling, eval-mode BatchNorm, any
  composition of those) on inputs of one fixed shape, by Lanczos iteration on ``A^T A`` with the
  adjoint obtained as a vector-Jacobian product through the module itself. Padding modes,
  strides, groups, forward hooks (MSN's mean-only batch norm) and weight parametrizations (SN and
  its successors) are therefore handled exactly as the forward computes them.
* :func:`lipschitz_upper_bound` (a float, or ``None``) / :func:`explain_upper_bound` (a
  :class:`BoundReport`: the value, its parts and the reason when there is none) -- an upper bound of
  the L2 Lipschitz constant of ``D``, composed from per-module rules: products along chains, sums
  over residual branches, constants for activations. Consecutive affine modules of a chain
  (``conv -> avg_pool``, ``depthwise -> pointwise``, ``sum_pool -> linear``) are merged and their
  *joint* operator norm is used, which is tighter than the product of their norms. A module without
  a rule gives ``None`` and a reason naming it: a number is returned only when it is a valid bound.

  Rules for torch's layers are in :data:`RULES` (a registry keyed by module type; add one with
  ``RULES.register``): the affine layers above (operator norm; Flatten, Unflatten, Identity, eval-mode
  Dropout, PixelShuffle: 1), activations (ReLU, LeakyReLU ``max(1, |slope|)``, Tanh, Hardtanh, ELU
  ``max(1, alpha)``, CELU, Softplus, Softsign, ...: the sup of ``|f'|``, Sigmoid 1/4), max pooling
  (``sqrt`` of the number of windows an element can fall in), ``nn.Sequential``, MSN's mean-only
  batch norm and the ``batch_norm`` method's batch norm (eval mode: part of their layer's affine map),
  group and layer norm (``nn.GroupNorm``, the ``layer_norm`` method's: ``max |gamma| / sqrt(eps)``, their
  exact Lipschitz constant for a uniform gamma, reached on a constant input; a layer followed by one
  is bounded as the layer, then the norm) and :class:`~gannorm.gradnorm.GradientNormalized` (always
  ``None``: GN is only piecewise 1-Lipschitz). A weight-normalized layer is affine like any other:
  its operator norm is that of its effective weight ``g * v / ||v||``.

  A network describes itself, without importing this module: a method ``lipschitz_structure()``
  returns its forward as a list of *branches* whose outputs are summed, each branch a *chain* of
  ``(name, module)`` pairs applied in order (``forward(x) == sum(chain(x) for chain in branches)``).
  ``name`` is the module's attribute path inside the network, or ``":op"`` for a stand-in of a
  functional op of the forward (``(":relu", nn.ReLU())``). A module class with ``lipschitz_affine =
  True`` is bounded by its operator norm (checked to be affine). gannorm's discriminators (SNGAN CNN,
  DSCNN, SNGAN ResNet with its blocks and global pooling, MLP) describe themselves this way.
* :func:`lipschitz_lower_bound` -- the largest per-sample input-gradient norm over given batches.

**Semantics.** Every function evaluates ``D`` in eval mode (the deterministic function: power
iteration vectors used as stored, BatchNorm/MSN with running statistics, dropout off), then restores
every submodule's training flag. Nothing is written to D: no parametrization buffer, no running
statistic, no ``.grad`` of a parameter; the global RNG is not consumed (the iteration draws its
start and probe vectors from a private generator).

**Accuracy.** The Lanczos (Ritz) estimate converges from below: an operator norm is exact up to
the convergence tolerance ``tol`` (relative Ritz residual) and can be a hair *under* the true norm
if ``n_iter`` runs out first (a top singular value nearly tied with the next one). Treat upper bounds as exact to about
``1e-4`` relative, which is far below the slack of any compositional bound of a nonlinear network.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Sequence, TypeVar, cast

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ..gradnorm import GradientNormalized
from ..normalizations.feature_norms import post_norm
from ..normalizations.mean_sn import MeanOnlyBatchNorm
from ..validate import require

__all__ = [
    "RULES", "BoundReport", "BoundContext", "LipschitzRule", "RuleRegistry", "operator_norm",
    "lipschitz_upper_bound", "explain_upper_bound", "lipschitz_lower_bound", "NotAffineError", "Rule",
]

#: ``rule(module, input_shape, ctx) -> float | None``; ``input_shape`` excludes the batch dimension
Rule = Callable[[nn.Module, "tuple[int, ...]", "BoundContext"], "float | None"]

_M = TypeVar("_M", bound=nn.Module)

_SEED = 0x5EED  # private generator for start and probe vectors: never touches the global RNG


# --------------------------------------------------------------------------------------------- helpers
class _EvalState:
    """Context manager: eval mode for every submodule (restored flag by flag) and cached parametrizations."""

    def __init__(self, module: nn.Module, cache: bool = True) -> None:
        self.module, self.use_cache = module, cache

    def __enter__(self) -> "_EvalState":
        self.flags = [(m, m.training) for m in self.module.modules()]
        self.module.eval()
        self.cache = parametrize.cached() if self.use_cache else None
        if self.cache is not None:
            self.cache.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.cache is not None:
                self.cache.__exit__(*exc)
        finally:
            self.module.train(self.flags[0][1])  # through train() so that overrides run
            for m, flag in self.flags:
                if m.training != flag:
                    m.training = flag


def _dtype_device(module: nn.Module) -> tuple[torch.dtype, torch.device]:
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return torch.get_default_dtype(), torch.device("cpu")


def _shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in input_shape)
    except TypeError:
        raise ValueError(f"input_shape must be a sequence of positive integers, got {input_shape!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"input_shape must be a non-empty sequence of positive integers (no batch dimension), "
                         f"got {input_shape!r}")
    return shape


def _randn(shape: Sequence[int], gen: torch.Generator, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float64).to(dtype=dtype, device=device)


class NotAffineError(ValueError):
    """The map given to :func:`operator_norm` is not affine in its input."""


def _check_affine(fn: Callable[[Tensor], Tensor], zero: Tensor, bias: Tensor, gen: torch.Generator,
                  what: str) -> None:
    """Raise :class:`NotAffineError` unless ``L(x) = fn(x) - fn(0)`` is additive and odd on random probes."""
    x = _randn(zero.shape, gen, zero.dtype, zero.device)
    y = _randn(zero.shape, gen, zero.dtype, zero.device)
    rtol = 1e-4 if zero.dtype in (torch.float32, torch.float64) else 2e-2
    with torch.no_grad():
        lx, ly, lxy, lmx = (fn(v) - bias for v in (x, y, x + y, -x))
        scale = float(lx.norm() + ly.norm() + bias.norm()) + 1e-30
        bad = max(float((lxy - lx - ly).norm()), float((lmx + lx).norm()))
    if not bad <= rtol * scale:
        raise NotAffineError(f"{what} is not affine in its input (||L(x+y) - L(x) - L(y)|| or ||L(-x) + L(x)|| "
                             f"is {bad:.3g}, relative {bad / scale:.3g}); operator_norm needs an affine map")


_BASIS_BYTES = 64 * 2 ** 20  # memory for the Lanczos basis before it restarts


def _lanczos_top(matvec: Callable[[Tensor], Tensor], v0: Tensor, n_iter: int, tol: float, what: str) -> float:
    """Largest eigenvalue of the symmetric PSD operator ``matvec`` by restarted Lanczos.

    Full reorthogonalization (twice), restarted from the top Ritz vector when the basis outgrows
    :data:`_BASIS_BYTES`; ``n_iter`` matvecs at most; stops once the Ritz residual
    ``||M y - theta y|| <= tol * theta`` (or the Krylov space is invariant). Ritz values never exceed
    the top eigenvalue, and they converge much faster than the power iteration when the top of the
    spectrum is clustered (stride-1 convolutions).
    """
    n = v0.numel()
    cap = max(8, min(n_iter, _BASIS_BYTES // max(1, n * v0.element_size())))
    v = v0.reshape(-1) / v0.norm()
    best, used = 0.0, 0
    while used < n_iter:
        k_max = min(cap, n_iter - used)
        basis = v.new_zeros((k_max, n))
        alphas: list[float] = []
        betas: list[float] = []
        done = False
        theta, s = 0.0, None
        for j in range(k_max):
            basis[j] = v
            w = matvec(v)
            used += 1
            if not bool(torch.isfinite(w).all()):
                raise FloatingPointError(f"the Lanczos iteration on {what} produced non-finite values")
            alphas.append(float(torch.dot(w, v)))
            b = basis[: j + 1]
            for _ in range(2):  # full reorthogonalization, twice ("twice is enough")
                w = w - b.T @ (b @ w)
            beta = float(w.norm())
            T = torch.diag(torch.tensor(alphas, dtype=torch.float64))
            if betas:
                off = torch.tensor(betas, dtype=torch.float64)
                T += torch.diag(off, 1) + torch.diag(off, -1)
            evals, evecs = torch.linalg.eigh(T)
            theta, s = float(evals[-1]), evecs[:, -1]
            best = max(best, theta)
            if theta <= 0.0 or beta <= 1e-12 * max(theta, 1e-300) or beta * abs(float(s[-1])) <= tol * theta:
                done = True  # zero operator, invariant subspace, or converged Ritz pair
                break
            betas.append(beta)
            v = w / beta
        if done or used >= n_iter:
            break
        assert s is not None  # the block ran at least one Lanczos step
        y = s.to(dtype=basis.dtype, device=basis.device) @ basis[: s.numel()]  # restart from the top Ritz vector
        v = y / y.norm()
    return math.sqrt(max(best, 0.0))


def _linear_norm(fn: Callable[[Tensor], Tensor], input_shape: tuple[int, ...], dtype: torch.dtype,
                 device: torch.device, n_iter: int, tol: float, what: str) -> float:
    """Spectral norm of ``x -> fn(x) - fn(0)`` on ``(1, *input_shape)`` inputs (fn must be affine)."""
    require(n_iter, name="n_iter", kind="int", min=1)
    if not tol >= 0:
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    gen = torch.Generator().manual_seed(_SEED)
    zero = torch.zeros((1, *input_shape), dtype=dtype, device=device)
    with torch.no_grad():
        bias = fn(zero)  # first call: parametrized weights get cached without a graph
    _check_affine(fn, zero, bias, gen, what)

    def gram(v: Tensor) -> Tensor:
        # A^T A v by a vector-Jacobian product at v (the map is affine: its Jacobian is A everywhere)
        with torch.enable_grad():
            x = v.detach().reshape(zero.shape).requires_grad_(True)
            out = fn(x)
            if not out.requires_grad:  # the output does not depend on the input: A = 0
                return torch.zeros_like(v)
            (g,) = torch.autograd.grad(out, x, (out - bias).detach(), allow_unused=True)
        return torch.zeros_like(v) if g is None else g.reshape(-1)

    return _lanczos_top(gram, _randn(zero.shape, gen, dtype, device), n_iter, tol, what)


# --------------------------------------------------------------------------------------------- public: operator norm
def operator_norm(module: nn.Module, input_shape: Sequence[int], n_iter: int = 50, tol: float = 1e-6) -> float:
    """The spectral norm of the linear part of the affine ``module`` on inputs of shape ``input_shape``.

    ``input_shape`` is one input without the batch dimension: ``(C, H, W)`` for 2-D convolutions
    and pools, ``(features,)`` for linear layers. The norm is that of ``x -> module(x) - module(0)``,
    estimated by at most ``n_iter`` Lanczos steps on ``A^T A`` (stopping early once the Ritz residual
    is below ``tol`` relative), with ``A^T`` obtained by autograd through the module, so padding
    modes, strides, groups, hooks and parametrizations count exactly as in the forward. The
    estimate approaches the norm from below; on inputs with at most ``n_iter`` elements it is exact
    (the Krylov space fills the input space), up to rounding.

    The module is evaluated in eval mode (restored afterwards) under ``parametrize.cached()``: a
    spectral-normalization parametrization uses its stored vectors without updating them. Raises
    :class:`NotAffineError` (a ``ValueError``) when the module is not affine on random probes.
    """
    shape = _shape(input_shape)
    dtype, device = _dtype_device(module)
    with _EvalState(module):
        return _linear_norm(module, shape, dtype, device, n_iter, tol, type(module).__name__)


# --------------------------------------------------------------------------------------------- the rule registry
@dataclass(frozen=True)
class LipschitzRule:
    """How to bound one module type: ``bound(module, input_shape, ctx) -> float | None``.

    ``kind`` is ``"affine"`` for modules bounded by the operator norm of their linear part (merged with
    affine neighbours in a chain, whose *joint* norm is used), ``"isometry"`` for reshapes and
    identities (1; merged too), ``"other"`` for everything else. ``includes_hooks``: the rule
    evaluates the module itself, so its forward hooks are accounted for; otherwise a module with
    forward (pre-)hooks gets no bound.
    """

    bound: Rule
    kind: Literal["affine", "isometry", "other"] = "other"
    includes_hooks: bool = False


class RuleRegistry:
    """Lipschitz rules keyed by module type.

    :meth:`find` walks the module's MRO; at each class it takes a registered rule, or else the rule the
    class declares (:data:`STRUCTURE_RULE` for a ``lipschitz_structure()`` method, :data:`AFFINE_RULE` for
    ``lipschitz_affine = True``). The first class with a rule decides, and its rule is used only when
    the module's ``forward`` is that class's (a subclass with its own forward gets no rule).
    """

    def __init__(self) -> None:
        self._rules: dict[type, LipschitzRule] = {}

    def add(self, module_type: type, rule: LipschitzRule) -> LipschitzRule:
        """Use ``rule`` for ``module_type`` (replacing any earlier one); returns ``rule``."""
        if not isinstance(module_type, type) or not issubclass(module_type, nn.Module):
            raise TypeError(f"module_type must be an nn.Module subclass, got {module_type!r}")
        if not callable(rule.bound):
            raise TypeError(f"a Lipschitz rule must be callable, got {rule.bound!r}")
        self._rules[module_type] = rule
        return rule

    def register(self, module_type: type[_M], bound: Callable[[_M, tuple[int, ...], BoundContext], float | None], *,
                 includes_hooks: bool = False) -> Callable[[_M, tuple[int, ...], BoundContext], float | None]:
        """Register ``bound(module, input_shape, ctx) -> float | None`` for ``module_type`` (and its
        subclasses that keep its ``forward``); returns ``bound``.

        ``input_shape`` is the module's input without the batch dimension; ``ctx`` is a
        :class:`BoundContext` with helpers to bound children (``ctx.bound``), chains (``ctx.chain``) and
        to propagate shapes (``ctx.out_shape``). Return ``None`` (better: ``ctx.fail("why")``) when no
        valid bound is known. ``includes_hooks=True`` says the rule evaluates the module itself.
        """
        # the registry hands a rule only instances of its module_type
        self.add(module_type, LipschitzRule(cast(Rule, bound), "other", includes_hooks))
        return bound

    def unregister(self, module_type: type) -> None:
        self._rules.pop(module_type, None)

    def __contains__(self, module_type: object) -> bool:
        return module_type in self._rules

    def find(self, module: nn.Module) -> LipschitzRule | None:
        """The rule for ``module`` (see the class docstring), or None."""
        for cls in type(module).__mro__:
            rule = self._rules.get(cls) or _declared_rule(cls)
            if rule is not None:
                return rule if getattr(type(module), "forward", None) is getattr(cls, "forward", None) else None
        return None


def _declared_rule(cls: type) -> LipschitzRule | None:
    """The rule a class declares for itself (duck-typed: the networks do not import this module)."""
    own = vars(cls)
    if "lipschitz_structure" in own:
        return STRUCTURE_RULE
    if own.get("lipschitz_affine") is True:
        return AFFINE_RULE
    return None


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks)


@dataclass(frozen=True)
class BoundReport:
    """``value`` (None when no valid bound is known), ``parts`` and ``reason``.

    ``parts`` lists ``(name, factor)`` for every part that was bounded, inner parts before the part
    that contains them; names are module paths inside D, ``a+b`` for merged affine runs, and
    ``path:op`` for functional ops of a forward (``blocks.0:avg_pool2d``). ``reason`` is ``"ok"`` or
    says which module has no valid bound.
    """

    value: float | None
    parts: list[tuple[str, float]]
    reason: str


class BoundContext:
    """What a rule gets: bound children and chains, propagate shapes, record parts, fail with a reason."""

    def __init__(self, dtype: torch.dtype, device: torch.device, n_iter: int, tol: float) -> None:
        self.dtype, self.device, self.n_iter, self.tol = dtype, device, n_iter, tol
        self.parts: list[tuple[str, float]] = []
        self.reason: str | None = None
        self._prefix: list[str] = []

    # ----------------------------------------------------------------- naming, failing
    def qualify(self, name: str) -> str:
        """``name`` inside the module whose rule is running (``blocks.0`` + ``c1`` -> ``blocks.0.c1``)."""
        if not self._prefix or not self._prefix[-1]:
            return name
        if not name or name.startswith(":"):
            return self._prefix[-1] + name
        return f"{self._prefix[-1]}.{name}"

    def fail(self, reason: str) -> float | None:  # typed as a rule's result: ``return ctx.fail(...)``
        """Record why no bound exists (the first reason wins) and return ``None``."""
        if self.reason is None:
            self.reason = reason
        return None

    def _label(self, name: str, module: nn.Module | None = None) -> str:
        kind = f" ({type(module).__name__})" if module is not None else ""
        return f"{name!r}{kind}" if name else f"the model{kind}"

    # ----------------------------------------------------------------- shapes and norms
    def out_shape(self, module: nn.Module | Callable[[Tensor], Tensor], input_shape: Sequence[int]) -> tuple[int, ...]:
        """The output shape (no batch dimension) of ``module`` on a zero input of ``input_shape``."""
        with torch.no_grad():
            out = module(torch.zeros((1, *input_shape), dtype=self.dtype, device=self.device))
        return tuple(out.shape[1:])

    def affine_norm(self, modules: Sequence[nn.Module], input_shape: Sequence[int], name: str) -> float | None:
        """Operator norm of the composition ``modules[-1] o ... o modules[0]`` (None if it is not affine)."""
        def fn(x: Tensor) -> Tensor:
            for m in modules:
                x = m(x)
            return x
        try:
            return _linear_norm(fn, tuple(input_shape), self.dtype, self.device, self.n_iter, self.tol,
                                repr(name))
        except NotAffineError as e:
            return self.fail(f"{self._label(name)} is not affine although its rule says so (a forward hook?): {e}")

    # ----------------------------------------------------------------- recursion
    def bound(self, module: nn.Module, input_shape: Sequence[int], name: str = "") -> float | None:
        """The bound of ``module`` (a child called ``name``) on inputs of ``input_shape``; records a part."""
        full = self.qualify(name)
        rule = RULES.find(module)
        if rule is None:
            return self.fail(f"no Lipschitz rule for {self._label(full, module)}")
        if _has_hooks(module) and not rule.includes_hooks:
            return self.fail(f"{self._label(full, module)} has forward hooks that its rule cannot account for")
        self._prefix.append(full)
        try:
            value = rule.bound(module, tuple(input_shape), self)
        finally:
            self._prefix.pop()
        return self._record(full, module, value)

    def _record(self, full: str, module: nn.Module | None, value: float | None) -> float | None:
        if value is None:
            return self.fail(f"no valid bound for {self._label(full, module)}")
        value = float(value)
        if not (math.isfinite(value) and value >= 0):
            return self.fail(f"invalid bound {value!r} for {self._label(full, module)}")
        if full:
            self.parts.append((full, value))
        return value

    def chain(self, items: Iterable[tuple[str, nn.Module]], input_shape: Sequence[int]) -> float | None:
        """Bound of ``items[-1] o ... o items[0]`` (``(name, module)`` pairs, names relative to the current
        module): the product of the parts' bounds, where runs of consecutive affine modules are merged
        and bounded by their joint operator norm. Plain ``nn.Sequential`` items are flattened."""
        flat = self._flatten(list(items), "")
        shape = tuple(input_shape)
        total = 1.0
        run: list[tuple[str, nn.Module]] = []
        run_shape = shape

        def flush() -> bool:
            nonlocal total, run
            if not run:
                return True
            if all(_kind(m) == "isometry" and not _has_hooks(m) for _, m in run):
                value: float | None = 1.0  # reshapes, identities: nothing to compute
            else:
                value = self.affine_norm([m for _, m in run], run_shape, "+".join(self.qualify(n) for n, _ in run))
            value = self._record("+".join(self.qualify(n) for n, _ in run), None, value)
            run = []
            if value is None:
                return False
            total *= value
            return True

        for name, m in flat:
            if _mergeable(m):
                if not run:
                    run_shape = shape
                run.append((name, m))
            else:
                if not flush():
                    return None
                value = self.bound(m, shape, name)
                if value is None:
                    return None
                total *= value
            shape = self.out_shape(m, shape)
        if not flush():
            return None
        return total

    def _flatten(self, items: list[tuple[str, nn.Module]], prefix: str) -> list[tuple[str, nn.Module]]:
        out: list[tuple[str, nn.Module]] = []
        for name, m in items:
            full = f"{prefix}.{name}" if prefix and not name.startswith(":") else prefix + name
            if type(m) is nn.Sequential and not _has_hooks(m):
                out += self._flatten(list(m.named_children()), full)
            elif (split := _split_post_norm(m, full)) is not None:
                out += split
            else:
                out.append((full, m))
        return out


class _LayerWithoutPostNorm(nn.Module):
    """A layer's own forward without its hooks: the stand-in for a layer followed by a non-affine
    normalization (``layer_norm``), which :func:`_split_post_norm` bounds as the next item of the chain."""

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, x: Tensor) -> Tensor:
        return self.layer.forward(x)  # forward(), not __call__: the hook is left out


def _split_post_norm(module: nn.Module, name: str) -> list[tuple[str, nn.Module]] | None:
    """``[(name, layer without hook), (name.ln, norm)]`` for a layer whose only hook applies a non-affine
    normalization after it (a layer norm); None otherwise (an affine one, a batch norm, stays merged)."""
    found = post_norm(module)
    if found is None:
        return None
    kind, norm = found
    if _kind(norm) == "affine" or module._forward_pre_hooks or set(module._forward_hooks.values()) != {kind.hook}:
        return None
    return [(name, _LayerWithoutPostNorm(module)), (f"{name}.{kind.attr}" if name else kind.attr, norm)]


def _kind(module: nn.Module) -> str | None:
    rule = RULES.find(module)
    return None if rule is None else rule.kind


def _mergeable(module: nn.Module) -> bool:
    """Affine modules whose rule evaluates them (merging evaluates them too, hooks included)."""
    kind = _kind(module)
    return kind == "affine" or (kind == "isometry" and not _has_hooks(module))


# --------------------------------------------------------------------------------------------- rules
def _affine_rule(module: nn.Module, input_shape: tuple[int, ...], ctx: BoundContext) -> float | None:
    """Affine module: the operator norm of its linear part on this input shape."""
    return ctx.affine_norm([module], input_shape, ctx.qualify(""))


def _isometry_rule(module: nn.Module, input_shape: tuple[int, ...], ctx: BoundContext) -> float:
    """Reshapes and permutations (Flatten, Identity, PixelShuffle, eval-mode Dropout): 1."""
    return 1.0


def _constant(value: float) -> Rule:
    def rule(module: nn.Module, input_shape: tuple[int, ...], ctx: BoundContext) -> float:
        return value
    rule.__doc__ = f"Lipschitz constant {value}."
    return rule


def _sequential_rule(module: nn.Module, input_shape: tuple[int, ...], ctx: BoundContext) -> float | None:
    return ctx.chain(module.named_children(), input_shape)


def _leaky_relu_rule(module: nn.LeakyReLU, input_shape: tuple[int, ...], ctx: BoundContext) -> float:
    return max(1.0, abs(float(module.negative_slope)))


def _elu_rule(module: nn.ELU, input_shape: tuple[int, ...], ctx: BoundContext) -> float:
    return max(1.0, abs(float(module.alpha)))  # slope alpha * exp(x) <= alpha for x < 0


def _prelu_rule(module: nn.PReLU, input_shape: tuple[int, ...], ctx: BoundContext) -> float:
    return max(1.0, float(module.weight.detach().abs().max()))


def _softplus_rule(module: nn.Softplus, input_shape: tuple[int, ...], ctx: BoundContext) -> float:
    return 1.0  # derivative sigmoid(beta x) < 1; the linear branch above the threshold has slope 1


def _max_pool_rule(module: nn.Module, input_shape: tuple[int, ...], ctx: BoundContext) -> float:
    """Max pooling: each window's max is 1-Lipschitz in L-inf <= L2 of the window, and an input element
    lies in at most ``prod min(k, ceil(((k - 1) d + 1) / s))`` windows: the bound is the square root."""
    nd = _MAX_POOL_DIMS[next(t for t in type(module).__mro__ if t in _MAX_POOL_DIMS)]

    def tup(v):
        return tuple(v) if isinstance(v, (tuple, list)) else (v,) * nd
    overlap = 1
    for k, s, d in zip(tup(module.kernel_size), tup(module.stride or module.kernel_size), tup(module.dilation)):
        overlap *= min(k, math.ceil(((k - 1) * d + 1) / s))
    return math.sqrt(overlap)


_MAX_POOL_DIMS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}


def _structure_rule(module: nn.Module, input_shape: tuple[int, ...], ctx: BoundContext) -> float | None:
    """A module that describes its forward: ``lipschitz_structure()`` returns branches whose outputs are
    summed, each a chain of ``(name, module)``; Lip <= the sum over branches of the chains' bounds."""
    branches = module.lipschitz_structure()  # type: ignore[operator]  # duck-typed: a module that defines it
    if not branches or not all(isinstance(b, (list, tuple)) for b in branches):
        raise TypeError(f"{type(module).__name__}.lipschitz_structure() must return a non-empty list of "
                        f"chains (lists of (name, module) pairs), got {branches!r}")
    total = 0.0
    for branch in branches:
        value = ctx.chain(branch, input_shape)
        if value is None:
            return None
        total += value
    return total


def _group_norm_rule(module: nn.GroupNorm, input_shape: tuple[int, ...], ctx: BoundContext) -> float:
    """Group norm (layer norm is one group): in each group, centring is a projection (norm 1) and
    ``y -> y / sqrt(||y||^2 / n + eps)`` has Jacobian eigenvalues ``1/s`` and ``eps/s^3`` with
    ``s = sqrt(||y||^2 / n + eps) >= sqrt(eps)``: its Lipschitz constant is ``1/sqrt(eps)``, reached where the
    group is constant. Times the per-channel gain: ``max |gamma| / sqrt(eps)``."""
    gamma = 1.0 if module.weight is None else float(module.weight.detach().abs().max())
    return gamma / math.sqrt(module.eps)


def _gradient_normalized_rule(module: GradientNormalized, input_shape: tuple[int, ...],
                              ctx: BoundContext) -> float | None:
    label = repr(ctx.qualify("")) if ctx.qualify("") else "the model"
    return ctx.fail(f"{label} is {module.kind.upper()}-normalized (GradientNormalized): GN is only piecewise "
                    "1-Lipschitz and PGN has no bound, so no global Lipschitz bound is known")


#: modules declaring ``lipschitz_structure()``: the sum of their branches (see :func:`_structure_rule`)
STRUCTURE_RULE = LipschitzRule(_structure_rule)
#: affine modules: the operator norm of their linear part (also for ``lipschitz_affine = True``)
AFFINE_RULE = LipschitzRule(_affine_rule, "affine", includes_hooks=True)
ISOMETRY_RULE = LipschitzRule(_isometry_rule, "isometry")
#: the rules for torch's layers (and gannorm's MSN batch norm and GN wrapper); add your own with
#: ``RULES.register(MyModule, rule)`` or give the module a ``lipschitz_structure()`` method
RULES = RuleRegistry()


def _register_builtin() -> None:
    nn_ = nn.modules
    affine = [nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
              nn.ConvTranspose3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d, nn.AdaptiveAvgPool1d,
              nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d, nn.Upsample, nn_.batchnorm._BatchNorm, MeanOnlyBatchNorm]
    affine += [getattr(nn_.padding, n) for n in ("_ConstantPadNd", "_ReflectionPadNd", "_ReplicationPadNd",
                                                   "_CircularPadNd") if hasattr(nn_.padding, n)]
    for t in affine:
        RULES.add(t, AFFINE_RULE)
    for t in (nn.Identity, nn.Flatten, nn.Unflatten, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
              nn.AlphaDropout, nn.FeatureAlphaDropout, nn.PixelShuffle, nn.PixelUnshuffle, nn.ChannelShuffle):
        RULES.add(t, ISOMETRY_RULE)
    # elementwise activations: the sup of |f'| (rounded up where irrational)
    for t, c in ((nn.ReLU, 1.0), (nn.Tanh, 1.0), (nn.Hardtanh, 1.0), (nn.CELU, 1.0), (nn.Softsign, 1.0),
                 (nn.LogSigmoid, 1.0), (nn.Tanhshrink, 1.0), (nn.Softshrink, 1.0), (nn.Sigmoid, 0.25),
                 (nn.Hardsigmoid, 1.0 / 6.0), (nn.SiLU, 1.0999), (nn.GELU, 1.1290), (nn.Mish, 1.0885),
                 (nn.Hardswish, 1.5), (nn.SELU, 1.0507009873554805 * 1.6732632423543772 * (1 + 1e-12))):
        RULES.register(t, _constant(c))
    RULES.register(nn.LeakyReLU, _leaky_relu_rule)
    RULES.register(nn.ELU, _elu_rule)
    RULES.register(nn.PReLU, _prelu_rule)
    RULES.register(nn.Softplus, _softplus_rule)
    for t in (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d):
        RULES.register(t, _max_pool_rule)
    RULES.register(nn.Sequential, _sequential_rule)
    RULES.register(nn.GroupNorm, _group_norm_rule)
    RULES.add(_LayerWithoutPostNorm, AFFINE_RULE)
    RULES.register(GradientNormalized, _gradient_normalized_rule)


_register_builtin()


# --------------------------------------------------------------------------------------------- public: bounds
def explain_upper_bound(D: nn.Module, input_shape: Sequence[int], *, n_iter: int = 100,
                        tol: float = 1e-6) -> BoundReport:
    """The upper bound of :func:`lipschitz_upper_bound` with its parts and a reason (see :class:`BoundReport`)."""
    shape = _shape(input_shape)
    dtype, device = _dtype_device(D)
    ctx = BoundContext(dtype, device, n_iter, tol)
    with _EvalState(D):
        value = ctx.bound(D, shape, "")
    if value is None:
        return BoundReport(None, ctx.parts, ctx.reason or "no valid bound")
    return BoundReport(value, ctx.parts, "ok")


def lipschitz_upper_bound(D: nn.Module, input_shape: Sequence[int], *, n_iter: int = 100,
                          tol: float = 1e-6) -> float | None:
    """An upper bound of the L2 Lipschitz constant of eval-mode ``D`` on inputs of shape ``input_shape``.

    ``input_shape`` is one input without the batch dimension (``(C, H, W)`` or ``(features,)``).
    Composed from the rules in :data:`RULES`; ``None`` when some module has no rule (or no valid
    bound): :func:`explain_upper_bound` says which, and lists the parts. ``n_iter``/``tol`` control
    each operator norm (see :func:`operator_norm`).
    """
    return explain_upper_bound(D, input_shape, n_iter=n_iter, tol=tol).value


def lipschitz_lower_bound(D: nn.Module, *batches: Tensor) -> float:
    """The largest per-sample ``||grad_x D(x)||_2`` over every sample of ``batches``: a lower bound of the
    Lipschitz constant of eval-mode ``D``.

    Each sample's outputs are summed (divided by ``sqrt(k)`` for ``k`` outputs per sample, so that
    the value stays a valid lower bound of the Jacobian norm; for the usual ``[B, 1]`` logits it is
    the plain gradient norm); the input is flattened per sample. Gradients are taken w.r.t. the input
    only (no parameter ``.grad`` is touched), with D in eval mode (every training flag restored), so
    parametrization buffers and running statistics stay as they are. Typical batches: real, fake and
    :func:`gannorm.penalties.interpolates` of the two.
    """
    if not batches:
        raise ValueError("lipschitz_lower_bound needs at least one batch of inputs")
    best = 0.0
    with _EvalState(D, cache=False), torch.enable_grad():
        for batch in batches:
            if not isinstance(batch, Tensor):
                raise TypeError(f"batches must be tensors, got {type(batch).__name__}")
            if batch.shape[0] == 0:
                continue
            x = batch.detach().clone().requires_grad_(True)
            out = D(x).reshape(x.shape[0], -1)
            (g,) = torch.autograd.grad(out.sum() / math.sqrt(out.shape[1]), x)
            best = max(best, float(torch.linalg.vector_norm(g.flatten(1), dim=1).max()))
    return best
