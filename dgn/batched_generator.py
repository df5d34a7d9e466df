"""B classes in one optimization step, each getting exactly the image it would get alone.

``dgn generate`` optimizes one class with G built by ``dgn.param.Generator.build(rows=1, seed)``
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

from dgn.errors import ConfigError
from dgn.layers import Alpha, FeatureNoise
from dgn.precision import dtype_policy
from dgn.transforms import PadTransform, RandomAffine


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
    """RandomAffine with one (samples, 4) draw per call, copy s of every row getting draw s (what a
    batch of 1 draws)."""

    def draw(self, batch):
        draws = keras.random.uniform((self.samples, 4), seed=self.seed_generator)
        return ops.repeat(draws, batch // self.samples, axis=0)


def copy_major(images):
    """(rows, copies, H, W, C) -> (copies * rows, H, W, C), copy s of row k at ``s * rows + k``: the
    order of the transform's copies (dgn.transforms) when each row's G made its own."""
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
    """G for ``rows`` classes at once: ``model`` (f0 (rows, m) -> images), ``f0``, ``reset()``.

    ``reset()`` puts every weight, optimizer-independent state and random generator back where a
    fresh single build starts, so one BatchedGenerator serves batch after batch.
    """

    def __init__(self, model, f0, trainable_per_class):
        self.model, self.f0, self.trainable_per_class = model, f0, int(trainable_per_class)
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
    """A BatchedGenerator for ``rows`` classes: ``generator`` a :class:`dgn.param.Generator`,
    ``transforms`` a :class:`dgn.transforms.Transforms` (see the module docstring); ``stack``: see
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
