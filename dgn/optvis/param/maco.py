"""MACO (Fel et al., NeurIPS 2023, "Unlocking Feature Visualization for Deeper Networks with MAgnitude
Constrained Optimization"): only the phase of the image's Fourier spectrum is optimized; its magnitude
is fixed to the mean magnitude spectrum of natural photos (package data ``maco_spectrum.npy``, made by
``scripts/maco_spectrum.py``). Each step D sees random crops of the image, resized to D's input size,
with noise added; the gradient magnitude that reaches the image, summed over the steps, is the
*transparency* map (where the image matters to the objective; the paper's section 3.2).
"""


import os
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from dgn import preprocessing
from dgn.errors import ConfigError
from dgn.optvis.callbacks import Callback
from dgn.optvis.optimize import Problem, optimize
from dgn.optvis.param.base import Built, Parameterization, finish_image, fixed_input_size, register
from dgn.optvis.param.fourier import COLOR_CORRELATION, inverse_rfft2, inverse_rfft2_bases
from dgn.optvis.param.pixels import pixel_unit


SPECTRUM_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "maco_spectrum.npy")


def default_settings(height, width):
    """MACO's defaults for D's input size (crops, box, noise): (crops per step, [box at the first step,
    box at the last] as fractions of the image's side, noise stddev in 0..255 levels). Chosen by the
    measurements of docs/measurements.md ("MACO"): at 224 x 224 4 crops from the whole image down to
    60 %; small images (32 x 32) keep larger crops (a 16-pixel crop blown up to 32 is mostly blur)."""
    side = min(height, width)
    low = 0.6 if side >= 128 else 0.8
    return 4, [1.0, low], 8.0


@register
@dataclass
class Maco(Parameterization):
    """MACO's image (:class:`MacoImage`): a trainable phase (rows, C, H, W//2+1) started at
    N(0, ``init_stddev``) (the same start in every row, so a batch's row k is that objective alone),
    a fixed magnitude (natural photos' mean), inverse DFT, normalized, colour-recorrelated
    (``decorrelate``), sigmoid. While optimizing, D sees ``crops`` random square crops per image
    (:class:`MacoCrops`; the side a fraction of the image's, ``box`` [first step, last step], linear in
    between, jittered by 0.05), each resized to D's input size, plus Gaussian and uniform noise of
    ``noise`` pixel levels (0..255). ``transparency``: accumulate the gradient magnitude at the image
    (:class:`Transparency`). ``None`` settings follow D's input size (:func:`default_settings`)."""

    kind = "maco"
    own_transforms = True   # dgn.render's default transforms: none beside the crops
    rows_independent = True  # build(rows=B): the same start phase and crops in every row (row k = alone)
    crops: int = None
    box: list = None
    noise: float = None
    init_stddev: float = 1.0
    decorrelate: bool = True
    transparency: bool = True

    def settings(self, height, width):
        """(crops, (box first, box last), noise) with the size-aware defaults filled in.

        Raises:
            ConfigError: crops < 1, a box outside 0.05..1 or not two numbers, negative noise."""
        crops, box, noise = default_settings(height, width)
        crops = crops if self.crops is None else self.crops
        box = box if self.box is None else self.box
        noise = noise if self.noise is None else self.noise
        if isinstance(crops, bool) or not isinstance(crops, int) or crops < 1:
            raise ConfigError(f"maco.crops {crops!r}: give a whole number of crops per step, 1 or more")
        if (not isinstance(box, (list, tuple)) or len(box) != 2
                or not all(isinstance(b, (int, float)) and 0.05 <= b <= 1.0 for b in box)):
            raise ConfigError(f"maco.box {box!r}: give [first, last], crop sides as fractions of the image's in "
                              f"0.05..1, e.g. [1.0, 0.6]")
        if not isinstance(noise, (int, float)) or noise < 0:
            raise ConfigError(f"maco.noise {noise!r}: give a stddev in 0..255 pixel levels, 0 or more")
        return crops, (float(box[0]), float(box[1])), float(noise)

    def build(self, classifier, rows=1, seed=0):
        """f0 (rows, 1) -> images (rows, H, W, C) in D's input space; with ``transparency``, a zero-valued
        probe whose gradient is the image's (:class:`GradientProbe`) and the callback that sums it."""
        space = classifier.preprocessing
        height, width = fixed_input_size(classifier)
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((1,), name="f0")
        image = MacoImage(rows, height, width, preprocessing.parameter_space(space), self.init_stddev,
                          self.decorrelate, seed=seed, channels=classifier.channels, name="maco")(inputs)
        model = finish_image(image, inputs, self.kind, space, (height, width), height, width)
        callbacks = []
        if self.transparency:
            probe = GradientProbe(name="transparency_probe")
            model = keras.Model(inputs, probe(model.output), name=self.kind)
            callbacks.append(Transparency(probe))
        return Built(model, np.ones((rows, 1), dtype="float32"), callbacks)

    def optimize(self, classifier, objective, steps, *, transforms, optimizer, seed=0, rows=1, callbacks=(),
                 snapshots=1, progress=False, label=None, features=None):
        """As :meth:`Parameterization.optimize`, with MACO's crops and noise between the image and the
        config's transforms (usually none: ``transform`` off in configs/maco-efficientnet-lite0.yaml). The
        result's ``extras["transparency"]``: (rows, H, W) float32, the summed |d loss / d image| over
        channels and steps."""
        height, width = fixed_input_size(classifier)
        crops, box, noise = self.settings(height, width)
        built = self.build(classifier, rows, seed)
        cropped = MacoCrops(crops, box, noise * pixel_unit(classifier.preprocessing, classifier.channels), steps,
                            seed=seed + 2, name="maco_crops", dtype="float32")(built.model.output)
        model = transforms.wrap(keras.Model(built.model.input, cropped, name=self.kind), classifier.preprocessing,
                                seed)
        features = features or classifier.optimizing.features(objective.layers)
        problem = Problem(model, features, objective, built.f0, built.callbacks)
        return model, optimize(problem, optimizer(), steps, snapshots=snapshots, progress=progress,
                               label=label(model) if callable(label) else label, callbacks=callbacks)


# ---------------------------------------------------------------- the fixed magnitude

def load_spectrum(path=SPECTRUM_FILE):
    """The shipped mean magnitude spectrum of natural photos, (3, N, N // 2 + 1) float32, largest 1."""
    try:
        return np.asarray(np.load(path), dtype="float32")
    except (OSError, ValueError) as err:
        raise ConfigError(f"MACO's spectrum {path} cannot be read ({err}); reinstall dgn or write it with "
                          f"scripts/maco_spectrum.py") from None


def magnitude(height, width, channels=3, spectrum=None):
    """The magnitude for an image of height x width: the shipped spectrum resampled (bilinear, in
    frequency: each coefficient gets the value at its own frequency in cycles per pixel, -0.5..0.5),
    (channels, height, width // 2 + 1) float32. Other than 3 channels: the mean of the three, repeated."""
    spectrum = load_spectrum() if spectrum is None else np.asarray(spectrum, dtype="float32")
    n = spectrum.shape[1]
    src_y, src_x = np.fft.fftshift(np.fft.fftfreq(n)), np.fft.rfftfreq(n)
    shifted = np.fft.fftshift(spectrum, axes=1)                        # frequencies in increasing order
    fy, fx = np.fft.fftfreq(height), np.fft.rfftfreq(width)
    along_y = np.stack([np.stack([np.interp(fy, src_y, shifted[c, :, k]) for k in range(shifted.shape[2])], -1)
                        for c in range(len(shifted))])                 # (3, height, K of the source)
    out = np.stack([np.stack([np.interp(fx, src_x, along_y[c, y]) for y in range(height)])
                    for c in range(len(along_y))])                     # (3, height, width // 2 + 1)
    if channels != 3:
        out = np.repeat(out.mean(axis=0, keepdims=True), channels, axis=0)
    return out.astype("float32")


# ---------------------------------------------------------------- layers

@keras.saving.register_keras_serializable(package="dgn")
class MacoImage(keras.layers.Layer):
    """MACO's image in D's input space (Fel et al. 2023, section 3.1): per row, the phase is normalized
    (mean 0, std 1), combined with the fixed magnitude A (:func:`magnitude`) into A e^{i phase},
    inverse-DFT'd, normalized (mean 0, std 1 over the row's pixels and channels), recorrelated
    (lucid's colour correlation) when ``decorrelate`` and 3 channels, squashed by a sigmoid to 0..1
    and mapped from RGB 0..255 into D's input space ``space``."""

    def __init__(self, rows, height, width, space="tf", init_stddev=1.0, decorrelate=True, seed=0, channels=3,
                 **kwargs):
        super().__init__(**kwargs)
        self.rows, self.height, self.width, self.channels = int(rows), int(height), int(width), int(channels)
        self.space, self.init_stddev, self.decorrelate, self.seed = space, float(init_stddev), bool(decorrelate), int(seed)
        self._magnitude = magnitude(self.height, self.width, self.channels)
        self._bases = inverse_rfft2_bases(self.height, self.width)

    def build(self, input_shape):
        shape = (self.rows, self.channels, self.height, self.width // 2 + 1)
        one = np.random.default_rng(self.seed).normal(0.0, self.init_stddev, (1,) + shape[1:]).astype("float32")
        value = np.broadcast_to(one, shape).copy()   # every row starts alike: row k of a batch = k alone
        self.phase = self.add_weight(
            name="phase", shape=shape, trainable=True,
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(value, dtype=dtype))

    def call(self, inputs):
        phase = ops.convert_to_tensor(self.phase)
        phase = (phase - ops.mean(phase, axis=(1, 2, 3), keepdims=True)) / (
            ops.std(phase, axis=(1, 2, 3), keepdims=True) + 1e-5)
        mag = ops.convert_to_tensor(self._magnitude)
        image = inverse_rfft2(mag * ops.cos(phase), mag * ops.sin(phase), self._bases)   # (rows, H, W, C)
        image = (image - ops.mean(image, axis=(1, 2, 3), keepdims=True)) / (
            ops.std(image, axis=(1, 2, 3), keepdims=True) + 1e-5)
        if self.decorrelate and self.channels == 3:
            image = ops.matmul(image, ops.convert_to_tensor(COLOR_CORRELATION.T))
        return preprocessing.from_rgb(ops.sigmoid(image) * 255.0, self.space)

    def compute_output_shape(self, input_shape):
        return (self.rows, self.height, self.width, self.channels)

    def get_config(self):
        return {**super().get_config(), "rows": self.rows, "height": self.height, "width": self.width,
                "space": self.space, "init_stddev": self.init_stddev, "decorrelate": self.decorrelate,
                "seed": self.seed, "channels": self.channels}


@keras.saving.register_keras_serializable(package="dgn")
class GradientProbe(keras.layers.Layer):
    """x + p - stop_gradient(p) with a trainable p of x's shape, zero: the output is x exactly, and the
    gradient of the loss with respect to p is its gradient with respect to x (the image), which the
    optimization loop hands to callbacks that ask for gradients (:class:`Transparency`). The optimizer
    moves p, which changes nothing."""

    def build(self, input_shape):
        self.probe = self.add_weight(name="probe", shape=tuple(input_shape), initializer="zeros", trainable=True)

    def call(self, x):
        p = ops.convert_to_tensor(self.probe)
        return x + (p - ops.stop_gradient(p))

    def compute_output_shape(self, input_shape):
        return input_shape


class Transparency(Callback):
    """MACO's transparency map: after each step, adds |d loss / d image| summed over channels (D's input
    space units) to a (rows, H, W) float32 sum; at the end it is ``result.extras["transparency"]``."""

    needs_grads = True

    def __init__(self, probe):
        self.probe, self._index, self.total = probe, None, None

    def on_run_begin(self, run):
        self.total = None

    def on_step_end(self, step, logs, stepper):
        if self._index is None:
            self._index = next(i for i, v in enumerate(stepper.variables) if v is self.probe.probe)
        grad = np.abs(np.asarray(stepper.gradients()[self._index], dtype="float32")).sum(axis=-1)
        self.total = grad if self.total is None else self.total + grad

    def on_run_end(self, run, result):
        if self.total is not None:
            result.extras["transparency"] = self.total


@keras.saving.register_keras_serializable(package="dgn")
class MacoCrops(keras.layers.Layer):
    """While optimizing only: ``crops`` random square crops of each image, each resized (bilinear) to the
    image's size, plus noise; copy-major (crop s of image k is row ``s * rows + k``, the layout
    :func:`dgn.optvis.optimize.objective_terms` averages over). Side: a fraction of the image's, from
    ``box[0]`` at the first step to ``box[1]`` at step ``steps`` (linear; a step counter in the layer),
    plus N(0, 0.05), clipped to 0.05..1; centre 0.5 + N(0, 0.15) of the side, clipped so the crop stays
    inside the image (Xplique's draws, Fel et al. 2023). Noise: N(0, noise) + U(-noise/2, noise/2) per
    channel in D's input space (``noise``: one value per channel). The same crops and noise for every
    row (one draw per crop), so a batch's row k sees what it would alone."""

    def __init__(self, crops, box, noise, steps, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.crops, self.box, self.steps, self.seed = int(crops), tuple(float(b) for b in box), int(steps), seed
        self.noise = [float(v) for v in np.atleast_1d(noise)]
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.step = self.add_weight(name="step", shape=(), initializer="zeros", trainable=False)

    def call(self, images, training=False):
        if not training:
            return images
        rows, height, width = images.shape[0], images.shape[1], images.shape[2]
        progress = ops.minimum(ops.convert_to_tensor(self.step) / max(1, self.steps - 1), 1.0)
        self.step.assign(self.step + 1.0)
        box = self.box[0] + (self.box[1] - self.box[0]) * progress
        draws = keras.random.normal((self.crops, 3), seed=self.seed_generator)
        side = ops.clip(box + 0.05 * draws[:, 0], 0.05, 1.0)
        half = side / 2.0
        cx = ops.clip(0.5 + 0.15 * draws[:, 1], half, 1.0 - half)
        cy = ops.clip(0.5 + 0.15 * draws[:, 2], half, 1.0 - half)
        zeros = ops.zeros_like(side)
        # output pixel (x, y) reads input (x0 + side * x, y0 + side * y)
        transform = ops.stack([side, zeros, (cx - half) * width, zeros, side, (cy - half) * height, zeros, zeros],
                              axis=1)
        transform = ops.repeat(transform, rows, axis=0)                 # crop-major, one per row
        x = ops.tile(images, (self.crops, 1, 1, 1))
        x = ops.image.affine_transform(x, transform, interpolation="bilinear", fill_mode="reflect")
        if any(self.noise):
            scale = ops.convert_to_tensor(np.asarray(self.noise, dtype="float32"))
            shape = (self.crops, height, width, images.shape[3])
            noise = keras.random.normal(shape, seed=self.seed_generator) + \
                keras.random.uniform(shape, -0.5, 0.5, seed=self.seed_generator)
            x = x + ops.repeat(noise, rows, axis=0) * scale
        return x

    def compute_output_shape(self, input_shape):
        return (None,) + tuple(input_shape[1:])

    def get_config(self):
        return {**super().get_config(), "crops": self.crops, "box": list(self.box), "noise": self.noise,
                "steps": self.steps, "seed": self.seed}
