"""Model-level operations: apply a named method, read sigmas, drive the update policy, remove."""
from __future__ import annotations

import contextlib
import inspect
import warnings
from typing import Any, Iterable, Iterator, Sequence, cast

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..errors import InputError, OptionError
from .base import PowerIterationNorm
from .feature_norms import fold_post_norm, post_norm
from .gamma import GammaScale
from .layers import EMBEDDINGS, NORMALIZABLE, WEIGHT_LAYERS, skips_normalization  # noqa: F401 (re-exported)
from .mean_sn import MeanOnlyBatchNorm, fold_mean_norm
from .methods import METHODS


def _layers(model: nn.Module, exclude: Iterable[str],
            types: tuple[type[nn.Module], ...] = WEIGHT_LAYERS) -> list[tuple[str, nn.Module]]:
    exclude = tuple(exclude)
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, types) and not skips_normalization(m)
            and not any(name == e or name.startswith(e + ".") for e in exclude)]


@contextlib.contextmanager
def recording_input_shapes(layers: Sequence[tuple[str, nn.Module]]) -> Iterator[dict[str, tuple[int, ...]]]:
    """Within the block, each layer's first input shape (without the batch dim) lands in the yielded dict.

    Args:
        layers: ``(name, layer)`` pairs.

    Returns:
        a context manager yielding ``{name: input shape without the batch dim}``.

    Example::

        >>> net = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 1))
        >>> with recording_input_shapes(list(net.named_children())) as shapes:
        ...     _ = net(torch.zeros(2, 4))
        >>> shapes
        {'0': (4,), '1': (3,)}
    """
    shapes: dict[str, tuple[int, ...]] = {}

    def recorder(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            shapes.setdefault(name, tuple(args[0].shape[1:]))
        return hook

    hooks = [m.register_forward_pre_hook(recorder(name)) for name, m in layers]
    try:
        yield shapes
    finally:
        for h in hooks:
            h.remove()


def takes_labels(model: nn.Module) -> bool:
    """Whether ``model`` is called ``model(x, y)``: its forward has a second positional parameter that is
    required or named ``y`` (a class-conditional network).

    Args:
        model: a network.

    Returns:
        whether ``model`` is called ``model(x, y)``.

    Example::

        >>> takes_labels(nn.Linear(2, 1))
        False
    """
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # no introspectable signature: call it with x alone
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 and (positional[1].default is inspect.Parameter.empty or positional[1].name == "y")


def _record_input_shapes(model: nn.Module, layers: Sequence[tuple[str, nn.Module]],
                         input_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Run one dry forward in eval mode on zeros of ``(1, *input_shape)`` and record each layer's input shape.

    A class-conditional model (:func:`takes_labels`) also gets the label ``y = tensor([0])`` (int64).
    """
    param = next(model.parameters(), None)
    kwargs: dict[str, Any] = {} if param is None else {"dtype": param.dtype, "device": param.device}
    x = torch.zeros((1, *input_shape), **kwargs)
    args = (x, torch.zeros(1, dtype=torch.long, device=x.device)) if takes_labels(model) else (x,)
    try:
        return _shapes_of_a_dry_forward(model, layers, args, {})
    except RuntimeError as err:  # the shape does not fit the model: the user's option, not a bug
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OptionError("input_shape", f"input_shape={tuple(input_shape)}: the model cannot run on an input of "
                          f"shape {tuple(x.shape)} ({reason}); pass the shape of one input without the batch "
                          "dim, e.g. (C, H, W)") from None


def _shapes_of_a_dry_forward(model: nn.Module, layers: Sequence[tuple[str, nn.Module]], args: tuple,
                             kwargs: dict) -> dict[str, tuple[int, ...]]:
    """Each layer's input shape in one forward of ``model(*args, **kwargs)`` in eval mode without gradients (the
    model's mode, BatchNorm statistics included, is as before)."""
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), recording_input_shapes(layers) as shapes:
            model(*args, **kwargs)
    finally:
        model.train(was_training)
    return shapes


def _at_first_forward(model: nn.Module, method: str, layers: Sequence[tuple[str, nn.Module]], options: dict) -> None:
    """Apply ``spec`` when ``model`` is first called, with the layers' input shapes read off a dry forward of the
    first sample of that call (the way torch's lazy modules infer their sizes); the call then runs normalized."""
    def hook(module: nn.Module, args: tuple, kwargs: dict) -> None:
        handle.remove()
        del module._gannorm_pending
        first = tuple(a[:1] if isinstance(a, torch.Tensor) and a.dim() > 0 else a for a in args)
        METHODS.get(method).apply(layers, _shapes_of_a_dry_forward(model, layers, first, kwargs), **options)

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    model._gannorm_pending = method  # type: ignore[assignment]  # a plain attribute (nn.Module's stub: tensors, modules)


def method_options(method: str) -> list[str]:
    """The keyword options of a normalization method (methods that need input shapes also take ``input_shape``).

    Args:
        method: a name of :data:`METHODS`.

    Returns:
        the option names ``normalize(model, method, **options)`` accepts.

    Example::

        >>> method_options("bssn")
        ['scale', 'n_power_iterations', 'eps', 'update', 'grad_through_vectors', 'warmup']
    """
    return METHODS.get(method).options()


def normalize(model: nn.Module, method: str, *, exclude: Iterable[str] = (), **options) -> nn.Module:
    """Apply the named normalization to every Conv/ConvTranspose/Linear layer and ``nn.Embedding`` of ``model``.

    Which layer types a method takes is its entry's ``layer_types`` (the weight normalizations: all four;
    ``batch_norm``/``layer_norm``: Conv/ConvTranspose/Linear, embeddings left alone). An embedding's
    ``[num_embeddings, dim]`` weight is normalized as a matrix (BigGAN's ``SNEmbedding``), so a
    class-conditional discriminator or generator is normalized as BigGAN does. ``method`` is one of
    ``gannorm.METHODS.names()``; ``options`` are that method's keyword arguments (for example
    ``scale=1.4`` for ``"bssn"``). ``exclude`` lists layer names (or name prefixes) to leave alone. A
    method whose entry says ``needs_input_shapes`` (``"strict_sn"``, ``"dssn"``) takes
    ``input_shape``, the shape of one model input without the batch dim (``(C, H, W)`` for a
    discriminator, ``(z_dim,)`` for a generator): each layer's own input shape is recorded by one dry
    forward in eval mode, a class-conditional model (forward ``(x, y)``) getting the label 0. The
    options are checked first (unknown, missing or out of range: a one-line
    :class:`gannorm.errors.OptionError`), so a refused call leaves the model as it was.

    Args:
        model: the network (a discriminator or a generator), modified in place.
        method: a name of :data:`METHODS`.
        exclude: layer names or name prefixes to leave alone.
        **options: the method's options (:func:`method_options`).

    Returns:
        ``model``.

    Raises:
        OptionError: an unknown, missing or out-of-range option (the model is left as it was).
        InputError: a layer of ``model`` is already normalized (call :func:`remove_normalization` first).

    Example::

        >>> D = normalize(nn.Sequential(nn.Conv2d(3, 8, 3), nn.LeakyReLU(0.1), nn.Flatten(), nn.Linear(8 * 4 * 4, 1)),
        ...               "bssn", scale=1.4)
        >>> sorted(sigmas(D))
        ['0/sigma', '0/sigma1', '0/sigma2', '3/sigma']
        >>> G = normalize(nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2)), "strict_sn", input_shape=(16,))
        >>> normalize(G, "sn")
        Traceback (most recent call last):
        ...
        gannorm.errors.InputError: layer '0' is already normalized; call gannorm.remove_normalization(model) ...
    """
    spec = METHODS.get(method)
    try:
        spec.check_options(options)
    except OptionError as err:
        raise OptionError(err.option, f"normalization {method!r}: {err}") from None
    layers = _layers(model, exclude, spec.layer_types)
    for name, m in layers:
        if is_normalized(m) or hasattr(model, "_gannorm_pending"):
            raise InputError(f"layer {name or type(m).__name__!r} is already normalized; "
                             "call gannorm.remove_normalization(model) before normalizing it again")
    input_shape = options.pop("input_shape", None)
    if not spec.needs_input_shapes:
        spec.apply(layers, **options)
    elif input_shape is None:  # inferred from the first call's input, as torch's lazy modules do
        _at_first_forward(model, method, layers, options)
    else:
        spec.apply(layers, _record_input_shapes(model, layers, input_shape), **options)
    return model


def is_normalized(layer: nn.Module) -> bool:
    """Whether a method of :data:`METHODS` touched ``layer``: a parametrization, MSN's or a feature norm's hook.

    Args:
        layer: a layer.

    Returns:
        whether it carries a normalization.

    Example::

        >>> layer = nn.Linear(3, 2)
        >>> is_normalized(layer), is_normalized(normalize(layer, "sn"))
        (False, True)
    """
    return parametrize.is_parametrized(layer) or hasattr(layer, "msn") or post_norm(layer) is not None


def _parametrizations(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, nn.ModuleList]]:
    for name, m in model.named_modules():
        if parametrize.is_parametrized(m):
            for tensor_name, plist in m.parametrizations.items():
                yield name, m, tensor_name, plist


def normalized_layers(model: nn.Module) -> Iterator[tuple[str, PowerIterationNorm, torch.Tensor]]:
    """``(layer_name, parametrization, raw_weight)`` for every power-iteration normalization.

    Args:
        model: a network.

    Returns:
        an iterator of ``(layer_name, parametrization, raw_weight)``.

    Example::

        >>> D = normalize(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1)), "sn")
        >>> [(name, type(p).__name__, tuple(w.shape)) for name, p, w in normalized_layers(D)]
        [('0', 'SpectralNorm', (4, 3)), ('2', 'SpectralNorm', (1, 4))]
    """
    for name, _, _, plist in _parametrizations(model):
        for p in plist:
            if isinstance(p, PowerIterationNorm):
                yield name, p, cast(torch.Tensor, plist.original)


def sigmas(model: nn.Module) -> dict[str, float]:
    """Current sigma estimates per layer, from the stored vectors (no iteration), for logging.

    Keys are ``"<layer>/sigma"`` (the divisor before ``scale``), plus ``"<layer>/sigma1"`` and
    ``"<layer>/sigma2"`` for BSN and ``"<layer>/gamma"`` for the learnable-gamma methods. Normalized
    embeddings are included (``"embed/sigma"``). A model that is itself one layer is keyed by its class
    name (``"Conv2d/sigma"``, ``"Embedding/sigma"``).

    Args:
        model: a network (normalized or not: an unnormalized one gives ``{}``).

    Returns:
        ``{"<layer>/<name>": value}``.

    Example::

        >>> layer = normalize(nn.Linear(6, 4), "sn", warmup=100)
        >>> exact = float(torch.linalg.matrix_norm(layer.parametrizations.weight.original.detach(), 2))
        >>> abs(sigmas(layer)["Linear/sigma"] - exact) < 1e-4 * exact
        True
    """
    out: dict[str, float] = {}
    for name, m, tensor_name, plist in _parametrizations(model):
        if tensor_name != "weight":
            continue
        key = name or type(m).__name__.removeprefix("Parametrized")
        for p in plist:
            estimates = getattr(p, "sigma_estimates", None)
            if callable(estimates):  # power iteration or an exact (DFT) sigma
                out.update({f"{key}/{k}": v for k, v in estimates(plist.original).items()})
            elif isinstance(p, GammaScale):
                out[f"{key}/gamma"] = float(p.gamma.detach())
    return out


@torch.no_grad()
def update_power_iteration(model: nn.Module) -> None:
    """Persist one power-iteration step on the current weights for every layer with ``update="step"``.

    Call it once after each optimizer step of the normalized model -- the cadence of the official
    code -- or let :func:`update_after_step` do it.

    Args:
        model: a normalized network.

    Example::

        >>> layer = normalize(nn.Linear(6, 4), "sn", update="step", warmup=0)
        >>> before = sigmas(layer)["Linear/sigma"]
        >>> update_power_iteration(layer)
        >>> sigmas(layer)["Linear/sigma"] >= before - 1e-6  # one more iteration: closer to sigma from below
        True
    """
    for _, p, weight in normalized_layers(model):
        if p.update == "step":
            p.update_vectors(weight)


def update_after_step(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Call :func:`update_power_iteration` on ``model`` after every ``optimizer.step()``; returns the hook handle.

    Args:
        optimizer: the optimizer of ``model``'s parameters.
        model: the normalized network.

    Returns:
        the handle of the hook (``handle.remove()`` detaches it).

    Example::

        >>> D = normalize(nn.Linear(4, 1), "sn", update="step")
        >>> opt = torch.optim.SGD(D.parameters(), lr=0.1)
        >>> handle = update_after_step(opt, D)
        >>> D(torch.ones(2, 4)).sum().backward()
        >>> opt.step()  # the vectors take one power-iteration step on the new weights
        >>> handle.remove()
    """
    return optimizer.register_step_post_hook(lambda *_: update_power_iteration(model))


@torch.no_grad()
def reset_power_iteration(model: nn.Module, n_iterations: int | None = None) -> None:
    """Fresh random vectors and ``n_iterations`` (default: each layer's ``warmup``) iterations.

    Use it after re-initialising normalized weights (torch has no way to do this, pytorch#25092).

    Args:
        model: a normalized network.
        n_iterations: the number of iterations (default: each layer's ``warmup``).

    Example::

        >>> layer = normalize(nn.Linear(6, 4), "sn")
        >>> with torch.no_grad():
        ...     _ = layer.parametrizations.weight.original.mul_(3.0)
        >>> reset_power_iteration(layer, 100)
        >>> exact = float(torch.linalg.matrix_norm(layer.parametrizations.weight.original.detach(), 2))
        >>> abs(sigmas(layer)["Linear/sigma"] - exact) < 1e-4 * exact
        True
    """
    for _, p, weight in normalized_layers(model):
        p.reinitialize(weight, n_iterations)


def remove_normalization(model: nn.Module) -> nn.Module:
    """Undo :func:`normalize`: every parametrization, hook and submodule a method attached is removed.

    Each layer keeps its *effective* weight (``scale * W / sigma``, times gamma for the gamma methods;
    the bias times gamma) as a plain parameter, computed from the stored vectors: no extra power
    iteration is run (torch runs one in training mode, pytorch#68421); a weight-normalized layer keeps
    ``g * v / ||v||``. MSN's mean-only batch norm and the ``batch_norm`` method's batch norm are folded
    into their layers in their eval-mode form (running statistics, gain and bias; see
    :func:`gannorm.normalizations.mean_sn.fold_mean_norm` and
    :func:`gannorm.normalizations.feature_norms.fold_post_norm`). The result is a plain network that
    computes what the normalized model computes in eval mode. A ``layer_norm`` model is refused with a
    one-line :class:`~gannorm.errors.InputError` (a ``ValueError``) before anything changes: a layer norm is
    not affine, so no plain layer computes it.

    Like ``torch.nn.utils.parametrize.remove_parametrizations(module, name, leave_parametrized=True)``, but for
    every layer of a model and every method of :data:`METHODS`.

    Args:
        model: a model normalized by :func:`normalize` (or by the per-layer functions), changed in place.

    Returns:
        ``model``, with plain layers.

    Raises:
        InputError: the model has a ``layer_norm`` method's layer norm (nothing is changed).

    Example::

        >>> D = normalize(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1)), "bssn", scale=1.4)
        >>> effective = D[0].weight.detach().clone()
        >>> D = remove_normalization(D.eval())
        >>> parametrize.is_parametrized(D[0]), torch.equal(D[0].weight, effective)
        (False, True)
    """
    for name, m in model.named_modules():
        found = post_norm(m)
        if found is not None and not found[0].foldable:
            raise InputError(f"gannorm.remove_normalization: layer {name or type(m).__name__!r} is followed by a "
                             f"{type(found[1]).__name__} (layer_norm), which is not affine and cannot be folded into "
                             "its weight; rebuild the model without normalization instead")
    for _, m, tensor_name, plist in list(_parametrizations(model)):
        plist.eval()  # evaluate with the stored vectors
        parametrize.remove_parametrizations(m, tensor_name, leave_parametrized=True)
    for m in list(model.modules()):
        if isinstance(getattr(m, "msn", None), MeanOnlyBatchNorm):
            fold_mean_norm(m)
        if post_norm(m) is not None:
            fold_post_norm(m)
    return model


def remove(model: nn.Module) -> nn.Module:
    """Deprecated name of :func:`remove_normalization` (same arguments and result); emits a ``DeprecationWarning``.

    Args:
        model: a normalized model, changed in place.

    Returns:
        ``model``, with plain layers.

    Example::

        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     D = remove(normalize(nn.Linear(3, 2), "sn"))
        >>> caught[0].category.__name__, parametrize.is_parametrized(D)
        ('DeprecationWarning', False)
    """
    warnings.warn("gannorm.remove is deprecated; use gannorm.remove_normalization (same arguments)",
                  DeprecationWarning, stacklevel=2)
    return remove_normalization(model)
