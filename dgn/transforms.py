"""Transformation robustness: random jitter, scale and rotation between an image and D.

Applied only while optimizing (``training=True``), so the saved image is the untransformed one.
Any image parameterization can use it (lucid's ``transform.standard_transforms`` idea): an image
that still drives D's target when shifted by a few pixels, slightly rescaled or rotated cannot rely
on pixel-exact adversarial patterns. ``samples`` > 1 shows D several transformed copies of each image
per step (stacked copy-major: copy s of image k is row ``s * batch + k``); the optimization loop
takes the mean of the objective over the copies (:func:`dgn.optimize.objective_terms`).
"""

import math

import keras
from keras import ops

from dgn.config import transforms_active


@keras.saving.register_keras_serializable(package="dgn")
class RandomAffine(keras.layers.Layer):
    """Per image: shift by up to ``jitter`` pixels, scale by a factor in ``scale``, rotate by up to
    ``rotate`` degrees, about the centre, bilinear, reflected borders. One seeded draw per call.
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
        """(batch, 4) uniform draws: x shift, y shift, scale, angle; one per image."""
        return keras.random.uniform((batch, 4), seed=self.seed_generator)

    def compute_output_shape(self, input_shape):
        return input_shape if self.samples == 1 else (None,) + tuple(input_shape[1:])  # larger while training

    def get_config(self):
        return {**super().get_config(), "jitter": self.jitter, "scale": list(self.scale),
                "rotate": self.rotate, "seed": self.seed, "samples": self.samples}
