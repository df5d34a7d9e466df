"""The base of every image parameterization, its registry, and what they share (the resize to D's
input size, mid-grey).
"""


from dataclasses import asdict, dataclass, field

import keras
import numpy as np
from keras import ops

from dgn.errors import ConfigError
from dgn.optvis.layers import InputSpace
from dgn.optvis.optimize import Problem, optimize


IMAGE_FLOAT32 = "image_float32"


@dataclass
class Built:
    """A parameterization built for one classifier: ``model`` (f0 -> images in D's input space,
    untransformed), ``f0`` (rows, ...) float32, ``callbacks`` run between steps."""

    model: keras.Model
    f0: np.ndarray
    callbacks: list = field(default_factory=list)
    parts: dict = field(default_factory=dict)   # the generator's layers by role (dgn.optvis.generator)


class Parameterization:
    """Base class. Subclasses set ``kind`` (the registry key and the sidecar's ``parameterization``)."""

    kind = None
    # Whether build(rows=B) gives row k exactly what build(rows=1) gives (same start, own variables), so
    # dgn.optvis.engine.Engine may optimize B objectives with one build of B rows; else it stacks B copies.
    rows_independent = False

    def build(self, classifier, rows=1, seed=0):
        """A :class:`Built` for ``rows`` images of ``classifier``'s input size."""
        raise NotImplementedError

    def describe(self):
        """The settings as a JSON-able dict, with ``kind``."""
        return {"kind": self.kind, **asdict(self)}

    def optimize(self, classifier, objective, steps, *, transforms, optimizer, seed=0, rows=1, callbacks=(),
                 snapshots=1, progress=False, label=None, features=None):
        """Runs ``steps`` updates; returns (the model optimized, with its transforms; :class:`Result`).
        ``optimizer``: a function returning a fresh Keras optimizer (one per stage); ``label``: the
        progress line's text, or a function of the model giving it."""
        built = self.build(classifier, rows, seed)
        model = transforms.wrap(built.model, classifier.preprocessing, seed)
        features = features or classifier.optimizing.features(objective.layers)
        problem = Problem(model, features, objective, built.f0, built.callbacks)
        return model, optimize(problem, optimizer(), steps, snapshots=snapshots, progress=progress,
                               label=label(model) if callable(label) else label, callbacks=callbacks)


PARAMETERIZATIONS = {}


def register(cls):
    """Class decorator: adds a parameterization to :data:`PARAMETERIZATIONS` under its ``kind``."""
    PARAMETERIZATIONS[cls.kind] = cls
    return cls


def get(kind, **settings):
    """The parameterization registered as ``kind`` with ``settings``.

    Raises:
        ConfigError: an unknown kind (one line listing the valid ones)."""
    if kind not in PARAMETERIZATIONS:
        raise ConfigError(f"parameterization {kind!r}: valid: {', '.join(PARAMETERIZATIONS)}")
    return PARAMETERIZATIONS[kind](**settings)


def fixed_input_size(classifier):
    """D's (height, width).

    Raises:
        ConfigError: D's input size is dynamic."""
    shape = classifier.input_shape
    if shape[0] is None or shape[1] is None:
        raise ConfigError(f"classifier {classifier.name} has no fixed input size; give it one "
                          f"(classifier.input_size, or a model built for a fixed size)")
    return int(shape[0]), int(shape[1])


# ---------------------------------------------------------------- pixels and Fourier images

def finish_image(image, inputs, kind, space, size, height, width):
    if size != (height, width):
        image = Resize(height, width, name="to_input_size")(image)
    if InputSpace.needed(space):
        image = InputSpace(space, name="input_space")(image)
    return keras.Model(inputs, image, name=kind)


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
