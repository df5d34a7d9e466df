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

    Items: :class:`Jitter`, :class:`Scale`, :class:`Rotate`, :class:`Pad` (each kind once; D sees them as
    one padded random affine warp, see :meth:`layer`) and, as lucid's ``compose``, any function of a batch
    of images (N, H, W, C) float32 in D's input space returning images of the same shape, written with
    ``keras.ops``; the functions run after the warp, in the order given. A function sees the whole batch:
    to keep row k of a batch equal to its image alone, it must treat every image alike (no per-call
    random draw that differs between rows).

    ``samples``: transformed copies of each image D sees per step (the objective is their mean).

    Raises:
        ValueError: an item that is none of those nor callable, a repeated kind, scale with
            low > high or a non-positive factor, rotation outside 0..180, negative lengths, samples < 1
            or > 1 with nothing to vary (one line each)."""

    def __init__(self, items=(), samples=1):
        if isinstance(items, (Jitter, Scale, Rotate, Pad)) or (callable(items) and not isinstance(items, type)):
            items = [items]
        if not isinstance(items, (list, tuple)):
            raise ValueError(f"transforms {items!r}: give a list of Jitter, Scale, Rotate or Pad objects or "
                             f"functions of the images")
        if isinstance(samples, bool) or not isinstance(samples, int):
            raise ValueError(f"samples {samples!r}: give a whole number, 1 or more")
        self.items, self.samples = list(items), int(samples)
        self.functions = [item for item in self.items if not isinstance(item, (Jitter, Scale, Rotate, Pad))]
        for item in self.functions:
            if not callable(item) or isinstance(item, type):
                raise ValueError(f"transform {item!r}: give Jitter, Scale, Rotate or Pad objects, or functions "
                                 f"of the images")
        kinds = [type(item).__name__ for item in self.items if item not in self.functions]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"transforms {kinds}: give each kind once")
        found = {type(item): item for item in self.items if item not in self.functions}
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
        """The settings as a JSON-able dict (``functions``: the functions' names, when there are any)."""
        out = {"jitter": self.jitter, "scale": list(self.scale), "rotate": self.rotate, "pad": self.pad,
               "samples": self.samples}
        if self.functions:
            out["functions"] = [getattr(f, "__name__", type(f).__name__) for f in self.functions]
        return out

    def function_layers(self):
        """The functions as Keras layers (:class:`FunctionTransform`), in order."""
        return [FunctionTransform(f, name=f"transform_function_{k}", dtype="float32")
                for k, f in enumerate(self.functions)]

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
        if layer is None and not self.functions:
            return model
        images = model.output if layer is None else layer(model.output)
        for function in self.function_layers():
            images = function(images)
        return keras.Model(model.input, images, name=model.name)


class FunctionTransform(keras.layers.Layer):
    """A function of the images (see :class:`Transforms`) as a layer: applied while optimizing only."""

    def __init__(self, function, **kwargs):
        super().__init__(**kwargs)
        self.function = function

    def call(self, images, training=False):
        return self.function(images) if training else images

    def compute_output_shape(self, input_shape):
        return input_shape


def compose(items=(), samples=1):
    """lucid's ``transform.compose``: a :class:`Transforms` from Jitter / Scale / Rotate / Pad objects and
    any functions of the images (run after them, in order)."""
    return Transforms(items, samples)


NONE = Transforms()
