"""The generator G of Despraz et al. 2017, built from a block list (channels-last).

``f0 --FeatureNoise--> --Alpha--> f --decoder--> image`` where the decoder is
reshape(seed_shape), then per block ``UpSampling2D(2), Conv valid, BN, Conv same, BN``, then
``UpSampling2D(2)`` and a head: ``"image"`` (paper step 8a: Conv 3 k3 valid ReLU, BN ``image``) or
``"decoder"`` (8b: the autoencoder's decoder head). The paper's G at 224x224 is
``seed_shape=[5, 5, 128]``, blocks ``[[512, 2], [256, 3], [256, 3], [128, 3], [128, 4]]``.
Each ``UpSampling2D(2)`` and the valid convolution after it are one layer
(:class:`dgn.layers.Conv2D` with ``upsample=2``: the same function with fewer multiply-adds).
"""

import math

import keras

from dgn.layers import Alpha, CodeShift, Conv2D, FeatureNoise, GeneratorNorm

IMAGE_LAYER = "image"


def output_size(seed_shape, blocks, head="image"):
    """Spatial size of G's image for a seed shape and block list."""
    size = seed_shape[0]
    for _, kernel in blocks:
        size = 2 * size - kernel + 1
    return 2 * size - 2


def _conv(filters, kernel, padding, name, activation="relu", upsample=1):
    return Conv2D(filters, kernel, padding=padding, activation=activation, upsample=upsample, name=name)


def build_decoder(seed_shape, blocks, head="image", norm="image", output_activation="linear",
                  image_gamma_l1=0.0, output_norm=None, name="decoder"):
    """The part of G after the feature vector: features (m,) -> image (H, W, 3) in D's input space.
    ``norm`` is the mode of every GeneratorNorm, ``output_norm`` (default ``norm``) that of the last
    one, on the image itself."""
    features = keras.Input((math.prod(seed_shape),), name="features")
    x = keras.layers.Reshape(tuple(seed_shape), name="reshape")(features)
    for i, (filters, kernel) in enumerate(blocks, start=1):
        x = _conv(filters, kernel, "valid", f"block{i}_conv1", upsample=2)(x)
        x = GeneratorNorm(norm, name=f"block{i}_bn1")(x)
        x = _conv(filters, kernel, "same", f"block{i}_conv2")(x)
        x = GeneratorNorm(norm, name=f"block{i}_bn2")(x)
    if head == "image":
        x = _conv(3, 3, "valid", "image_conv", upsample=2)(x)
    elif head == "decoder":
        x = _conv(64, 3, "valid", "head_conv1", upsample=2)(x)
        x = GeneratorNorm(norm, name="head_bn1")(x)
        x = _conv(64, 3, "same", "head_conv2")(x)
        x = GeneratorNorm(norm, name="head_bn2")(x)
        x = _conv(3, 3, "same", "head_conv3", activation=output_activation)(x)
    else:
        raise ValueError(f"unknown generator head {head!r}")
    reg = keras.regularizers.L1(image_gamma_l1) if image_gamma_l1 else None
    image = GeneratorNorm(output_norm or norm, gamma_regularizer=reg, name=IMAGE_LAYER)(x)
    return keras.Model(features, image, name=name)


def build_generator(seed_shape, blocks, head="image", norm="image", rows=1, noise="additive",
                    noise_stddev=2.0, alpha_init="glorot_uniform", alpha_activation="linear",
                    alpha_l2=0.0, image_gamma_l1=0.0, seed=0, decoder=None, code_stats=None, name="generator"):
    """G: f0 (rows, m) -> image (rows, H, W, 3). ``rows`` images are optimized side by side.
    ``code_stats`` (mean, std), each (m,): the scaled vector is taken as z in ``mean + std * z``
    (:class:`dgn.layers.CodeShift`) before the decoder."""
    m = math.prod(seed_shape)
    f0 = keras.Input((m,), name="f0")
    x = f0
    if noise != "none":
        x = FeatureNoise(noise, noise_stddev, seed=seed, name="noise")(x)
    x = Alpha(rows, alpha_init, None if alpha_activation == "linear" else alpha_activation,
              regularizer=keras.regularizers.L2(alpha_l2) if alpha_l2 else None, name="alpha")(x)
    if code_stats is not None:
        x = CodeShift(*code_stats, name="code_shift")(x)
    if decoder is None:
        decoder = build_decoder(seed_shape, blocks, head, norm, image_gamma_l1=image_gamma_l1)
    image = decoder(x)
    return keras.Model(f0, image, name=name)


def count_trainable(model):
    return int(sum(math.prod(v.shape) for v in model.trainable_weights))
