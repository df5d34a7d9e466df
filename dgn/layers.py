"""Keras layers of the generator: the feature noise, the alpha scale and the generator's norm."""

import keras
import numpy as np
from keras import ops


@keras.saving.register_keras_serializable(package="dgn")
class FeatureNoise(keras.layers.Layer):
    """Seeded Gaussian noise on the feature vector, active only with ``training=True``.

    ``kind="additive"``: ``f + N(mean, stddev)`` (the paper's untrained configuration, sigma 2;
    Keras's own GaussianNoise refuses stddev > 1). ``kind="multiplicative"``: ``f * N(mean, stddev)``
    (the pretrained configuration, mu 1).
    """

    def __init__(self, kind="additive", stddev=1.0, mean=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("additive", "multiplicative"):
            raise ValueError(f"FeatureNoise kind must be additive or multiplicative, got {kind!r}")
        self.kind = kind
        self.stddev = float(stddev)
        self.mean = float(mean) if mean is not None else (0.0 if kind == "additive" else 1.0)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=False):
        if not training or self.stddev == 0.0:
            return inputs
        noise = keras.random.normal(
            ops.shape(inputs), mean=self.mean, stddev=self.stddev,
            dtype=inputs.dtype, seed=self.seed_generator)
        return inputs + noise if self.kind == "additive" else inputs * noise

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "stddev": self.stddev,
                "mean": self.mean, "seed": self.seed}


@keras.saving.register_keras_serializable(package="dgn")
class Alpha(keras.layers.Layer):
    """Element-wise trainable scale of the feature vector: ``f_i = act(alpha_i) * x_i``, no bias.

    One alpha row per batch element (``rows``), so that B independent images can be optimized in one
    batch through one frozen decoder. Replaces Keras 1's ``LocallyConnected1D(1, 1, bias=False)``.
    ``initializer="ones"`` is the pretrained configuration; ``"glorot_uniform"`` matches Keras 1's
    default for the untrained one (fan_in = fan_out = 1, so U(-sqrt(3), sqrt(3))).
    """

    def __init__(self, rows=1, initializer="ones", activation=None, regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.rows = int(rows)
        self.initializer = initializer
        self.activation = keras.activations.get(activation)
        self.regularizer = keras.regularizers.get(regularizer)

    def build(self, input_shape):
        units = input_shape[-1]
        init = self.initializer
        if init == "glorot_uniform":
            # Keras 1's LocallyConnected1D kernel (units, 1, 1): fan_in = fan_out = 1.
            init = keras.initializers.RandomUniform(-3.0 ** 0.5, 3.0 ** 0.5)
        self.alpha = self.add_weight(
            name="alpha", shape=(self.rows, units), initializer=init,
            regularizer=self.regularizer, trainable=True)

    def call(self, inputs):
        return inputs * self.activation(self.alpha)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "rows": self.rows, "initializer": self.initializer,
                "activation": keras.activations.serialize(self.activation),
                "regularizer": keras.regularizers.serialize(self.regularizer)}


def _constant(value):
    return lambda shape, dtype=None: ops.convert_to_tensor(value, dtype=dtype)


@keras.saving.register_keras_serializable(package="dgn")
class CodeShift(keras.layers.Layer):
    """``f = mean + std * z``: places the optimized vector z in the distribution of the codes the
    autoencoder's encoder gives real photos (per-unit ``mean`` and ``std``, from ``dgn code-stats``),
    so z = 0 is the average photo's code and z ~ N(0, 1) a typical one. Fixed, not trainable."""

    def __init__(self, mean, std, **kwargs):
        super().__init__(**kwargs)
        self._mean = np.asarray(mean, dtype="float32").reshape(-1)
        self._std = np.asarray(std, dtype="float32").reshape(-1)

    def build(self, input_shape):
        if input_shape[-1] != self._mean.shape[0]:
            raise ValueError(f"CodeShift has {self._mean.shape[0]} units but its input has {input_shape[-1]}")
        self.mean = self.add_weight(name="mean", shape=self._mean.shape, trainable=False,
                                    initializer=_constant(self._mean))
        self.std = self.add_weight(name="std", shape=self._std.shape, trainable=False,
                                   initializer=_constant(self._std))

    def call(self, inputs):
        return self.mean + self.std * inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mean": self._mean.tolist(), "std": self._std.tolist()}


@keras.saving.register_keras_serializable(package="dgn")
class GeneratorNorm(keras.layers.Layer):
    """Batch normalization of the generator, with an explicit choice of statistics.

    Same weights as ``keras.layers.BatchNormalization`` (gamma, beta trainable; moving mean and
    variance not), and ``mode`` says which statistics normalize a call with ``training=True``:

    - ``"image"``: each image by its own spatial statistics. This is what the authors' Keras 1 code
      did (batch of one image, BN in training mode), and it keeps the B images of a batched run
      independent, so a class's image does not depend on which other classes share its batch.
    - ``"batch"``: statistics over the whole batch, updating the moving averages (autoencoder
      training, like ordinary BatchNormalization).
    - ``"moving"``: the moving averages (what ``predict`` did in the authors' notebooks).

    With ``training=False`` the moving averages are used, except in ``"image"`` mode, which has no
    other meaning for a single optimized image and is used for both.
    """

    def __init__(self, mode="image", momentum=0.99, epsilon=1e-3, gamma_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        if mode not in ("image", "batch", "moving"):
            raise ValueError(f"GeneratorNorm mode must be image, batch or moving, got {mode!r}")
        self.mode = mode
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones",
                                     regularizer=self.gamma_regularizer)
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        # autocast=False: under a mixed policy the moving averages stay float32 when read in call(),
        # as in keras.layers.BatchNormalization (in bfloat16, x * 0.99 rounds away the update)
        self.moving_mean = self.add_weight(
            name="moving_mean", shape=(channels,), initializer="zeros", trainable=False, autocast=False)
        self.moving_variance = self.add_weight(
            name="moving_variance", shape=(channels,), initializer="ones", trainable=False, autocast=False)

    def call(self, inputs, training=False):
        if self.mode == "image":
            mean, variance = ops.moments(inputs, axes=[1, 2], keepdims=True)
        elif self.mode == "batch" and training:
            mean, variance = ops.moments(inputs, axes=[0, 1, 2])
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + ops.cast(mean, "float32") * (1 - m))
            self.moving_variance.assign(self.moving_variance * m + ops.cast(variance, "float32") * (1 - m))
        else:
            mean = ops.cast(self.moving_mean, inputs.dtype)
            variance = ops.cast(self.moving_variance, inputs.dtype)
        inv = ops.rsqrt(variance + self.epsilon) * self.gamma
        return (inputs - mean) * inv + self.beta

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode, "momentum": self.momentum,
                "epsilon": self.epsilon,
                "gamma_regularizer": keras.regularizers.serialize(self.gamma_regularizer)}


@keras.saving.register_keras_serializable(package="dgn")
class SquashToRange(keras.layers.Layer):
    """Maps any value into D's valid input range per channel with a sigmoid:
    ``low + (high - low) * sigmoid(x)``, so D sees exactly what a PNG can hold."""

    def __init__(self, low, high, **kwargs):
        super().__init__(**kwargs)
        self.low, self.high = [float(v) for v in low], [float(v) for v in high]

    def call(self, inputs):
        low = ops.convert_to_tensor(self.low, dtype=inputs.dtype)
        high = ops.convert_to_tensor(self.high, dtype=inputs.dtype)
        return low + (high - low) * ops.sigmoid(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "low": self.low, "high": self.high}
