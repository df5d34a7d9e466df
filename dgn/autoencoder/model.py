"""The denoising autoencoder whose decoder becomes the pretrained generator (paper section 3.3).

E: five blocks of [Conv k3 valid ReLU, BN] x 2 + MaxPool 2 (32..512 filters), Flatten, Dense 2048
ReLU, Dense m (the feature vector). G: the decoder of :mod:`dgn.optvis.generator` with head ``decoder``
(8b; its last conv has ReLU while training, linear when generating). Trained with Gaussian noise
on the input (the paper's *denoising* autoencoder) to reconstruct the clean image, MSE loss in D's
input space, with Keras's ``fit``, a checkpoint every epoch and resume after a kill.

What is built and how it trains are two small objects, :class:`AutoencoderSpec` (the layers) and
:class:`DaeTraining` (the data, the optimizer, the schedule), whose fields are the keys of the
config's ``dae:`` section (and ``generator.seed_shape`` / ``blocks``, ``seed``); :mod:`dgn.build`
makes them from a config. No function here takes a config dict.
"""


import math
from dataclasses import dataclass, field

import keras

from dgn.errors import DgnError
from dgn.optvis.generator import PAPER_BLOCKS, PAPER_SEED_CHANNELS, build_decoder, output_size, sized_architecture
from dgn.optvis.layers import FeatureNoise
from dgn.precision import dtype_policy


# The decoder's hidden norms use ``dae.decoder_norm``: "image" normalizes each image by its own
# statistics while training, evaluating and generating (as the authors' Keras 1 code did when it
# generated with batch 1), "batch" uses batch statistics while training and their moving averages
# afterwards (as the authors' code trained). Its last norm, on the 3-channel image, follows
# ``dae.output_norm``: batch statistics while training (DECODER_OUTPUT_NORM, the default), or
# "moving", a fixed affine map gamma * x + beta (faster to train: docs/autoencoder.md); never
# per-image statistics, which would force every reconstruction to one mean colour and contrast
# (measured: 14.8 dB validation PSNR, reconstructions in one brownish tone).
DECODER_OUTPUT_NORM = "batch"


CHECKPOINT = "checkpoint.weights.h5"


STATE = "checkpoint.json"


CODE_STATS = "code_stats.npz"


MIN_CODE_STATS_PHOTOS = 100  # fewer: `dgn code-stats` warns (its spreads are rough)


# The config's dae: section's keys in its order (dgn.config.SCHEMA): the order of a run's identity
# (training.json), each key a field of AutoencoderSpec or of DaeTraining.
DAE_KEYS = ("data", "wnids", "out", "epochs", "batch_size", "steps_per_epoch", "optimizer", "learning_rate",
            "warmup_steps", "decay_steps", "schedule_start", "noise_stddev", "validation", "augment", "encoder_filters", "encoder_bottleneck", "dense",
            "decoder_norm", "output_norm", "output_activation", "perceptual_weight", "perceptual_layers",
            "precision", "norm_photos", "freeze_norms", "init")


@dataclass
class AutoencoderSpec:
    """The autoencoder's layers. ``seed_shape`` / ``blocks``: the decoder's (``generator.seed_shape`` /
    ``blocks``; both None: sized to the images, :meth:`sized`); ``encoder_filters``, ``dense``: the
    encoder's conv blocks and hidden dense layer; ``encoder_bottleneck``: channels of a linear 1x1
    convolution between them (0: none, the paper); ``decoder_norm``: the decoder's hidden norms while
    training; ``output_norm``, ``output_activation``: its last norm and last conv while training;
    ``noise_stddev``: the Gaussian noise on the input (D's input space); ``seed``: the weights' and
    the noise's random seed (and the training data's order)."""

    seed_shape: list = None
    blocks: list = None
    encoder_filters: list = field(default_factory=lambda: [32, 64, 128, 256, 512])
    encoder_bottleneck: int = 0
    dense: int = 2048
    decoder_norm: str = "batch"
    output_norm: str = DECODER_OUTPUT_NORM
    output_activation: str = "relu"
    noise_stddev: float = 0.1
    seed: int = 0

    def sized(self, size):
        """(seed_shape, blocks) of the decoder for size x size images: both None, G sized to the images
        (:func:`dgn.optvis.generator.sized_architecture`); one None, the paper's value."""
        if self.seed_shape is None and self.blocks is None:
            seed_shape, blocks, _ = sized_architecture(size, size)
            return seed_shape, blocks
        return self.seed_shape or [5, 5, PAPER_SEED_CHANNELS], self.blocks or PAPER_BLOCKS


@dataclass
class DaeTraining:
    """How the autoencoder trains: the image folder(s) ``data`` (only the top-level folders ``wnids``
    if given, ``validation`` of each held out), the training folder ``out``, ``epochs`` of
    ``steps_per_epoch`` batches (None: one pass) of ``batch_size``, ``augment``, the ``optimizer``
    ("adam" or "adadelta") at ``learning_rate`` with ``warmup_steps`` / ``decay_steps`` /
    ``schedule_start`` (:func:`learning_rate_schedule`), the loss's ``perceptual_weight`` on D's ``perceptual_layers``,
    the compute ``precision``, the trained folder ``init`` to start from, ``norm_photos`` (training
    photos that set the saved weights' norm statistics, :func:`precise_norm_statistics`; 0: the moving
    averages), ``freeze_norms`` (train on ``init``'s statistics, fixed: :func:`freeze_norms`), and
    ``classifier_model`` (the config's ``classifier.model``: part of the run's identity)."""

    data: object = None
    wnids: list = None
    out: str = None
    epochs: int = 10
    batch_size: int = 24
    steps_per_epoch: int = None
    optimizer: str = "adam"
    learning_rate: float = 0.001
    warmup_steps: int = 0
    decay_steps: int = 0
    schedule_start: int = 0
    validation: float = 0.1
    augment: bool = True
    perceptual_weight: float = 0.0
    perceptual_layers: list = field(default_factory=lambda: ["block2b_add", "block3b_add"])
    precision: str = "float32"
    norm_photos: int = 512
    freeze_norms: bool = False
    init: str = None
    classifier_model: str = None

    def images(self, data_dir=None):
        """The image folder(s) to train on: ``data_dir`` if given, else ``data``.

        Raises:
            DgnError: neither."""
        data_dir = data_dir or self.data
        if not data_dir:
            raise DgnError("no training images: give --data DIR or set dae.data in the config")
        return data_dir


def build_encoder(input_shape, filters=(32, 64, 128, 256, 512), dense=2048, feature_size=3200, name="encoder",
                  bottleneck=0):
    """The paper's encoder (section 3.3): conv blocks of ``filters`` (two valid 3x3 convs with ReLU and
    batch norm, then a 2x2 max pool each), Dense ``dense`` (ReLU), Dense ``feature_size`` (the code,
    linear). ``bottleneck`` > 0 puts a linear 1x1 convolution to that many channels before the
    dense layers (not the paper's): fewer numbers into the first dense layer without a pool, which
    at 58 px was what held the encoder back (docs/autoencoder.md). Input (batch, H, W, 3) in D's
    input space; output (batch, feature_size)."""
    image = keras.Input(input_shape, name="image")
    x = image
    for i, n in enumerate(filters, start=1):
        x = keras.layers.Conv2D(n, 3, padding="valid", activation="relu", name=f"enc{i}_conv1")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"enc{i}_bn1")(x)
        x = keras.layers.Conv2D(n, 3, padding="valid", activation="relu", name=f"enc{i}_conv2")(x)
        x = keras.layers.BatchNormalization(momentum=0.9, name=f"enc{i}_bn2")(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{i}_pool")(x)
    if bottleneck:
        x = keras.layers.Conv2D(bottleneck, 1, name="enc_bottleneck")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense, activation="relu", name="fc")(x)
    features = keras.layers.Dense(feature_size, activation=None, name="features")(x)
    return keras.Model(image, features, name=name)


def check_decoder_size(spec, input_size):
    """(seed_shape, blocks) of ``spec``'s decoder if it makes input_size x input_size images.

    Raises:
        DgnError: it makes another size (or none: a seed too small for the blocks' kernels); the
            message names the seed side that would fit, if one does, and the sizes near it."""
    seed_shape, blocks = spec.sized(input_size)
    size = output_size(seed_shape, blocks, "decoder")
    if size == input_size:
        return seed_shape, blocks
    fits = [s for s in range(1, input_size + 1) if output_size([s], blocks) == input_size]
    made = {m for m in (output_size([s], blocks) for s in range(1, input_size + 2)) if m > 0}
    near = sorted(sorted(made, key=lambda m: abs(m - input_size))[:3])
    hint = (f"generator.seed_shape [{fits[0]}, {fits[0]}, c] fits these blocks" if fits else
            f"these blocks make {', '.join(f'{m}x{m}' for m in near)} images, not "
            f"{input_size}x{input_size}: change generator.blocks or the classifier's input_size")
    made_text = f"{size}x{size} images" if size > 0 else "no image (the seed is too small for its kernels)"
    raise DgnError(f"the decoder (generator.seed_shape {list(seed_shape)}, blocks {list(map(list, blocks))}) "
                   f"makes {made_text} but the autoencoder trains on {input_size}x{input_size}; {hint}")


def build_autoencoder(spec, input_size, precision="float32"):
    """(autoencoder, encoder, decoder) of an :class:`AutoencoderSpec` for input_size x input_size images.
    ``precision`` "mixed_bfloat16" computes in bfloat16 with float32 weights (training speed)."""
    with dtype_policy(precision):
        return _build_autoencoder(spec, input_size)


def _build_autoencoder(spec, input_size):
    seed_shape, blocks = check_decoder_size(spec, input_size)
    keras.utils.set_random_seed(spec.seed)
    m = math.prod(seed_shape)
    encoder = build_encoder((input_size, input_size, 3), spec.encoder_filters, spec.dense, m,
                            bottleneck=spec.encoder_bottleneck)
    decoder = build_decoder(seed_shape, blocks, head="decoder", norm=spec.decoder_norm,
                            output_activation=spec.output_activation, output_norm=spec.output_norm)
    image = keras.Input((input_size, input_size, 3), name="image")
    noisy = FeatureNoise("additive", spec.noise_stddev, seed=spec.seed, name="input_noise")(image)
    model = keras.Model(image, decoder(encoder(noisy)), name="autoencoder")
    return model, encoder, decoder
