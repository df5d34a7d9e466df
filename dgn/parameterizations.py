"""Image parameterizations other than the generator: the pixels themselves, and lucid's Fourier image.

Each is a Keras model mapping a constant input f0 (rows, 1) to images (rows, H, W, 3) in D's input
space, like G, so the one loop (:func:`dgn.optimize.optimize`) optimizes it and every objective
applies. Differentiable regularizers are layer losses (``add_loss``); the non-gradient per-step
operations of pixel ascent (periodic blur, clipping of small pixels / small contributions, clipping
to D's valid range) are a :class:`PixelHook`, a callback of the loop (:mod:`dgn.callbacks`). The
objects that build these into models, and the registry, are in :mod:`dgn.param`.

- ``pixel`` (Simonyan et al. 2013; Yosinski et al. 2015): one variable per pixel, started at zero
  (D's input-space origin: the ImageNet mean or mid-grey) or small noise; L2 decay, total
  variation, periodic Gaussian blur, clipping; optionally several octaves (optimize at a smaller
  size, upscale, continue), the image resized to D's input size in between.
- ``fourier`` (lucid's feature visualization, Olah et al. 2017): the image is the inverse real 2D
  DFT of a trainable spectrum scaled by 1/f, colour-decorrelated with lucid's ImageNet SVD square
  root, squashed by a sigmoid into the valid range. Meant for Adam with random transformations
  each step (``transform:`` and ``parameterization.pad``).
"""

import math

import keras
import numpy as np
from keras import ops

from dgn import preprocessing
from dgn.callbacks import Callback

# lucid.optvis.param.color: square root of the ImageNet colour covariance (from its SVD).
COLOR_CORRELATION_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02],
                                         [0.27, 0.00, -0.05],
                                         [0.27, -0.09, 0.03]], dtype="float32")
COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))


def pixel_unit(space, channels=3):
    """Per channel: how much one 0..255 pixel level is in the space ``space``."""
    one = preprocessing.from_rgb(np.ones(channels, dtype="float32"), space)
    zero = preprocessing.from_rgb(np.zeros(channels, dtype="float32"), space)
    return np.abs(np.asarray(one) - np.asarray(zero)).astype("float32")


def grey(space, channels=3):
    """Mid-grey (pixel value 127.5) in the space ``space``, per channel."""
    return np.asarray(preprocessing.from_rgb(np.full(channels, 127.5, dtype="float32"), space), dtype="float32")


@keras.saving.register_keras_serializable(package="dgn")
class PixelImage(keras.layers.Layer):
    """The image itself is the variable: ``pixels`` (rows, H, W, 3) in D's input space.

    Losses added on each call: ``l2 / 2 * sum(x^2)`` (L2 decay: with SGD at learning rate lr,
    each step shrinks x by lr * l2) and ``tv * sum((dx^2 + dy^2)^(tv_beta / 2))`` (total variation).
    The input (f0) only carries the batch; the output does not depend on it."""

    def __init__(self, rows, height, width, init=None, l2=0.0, tv=0.0, tv_beta=2.0, channels=3, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.height, self.width, self.channels = int(rows), int(height), int(width), int(channels)
        self.l2, self.tv, self.tv_beta = float(l2), float(tv), float(tv_beta)
        self._init = None if init is None else np.asarray(init, dtype="float32")

    def build(self, input_shape):
        shape = (self.rows, self.height, self.width, self.channels)
        if self._init is None:
            initializer = "zeros"
        else:
            value = np.broadcast_to(self._init, shape).astype("float32")
            initializer = lambda shape, dtype=None: ops.convert_to_tensor(value, dtype=dtype)  # noqa: E731
        self.pixels = self.add_weight(name="pixels", shape=shape, initializer=initializer, trainable=True)

    def call(self, inputs):
        x = ops.convert_to_tensor(self.pixels)
        if self.l2:
            self.add_loss(0.5 * self.l2 * ops.sum(ops.square(x)))
        if self.tv:
            self.add_loss(self.tv * total_variation(x, self.tv_beta))
        return x

    def compute_output_shape(self, input_shape):
        return (self.rows, self.height, self.width, self.channels)

    def get_config(self):
        return {**super().get_config(), "rows": self.rows, "height": self.height, "width": self.width,
                "l2": self.l2, "tv": self.tv, "tv_beta": self.tv_beta, "channels": self.channels}


def total_variation(x, beta=2.0):
    """sum over images and pixels of (dx^2 + dy^2)^(beta/2), channels summed inside."""
    dy = x[:, 1:, :-1, :] - x[:, :-1, :-1, :]
    dx = x[:, :-1, 1:, :] - x[:, :-1, :-1, :]
    sq = ops.sum(ops.square(dx) + ops.square(dy), axis=-1)
    if beta == 2.0:
        return ops.sum(sq)
    return ops.sum(ops.power(sq + 1e-8, beta / 2.0))


def rfft2d_freqs(height, width):
    """Frequency magnitude of each coefficient of a real 2D spectrum (height, width // 2 + 1)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[: width // 2 + 1]
    return np.sqrt(fx * fx + fy * fy)


def inverse_rfft2_bases(height, width):
    """Real matrices for the inverse real 2D DFT as two matmuls (backend independent, differentiable):
    image = (Cy A - Sy B) Cx - (Cy B + Sy A) Sx for a spectrum A + iB of shape (height, width//2+1);
    equals ``np.fft.irfft2(A + iB, s=(height, width))`` (imaginary parts of the DC and Nyquist
    columns ignored, as irfft does)."""
    ky = np.arange(height)
    ay = 2.0 * np.pi * np.outer(ky, ky) / height          # (y, ky), symmetric
    kx = np.arange(width // 2 + 1)
    ax = 2.0 * np.pi * np.outer(kx, np.arange(width)) / width   # (kx, x)
    weight = np.full(len(kx), 2.0)
    weight[0] = 1.0
    if width % 2 == 0:
        weight[-1] = 1.0
    norm = 1.0 / (height * width)
    cx = weight[:, None] * np.cos(ax) * norm
    sx = weight[:, None] * np.sin(ax) * norm
    return [m.astype("float32") for m in (np.cos(ay), np.sin(ay), cx, sx)]


@keras.saving.register_keras_serializable(package="dgn")
class FourierImage(keras.layers.Layer):
    """lucid's ``fft_image`` + ``to_valid_rgb(decorrelate=True, sigmoid=True)``, in D's input space.

    The variable is a real and an imaginary spectrum (2, rows, 3, H, W//2+1), started at
    N(0, init_stddev); it is scaled by ``sqrt(H W) / max(f, 1/max(H, W))^decay_power``, inverse-DFT'd,
    divided by 4 (lucid's constant), colour-decorrelated, squashed by a sigmoid to 0..1 and mapped
    from RGB 0..255 into D's input space."""

    def __init__(self, rows, height, width, space="tf", init_stddev=0.01, decay_power=1.0, decorrelate=True,
                 seed=0, channels=3, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.height, self.width, self.channels = int(rows), int(height), int(width), int(channels)
        self.space, self.init_stddev = space, float(init_stddev)
        self.decay_power, self.decorrelate, self.seed = float(decay_power), bool(decorrelate), int(seed)
        freqs = rfft2d_freqs(self.height, self.width)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(self.height, self.width)) ** self.decay_power
        self._scale = (scale * np.sqrt(self.height * self.width)).astype("float32")
        self._bases = inverse_rfft2_bases(self.height, self.width)

    def build(self, input_shape):
        shape = (2, self.rows, self.channels, self.height, self.width // 2 + 1)
        value = np.random.default_rng(self.seed).normal(0.0, self.init_stddev, shape).astype("float32")
        self.spectrum = self.add_weight(
            name="spectrum", shape=shape, trainable=True,
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(value, dtype=dtype))

    def call(self, inputs):
        spec = ops.convert_to_tensor(self.spectrum) * ops.convert_to_tensor(self._scale)
        real, imag = spec[0], spec[1]                                  # (rows, 3, H, K)
        cy, sy, cx, sx = (ops.convert_to_tensor(m) for m in self._bases)
        pr = ops.einsum("yk,bckx->bcyx", cy, real) - ops.einsum("yk,bckx->bcyx", sy, imag)
        pi = ops.einsum("yk,bckx->bcyx", cy, imag) + ops.einsum("yk,bckx->bcyx", sy, real)
        image = ops.matmul(pr, cx) - ops.matmul(pi, sx)               # (rows, 3, H, W)
        image = ops.transpose(image, (0, 2, 3, 1)) / 4.0
        if self.decorrelate and self.channels == 3:
            image = ops.matmul(image, ops.convert_to_tensor(COLOR_CORRELATION.T))
        rgb = ops.sigmoid(image) * 255.0
        return preprocessing.from_rgb(rgb, self.space)

    def compute_output_shape(self, input_shape):
        return (self.rows, self.height, self.width, self.channels)

    def get_config(self):
        return {**super().get_config(), "rows": self.rows, "height": self.height, "width": self.width,
                "channels": self.channels, "space": self.space, "init_stddev": self.init_stddev, "decay_power": self.decay_power,
                "decorrelate": self.decorrelate, "seed": self.seed}


@keras.saving.register_keras_serializable(package="dgn")
class Resize(keras.layers.Layer):
    """Bilinear resize to a fixed (height, width): an octave's image to D's input size."""

    def __init__(self, height, width, **kwargs):
        super().__init__(**kwargs)
        self.height, self.width = int(height), int(width)

    def call(self, images):
        return ops.image.resize(images, (self.height, self.width), interpolation="bilinear")

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.height, self.width, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width}


# ---------------------------------------------------------------- non-gradient per-step operations

def gaussian_kernel(sigma):
    radius = max(1, int(math.ceil(3.0 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    return taps / taps.sum()


def gaussian_blur(images, sigma):
    """Separable Gaussian blur of (..., H, W, C) arrays over H and W, symmetric borders."""
    x = np.asarray(images, dtype="float32")
    if sigma <= 0:
        return x.copy()
    kernel = gaussian_kernel(sigma)
    r = len(kernel) // 2
    for axis in (-3, -2):
        widths = [(0, 0)] * x.ndim
        widths[axis] = (r, r)
        padded = np.pad(x, widths, mode="symmetric")
        n = x.shape[axis]
        out = np.zeros_like(x)
        for j, w in enumerate(kernel):
            out += w * np.take(padded, np.arange(j, j + n), axis=axis)
        x = out
    return x


def zero_below_percentile(images, scores, percentile):
    """Zeroes (all channels of) the pixels whose score is below the per-image percentile."""
    x = np.array(images, dtype="float32")
    flat = scores.reshape(len(scores), -1)
    limits = np.percentile(flat, percentile, axis=1).reshape((-1,) + (1,) * (scores.ndim - 1))
    x[scores < limits] = 0.0
    return x


class PixelHook(Callback):
    """Yosinski et al.'s non-gradient regularizers, applied after each update to the pixel variable of
    ``layer`` (a :class:`PixelImage`): Gaussian blur every ``blur_every`` steps (``blur_sigma``
    pixels), zeroing of pixels whose norm is below the ``clip_value_percentile`` percentile, zeroing of
    pixels whose contribution |sum_c x * dA/dx| (this step's gradient) is below the
    ``clip_contribution_percentile`` percentile, clipping to ``low``..``high`` (D's valid range)."""

    def __init__(self, layer, low, high, blur_every=0, blur_sigma=0.5, clip_value_percentile=0.0,
                 clip_contribution_percentile=0.0, clip_range=True):
        self.layer = layer
        self.blur_every, self.blur_sigma = blur_every, blur_sigma
        self.value_pct = clip_value_percentile
        self.contribution_pct = clip_contribution_percentile
        self.low, self.high = (np.asarray(v, dtype="float32") for v in (low, high))
        self.clip_range = clip_range
        self.needs_grads = self.contribution_pct > 0
        self._index = None

    def on_step_end(self, step, logs, stepper):
        self(step, stepper)

    @property
    def active(self):
        return bool(self.blur_every or self.value_pct or self.contribution_pct or self.clip_range)

    def due(self, step):
        return bool(self.value_pct or self.contribution_pct or self.clip_range
                    or (self.blur_every and (step + 1) % self.blur_every == 0))

    def __call__(self, step, stepper):
        if not self.due(step):
            return
        if self._index is None:
            self._index = next(i for i, v in enumerate(stepper.variables) if v is self.layer.pixels)
        values = stepper.get_values()
        x = values[self._index]
        if self.blur_every and (step + 1) % self.blur_every == 0:
            x = gaussian_blur(x, self.blur_sigma)
        if self.value_pct:
            x = zero_below_percentile(x, np.sqrt(np.sum(np.square(x), axis=-1)), self.value_pct)
        if self.contribution_pct:
            grad = stepper.gradients()[self._index]   # of the loss: the activation's is -grad
            x = zero_below_percentile(x, np.abs(np.sum(x * -grad, axis=-1)), self.contribution_pct)
        if self.clip_range:
            x = np.clip(x, self.low, self.high)
        new = [None] * len(values)
        new[self._index] = x
        stepper.set_values(new)


# ---------------------------------------------------------------- octaves

def octave_sizes(height, width, octaves, scale):
    """Sizes from the smallest octave to D's size: (height, width) / scale^k, k = octaves-1 .. 0."""
    return [(max(8, int(round(height / scale ** k))), max(8, int(round(width / scale ** k))))
            for k in range(octaves - 1, -1, -1)]


def resize_images(images, size):
    """Resizes (rows, h, w, C) float arrays to ``size`` (bicubic; antialiased when shrinking)."""
    images = np.asarray(images, dtype="float32")
    if tuple(images.shape[1:3]) == tuple(size):
        return images.copy()
    return np.asarray(ops.image.resize(images, tuple(size), interpolation="bicubic", antialias=True),
                      dtype="float32")


def pixel_values(model):
    """The pixel variable of a pixel model (D's input space, at the octave's size)."""
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, PixelImage):
            return np.asarray(layer.pixels)
    raise ValueError("not a pixel model")
