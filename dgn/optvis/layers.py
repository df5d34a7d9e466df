"""Keras layers of the generator: the feature noise, the alpha scale, the generator's norm and its
upsampling convolution."""

import keras
import numpy as np
from keras import ops

from dgn import preprocessing


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
class CenterCrop(keras.layers.Layer):
    """Crops (batch, h, w, c) to the centre (height, width); h >= height, w >= width."""

    def __init__(self, height, width, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)

    def call(self, images):
        top = (images.shape[1] - self.height) // 2
        left = (images.shape[2] - self.width) // 2
        return images[:, top:top + self.height, left:left + self.width, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


@keras.saving.register_keras_serializable(package="dgn")
class InputSpace(keras.layers.Layer):
    """Maps an image from :func:`dgn.preprocessing.parameter_space` into D's input space ``space``
    (a fixed affine map: -1..1 to 0..1 for ``unit``, to 0..255 for ``raw``)."""

    def __init__(self, space, **kwargs):
        super().__init__(**kwargs)
        self.space = space

    @staticmethod
    def needed(space):
        return preprocessing.parameter_space(space) != space

    def call(self, images):
        return preprocessing.to_input_space(images, self.space)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "space": self.space}


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


def _phase_taps(kernel):
    """Nearest 2x upsampling then a valid k-tap convolution: output row ``2m + r`` reads input rows
    ``m + (r + a) // 2`` for the kernel's taps a, so each phase r is a convolution of the input with
    ``(r + k - 1) // 2 + 1`` taps. Returns the taps of the longer and of the shorter phase."""
    taps = [(r + kernel - 1) // 2 + 1 for r in (0, 1)]
    return max(taps), min(taps)


def _fold_phases(kernel, axis, taps):
    """The kernel's taps along ``axis`` summed into the taps of phase 0 and of phase 1, stacked on a
    new axis just before the last (phase 0 ends with a zero tap where it is the shorter). Tap e of
    phase r is ``kernel[2e - r] + kernel[2e + 1 - r]`` (out-of-range terms zero): one addition of
    two numbers, so the result does not depend on how a backend orders sums."""
    k = kernel.shape[axis]
    phases = []
    for r in (0, 1):
        pad = [(0, 0)] * len(kernel.shape)
        pad[axis] = (r, 2 * taps - k - r)
        padded = ops.pad(kernel, pad)
        shape = list(padded.shape)
        shape[axis:axis + 1] = [taps, 2]
        phases.append(ops.sum(ops.reshape(padded, shape), axis=axis + 1))
    return ops.stack(phases, axis=len(kernel.shape) - 1)


@keras.saving.register_keras_serializable(package="dgn")
class Conv2D(keras.layers.Conv2D):
    """Keras's Conv2D; with ``upsample=2`` it is ``UpSampling2D(2)`` (nearest) followed by this valid
    convolution, computed without making the upsampled tensor: one convolution of the
    low-resolution input whose kernel holds the four output phases (even/odd row x column) as
    channels, then depth-to-space. A k x k kernel becomes ceil((k+1)/2) x ceil((k+1)/2) taps on a
    quarter of the positions: 44 % of the multiply-adds for k = 3, 56 % for k = 4, the same
    function up to float rounding. Its weights are the plain kernel (k, k, in, out) and bias, and
    it keeps Keras's class name so that weights files key it as ``conv2d`` like before."""

    def __init__(self, *args, upsample=1, **kwargs):
        super().__init__(*args, **kwargs)
        if upsample not in (1, 2):
            raise ValueError(f"upsample must be 1 or 2, not {upsample!r}")
        if upsample == 2 and (self.padding != "valid" or self.strides != (1, 1) or self.groups != 1
                              or self.dilation_rate != (1, 1) or self.data_format != "channels_last"
                              or self.kernel_size[0] != self.kernel_size[1]):
            raise ValueError("upsample=2 needs a square kernel, valid padding, strides 1, no dilation or "
                             "groups, channels_last")
        self.upsample = upsample

    def call(self, inputs):
        if self.upsample == 1:
            return super().call(inputs)
        k, cin, cout = self.kernel_size[0], self.kernel.shape[2], self.filters
        taps, shortest = _phase_taps(k)
        # (k, k, in, out) -> rows folded (taps, k, in, r, out) -> columns folded (taps, taps, in, r, s, out):
        # the kernel of output phase (r, s), the four phases side by side as output channels
        kernel = _fold_phases(ops.convert_to_tensor(self.kernel), 0, taps)
        kernel = _fold_phases(kernel, 1, taps)
        kernel = ops.reshape(kernel, (taps, taps, cin, 4 * cout))
        x = inputs
        if taps > shortest:  # the shorter phase has one output more than `taps` taps give: one zero
            # row and column more (the outputs kept read them only through that phase's zero tap)
            pad = taps - shortest
            x = ops.pad(x, ((0, 0), (0, pad), (0, pad), (0, 0)))
        z = ops.conv(x, kernel, padding="valid")
        h, w = z.shape[1], z.shape[2]
        z = ops.reshape(z, (-1, h, w, 2, 2, cout))
        z = ops.transpose(z, (0, 1, 3, 2, 4, 5))
        z = ops.reshape(z, (-1, 2 * h, 2 * w, cout))
        out_h, out_w = 2 * inputs.shape[1] - k + 1, 2 * inputs.shape[2] - k + 1
        if (out_h, out_w) != (2 * h, 2 * w):
            z = z[:, :out_h, :out_w, :]
        if self.use_bias:
            z = z + self.bias
        return self.activation(z) if self.activation is not None else z

    def compute_output_shape(self, input_shape):
        if self.upsample == 1:
            return super().compute_output_shape(input_shape)
        shape = list(input_shape)
        shape[1] = None if shape[1] is None else 2 * shape[1]
        shape[2] = None if shape[2] is None else 2 * shape[2]
        return super().compute_output_shape(tuple(shape))

    def get_config(self):
        return {**super().get_config(), "upsample": self.upsample}
