"""The generator G of Despraz et al. 2017, built from a block list (channels-last).

``f0 --FeatureNoise--> --Alpha--> f --decoder--> image`` where the decoder is
reshape(seed_shape), then per block ``UpSampling2D(2), Conv valid, BN, Conv same, BN``, then
``UpSampling2D(2)`` and a head: ``"image"`` (paper step 8a: Conv 3 k3 valid ReLU, BN ``image``) or
``"decoder"`` (8b: the autoencoder's decoder head). The paper's G at 224x224 is
``seed_shape=[5, 5, 128]``, blocks ``[[512, 2], [256, 3], [256, 3], [128, 3], [128, 4]]``.
Each ``UpSampling2D(2)`` and the valid convolution after it are one layer
(:class:`dgn.optvis.layers.Conv2D` with ``upsample=2``: the same function with fewer multiply-adds).


B classes in one optimization step, each getting exactly the image it would get alone.

``dgn generate`` optimizes one class with G built by ``dgn.optvis.param.Generator.build(rows=1, seed)``
and its transforms. Here B rows run side by side, and row k reproduces that single run for its class:

- Randomness: a single run draws, per step, one feature-noise sample of shape (1, m) and one
  transform draw (1, 4) from generators seeded by the config's seed. Batched, the same (1, ...)
  draws are made from generators with the same seeds and broadcast to every row
  (:class:`SharedFeatureNoise`, :class:`SharedAffine`), so row k sees the noise and transform the
  single run of its class sees. Initial weights come from the single build (same seed), so every
  class starts where ``dgn generate`` starts it. Consequence: in exact arithmetic a class's image does
  not depend on the batch size or on which classes share its batch, and equals ``dgn generate``'s. In
  floating point D's matrix products over another batch size round differently; with the raw-logit
  objective (a one-hot cotangent) the images are still equal (tested, one thread), with the default
  log-probability (every logit in the cotangent) Adam can grow the rounding into visible differences
  within a few steps (measured on the tiny classifier: 1, 3, 113 levels after 1, 2, 4 steps for one class).
- ``generator.trainable: alpha`` (pretrained decoder, frozen): one decoder, ``Alpha(rows=B)``.
  G's norm in ``image`` mode normalizes each image by its own statistics, so rows never mix.
- ``generator.trainable: all`` (untrained, every class has its own G): B copies of the single G
  (equal initial weights) called on their own row inside one step; D runs once on the stacked
  batch. Grouped convolutions (channel-stacked G, ``Conv2D(groups=B)``) were measured slower on
  CPU (TF runs grouped convolutions through XLA there); see scripts/benchmark_batch.py.

``generator.norm: batch`` mixes the rows' statistics, so it is refused for B > 1.
"""


import math

import keras
import numpy as np
from keras import ops

from dgn import preprocessing
from dgn.errors import ConfigError
from dgn.optvis.layers import (Alpha, CenterCrop, CodeShift, Conv2D, FeatureNoise, GeneratorNorm, InputSpace,
                               SquashToRange)
from dgn.optvis.transforms import PadTransform, RandomAffine
from dgn.precision import dtype_policy


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
    (:class:`dgn.optvis.layers.CodeShift`) before the decoder. ``parts``: a dict that receives the layers
    in order, ``noise``, ``alpha``, ``code_shift`` (None where absent) and ``decoder`` (what
    :mod:`dgn.optvis.generator` reassembles for B rows)."""
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


@keras.saving.register_keras_serializable(package="dgn")
class SharedFeatureNoise(FeatureNoise):
    """FeatureNoise drawing one (1, m) sample per call, the same for every row of the batch."""

    def call(self, inputs, training=False):
        if not training or self.stddev == 0.0:
            return inputs
        noise = keras.random.normal((1, inputs.shape[-1]), mean=self.mean, stddev=self.stddev,
                                    dtype=inputs.dtype, seed=self.seed_generator)
        return inputs + noise if self.kind == "additive" else inputs * noise


@keras.saving.register_keras_serializable(package="dgn")
class SharedAffine(RandomAffine):
    """RandomAffine under the name batched generators were saved with (every RandomAffine now draws once
    per call and copy, shared by the rows: what a batch of 1 draws)."""


def copy_major(images):
    """(rows, copies, H, W, C) -> (copies * rows, H, W, C), copy s of row k at ``s * rows + k``: the
    order of the transform's copies (dgn.optvis.transforms) when each row's G made its own."""
    if images.shape[1] != 1:  # one copy (no transform, or rendering): the reshape alone, no transpose
        images = ops.transpose(images, (1, 0, 2, 3, 4))
    return ops.reshape(images, (-1,) + tuple(images.shape[2:]))


class GeneratorStack(keras.layers.Layer):
    """B independent generators: row k of the input goes through generator k."""

    def __init__(self, generators, **kwargs):
        super().__init__(**kwargs)
        self.generators = list(generators)

    def call(self, inputs, training=False):
        outs = [g(inputs[k:k + 1], training=training) for k, g in enumerate(self.generators)]
        return copy_major(ops.stack(outs, axis=0))

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(self.generators[0].output_shape[1:])


class VmappedGenerators(keras.layers.Layer):
    """B generators as one layer: the single G's trainable weights stacked (B, ...) and G applied to
    row k with weights k by ``keras.ops.vectorized_map`` (``jax.vmap`` on JAX: every layer of G runs
    once on the batch, convolutions with per-row kernels, instead of B copies of G one after another).

    G's non-trainable state (its random generators' seeds; moving statistics, unused by the ``image``
    and ``moving`` norms that batching allows) is one copy shared by the rows: the seeds are not
    batched, so every row draws what the single run draws, as the B copies do. G's regularization
    losses are summed over the rows. The single G is kept outside Keras's tracking (only its
    structure is used); this layer owns the stacked weights and the state.
    """

    def __init__(self, single, rows, **kwargs):
        super().__init__(**kwargs)
        object.__setattr__(self, "_single", single)  # not a sublayer: its own weights are only a template
        self.rows = int(rows)

    def build(self, input_shape):
        single, rows = self._single, self.rows
        self.stacked = []
        for v in single.trainable_variables:
            value = np.repeat(np.asarray(v.numpy())[None], rows, axis=0)
            self.stacked.append(self.add_weight(name=v.name, shape=value.shape, dtype=v.dtype,
                                                initializer=keras.initializers.Constant(0.0), trainable=True))
            self.stacked[-1].assign(value)
        self.state = []
        for v in single.non_trainable_variables:
            value = np.asarray(v.numpy())
            self.state.append(self.add_weight(name=v.name, shape=value.shape, dtype=v.dtype,
                                              initializer="zeros", trainable=False))
            self.state[-1].assign(value)

    def call(self, inputs, training=False):
        single = self._single
        state = [v.value for v in self.state]

        def one(args):
            weights, f = args
            image, new_state, losses = single.stateless_call(list(weights), state, f[None], training=training,
                                                             return_losses=True)
            loss = sum(losses) if losses else ops.zeros((), "float32")
            return image, new_state, loss

        images, new_state, losses = ops.vectorized_map(one, ([w.value for w in self.stacked], inputs))
        for var, value in zip(self.state, new_state):
            var.assign(value[0])  # unbatched state comes back broadcast over the rows
        if training:
            self.add_loss(ops.sum(losses))
        return copy_major(images)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(self._single.output_shape[1:])


class BatchedGenerator:
    """G (or another parameterization's images) for ``rows`` classes at once: ``model`` (f0 (rows, m) ->
    images), ``f0``, the ``callbacks`` its parameterization runs between steps, ``reset()``.

    ``reset()`` puts every weight, optimizer-independent state and random generator back where a
    fresh single build starts, so one BatchedGenerator serves batch after batch.
    """

    def __init__(self, model, f0, trainable_per_class, callbacks=()):
        self.model, self.f0, self.trainable_per_class = model, f0, int(trainable_per_class)
        self.callbacks = list(callbacks)
        self._initial = [np.array(v.numpy()) for v in model.variables]

    def reset(self):
        for var, value in zip(self.model.variables, self._initial):
            var.assign(value)


def _count(variables):
    return int(sum(math.prod(v.shape) for v in variables))


STACKS = ("copies", "vmap")


def check_stack(stack):
    """How the untrained configuration's B generators run: ``copies`` (B copies of G in one step) or
    ``vmap`` (:class:`VmappedGenerators`, JAX only); anything else is one clear error."""
    if stack not in STACKS:
        raise ConfigError(f"--stack {stack!r}: give one of {', '.join(STACKS)}")
    if stack == "vmap" and keras.backend.backend() != "jax":
        raise ConfigError("--stack vmap needs the JAX backend: run with KERAS_BACKEND=jax, or use --stack copies")


def build_batched_generator(generator, transforms, classifier, rows, seed, stack="copies"):
    """A BatchedGenerator for ``rows`` classes: ``generator`` a :class:`dgn.optvis.param.Generator`,
    ``transforms`` a :class:`dgn.optvis.transforms.Transforms` (see the module docstring); ``stack``: see
    :func:`check_stack`."""
    check_stack(stack)
    with dtype_policy(generator.precision):
        return _build_batched_generator(generator, transforms, classifier, rows, seed, stack)


def _single(generator, transforms, classifier, seed):
    """The single G with its transforms (what ``dgn generate`` optimizes) and its Built (f0, parts)."""
    built = generator.build(classifier, 1, seed)
    return transforms.wrap(built.model, classifier.preprocessing, seed), built


def _build_batched_generator(generator, transforms, classifier, rows, seed, stack="copies"):
    single, built = _single(generator, transforms, classifier, seed)
    f0 = built.f0
    per_class = _count(single.trainable_weights)
    if rows == 1:
        return BatchedGenerator(single, f0, per_class)
    for key in ("norm", "output_norm"):
        if getattr(generator, key) == "batch":
            raise ConfigError(f"generator.{key}: batch normalizes over the whole batch, so batched classes "
                              f"would change each other's images; use --batch 1 or generator.{key}: image")
    f0 = np.repeat(f0, rows, axis=0)
    if generator.trainable == "alpha":
        parts = built.parts  # the single G's layers by role, as Generator.build made them
        inputs = keras.Input((f0.shape[1],), name="f0")
        x = inputs
        noise = parts["noise"]
        if noise is not None:
            x = SharedFeatureNoise(noise.kind, noise.stddev, mean=noise.mean, seed=noise.seed, name="noise")(x)
        alpha1 = parts["alpha"]
        alpha = Alpha(rows, alpha1.initializer, keras.activations.serialize(alpha1.activation),
                      regularizer=alpha1.regularizer, name="alpha")
        x = alpha(x)
        alpha.alpha.assign(np.repeat(np.asarray(alpha1.alpha.numpy()), rows, axis=0))
        for shared in ("code_shift", "decoder", "float32"):  # the single G's own layers
            if parts[shared] is not None:
                x = parts[shared](x)
        height, width, channels = single.output.shape[1:]
        t = transforms.layer(height, width, channels, classifier.preprocessing, seed)
        if isinstance(t, PadTransform):
            raise ConfigError("generate-all cannot batch the generator with parameterization.pad (each row would "
                              "need its own padded draw); use --batch 1 or pad: 0")
        if t is not None:
            x = SharedAffine(t.jitter, t.scale, t.rotate, seed=t.seed, samples=t.samples, name="transform",
                             dtype="float32")(x)
        for function in transforms.function_layers():
            x = function(x)
        model = keras.Model(inputs, x, name="generator_batch")
    elif stack == "vmap":
        inputs = keras.Input((f0.shape[1],), name="f0")
        model = keras.Model(inputs, VmappedGenerators(single, rows, name="generators")(inputs),
                            name="generator_vmap")
    else:
        generators = [single] + [_single(generator, transforms, classifier, seed)[0] for _ in range(rows - 1)]
        for other in generators[1:]:  # same seed, same build: assert the copies really are equal
            for a, b in zip(single.variables, other.variables):
                if not np.array_equal(np.asarray(a.numpy()), np.asarray(b.numpy())):
                    raise ConfigError("building the generator twice with one seed gave different weights; "
                                      "use --batch 1")
        inputs = keras.Input((f0.shape[1],), name="f0")
        model = keras.Model(inputs, GeneratorStack(generators, name="generators")(inputs), name="generator_stack")
    return BatchedGenerator(model, f0, per_class)
