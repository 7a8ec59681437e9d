"""Benchmark networks, their registry and builders.

``build_generator(arch, data_shape, z_dim=128, width=1.0, num_classes=0, **arch_options)`` and
``build_discriminator(arch, data_shape, width=1.0, normalization="none", normalization_options=None,
init="official", num_classes=0, **arch_options)`` build the registered architectures
(``NETWORKS.names()``: ``cnn``, ``dscnn``, ``resnet``, ``mlp``, ``biggan``) with their official
initialisation; ``num_classes > 0`` makes them class-conditional (``G(z, y)``, ``D(x, y)``). See
:mod:`gannorm.networks.registry` and :mod:`gannorm.networks.conditional`.
"""
from .biggan import BigGANDiscriminator, BigGANGenerator
from .blocks import DBlock, DBlockOptimized, GBlock
from .conditional import (ConditionalBatchNorm1d, ConditionalBatchNorm2d, ProjectionHead, SelfAttention,
                          SharedConditionalBatchNorm)
from .mlp import MLPDiscriminator, MLPGenerator
from .registry import (NETWORKS, NetworkSpec, UnknownNetworkError, build_discriminator, build_generator,
                       conditional_archs, get_spec)
from .sngan_cnn import SNGANCNNDiscriminator, SNGANCNNGenerator
from .sngan_resnet import SNGANResNetDiscriminator, SNGANResNetGenerator

__all__ = [
    "NETWORKS", "NetworkSpec", "UnknownNetworkError", "build_generator", "build_discriminator", "get_spec",
    "conditional_archs",
    "SNGANCNNDiscriminator", "SNGANCNNGenerator", "SNGANResNetDiscriminator", "SNGANResNetGenerator",
    "MLPDiscriminator", "MLPGenerator", "GBlock", "DBlock", "DBlockOptimized",
    "BigGANGenerator", "BigGANDiscriminator",
    "ConditionalBatchNorm1d", "ConditionalBatchNorm2d", "SharedConditionalBatchNorm", "ProjectionHead",
    "SelfAttention",
]
