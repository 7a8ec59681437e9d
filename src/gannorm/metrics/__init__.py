"""Sample-quality metrics: pure functions (features -> statistics -> metric) and feature extractors.

The pure functions need no network and work in float64; ``evaluate`` runs generators and
extractors (the FID Inception network, the digits classifier) at the I/O edge.
"""
from .classifier import DigitsClassifier, classifier_metrics, get_classifier
from .conditional import class_accuracy, intra_fid
from .frechet import feature_statistics, frechet_distance, load_statistics, save_statistics
from .inception_score import inception_score
from .kid import kernel_inception_distance
from .inception import (INCEPTION_WEIGHTS_ENV, FIDInceptionV3, InceptionWeightsHashError, InceptionWeightsLoadError,
                        InceptionWeightsNotFoundError, load_fid_inception, preprocess, resize_bilinear_tf1)
from .resize import RESIZE_MODES
from .mixtures import energy_distance, mode_counts, mode_statistics, sliced_wasserstein
from .prdc import nearest_neighbour_radii, prdc

__all__ = ["DigitsClassifier", "classifier_metrics", "get_classifier", "intra_fid", "class_accuracy",
           "feature_statistics", "frechet_distance",
           "load_statistics", "save_statistics", "inception_score", "kernel_inception_distance", "energy_distance",
           "mode_counts", "mode_statistics", "sliced_wasserstein", "INCEPTION_WEIGHTS_ENV", "FIDInceptionV3",
           "InceptionWeightsHashError", "InceptionWeightsLoadError", "InceptionWeightsNotFoundError",
           "load_fid_inception", "preprocess",
           "resize_bilinear_tf1", "RESIZE_MODES", "nearest_neighbour_radii", "prdc"]
