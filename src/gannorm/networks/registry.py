"""The network registry (``NETWORKS``) and the builders the trainer uses.

::

    from gannorm.networks import NETWORKS, build_generator, build_discriminator
    G = build_generator("resnet", (3, 32, 32), z_dim=128, width=0.25)
    D = build_discriminator("resnet", (3, 32, 32), width=0.25, normalization="bssn",
                            normalization_options={"scale": 1.4})

Each entry is a :class:`NetworkSpec`: the two constructors, the data ``kind`` ("image":
``data_shape = (C, H, W)`` with ``H == W``, the resolution; "vector": ``data_shape = (D,)``), the
supported resolutions and the allowed arch options with their defaults. One ``arch_options`` dict
serves both builders: an option that concerns only one network (e.g. D's ``slope``) is accepted
and ignored by the other. Every network is built with its official initialisation unless ``init`` names
a scheme of :func:`gannorm.init_weights` (both builders); D is normalized
(``gannorm.normalize(D, normalization, **normalization_options)``, with ``input_shape=data_shape`` filled
in for the methods whose entry says ``needs_input_shapes``), G only when asked. Bad input raises a one-line
``ValueError`` naming the allowed values (an unknown arch raises
:class:`UnknownNetworkError`, which is both a ``ValueError`` and the library's
``UnknownNameError``/``KeyError``).

**Class-conditional networks.** ``num_classes > 0`` (both builders; 0, the default, is unconditional)
builds a G whose forward is ``G(z, y)`` and a D whose forward is ``D(x, y)``, with ``y`` int64 class
indices ``[B]``; every built network carries ``num_classes``. Only the archs whose spec says
``conditional=True`` accept it (``conditional_archs()``); their constructors receive ``num_classes``.

A new architecture is two constructors plus one ``NETWORKS.register(name, NetworkSpec(...), description)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from ..errors import ConfigError
from ..init import INIT_SCHEMES, init_weights
from ..normalizations import METHODS, normalize
from ..registry import Registry, UnknownNameError
from ..validate import is_int, require
from . import biggan, sngan_resnet
from .conditional import check_num_classes
from .dscnn import DSCNNDiscriminator
from .mlp import MLPDiscriminator, MLPGenerator
from .sngan_cnn import BOTTOM_BN, SNGANCNNDiscriminator, SNGANCNNGenerator
from .sngan_resnet import POOLS, SNGANResNetDiscriminator, SNGANResNetGenerator

KINDS = ("image", "vector")


class UnknownNetworkError(UnknownNameError, ValueError):
    """An arch name that is not registered (a ``KeyError`` like every registry miss, and a ``ValueError``)."""


@dataclass(frozen=True)
class NetworkSpec:
    """How to build one architecture.

    ``generator(data_shape, *, z_dim, width, **options)`` and ``discriminator(data_shape, *, width,
    **options)`` receive every option of ``options`` (defaults filled in). ``resolutions`` lists the
    supported image sizes; ``None`` means any positive multiple of ``resolution_multiple``.
    ``conditional``: the arch builds class-conditional networks (its constructors then also receive
    ``num_classes``, 0 for unconditional ones).
    ``g_batch_stats``: G normalizes with batch statistics (BatchNorm), so it needs batches of 2 or more.
    """

    generator: Callable[..., nn.Module]
    discriminator: Callable[..., nn.Module]
    kind: str
    resolutions: tuple[int, ...] | None = None
    resolution_multiple: int = 1
    official_resolutions: tuple[int, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)
    conditional: bool = False
    g_batch_stats: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")

    def resolutions_text(self) -> str:
        official = f" (official: {', '.join(map(str, self.official_resolutions))})" if self.official_resolutions else ""
        if self.resolutions is None:
            return ("any resolution" if self.resolution_multiple == 1
                    else f"any multiple of {self.resolution_multiple}") + official
        return ", ".join(map(str, self.resolutions)) + official

    def supports(self, resolution: int) -> bool:
        if self.resolutions is not None:
            return resolution in self.resolutions
        return resolution >= self.resolution_multiple and resolution % self.resolution_multiple == 0

    def check_data_shape(self, arch: str, data_shape: Sequence[int]) -> tuple[int, ...]:
        """Validate ``data_shape`` for this arch; returns it as a tuple of ints."""
        try:
            shape = tuple(data_shape)
            ok = all(is_int(s) and s >= 1 for s in shape)
        except TypeError:
            ok = False
        if not ok:
            raise ConfigError(f"data_shape must be a tuple of positive integers, got {data_shape!r}")
        if self.kind == "image":
            if len(shape) != 3:
                raise ConfigError(f"network {arch!r} is for images: data_shape must be (C, H, W) with H == W; "
                                 f"got {shape}")
            if shape[1] != shape[2]:
                raise ConfigError(f"network {arch!r} needs square images (H == W); got data_shape {shape}")
            if not self.supports(shape[1]):
                raise ConfigError(f"network {arch!r} supports resolutions {self.resolutions_text()}; "
                                 f"got {shape[1]}")
        elif len(shape) != 1:
            raise ConfigError(f"network {arch!r} is for vectors: data_shape must be (D,); got {shape}")
        return shape

    def resolve_options(self, arch: str, options: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = ", ".join(f"{k} (default {v!r})" for k, v in self.options.items()) or "none"
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} for network {arch!r}; allowed: {allowed}")
        return {**self.options, **options}


NETWORKS: Registry[NetworkSpec] = Registry("network")


def get_spec(arch: str) -> NetworkSpec:
    """The :class:`NetworkSpec` of ``arch``; :class:`UnknownNetworkError` lists the known names."""
    try:
        return NETWORKS.get(arch)
    except UnknownNameError as e:
        raise UnknownNetworkError(str(e)) from None


def conditional_archs() -> list[str]:
    """The registered archs that build class-conditional networks (``NetworkSpec.conditional``).

    Returns:
        Their names, in registration order.

    Example::

        >>> "resnet" in conditional_archs()
        True
    """
    return [name for name in NETWORKS.names() if NETWORKS.get(name).conditional]


def _class_options(arch: str, spec: NetworkSpec, num_classes: int) -> dict[str, int]:
    """``{"num_classes": n}`` for a conditional arch, ``{}`` for an unconditional one (n must be 0 there)."""
    check_num_classes(num_classes)
    if spec.conditional:
        return {"num_classes": num_classes}
    if num_classes:
        raise ConfigError(f"network {arch!r} is not class-conditional (num_classes={num_classes}); "
                          f"conditional archs: {', '.join(conditional_archs())}")
    return {}


def _labelled(module: nn.Module, options: Mapping[str, int]) -> nn.Module:
    """Sets ``module.num_classes`` (0 for the unconditional archs' networks)."""
    module.num_classes = options.get("num_classes", 0)  # type: ignore[assignment]  # a plain attribute
    return module


def _check_init(init: str, who: str) -> None:
    if init != "official" and init not in INIT_SCHEMES:
        raise ConfigError(f"unknown {who} init {init!r}; known: official, {', '.join(INIT_SCHEMES.names())}")


def _check_width(width: float) -> None:
    require(width, name="width", min=0, min_exclusive=True, error=ConfigError)


def build_generator(arch: str, data_shape: Sequence[int], *, z_dim: int = 128, width: float = 1.0,
                    num_classes: int = 0, normalization: str = "none",
                    normalization_options: Mapping[str, Any] | None = None, init: str = "official",
                    **arch_options) -> nn.Module:
    """G mapping ``z [B, z_dim]`` (and, with ``num_classes > 0``, labels ``y [B]``) to ``[B, *data_shape]``
    (tanh for images, linear for vectors).

    Args:
        arch: a registered name (``NETWORKS.names()``).
        data_shape: ``(C, H, W)`` for images, ``(D,)`` for vectors.
        z_dim: latent size.
        width: multiplies every channel count.
        num_classes: 0 (unconditional, ``G(z)``) or the number of classes (``G(z, y)``; a conditional arch).
        normalization: a weight method applied to G's layers as BigGAN does (``"sn"``; default none), with
            ``normalization_options``; a method that needs input shapes gets ``input_shape=(z_dim,)``.
        init: ``"official"`` (the network's own initialisation, drawing nothing more) or a scheme of
            :func:`gannorm.init_weights` (``kaiming``, ...), applied before the normalization as D's ``init``
            (zero biases; class embeddings and BatchNorm keep the network's own init).
        **arch_options: the arch's options (``NetworkSpec.options``).

    Returns:
        The generator, with ``num_classes`` set.

    Example::

        >>> G = build_generator("resnet", (3, 32, 32), width=0.25, num_classes=10)
        >>> G(torch.randn(2, 128), torch.tensor([3, 7])).shape  # doctest: +SKIP
        torch.Size([2, 3, 32, 32])
    """
    spec = get_spec(arch)
    shape = spec.check_data_shape(arch, data_shape)
    options = spec.resolve_options(arch, arch_options)
    _check_width(width)
    require(z_dim, name="z_dim", kind="int", min=1, error=ConfigError)
    classes = _class_options(arch, spec, num_classes)
    _check_init(init, "G")
    method = METHODS.get(normalization)  # fail on an unknown method before building anything
    G = _labelled(spec.generator(shape, z_dim=z_dim, width=width, **options, **classes), classes)
    if init != "official":
        init_weights(G, init)
    if normalization == "none":
        return G
    norm_options = dict(normalization_options or {})
    if method.needs_input_shapes:
        norm_options.setdefault("input_shape", (z_dim,))
    return normalize(G, normalization, **norm_options)


def build_discriminator(arch: str, data_shape: Sequence[int], *, width: float = 1.0, normalization: str = "none",
                        normalization_options: Mapping[str, Any] | None = None, init: str = "official",
                        num_classes: int = 0, **arch_options) -> nn.Module:
    """D mapping ``[B, *data_shape]`` (and, with ``num_classes > 0``, labels ``y [B]``) to ``[B, 1]`` logits,
    initialised, then normalized.

    ``normalization`` is one of ``gannorm.METHODS.names()``; ``normalization_options`` its keyword
    arguments (``scale`` for ssn/bssn). For methods that need input shapes (``strict_sn``, ``dssn``),
    ``input_shape`` defaults to ``data_shape``.
    ``init`` is ``"official"`` (the network's own) or a scheme of :func:`gannorm.init_weights`
    (``lecun``, ``xavier``, ``kaiming``, ``normal``, ``trunc_normal``, ``orthogonal``, ``wn_arpit``; zero
    biases; class embeddings keep the network's own init). ``num_classes`` (a conditional arch only)
    makes D a projection discriminator ``D(x, y)``.

    Returns:
        The discriminator, with ``num_classes`` set.

    Example::

        >>> D = build_discriminator("resnet", (3, 32, 32), width=0.25, normalization="sn", num_classes=10)
        >>> D(torch.randn(2, 3, 32, 32), torch.tensor([3, 7])).shape  # doctest: +SKIP
        torch.Size([2, 1])
    """
    _check_init(init, "D")
    spec = get_spec(arch)
    shape = spec.check_data_shape(arch, data_shape)
    options = spec.resolve_options(arch, arch_options)
    _check_width(width)
    method = METHODS.get(normalization)  # fail on an unknown method before building anything
    norm_options = dict(normalization_options or {})
    if method.needs_input_shapes:
        norm_options.setdefault("input_shape", shape)
    classes = _class_options(arch, spec, num_classes)
    D = _labelled(spec.discriminator(shape, width=width, **options, **classes), classes)
    if init != "official":
        init_weights(D, init)
    return normalize(D, normalization, **norm_options)


# --- the built-in architectures -------------------------------------------------------------------

def _cnn_g(shape, *, z_dim, width, slope, bottom_bn, extra_convs, num_classes=0):
    return SNGANCNNGenerator(shape[1], shape[0], width=width, z_dim=z_dim, bottom_bn=bottom_bn,
                             num_classes=num_classes)


def _cnn_d(shape, *, width, slope, bottom_bn, extra_convs, num_classes=0):
    return SNGANCNNDiscriminator(shape[1], shape[0], width=width, slope=slope, extra_convs=extra_convs,
                                 num_classes=num_classes)


def _dscnn_d(shape, *, width, slope, bottom_bn, extra_convs, num_classes=0):
    return DSCNNDiscriminator(shape[1], shape[0], width=width, slope=slope, extra_convs=extra_convs,
                              num_classes=num_classes)


def _resnet_g(shape, *, z_dim, width, pool, linear_bias, num_classes=0):
    return SNGANResNetGenerator(shape[1], shape[0], width=width, z_dim=z_dim, num_classes=num_classes)


def _resnet_d(shape, *, width, pool, linear_bias, num_classes=0):
    return SNGANResNetDiscriminator(shape[1], shape[0], width=width, pool=pool, linear_bias=linear_bias,
                                    num_classes=num_classes)


def _mlp_g(shape, *, z_dim, width, depth, hidden, slope, num_classes=0):
    return MLPGenerator(shape[0], z_dim=z_dim, depth=depth, hidden=hidden, width=width, num_classes=num_classes)


def _mlp_d(shape, *, width, depth, hidden, slope, num_classes=0):
    return MLPDiscriminator(shape[0], depth=depth, hidden=hidden, width=width, slope=slope, num_classes=num_classes)


def _biggan_g(shape, *, z_dim, width, num_classes=0, **options):
    return biggan.BigGANGenerator(shape[1], shape[0], width=width, z_dim=z_dim, num_classes=num_classes,
                                  **biggan.generator_options(options))


def _biggan_d(shape, *, width, num_classes=0, **options):
    return biggan.BigGANDiscriminator(shape[1], shape[0], width=width, num_classes=num_classes,
                                      **biggan.discriminator_options(options))


NETWORKS.register(
    "cnn", NetworkSpec(_cnn_g, _cnn_d, "image", None, 8, (32, 48, 64),
                       {"slope": 0.1, "bottom_bn": "flat", "extra_convs": 0}, conditional=True, g_batch_stats=True),
    "SNGAN standard CNN (official BSN code): D 7 convs + linear, LeakyReLU(slope) (extra_convs: more 3x3 "
    "convs per stage, for depth studies); G linear-BN + 3 deconvs "
    f"(bottom_bn: {' or '.join(BOTTOM_BN)}); num_classes > 0: conditional BN in G, projection D")
NETWORKS.register(
    "dscnn", NetworkSpec(_cnn_g, _dscnn_d, "image", None, 8, (32, 48, 64),
                         {"slope": 0.1, "bottom_bn": "flat", "extra_convs": 0}, conditional=True, g_batch_stats=True),
    "depthwise-separable SNGAN CNN D (first conv plain, then depthwise kxk + pointwise 1x1, LeakyReLU(slope)); "
    "G is the SNGAN CNN generator")
NETWORKS.register(
    "resnet", NetworkSpec(_resnet_g, _resnet_d, "image", tuple(sngan_resnet.LAYOUTS), 1,
                          sngan_resnet.OFFICIAL_RESOLUTIONS, {"pool": "sum", "linear_bias": None}, conditional=True,
                          g_batch_stats=True),
    f"SNGAN ResNet G and D; D with global pool ({' or '.join(POOLS)}) and linear_bias (null: the layout's "
    "own; true/false) (32: collections, 48: mimicry, "
    "128: official BSN; 16/64 extra); num_classes > 0: conditional BN in G's blocks, projection D")
NETWORKS.register(
    "mlp", NetworkSpec(_mlp_g, _mlp_d, "vector", options={"depth": 4, "hidden": 128, "slope": 0.2},
                       conditional=True),
    "MLP G (ReLU) and D (LeakyReLU(slope)) with depth hidden layers of width hidden, for vector data; "
    "num_classes > 0: class embedding concatenated to z, projection D")
NETWORKS.register(
    "biggan", NetworkSpec(_biggan_g, _biggan_d, "image", tuple(biggan.G_ARCH), 1, tuple(biggan.G_ARCH),
                          dict(biggan.OPTIONS), conditional=True, g_batch_stats=True),
    "BigGAN (BigGAN-PyTorch reference, ch = 64 * width): G with shared class embedding, hierarchical z, "
    "conditional BN and self-attention; D with residual blocks, self-attention and a projection head")
