"""Benchmark networks."""
from .sngan_cnn import SNGANCNNDiscriminator, SNGANCNNGenerator

__all__ = ["SNGANCNNDiscriminator", "SNGANCNNGenerator"]
