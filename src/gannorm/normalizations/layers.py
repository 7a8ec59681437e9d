"""The layer types the normalizations act on.

:data:`NORMALIZABLE` are the layers that map features linearly (Conv, ConvTranspose, Linear): the
layers every method of :data:`gannorm.METHODS` can normalize, and the ones the diagnostics, the
initialization and the penalties walk. :data:`EMBEDDINGS` are lookup tables (``nn.Embedding``, the
class embeddings of a conditional GAN), whose ``[num_embeddings, dim]`` weight the weight
normalizations treat as a plain matrix, as BigGAN's ``SNEmbedding`` does. :data:`WEIGHT_LAYERS` is
both: the default ``layer_types`` of a :class:`gannorm.normalizations.MethodSpec`.
"""
from __future__ import annotations

from torch import nn

NORMALIZABLE = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
                nn.Linear)
EMBEDDINGS = (nn.Embedding,)
WEIGHT_LAYERS = NORMALIZABLE + EMBEDDINGS

#: a module with this attribute set to True is left alone by :func:`gannorm.normalize`: the per-class gain and
#: bias tables of a conditional batch norm (a zero-initialised bias table has no spectral norm to divide by, and
#: dividing the all-ones gain table by its norm would silence G) and G's input class embeddings, which the
#: BigGAN reference keeps plain (its SN in G is on the convs, the linears and the shared-embedding projections)
SKIP_NORMALIZATION = "skip_normalization"


def skips_normalization(module: nn.Module) -> bool:
    """Whether ``module`` asked :func:`gannorm.normalize` to leave it alone (:data:`SKIP_NORMALIZATION`).

    Args:
        module: a layer.

    Returns:
        whether :func:`gannorm.normalize` leaves it alone.

    Example::

        >>> table = nn.Embedding(10, 4)
        >>> table.skip_normalization = True
        >>> skips_normalization(table), skips_normalization(nn.Linear(2, 2))
        (True, False)
    """
    return bool(getattr(module, SKIP_NORMALIZATION, False))
