"""The paper's generator G as a parameterization (Despraz et al. 2017, section 3).
"""


from dataclasses import dataclass

import keras
import numpy as np

from dgn.autoencoder.files import load_decoder_weights
from dgn.errors import ConfigError
from dgn.optvis.generator import architecture, build_decoder, build_generator
from dgn.optvis.param.base import Built, IMAGE_FLOAT32, Parameterization, register
from dgn.precision import dtype_policy, float32_output
from dgn.weights import trained_output_norm


# ---------------------------------------------------------------- the generator G

@register
@dataclass
class Generator(Parameterization):
    """The paper's generator G (:mod:`dgn.optvis.generator`), sized to D unless ``seed_shape`` / ``blocks``
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
