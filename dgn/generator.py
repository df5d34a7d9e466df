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

from dgn import preprocessing
from dgn.layers import Alpha, CenterCrop, CodeShift, Conv2D, FeatureNoise, GeneratorNorm, InputSpace, SquashToRange

IMAGE_LAYER = "image"
PAPER_SEED_CHANNELS = 128
PAPER_BLOCKS = [[512, 2], [256, 3], [256, 3], [128, 3], [128, 4]]
MAX_SEED_SIDE = 8


def _side(seed, blocks):
    size = seed
    for _, kernel in blocks:
        size = 2 * size - kernel + 1
    return 2 * size - 2


def output_size(seed_shape, blocks, head="image"):
    """Height of G's image (pixels) for a seed shape [h, w, c] and block list."""
    return _side(seed_shape[0], blocks)


def output_hw(seed_shape, blocks):
    """(height, width) of G's image, pixels, for a seed shape [h, w, c] and block list."""
    return _side(seed_shape[0], blocks), _side(seed_shape[1], blocks)


def sized_architecture(height, width, seed_channels=PAPER_SEED_CHANNELS, blocks=PAPER_BLOCKS):
    """G's seed shape and blocks for D's input size: the last n of the paper's blocks (n = 5 .. 1) and the
    smallest seed (>= 2 per side) whose image covers height x width, choosing, among seeds of at most 8 per
    side where there are any, the least excess (centre-cropped away) and, at equal excess, the most blocks.
    The paper's 224 x 224 gives its own G exactly: seed [5, 5, 128] and all 5 blocks.

    Returns:
        (seed_shape [h, w, c], blocks [[filters, kernel], ...], (out_height, out_width) before the crop).
    """
    candidates = []
    for n in range(len(blocks), 0, -1):
        tail = [list(b) for b in blocks[-n:]]
        seeds = []
        for target in (height, width):
            seed = 2
            while _side(seed, tail) < target:
                seed += 1
            seeds.append(seed)
        out = (_side(seeds[0], tail), _side(seeds[1], tail))
        # small seeds first (the paper's 5 x 5: the blocks, not the code, make the image), then least excess
        candidates.append((max(seeds) > MAX_SEED_SIDE, out[0] - height + out[1] - width, -n,
                           [seeds[0], seeds[1], seed_channels], tail, out))
    best = min(candidates, key=lambda c: c[:3])
    return best[3], best[4], best[5]


def _conv(filters, kernel, padding, name, activation="relu", upsample=1):
    return Conv2D(filters, kernel, padding=padding, activation=activation, upsample=upsample, name=name)


def architecture(seed_shape, blocks, height, width):
    """G's (seed_shape, blocks, crop size or None) for the given seed shape and blocks and D's input size:
    both None (the default) sizes G to D (:func:`sized_architecture`); otherwise the given values,
    the missing one from the paper's G. Raises ValueError when a given G does not make height x width."""
    if seed_shape is None and blocks is None:
        seed_shape, blocks, out = sized_architecture(height, width)
        return seed_shape, blocks, (None if out == (height, width) else (height, width))
    seed_shape = list(seed_shape or [5, 5, PAPER_SEED_CHANNELS])
    blocks = [list(b) for b in (blocks or PAPER_BLOCKS)]
    out = output_hw(seed_shape, blocks)
    if min(out) < 1:
        raise ValueError(f"generator.seed_shape {seed_shape} is too small for generator.blocks (no image comes out); "
                         f"remove both to size G to the classifier")
    if out != (height, width):
        raise ValueError(f"the generator makes {out[0]}x{out[1]} images but the classifier reads {height}x{width}; "
                         f"remove generator.seed_shape and generator.blocks to size G to the classifier")
    return seed_shape, blocks, None


def build_decoder(seed_shape, blocks, head="image", norm="image", output_activation="linear",
                  image_gamma_l1=0.0, output_norm=None, name="decoder", channels=3, space=None, size=None,
                  squash=False):
    """The part of G after the feature vector: features (m,) -> image (H, W, channels) in D's input space.
    ``norm`` is the mode of every GeneratorNorm, ``output_norm`` (default ``norm``) that of the last
    one, on the image itself. ``space``: D's preprocessing; for ``unit`` and ``raw`` the image is made in
    the -1..1 space and mapped into D's (:func:`dgn.preprocessing.to_input_space`). ``size`` (H, W):
    centre-crop the image to it (an auto-sized G slightly larger than D's input). ``squash``: a sigmoid maps
    the image into the valid range (pixel values 0..255) before D's space, so D sees what a PNG holds."""
    features = keras.Input((math.prod(seed_shape),), name="features")
    x = keras.layers.Reshape(tuple(seed_shape), name="reshape")(features)
    for i, (filters, kernel) in enumerate(blocks, start=1):
        x = _conv(filters, kernel, "valid", f"block{i}_conv1", upsample=2)(x)
        x = GeneratorNorm(norm, name=f"block{i}_bn1")(x)
        x = _conv(filters, kernel, "same", f"block{i}_conv2")(x)
        x = GeneratorNorm(norm, name=f"block{i}_bn2")(x)
    if head == "image":
        x = _conv(channels, 3, "valid", "image_conv", upsample=2)(x)
    elif head == "decoder":
        x = _conv(64, 3, "valid", "head_conv1", upsample=2)(x)
        x = GeneratorNorm(norm, name="head_bn1")(x)
        x = _conv(64, 3, "same", "head_conv2")(x)
        x = GeneratorNorm(norm, name="head_bn2")(x)
        x = _conv(channels, 3, "same", "head_conv3", activation=output_activation)(x)
    else:
        raise ValueError(f"unknown generator head {head!r}")
    reg = keras.regularizers.L1(image_gamma_l1) if image_gamma_l1 else None
    image = GeneratorNorm(output_norm or norm, gamma_regularizer=reg, name=IMAGE_LAYER)(x)
    if size is not None and tuple(size) != tuple(image.shape[1:3]):
        image = CenterCrop(*size, name="crop")(image)
    if squash:
        low, high = preprocessing.valid_range(preprocessing.parameter_space(space or "tf"), channels)
        image = SquashToRange(low, high, name="squash")(image)
    if space is not None and InputSpace.needed(space):
        image = InputSpace(space, name="input_space")(image)
    return keras.Model(features, image, name=name)


def build_generator(seed_shape, blocks, head="image", norm="image", rows=1, noise="additive",
                    noise_stddev=2.0, alpha_init="glorot_uniform", alpha_activation="linear",
                    alpha_l2=0.0, image_gamma_l1=0.0, seed=0, decoder=None, code_stats=None, name="generator",
                    parts=None):
    """G: f0 (rows, m) -> image (rows, H, W, 3). ``rows`` images are optimized side by side.
    ``code_stats`` (mean, std), each (m,): the scaled vector is taken as z in ``mean + std * z``
    (:class:`dgn.layers.CodeShift`) before the decoder. ``parts``: a dict that receives the layers
    in order, ``noise``, ``alpha``, ``code_shift`` (None where absent) and ``decoder`` (what
    :mod:`dgn.batched_generator` reassembles for B rows)."""
    m = math.prod(seed_shape)
    f0 = keras.Input((m,), name="f0")
    x = f0
    layers = {"noise": None, "alpha": None, "code_shift": None, "decoder": None}
    if noise != "none":
        layers["noise"] = FeatureNoise(noise, noise_stddev, seed=seed, name="noise")
        x = layers["noise"](x)
    layers["alpha"] = Alpha(rows, alpha_init, None if alpha_activation == "linear" else alpha_activation,
                            regularizer=keras.regularizers.L2(alpha_l2) if alpha_l2 else None, name="alpha")
    x = layers["alpha"](x)
    if code_stats is not None:
        layers["code_shift"] = CodeShift(*code_stats, name="code_shift")
        x = layers["code_shift"](x)
    if decoder is None:
        decoder = build_decoder(seed_shape, blocks, head, norm, image_gamma_l1=image_gamma_l1)
    layers["decoder"] = decoder
    image = decoder(x)
    if parts is not None:
        parts.update(layers)
    return keras.Model(f0, image, name=name)


def count_trainable(model):
    return int(sum(math.prod(v.shape) for v in model.trainable_weights))
