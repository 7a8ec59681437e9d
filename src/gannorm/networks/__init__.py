"""Benchmark networks, their registry and builders.

``build_generator(arch, data_shape, z_dim=128, width=1.0, **arch_options)`` and
``build_discriminator(arch, data_shape, width=1.0, normalization="none", normalization_options=None,
**arch_options)`` build the registered architectures (``NETWORKS.names()``: ``cnn``, ``resnet``,
``mlp``) with their official initialisation; see :mod:`gannorm.networks.registry`.
"""
from .blocks import DBlock, DBlockOptimized, GBlock
from .mlp import MLPDiscriminator, MLPGenerator
from .registry import NETWORKS, NetworkSpec, UnknownNetworkError, build_discriminator, build_generator, get_spec
from .sngan_cnn import SNGANCNNDiscriminator, SNGANCNNGenerator
from .sngan_resnet import SNGANResNetDiscriminator, SNGANResNetGenerator

__all__ = [
    "NETWORKS", "NetworkSpec", "UnknownNetworkError", "build_generator", "build_discriminator", "get_spec",
    "SNGANCNNDiscriminator", "SNGANCNNGenerator", "SNGANResNetDiscriminator", "SNGANResNetGenerator",
    "MLPDiscriminator", "MLPGenerator", "GBlock", "DBlock", "DBlockOptimized",
]
