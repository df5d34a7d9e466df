"""The pixels themselves (Simonyan et al. 2013; Yosinski et al. 2015): the image model, its
regularizers, the per-step operations of pixel ascent (:class:`PixelHook`) and octaves.
"""


import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from dgn import preprocessing
from dgn.errors import ConfigError
from dgn.optvis.callbacks import Callback
from dgn.optvis.optimize import Problem, Result, optimize
from dgn.optvis.param.base import Built, Parameterization, finish_image, fixed_input_size, register


@register
@dataclass
class Pixels(Parameterization):
    """The image's pixels are the variable, in -1..1 for D's that read 0..1 or 0..255 (the same steps
    whatever D's range), else in D's input space. ``init``: "noise" (N(0, init_stddev) in 0..255
    pixel levels) or "zeros" (D's origin: the mean or mid-grey). ``l2``, ``tv``, ``tv_beta``: losses
    (:class:`dgn.optvis.param.pixels.PixelImage`); ``blur_every`` / ``blur_sigma``, the clip
    percentiles and ``clip_range``: operations between steps (:class:`dgn.optvis.param.pixels.PixelHook`).
    ``octaves`` > 1: optimize at sizes growing by ``octave_scale`` up to D's, upscaling in between."""

    kind = "pixel"
    rows_independent = True
    init: str = "noise"
    init_stddev: float = 2.0
    l2: float = 0.0
    tv: float = 0.0
    tv_beta: float = 2.0
    blur_every: int = 0
    blur_sigma: float = 0.5
    clip_value_percentile: float = 0.0
    clip_contribution_percentile: float = 0.0
    clip_range: bool = True
    octaves: int = 1
    octave_scale: float = 1.4

    def build(self, classifier, rows=1, seed=0, size=None, init=None):
        """``size`` (h, w): the pixels at another size (an octave), resized to D's inside the model;
        ``init``: start pixels (parameter space) instead of ``self.init``."""
        space = classifier.preprocessing
        param = preprocessing.parameter_space(space)
        height, width = fixed_input_size(classifier)
        channels = classifier.channels
        h, w = size or (height, width)
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((1,), name="f0")
        if init is None and self.init == "noise" and self.init_stddev > 0:
            rng = np.random.default_rng(seed)
            init = rng.normal(0.0, 1.0, (1, h, w, channels)).astype("float32") * self.init_stddev * \
                pixel_unit(param, channels)   # every row starts where a run of one image starts
        layer = PixelImage(rows, h, w, init=init, l2=self.l2, tv=self.tv, tv_beta=self.tv_beta, channels=channels,
                           name="pixels")
        image = layer(inputs)
        low, high = preprocessing.valid_range(param, channels)
        hook = PixelHook(layer, low, high, blur_every=self.blur_every, blur_sigma=self.blur_sigma,
                         clip_value_percentile=self.clip_value_percentile,
                         clip_contribution_percentile=self.clip_contribution_percentile, clip_range=self.clip_range)
        model = finish_image(image, inputs, self.kind, space, (h, w), height, width)
        return Built(model, np.ones((rows, 1), dtype="float32"), [hook] if hook.active else [])

    def optimize(self, classifier, objective, steps, *, transforms, optimizer, seed=0, rows=1, callbacks=(),
                 snapshots=1, progress=False, label=None, features=None):
        """With octaves: successive runs at growing sizes, each started from the previous one's pixels
        upscaled; ``steps`` shared out among them, median snapshots of the last.

        Raises:
            ConfigError: fewer steps than octaves."""
        if steps < self.octaves:
            raise ConfigError(f"steps ({steps}) is less than pixel.octaves ({self.octaves}); give at least one "
                              f"step per octave")
        height, width = fixed_input_size(classifier)
        sizes = octave_sizes(height, width, self.octaves, self.octave_scale)
        counts = [steps // self.octaves + (1 if k < steps % self.octaves else 0) for k in range(self.octaves)][::-1]
        features = features or classifier.optimizing.features(objective.layers)
        merged, init, model = Result(images=None, dead_steps=np.zeros(rows, dtype=int)), None, None
        for k, (size, count) in enumerate(zip(sizes, counts)):
            built = self.build(classifier, rows, seed, size=size, init=init)
            model = transforms.wrap(built.model, classifier.preprocessing, seed)
            last = k == self.octaves - 1
            text = label(model) if callable(label) else label
            if self.octaves > 1:
                text = f"{text or self.kind}, octave {k + 1}/{self.octaves} at {size[0]}x{size[1]}"
            result = optimize(Problem(model, features, objective, built.f0, built.callbacks), optimizer(), count,
                              snapshots=snapshots if last else 1, progress=progress, label=text, callbacks=callbacks)
            if k == 0:
                merged.dead_at_start = result.dead_at_start
            merged.losses += result.losses
            merged.values += result.values
            merged.dead_steps = merged.dead_steps + result.dead_steps
            merged.seconds += result.seconds
            merged.steps += result.steps
            merged.images = result.images
            if not last:
                init = resize_images(pixel_values(model), sizes[k + 1])
        return model, merged


def pixel_unit(space, channels=3):
    """Per channel: how much one 0..255 pixel level is in the space ``space``."""
    one = preprocessing.from_rgb(np.ones(channels, dtype="float32"), space)
    zero = preprocessing.from_rgb(np.zeros(channels, dtype="float32"), space)
    return np.abs(np.asarray(one) - np.asarray(zero)).astype("float32")


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
