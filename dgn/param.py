"""Image parameterizations: what the optimizer changes to make an image (lucid's ``optvis.param``).

Each is a small object, chosen by kind through one registry (:data:`PARAMETERIZATIONS`), whose
``build(classifier, rows, seed)`` gives a Keras model mapping a constant input f0 to ``rows`` images
(rows, H, W, C) in D's input space at D's input size, the f0 to feed it, and the callbacks the
optimization loop runs between steps (:mod:`dgn.callbacks`). ``optimize(...)`` runs it under the
one loop (:func:`dgn.optimize.optimize`), with transforms between the image and D.

- :class:`Generator`: the paper's G (Despraz et al. 2017, section 3), all of G trained
  (``trainable="all"``, the configuration without pretraining) or, with a trained decoder
  (``decoder_weights``) and ``trainable="alpha"``, only the feature scale alpha (with pretraining).
- :class:`Pixels`: the pixels themselves (Simonyan et al. 2013; Yosinski et al. 2015), with their
  regularizers and octaves.
- :class:`Fourier`: lucid's 1/f-scaled, colour-decorrelated spectrum (Olah et al. 2017).

The dataclass fields of each are the keys of its config section (``generator:``, ``pixel:``,
``fourier:``) with the same defaults; :mod:`dgn.build` makes them from a config.
"""

from dataclasses import asdict, dataclass, field

import keras
import numpy as np

from dgn import preprocessing
from dgn.errors import ConfigError
from dgn.optimize import Problem, Result, optimize
from dgn.precision import dtype_policy, float32_output
from dgn.weights import trained_output_norm

IMAGE_FLOAT32 = "image_float32"


@dataclass
class Built:
    """A parameterization built for one classifier: ``model`` (f0 -> images in D's input space,
    untransformed), ``f0`` (rows, ...) float32, ``callbacks`` run between steps."""

    model: keras.Model
    f0: np.ndarray
    callbacks: list = field(default_factory=list)
    parts: dict = field(default_factory=dict)   # the generator's layers by role (dgn.batched_generator)


class Parameterization:
    """Base class. Subclasses set ``kind`` (the registry key and the sidecar's ``parameterization``)."""

    kind = None

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


# ---------------------------------------------------------------- the generator G

@register
@dataclass
class Generator(Parameterization):
    """The paper's generator G (:mod:`dgn.generator`), sized to D unless ``seed_shape`` / ``blocks``
    are given. ``precision``: G's compute dtype ("float32" or "mixed_bfloat16"; the image is float32).
    ``image_gamma_l1``, ``alpha_l2``: the regularizers on the last norm's gammas and on alpha."""

    kind = "generator"
    seed_shape: list = None
    blocks: list = None
    head: str = "image"
    decoder_weights: str = None
    trainable: str = "all"
    norm: str = "image"
    output_norm: str = None
    code_stats: str = None
    f0: float = 1.0
    noise: str = "none"
    noise_stddev: float = 2.0
    squash: bool = True
    alpha_init: str = "glorot_uniform"
    alpha_activation: str = "linear"
    image_gamma_l1: float = 0.01
    alpha_l2: float = 0.0
    precision: str = "float32"

    def build(self, classifier, rows=1, seed=0):
        with dtype_policy(self.precision):
            return self._build(classifier, rows, seed)

    def _build(self, classifier, rows, seed):
        from dgn.generator import architecture, build_decoder, build_generator

        height, width, channels = classifier.input_shape
        try:
            seed_shape, blocks, crop = architecture(self.seed_shape, self.blocks, height, width)
        except ValueError as err:
            raise ConfigError(f"classifier {classifier.name}: {err}") from None
        keras.utils.set_random_seed(seed)
        output_norm = self.output_norm
        if self.decoder_weights and output_norm is None:
            output_norm = trained_output_norm(self.decoder_weights)
        decoder = build_decoder(seed_shape, blocks, self.head, self.norm, image_gamma_l1=self.image_gamma_l1,
                                output_norm=output_norm, channels=channels, space=classifier.preprocessing,
                                size=crop, squash=self.squash)
        if self.decoder_weights:
            from dgn.autoencoder import load_decoder_weights
            load_decoder_weights(decoder, self.decoder_weights, classifier.preprocessing)
        if self.trainable == "alpha":
            decoder.trainable = False
        f_dim = int(np.prod(seed_shape))
        code_stats = load_code_stats(self.code_stats, f_dim) if self.code_stats else None
        parts = {}
        model = build_generator(
            seed_shape, blocks, self.head, self.norm, rows=rows, noise=self.noise, noise_stddev=self.noise_stddev,
            alpha_init=self.alpha_init, alpha_activation=self.alpha_activation, alpha_l2=self.alpha_l2, seed=seed,
            decoder=decoder, code_stats=code_stats, parts=parts)
        parts["float32"] = None
        if model.output.dtype != "float32":
            image = float32_output(model.output, IMAGE_FLOAT32)
            parts["float32"] = image._keras_history.operation
            model = keras.Model(model.input, image, name=model.name)
        return Built(model, np.full((rows, f_dim), self.f0, dtype="float32"), parts=parts)


def load_code_stats(path, units):
    """(mean, std) of a ``code_stats.npz`` (``dgn code-stats``), checked against the code size.

    Raises:
        ConfigError: not such a file, or statistics of another code size."""
    try:
        with np.load(path) as npz:
            mean, std = np.asarray(npz["mean"], "float32"), np.asarray(npz["std"], "float32")
    except (OSError, KeyError, ValueError) as err:
        raise ConfigError(f"generator.code_stats {path} is not a code_stats.npz ({err}); "
                          f"write one with `dgn code-stats`") from None
    if mean.shape != (units,) or std.shape != (units,):
        raise ConfigError(f"generator.code_stats {path} describes {mean.size}-unit codes but the generator's "
                          f"code has {units} (generator.seed_shape); use the decoder's own code_stats.npz")
    return mean, std


# ---------------------------------------------------------------- pixels and Fourier images

def _finish(image, inputs, kind, space, size, height, width):
    from dgn.layers import InputSpace
    from dgn.parameterizations import Resize

    if size != (height, width):
        image = Resize(height, width, name="to_input_size")(image)
    if InputSpace.needed(space):
        image = InputSpace(space, name="input_space")(image)
    return keras.Model(inputs, image, name=kind)


@register
@dataclass
class Pixels(Parameterization):
    """The image's pixels are the variable, in -1..1 for D's that read 0..1 or 0..255 (the same steps
    whatever D's range), else in D's input space. ``init``: "noise" (N(0, init_stddev) in 0..255
    pixel levels) or "zeros" (D's origin: the mean or mid-grey). ``l2``, ``tv``, ``tv_beta``: losses
    (:class:`dgn.parameterizations.PixelImage`); ``blur_every`` / ``blur_sigma``, the clip
    percentiles and ``clip_range``: operations between steps (:class:`dgn.parameterizations.PixelHook`).
    ``octaves`` > 1: optimize at sizes growing by ``octave_scale`` up to D's, upscaling in between."""

    kind = "pixel"
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
        from dgn.parameterizations import PixelHook, PixelImage, pixel_unit

        space = classifier.preprocessing
        param = preprocessing.parameter_space(space)
        height, width = fixed_input_size(classifier)
        channels = classifier.channels
        h, w = size or (height, width)
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((1,), name="f0")
        if init is None and self.init == "noise" and self.init_stddev > 0:
            rng = np.random.default_rng(seed)
            init = rng.normal(0.0, 1.0, (rows, h, w, channels)).astype("float32") * self.init_stddev * \
                pixel_unit(param, channels)
        layer = PixelImage(rows, h, w, init=init, l2=self.l2, tv=self.tv, tv_beta=self.tv_beta, channels=channels,
                           name="pixels")
        image = layer(inputs)
        low, high = preprocessing.valid_range(param, channels)
        hook = PixelHook(layer, low, high, blur_every=self.blur_every, blur_sigma=self.blur_sigma,
                         clip_value_percentile=self.clip_value_percentile,
                         clip_contribution_percentile=self.clip_contribution_percentile, clip_range=self.clip_range)
        model = _finish(image, inputs, self.kind, space, (h, w), height, width)
        return Built(model, np.ones((rows, 1), dtype="float32"), [hook] if hook.active else [])

    def optimize(self, classifier, objective, steps, *, transforms, optimizer, seed=0, rows=1, callbacks=(),
                 snapshots=1, progress=False, label=None, features=None):
        """With octaves: successive runs at growing sizes, each started from the previous one's pixels
        upscaled; ``steps`` shared out among them, median snapshots of the last.

        Raises:
            ConfigError: fewer steps than octaves."""
        from dgn.parameterizations import octave_sizes, pixel_values, resize_images

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


@register
@dataclass
class Fourier(Parameterization):
    """lucid's Fourier image (:class:`dgn.parameterizations.FourierImage`): a spectrum started at
    N(0, ``init_stddev``), scaled by 1/f^``decay_power``, colour-decorrelated (``decorrelate``),
    squashed by a sigmoid into D's valid range."""

    kind = "fourier"
    init_stddev: float = 0.01
    decay_power: float = 1.0
    decorrelate: bool = True

    def build(self, classifier, rows=1, seed=0):
        from dgn.parameterizations import FourierImage

        space = classifier.preprocessing
        param = preprocessing.parameter_space(space)
        height, width = fixed_input_size(classifier)
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((1,), name="f0")
        image = FourierImage(rows, height, width, param, self.init_stddev, self.decay_power, self.decorrelate,
                             seed=seed, channels=classifier.channels, name="fourier")(inputs)
        model = _finish(image, inputs, self.kind, space, (height, width), height, width)
        return Built(model, np.ones((rows, 1), dtype="float32"))
