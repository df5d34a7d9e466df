"""Transformation robustness: random jitter, scale, rotation and padding between an image and D.

Applied only while optimizing (``training=True``), so the saved image is the untransformed one.
Any image parameterization can use it (lucid's ``transform.standard_transforms`` idea): an image
that still drives D's target when shifted by a few pixels, slightly rescaled or rotated cannot rely
on pixel-exact adversarial patterns. ``samples`` > 1 shows D several transformed copies of each image
per step (stacked copy-major: copy s of image k is row ``s * batch + k``); the optimization loop
takes the mean of the objective over the copies (:func:`dgn.optvis.optimize.objective_terms`).

Composed as in lucid's ``transform.compose``: ``compose([Pad(4), Jitter(8), Scale(0.9, 1.1),
Rotate(5)], samples=4)`` gives a :class:`Transforms` whose ``wrap(model, space, seed)`` puts them
between any parameterization and D. Jitter, scale and rotation are one affine warp with one seeded
draw per image (one resampling, not three); padding happens before it. Lengths (jitter, pad) are
pixels at 224 x 224, scaled with the image's size.
"""

import math
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from dgn import preprocessing
from dgn.config import transforms_active


@keras.saving.register_keras_serializable(package="dgn")
def grey(space, channels=3):
    """Mid-grey (pixel value 127.5) in the space ``space``, per channel."""
    return np.asarray(preprocessing.from_rgb(np.full(channels, 127.5, dtype="float32"), space), dtype="float32")


class RandomAffine(keras.layers.Layer):
    """Per image: shift by up to ``jitter`` pixels, scale by a factor in ``scale``, rotate by up to
    ``rotate`` degrees, about the centre, bilinear, reflected borders. One seeded draw per call and copy,
    shared by the images of a batch (see :meth:`draw`).
    While training, returns ``samples`` differently transformed copies of the batch, copy-major."""

    def __init__(self, jitter=0, scale=(1.0, 1.0), rotate=0.0, seed=None, samples=1, **kwargs):
        super().__init__(**kwargs)
        self.jitter, self.scale, self.rotate, self.seed = int(jitter), tuple(scale), float(rotate), seed
        self.samples = int(samples)
        self.seed_generator = keras.random.SeedGenerator(seed)

    @property
    def active(self):
        return transforms_active(self.jitter, self.scale, self.rotate)

    def call(self, images, training=False):
        if not training or not self.active:
            return images
        if self.samples > 1:
            images = ops.tile(images, (self.samples, 1, 1, 1))
        height, width = images.shape[1], images.shape[2]
        draws = self.draw(ops.shape(images)[0])
        shift = (draws[:, 0:2] * 2.0 - 1.0) * self.jitter
        low, high = self.scale
        factor = low + draws[:, 2] * (high - low)
        angle = (draws[:, 3] * 2.0 - 1.0) * (self.rotate * math.pi / 180.0)
        cos, sin = ops.cos(angle) / factor, ops.sin(angle) / factor
        cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
        a2 = cx - cos * cx - sin * cy + shift[:, 0]
        b2 = cy + sin * cx - cos * cy + shift[:, 1]
        zeros = ops.zeros_like(cos)
        transform = ops.stack([cos, sin, a2, -sin, cos, b2, zeros, zeros], axis=1)
        return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="reflect")

    def draw(self, batch):
        """(batch, 4) uniform draws: x shift, y shift, scale, angle. One (samples, 4) draw per call, copy s
        of every image getting draw s: each image of a batch is transformed as it would be alone (what a
        batch of one draws), so B images optimized side by side are each the image it gets alone."""
        draws = keras.random.uniform((self.samples, 4), seed=self.seed_generator)
        return ops.repeat(draws, batch // self.samples, axis=0)

    def compute_output_shape(self, input_shape):
        return input_shape if self.samples == 1 else (None,) + tuple(input_shape[1:])  # larger while training

    def get_config(self):
        return {**super().get_config(), "jitter": self.jitter, "scale": list(self.scale),
                "rotate": self.rotate, "seed": self.seed, "samples": self.samples}


@keras.saving.register_keras_serializable(package="dgn")
class PadTransform(keras.layers.Layer):
    """While optimizing only: pad with a constant (mid-grey) by ``pad`` pixels, apply the random
    jitter / scale / rotation, resize back to the input's size. lucid pads and feeds the larger image
    to a size-agnostic network; D has a fixed input size, so the padded image is shrunk back: D sees
    the whole image, slightly smaller, at a random place on a grey background."""

    def __init__(self, pad, fill, jitter=0, scale=(1.0, 1.0), rotate=0.0, seed=None, samples=1, **kwargs):
        super().__init__(**kwargs)
        self.pad, self.fill = int(pad), [float(v) for v in fill]
        self.affine = RandomAffine(jitter, scale, rotate, seed=seed, samples=samples, name="affine")

    def build(self, input_shape):
        self.built = True

    def call(self, images, training=False):
        if not training or self.pad <= 0 and not self.affine.active:
            return images
        height, width = images.shape[1], images.shape[2]
        fill = ops.convert_to_tensor(self.fill, dtype=images.dtype)
        p = self.pad
        x = ops.pad(images - fill, [[0, 0], [p, p], [p, p], [0, 0]]) + fill
        x = self.affine(x, training=True)
        return ops.image.resize(x, (height, width), interpolation="bilinear")

    def compute_output_shape(self, input_shape):
        return self.affine.compute_output_shape(input_shape)

    def get_config(self):
        a = self.affine
        return {**super().get_config(), "pad": self.pad, "fill": self.fill, "jitter": a.jitter,
                "scale": list(a.scale), "rotate": a.rotate, "seed": a.seed, "samples": a.samples}


# ------------------------------------------------------------------ composable transform specs

@dataclass(frozen=True)
class Jitter:
    """Random shift by up to ``pixels`` (at 224 x 224; scaled with the image) in x and y."""
    pixels: int


@dataclass(frozen=True)
class Scale:
    """Random scale factor, uniform in [low, high] (low <= high, both > 0)."""
    low: float
    high: float


@dataclass(frozen=True)
class Rotate:
    """Random rotation, uniform in [-degrees, degrees] (0..180)."""
    degrees: float


@dataclass(frozen=True)
class Pad:
    """Pad with mid-grey by ``pixels`` (at 224 x 224; scaled) before the warp, shrunk back after."""
    pixels: int


def scaled_pixels(pixels, height, width):
    """A length in pixels given for 224 x 224 images, for D's height x width (at least 1 where it was)."""
    if not pixels:
        return 0
    return max(1, int(round(pixels * min(height, width) / 224.0)))


class Transforms:
    """A composed list of transforms, applied while optimizing only (renders are untransformed).

    ``samples``: transformed copies of each image D sees per step (the objective is their mean).

    Raises:
        ValueError: an item that is not Jitter, Scale, Rotate or Pad, a repeated kind, scale with
            low > high or a non-positive factor, rotation outside 0..180, negative lengths, samples < 1
            or > 1 with nothing to vary (one line each)."""

    def __init__(self, items=(), samples=1):
        if isinstance(items, (Jitter, Scale, Rotate, Pad)):
            items = [items]
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"transforms {items!r}: give a list of Jitter, Scale, Rotate or Pad objects")
        if isinstance(samples, bool) or not isinstance(samples, int):
            raise ValueError(f"samples {samples!r}: give a whole number, 1 or more")
        self.items, self.samples = list(items), int(samples)
        kinds = [type(item).__name__ for item in self.items]
        for item in self.items:
            if not isinstance(item, (Jitter, Scale, Rotate, Pad)):
                raise ValueError(f"transform {item!r}: give Jitter, Scale, Rotate or Pad objects")
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"transforms {kinds}: give each kind once")
        found = {type(item): item for item in self.items}
        self.jitter = int(found[Jitter].pixels) if Jitter in found else 0
        self.scale = (float(found[Scale].low), float(found[Scale].high)) if Scale in found else (1.0, 1.0)
        self.rotate = float(found[Rotate].degrees) if Rotate in found else 0.0
        self.pad = int(found[Pad].pixels) if Pad in found else 0
        if self.jitter < 0 or self.pad < 0:
            raise ValueError(f"Jitter / Pad pixels must be >= 0, got {self.jitter}, {self.pad}")
        if not (0 < self.scale[0] <= self.scale[1]):
            raise ValueError(f"Scale({self.scale[0]}, {self.scale[1]}): give 0 < low <= high")
        if not 0 <= self.rotate <= 180:
            raise ValueError(f"Rotate({self.rotate}): give degrees in 0..180")
        if self.samples < 1:
            raise ValueError(f"samples {self.samples}: give 1 or more")
        if self.samples > 1 and not self.active:
            raise ValueError(f"samples {self.samples} makes differently transformed copies, but jitter, scale "
                             f"and rotate are off: add one, or use samples=1")

    @property
    def active(self):
        return transforms_active(self.jitter, self.scale, self.rotate)

    def describe(self):
        return {"jitter": self.jitter, "scale": list(self.scale), "rotate": self.rotate, "pad": self.pad,
                "samples": self.samples}

    def layer(self, height, width, channels, space, seed):
        """The Keras layer (float32) for images of height x width x channels in D's input space
        ``space``, seeded with ``seed + 1``; None when it changes nothing."""
        jitter = scaled_pixels(self.jitter, height, width)
        pad = scaled_pixels(self.pad, height, width)
        if pad:
            return PadTransform(pad, grey(space, channels), jitter, self.scale, self.rotate, seed=seed + 1,
                                samples=self.samples, name="transform", dtype="float32")
        # float32 under a mixed precision too (and TensorFlow has no bfloat16 gradient for the warp)
        layer = RandomAffine(jitter, self.scale, self.rotate, seed=seed + 1, samples=self.samples,
                             name="transform", dtype="float32")
        return layer if layer.active else None

    def wrap(self, model, space, seed):
        """``model`` (f0 -> images) followed by the transforms; ``model`` itself when they change nothing."""
        height, width, channels = model.output.shape[1:]
        layer = self.layer(height, width, channels, space, seed)
        if layer is None:
            return model
        return keras.Model(model.input, layer(model.output), name=model.name)


def compose(items=(), samples=1):
    """lucid's ``transform.compose``: a :class:`Transforms` from Jitter / Scale / Rotate / Pad objects."""
    return Transforms(items, samples)


NONE = Transforms()
