"""EfficientNet-Lite (Lite0..Lite4) as a Keras 3 functional model.

Port of the PyTorch reference ``efficientnet_lite_pytorch`` 0.1.0
(ml-illustrated/EfficientNet-Lite-PyTorch, Apache-2.0), itself a port of
Google's TensorFlow EfficientNet-Lite (``efficientnet/lite``, Apache-2.0).
Pretrained ImageNet weights are converted by
``scripts/convert_efficientnet_lite.py`` (see ``weights/README.md``).

Architecture facts that the port reproduces exactly:

* ReLU6 everywhere, no squeeze-and-excitation, stem (32 filters) and head
  (1280 filters) not width-scaled, first and last block stages not
  depth-scaled.
* BatchNorm epsilon 1e-3, momentum 0.99 (PyTorch momentum 0.01).
* TensorFlow-style "same" padding.  For stride-1 convolutions (odd kernels)
  this is symmetric and Keras' ``padding="same"`` is identical on every
  backend.  Stride-2 convolutions pad asymmetrically (e.g. 0 before / 1 after
  for a 3x3 kernel on an even input).  When the input's spatial size is known
  at build time they get an explicit ``ZeroPadding2D`` (``*_pad``) followed by
  a ``valid`` convolution, which is exactly what the reference's static
  padding does and is backend independent.  When the spatial size is ``None``
  (fully convolutional use) the convolution uses ``padding="same"``, which on
  the TensorFlow and JAX backends is TF "SAME" (pad_before = total // 2),
  i.e. the reference's dynamic padding.
* Dropout before the classifier and drop-connect (stochastic depth, as
  per-sample ``Dropout`` with ``noise_shape=(None, 1, 1, 1)``) inside residual
  blocks; both are inactive at inference.

Layer naming (stable; use these as feature-visualisation targets)::

    input
    stem_pad, stem_conv, stem_bn, stem_relu
    block{S}{r}_expand_conv, _expand_bn, _expand_relu    (not in stage 1)
    block{S}{r}_dwconv_pad                               (stride-2 blocks)
    block{S}{r}_dwconv, _dwconv_bn, _dwconv_relu
    block{S}{r}_project_conv, _project_bn
    block{S}{r}_drop, block{S}{r}_add                    (residual blocks)
    top_conv, top_bn, top_relu, avg_pool, top_dropout, predictions

``S`` is the stage number 1..7 and ``r`` the repeat letter a, b, c, ...
(``block1a``, ``block2a``, ``block2b``, ...), like ``keras.applications``'
EfficientNet.  The last layer is ``Dense(num_classes, activation="softmax",
name="predictions")``.

Input: channels-last RGB, preprocessed as ``x / 127.5 - 1`` from 0..255
(see ``PREPROCESSING``).
"""

from __future__ import annotations

import math
import string

import keras
import numpy as np
from keras import layers


#: Input preprocessing the ImageNet weights expect: "tf" = RGB in 0..255
#: mapped by ``x / 127.5 - 1`` to [-1, 1].  (Google trained with
#: ``(x - 127) / 128``, within 0.8 % of this; measured top-1 is the same.
#: Torchvision-style ImageNet mean/std normalisation is *wrong* for these
#: weights and costs accuracy.)
PREPROCESSING = "tf"

#: Default (training/evaluation) input resolution per variant.
DEFAULT_INPUT_SIZES = {
    "lite0": 224,
    "lite1": 240,
    "lite2": 260,
    "lite3": 280,
    "lite4": 300,
}

# variant: (width_coefficient, depth_coefficient, resolution, dropout_rate),
# from efficientnet/lite/efficientnet_lite_builder.py.
VARIANT_PARAMS = {
    "lite0": (1.0, 1.0, 224, 0.2),
    "lite1": (1.0, 1.1, 240, 0.2),
    "lite2": (1.1, 1.2, 260, 0.3),
    "lite3": (1.2, 1.4, 280, 0.3),
    "lite4": (1.4, 1.8, 300, 0.3),
}

# One entry per stage: (repeats, kernel, stride, expand_ratio, filters_in,
# filters_out), the EfficientNet-B0 stage table without SE.
BLOCK_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
DROP_CONNECT_RATE = 0.2
DEPTH_DIVISOR = 8
STEM_FILTERS = 32
HEAD_FILTERS = 1280


def round_filters(filters, width_coefficient, divisor=DEPTH_DIVISOR):
    """Width scaling, identical to the reference's ``round_filters``."""
    filters *= width_coefficient
    new_filters = max(divisor, int(filters + divisor / 2) // divisor * divisor)
    if new_filters < 0.9 * filters:  # never round down by more than 10 %
        new_filters += divisor
    return int(new_filters)


def round_repeats(repeats, depth_coefficient):
    return int(math.ceil(depth_coefficient * repeats))


def stage_config(variant):
    """Per-stage (repeats, kernel, stride, expand, filters_in, filters_out)
    after width/depth scaling, as the reference builds it."""
    width, depth, _, _ = VARIANT_PARAMS[variant]
    stages = []
    last = len(BLOCK_STAGES) - 1
    for i, (repeats, kernel, stride, expand, f_in, f_out) in enumerate(BLOCK_STAGES):
        f_in = STEM_FILTERS if i == 0 else round_filters(f_in, width)
        f_out = round_filters(f_out, width)
        if i not in (0, last):  # fix_head_stem: first/last stage not deepened
            repeats = round_repeats(repeats, depth)
        stages.append((repeats, kernel, stride, expand, f_in, f_out))
    return stages


def _same_padding(size, kernel, stride):
    """TF "SAME" padding (before, after) for one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _strided_input(x, kernel, stride, name):
    """Return (tensor, conv padding mode) for a conv with this stride.

    Stride 1 uses Keras "same" (symmetric for odd kernels). Stride 2 gets an
    explicit ZeroPadding2D when the spatial size is static, else "same"."""
    if stride == 1:
        return x, "same"
    h, w = x.shape[1], x.shape[2]
    if h is None or w is None:
        return x, "same"
    pad = (_same_padding(h, kernel, stride), _same_padding(w, kernel, stride))
    if pad == ((0, 0), (0, 0)):
        return x, "valid"
    return layers.ZeroPadding2D(padding=pad, name=name)(x), "valid"


def _bn(name):
    return layers.BatchNormalization(
        axis=-1, epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name
    )


def _relu6(name):
    return layers.ReLU(max_value=6.0, name=name)


def _mbconv(x, prefix, kernel, stride, expand, f_in, f_out, drop_rate):
    inputs = x
    if expand != 1:
        x = layers.Conv2D(
            f_in * expand, 1, padding="same", use_bias=False,
            name=prefix + "_expand_conv",
        )(x)
        x = _bn(prefix + "_expand_bn")(x)
        x = _relu6(prefix + "_expand_relu")(x)
    x, padding = _strided_input(x, kernel, stride, prefix + "_dwconv_pad")
    x = layers.DepthwiseConv2D(
        kernel, strides=stride, padding=padding, use_bias=False,
        name=prefix + "_dwconv",
    )(x)
    x = _bn(prefix + "_dwconv_bn")(x)
    x = _relu6(prefix + "_dwconv_relu")(x)
    x = layers.Conv2D(
        f_out, 1, padding="same", use_bias=False, name=prefix + "_project_conv"
    )(x)
    x = _bn(prefix + "_project_bn")(x)
    if stride == 1 and f_in == f_out:
        if drop_rate > 0:
            x = layers.Dropout(
                drop_rate, noise_shape=(None, 1, 1, 1), name=prefix + "_drop"
            )(x)
        x = layers.Add(name=prefix + "_add")([x, inputs])
    return x


def build_efficientnet_lite(
    variant="lite0", input_shape=None, num_classes=1000, weights=None, name=None
):
    """Build EfficientNet-Lite as a Keras functional model.

    Args:
        variant: "lite0" .. "lite4".
        input_shape: (H, W, 3) channels-last; H/W may be None for a fully
            convolutional model.  Default: the variant's training size.
        num_classes: size of the final softmax Dense ("predictions").
        weights: None (random init) or a path to a ``.weights.h5`` file.
        name: model name, default ``efficientnet_<variant>``.

    Returns:
        ``keras.Model`` mapping preprocessed images (``x / 127.5 - 1``) to
        class probabilities.
    """
    variant = str(variant).lower().replace("efficientnet-", "").replace(
        "efficientnet_", ""
    )
    if variant not in VARIANT_PARAMS:
        raise ValueError(
            f"unknown EfficientNet-Lite variant {variant!r}; "
            f"expected one of {sorted(VARIANT_PARAMS)}"
        )
    _, _, resolution, dropout_rate = VARIANT_PARAMS[variant]
    if input_shape is None:
        input_shape = (resolution, resolution, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(f"input_shape must be (H, W, 3), got {input_shape}")

    stages = stage_config(variant)
    total_blocks = sum(s[0] for s in stages)

    inputs = keras.Input(shape=input_shape, name="input")
    x, padding = _strided_input(inputs, 3, 2, "stem_pad")
    x = layers.Conv2D(
        STEM_FILTERS, 3, strides=2, padding=padding, use_bias=False,
        name="stem_conv",
    )(x)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_relu")(x)

    block_index = 0
    for stage_no, (repeats, kernel, stride, expand, f_in, f_out) in enumerate(
        stages, start=1
    ):
        for r in range(repeats):
            prefix = f"block{stage_no}{string.ascii_lowercase[r]}"
            x = _mbconv(
                x,
                prefix,
                kernel,
                stride if r == 0 else 1,
                expand,
                f_in if r == 0 else f_out,
                f_out,
                DROP_CONNECT_RATE * block_index / total_blocks,
            )
            block_index += 1

    x = layers.Conv2D(
        HEAD_FILTERS, 1, padding="same", use_bias=False, name="top_conv"
    )(x)
    x = _bn("top_bn")(x)
    x = _relu6("top_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout_rate, name="top_dropout")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="predictions")(x)

    model = keras.Model(inputs, outputs, name=name or f"efficientnet_{variant}")
    if weights is not None:
        model.load_weights(weights)
    return model


def preprocess_input(x):
    """Map RGB 0..255 (array-like, any dtype) to the model's input range."""
    return np.asarray(x, dtype=np.float32) / 127.5 - 1.0
