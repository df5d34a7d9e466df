"""The denoising autoencoder whose decoder becomes the pretrained generator (paper section 3.3).

E: five blocks of [Conv k3 valid ReLU, BN] x 2 + MaxPool 2 (32..512 filters), Flatten, Dense 2048
ReLU, Dense m (the feature vector). G: the decoder of :mod:`dgn.generator` with head ``decoder``
(8b; its last conv has ReLU while training, linear when generating). Trained with Gaussian noise
on the input (the paper's *denoising* autoencoder) to reconstruct the clean image, MSE loss in D's
input space, with Keras's ``fit``, a checkpoint every epoch and resume after a kill.

What is built and how it trains are two small objects, :class:`AutoencoderSpec` (the layers) and
:class:`DaeTraining` (the data, the optimizer, the schedule), whose fields are the keys of the
config's ``dae:`` section (and ``generator.seed_shape`` / ``blocks``, ``seed``); :mod:`dgn.build`
makes them from a config. No function here takes a config dict.
"""

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field

import keras
import numpy as np
from keras import ops

from dgn import preprocessing
from dgn.encoders import THUMBNAIL, build_thumbnail_encoder
from dgn.errors import DgnError
from dgn.generator import PAPER_BLOCKS, PAPER_SEED_CHANNELS, build_decoder, output_size, sized_architecture
from dgn.layers import FeatureNoise, GeneratorNorm
from dgn.outputs import write_atomic, write_json
from dgn.precision import dtype_policy
from dgn.weights import decoder_metadata, load_weights_strict, recorded_encoder

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
        (:func:`dgn.generator.sized_architecture`); one None, the paper's value."""
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


class ContinuedCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Half a cosine from ``rate`` to 0 over ``decay`` updates, entered at update ``start`` of it by a run
    that goes on from an earlier run's weights with a fresh optimizer, and warmed up there: the rate at
    this run's update ``step`` (0, 1, ...) is

        rate * min(1, (step + 1) / warmup) * (1 + cos(pi * min(start + step, decay) / decay)) / 2

    (``warmup`` 0: no warm-up), so runs of any length, each with its own Adam, follow one cosine
    together (docs/autoencoder.md, "Runs that add up"). Unit: the optimizer's learning rate.

    Raises:
        DgnError: ``decay`` not above ``start``."""

    def __init__(self, rate, start, decay, warmup=0):
        rate, start, decay, warmup = float(rate), int(start), int(decay), int(warmup)
        if decay <= start:
            raise DgnError(f"dae.schedule_start {start} must be below dae.decay_steps {decay} (the cosine's "
                           f"length from its first update)")
        self.rate, self.start, self.decay, self.warmup = rate, start, decay, warmup

    def __call__(self, step):
        step = ops.cast(step, "float32")
        where = ops.minimum(step + self.start, float(self.decay)) / self.decay
        rate = self.rate * 0.5 * (1.0 + ops.cos(math.pi * where))
        if self.warmup:
            rate = rate * ops.minimum(1.0, (step + 1.0) / self.warmup)
        return rate

    def get_config(self):
        return {"rate": self.rate, "start": self.start, "decay": self.decay, "warmup": self.warmup}


def learning_rate_schedule(rate, warmup=0, decay=0, start=0):
    """The autoencoder's learning rate: Keras's ``CosineDecay`` with a linear warm-up, or ``rate`` itself,
    or (``start`` > 0) the rest of a cosine begun by earlier runs (:class:`ContinuedCosine`).

    Warm-up (``warmup`` updates): ``rate * (step + 1) / warmup``, reaching ``rate`` at update
    ``warmup - 1``: a run that starts from trained weights with a fresh Adam (``dae.init``) would
    otherwise move every weight by about ``rate`` in its first updates, whatever its gradient, and undo
    part of the training (measured at 1e-3: the loss rose from 0.124 to 0.138 and the validation loss,
    read with moving averages that lag such jumps, to 0.73 in the first 83 steps). Decay (``decay`` > 0):
    from there down to 0 along half a cosine over ``decay`` updates, then 0; at a constant 2e-4 the loss
    had stopped falling. Without decay the rate stays at ``rate`` after the warm-up. ``start`` > 0: the
    cosine is ``decay`` updates long from its first update in an earlier run, ``start`` of them made;
    the warm-up scales it.

    Raises:
        DgnError: ``start`` > 0 and ``decay`` not above it."""
    rate, warmup, decay, start = float(rate), int(warmup), int(decay), int(start)
    if start:
        return ContinuedCosine(rate, start, decay, warmup)
    if not warmup and not decay:
        return rate
    if not warmup:
        return keras.optimizers.schedules.CosineDecay(rate, decay_steps=decay)
    # Keras warms up from initial_learning_rate at step 0 to warmup_target at warmup_steps: starting at
    # rate / warmup over warmup - 1 steps gives rate * (step + 1) / warmup, the first update not at 0
    return keras.optimizers.schedules.CosineDecay(rate / warmup, decay_steps=decay or 1, alpha=0.0 if decay else 1.0,
                                                  warmup_target=rate, warmup_steps=warmup - 1)


def make_dae_optimizer(training):
    """A fresh Keras optimizer of a :class:`DaeTraining` (``optimizer``, ``learning_rate`` with its
    warm-up and decay)."""
    name = training.optimizer
    lr = learning_rate_schedule(training.learning_rate, training.warmup_steps or 0, training.decay_steps or 0,
                                training.schedule_start or 0)
    if name == "adadelta":
        return keras.optimizers.Adadelta(lr)
    if name == "adam":
        return keras.optimizers.Adam(lr)
    raise DgnError(f"dae.optimizer {name!r}: valid: adam, adadelta")


def pixel_mse(y_true, y_pred):
    """Mean squared error per image in D's input space (the paper's loss; logged as its own metric)."""
    return ops.mean(ops.square(y_true - y_pred), axis=(1, 2, 3))


def perceptual_features(classifier, layers):
    """D from its input to the activations of ``layers`` (only the layers those need), frozen."""
    model = keras.Model(classifier.analysis.inputs, [classifier.layer_output(name) for name in layers],
                        name="perceptual_features")
    model.trainable = False
    return model


def reconstruction_loss(features=None, weight=0.0):
    """Pixel MSE, plus ``weight`` x the mean squared distance between D's activations of the
    original and of the reconstruction at each of ``features``' outputs (averaged over layers): the
    MSE alone lets the decoder average away high frequencies (blur), which D's early features see."""
    if not weight:
        return pixel_mse

    def mse_and_perceptual(y_true, y_pred):
        a, b = features(y_true, training=False), features(y_pred, training=False)
        a, b = (a, b) if isinstance(a, (list, tuple)) else ([a], [b])
        distance = sum(ops.mean(ops.square(u - v), axis=(1, 2, 3)) for u, v in zip(a, b)) / len(a)
        return pixel_mse(y_true, y_pred) + weight * distance

    return mse_and_perceptual


class TimeLimit(keras.callbacks.Callback):
    """Stops training at the end of the first epoch that ends ``minutes`` after the start
    (after its checkpoint), so a run with a deadline resumes later from a complete epoch."""

    def __init__(self, minutes):
        super().__init__()
        self.seconds, self.start = 60.0 * minutes, time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() - self.start >= self.seconds:
            self.model.stop_training = True
            print(f"time limit of {self.seconds / 60:g} min reached after epoch {epoch + 1}; "
                  f"run the same command again to resume", flush=True)


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: the full training state (weights and optimizer), then the exported parts
    (``on_saved``), then the epoch number (checkpoint.json), each written to a temporary file and
    renamed. checkpoint.json comes last and is what a resumed run trusts, so a kill at any moment
    leaves a complete epoch: the one it names, whose every file is written."""

    def __init__(self, folder, on_saved=None, wall_seconds=0.0):
        super().__init__()
        self.folder, self.on_saved = folder, on_saved
        self.wall_before, self.start = float(wall_seconds), time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        tmp = os.path.join(self.folder, ".tmp-" + CHECKPOINT)
        self.model.save_weights(tmp)
        os.replace(tmp, os.path.join(self.folder, CHECKPOINT))
        wall = round(self.wall_before + time.monotonic() - self.start, 1)
        if self.on_saved:
            self.on_saved(epoch + 1, logs or {}, wall)
        write_json(os.path.join(self.folder, STATE), {"epoch": epoch + 1, "logs": logs or {}, "wall_seconds": wall})


def norm_layers(encoder, decoder):
    """The norms whose moving statistics training updates: the encoder's ``BatchNormalization`` layers
    and the decoder's :class:`dgn.layers.GeneratorNorm` layers in ``"batch"`` mode."""
    found = [layer for layer in encoder.layers if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]
    return found + [layer for layer in decoder.layers if isinstance(layer, GeneratorNorm) and layer.mode == "batch"]


@contextlib.contextmanager
def kept_norm_statistics(encoder, decoder):
    """Restores the norms' moving means and variances (:func:`norm_layers`) on leaving: what happens
    inside (:func:`precise_norm_statistics` for the saved weights) leaves training as it was."""
    layers = norm_layers(encoder, decoder)
    saved = [(v, ops.convert_to_numpy(v.value)) for layer in layers for v in (layer.moving_mean, layer.moving_variance)]
    try:
        yield
    finally:
        for variable, value in saved:
            variable.assign(value)


def precise_norm_statistics(encoder, decoder, batches):
    """Sets each norm's moving mean and variance (:func:`norm_layers`) to the mean of its batch means
    and the mean of its batch variances over ``batches`` (arrays (B, H, W, 3) in D's input space, run
    through encoder and decoder in training mode one after the other, no noise), in place of the
    exponential moving averages of the same quantities, which at batch 8 follow the last few updates
    (the encoder's momentum 0.9: about 10 batches). After PreciseBN (Wu & Johnson 2021, "Rethinking
    'Batch' in BatchNorm", section 3), which averages over many batches in the same way; its
    "population" variant, which adds the spread of the batch means to the variance, is not used.
    Measured on the shipped 224 px weights with photos of the folder they trained on: 0.11 to 0.14 dB
    higher validation PSNR than their moving averages; 0.08 to 0.12 dB at 58 px (docs/autoencoder.md,
    "The jolt is the norms' statistics"). Returns the number of batches; none leaves the statistics as they were."""
    layers = norm_layers(encoder, decoder)
    momenta = [layer.momentum for layer in layers]
    count = 0
    try:
        for count, x in enumerate(batches, start=1):
            for layer in layers:
                layer.momentum = (count - 1) / count   # the running mean of the batch statistics
            decoder(encoder(x, training=True), training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return count


def freeze_norms(encoder, decoder):
    """Puts every norm of :func:`norm_layers` on its stored statistics for the rest of training, so
    that training normalizes as inference does and the batches' composition no longer matters
    (fine-tuning with frozen batch norm): the encoder's ``BatchNormalization`` layers frozen entirely
    (``trainable = False``: statistics, gamma and beta), the decoder's batch norms in ``"moving"``
    mode (gamma and beta still trained). Call it before ``compile``. Returns the number of norms."""
    layers = norm_layers(encoder, decoder)
    for layer in layers:
        if isinstance(layer, GeneratorNorm):
            layer.mode = "moving"
        else:
            layer.trainable = False
    return len(layers)


def norm_batches(images, crop, space, batch_size, photos, seed=0):
    """Batches for :func:`precise_norm_statistics`: centre crops (crop x crop) of ``photos`` of
    ``images`` (uint8 arrays, short side at least ``crop``) drawn with ``seed``, in D's input
    ``space``, ``batch_size`` each (the training batch size: the statistics the weights trained
    with); a remainder short of a batch is left out unless it is the only batch. A list of arrays."""
    from dgn.images import center_crop

    count = min(int(photos), len(images))
    if count <= 0:
        return []
    pick = np.random.default_rng([seed, 7]).choice(len(images), count, replace=False)
    whole = count - count % batch_size or count   # whole batches, or all if fewer than one batch
    crops = np.stack([center_crop(images[i], crop) for i in pick[:whole]]).astype("float32")
    return [preprocessing.from_rgb(crops[i:i + batch_size], space).astype("float32")
            for i in range(0, whole, batch_size)]


def _metadata(spec, space, input_size, epoch, logs, history, data_dir, images):
    """decoder.json: what the decoder makes and how it was trained (``spec``: its
    :class:`AutoencoderSpec`; seed_shape / blocks as given, None when sized to the images). The data
    folder is named by its last component (the absolute path is only this machine's)."""
    return {"preprocessing": space, "input_size": input_size, "norm": spec.decoder_norm,
            "output_norm": spec.output_norm, "output_activation": spec.output_activation,
            "seed_shape": spec.seed_shape,
            "blocks": spec.blocks, "encoder_filters": list(spec.encoder_filters),
            "encoder_bottleneck": spec.encoder_bottleneck, "dense": spec.dense,
            "epochs": epoch, "logs": logs,
            "noise_stddev": spec.noise_stddev,
            "data": folder_names(data_dir), "images": images, "history": history}


def folder_name(path):
    """A folder by its last component: decoder.json names folders, not one machine's paths."""
    return os.path.basename(os.path.normpath(path))


def folder_names(data):
    """:func:`folder_name` of one folder, or the list of them of a list of folders."""
    return folder_name(data) if isinstance(data, str) else [folder_name(p) for p in data]


def run_record(training, epoch, wall_seconds, images):
    """One training run (``training``: its :class:`DaeTraining`) in a decoder's history: how long, on
    what, how many images were seen."""
    import platform

    t = training
    seen = epoch * t.batch_size * (t.steps_per_epoch or math.ceil(images / t.batch_size))
    return {"epochs": epoch, "images_seen": seen, "passes": round(seen / max(images, 1), 1),
            "wall_seconds": wall_seconds,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "backend": keras.backend.backend(),
            "devices": [str(d) for d in _devices()], "precision": t.precision,
            "batch_size": t.batch_size, "learning_rate": t.learning_rate,
            "warmup_steps": t.warmup_steps, "decay_steps": t.decay_steps, "schedule_start": t.schedule_start,
            "freeze_norms": t.freeze_norms, "init": folder_name(t.init) if t.init else None}


def _devices():
    if keras.backend.backend() == "jax":
        import jax

        return [d.device_kind for d in jax.devices()]
    return []


def save_parts(folder, encoder, decoder, metadata):
    """decoder.weights.h5 / encoder.weights.h5 plus decoder.json (what input space it makes)."""
    for part, model in (("decoder", decoder), ("encoder", encoder)):
        tmp = os.path.join(folder, f".tmp-{part}.weights.h5")
        model.save_weights(tmp)
        os.replace(tmp, os.path.join(folder, f"{part}.weights.h5"))
    write_json(os.path.join(folder, "decoder.json"), metadata)


def _cast_weights_file(src, dtype):
    """The bytes of a Keras ``.weights.h5`` file with every floating-point array stored as ``dtype``
    (loading casts back to the model's float32 variables)."""
    import io

    import h5py

    buffer = io.BytesIO()
    with h5py.File(src, "r") as fin, h5py.File(buffer, "w") as fout:
        fout.attrs.update(dict(fin.attrs))

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                fout.require_group(name).attrs.update(dict(obj.attrs))
                return
            data = obj[()]
            if isinstance(data, np.ndarray) and np.issubdtype(data.dtype, np.floating):
                data = data.astype(dtype)
            fout.create_dataset(name, data=data).attrs.update(dict(obj.attrs))

        fin.visititems(copy)
    return buffer.getvalue()


def export_trained(folder, dest, encoder_dtype="float16"):
    """Copies a trained autoencoder (decoder.weights.h5, decoder.json, encoder.weights.h5, and
    code_stats.npz if ``dgn code-stats`` wrote one) from a training folder to ``dest`` (e.g. weights/dae-dogs-efficientnet_lite0), each file written under
    a temporary name and renamed. The encoder, which only eval-dae needs, is stored as
    ``encoder_dtype`` (float16 halves its ~83 MB; reconstructions change by < 0.5 of an 8-bit level)."""
    names = ("decoder.weights.h5", "decoder.json", "encoder.weights.h5")
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise DgnError(f"{folder} has no {missing[0]}; export a folder written by `dgn train-dae`")
    if os.path.exists(dest) and os.path.samefile(folder, dest):
        raise DgnError(f"export-dae: {dest} is the training folder itself; give another folder, e.g. "
                       f"weights/<name>")
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as exc:
        raise DgnError(f"export-dae: cannot make the folder {dest!r} ({exc.strerror or exc}); give a folder "
                       f"path that can be created, e.g. weights/<name>") from None
    with open(os.path.join(folder, "decoder.weights.h5"), "rb") as fh:
        write_atomic(os.path.join(dest, "decoder.weights.h5"), fh.read())
    write_atomic(os.path.join(dest, "encoder.weights.h5"),
                 _cast_weights_file(os.path.join(folder, "encoder.weights.h5"), np.dtype(encoder_dtype)))
    meta = decoder_metadata(os.path.join(folder, "decoder.weights.h5"))
    if meta.get("data"):  # older decoder.json files held a machine's paths
        meta["data"] = folder_names(meta["data"])
    for run in meta.get("history", []):
        run.pop("wall_hours", None)                # derivable from wall_seconds
        if run.get("init"):
            run["init"] = folder_name(run["init"])
    write_json(os.path.join(dest, "decoder.json"), {**meta, "encoder_dtype": str(np.dtype(encoder_dtype))})
    if os.path.isfile(os.path.join(folder, CODE_STATS)):
        with open(os.path.join(folder, CODE_STATS), "rb") as fh:
            write_atomic(os.path.join(dest, CODE_STATS), fh.read())
        names += (CODE_STATS,)
    elif os.path.isfile(os.path.join(dest, CODE_STATS)):
        os.remove(os.path.join(dest, CODE_STATS))  # another decoder's statistics: `dgn code-stats` makes new ones
        print(f"removed {os.path.join(dest, CODE_STATS)}: it described the decoder this export replaces; "
              f"run `dgn code-stats` for the new one", flush=True)
    return {n: os.path.getsize(os.path.join(dest, n)) for n in names}


def checked_metadata(path, space):
    """The metadata of decoder weights ``path``, refusing ones trained for another input space."""
    meta = decoder_metadata(path)
    if meta.get("preprocessing") != space:
        raise DgnError(f"decoder {path} was trained for {meta.get('preprocessing')!r} inputs but the classifier "
                       f"reads {space!r} inputs; train a decoder for this classifier (dgn train-dae)")
    return meta


def load_decoder_weights(decoder, path, space):
    """Loads a trained decoder, refusing one trained for another classifier's input space."""
    meta = checked_metadata(path, space)
    load_weights_strict(decoder, path, "decoder",
                        f"; do generator.seed_shape and generator.blocks match the ones it was trained with "
                        f"({meta.get('seed_shape')}, {meta.get('blocks')})?")


def psnr(a_uint8, b_uint8):
    mse = float(np.mean((a_uint8.astype("float64") - b_uint8.astype("float64")) ** 2))
    return (float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)), mse


def thumbnail(images_uint8, side):
    """Each image shrunk to ``side`` x ``side`` with a box filter (the mean of each cell) and enlarged
    back to its size with a bicubic filter (PIL, rounded and clipped to 8 bits): the reconstruction
    of a code of ``3 * side**2`` numbers that needs no training, a floor an autoencoder should beat."""
    from PIL import Image

    out = []
    for img in np.asarray(images_uint8, dtype="uint8"):
        h, w = img.shape[:2]
        small = Image.fromarray(img).resize((side, side), Image.Resampling.BOX)
        out.append(np.asarray(small.resize((w, h), Image.Resampling.BICUBIC)))
    return np.stack(out) if out else np.zeros_like(images_uint8, dtype="uint8")


def code_thumbnail_side(code_size):
    """The side of the RGB thumbnail with about as many numbers as a code of ``code_size``."""
    return max(1, int(round(math.sqrt(code_size / 3.0))))


def thumbnail_baselines(crops, code_size, sides=(16,)):
    """PSNR (as eval-dae computes it) of thumbnails of ``crops``: one with as many numbers as the
    code (side ``code_thumbnail_side``) and one of each of ``sides``."""
    result = {}
    for key, side in [("code", code_thumbnail_side(code_size))] + [(f"{s}x{s}", s) for s in sides]:
        value, mse = psnr(crops, thumbnail(crops, side))
        result[key] = {"side": side, "numbers": 3 * side * side, "psnr": round(value, 4), "mse": round(mse, 4)}
    return result


def channel_correlation(images_uint8):
    """Correlations of the R-G, R-B and G-B values over all pixels: reconstructions that have lost
    colour correlate near 1 where photos are around 0.9 (a decoder's colour fidelity in 3 numbers)."""
    pixels = np.asarray(images_uint8, dtype="float64").reshape(-1, 3).T
    if pixels.shape[1] < 2 or np.any(pixels.std(axis=1) == 0):
        return None
    c = np.corrcoef(pixels)
    return [round(float(c[0, 1]), 4), round(float(c[0, 2]), 4), round(float(c[1, 2]), 4)]


def _dataset_images(training, data_dir, crop, warn=print):
    from dgn.data import list_and_split, load_images

    paths, train, val = list_and_split(data_dir, training.wnids, training.validation)
    from dgn.images import eval_short_side
    short = eval_short_side(crop)
    train_images, _, skipped_t = load_images(train, short, warn)
    val_images, _, skipped_v = load_images(val, short, warn)
    return train_images, val_images, len(skipped_t) + len(skipped_v), len(paths)


# dae fields added after runs were made: at these values they leave those runs' identity unchanged
IDENTITY_DEFAULTS = {"freeze_norms": False, "encoder_bottleneck": 0, "decay_steps": 0, "schedule_start": 0, "output_norm": DECODER_OUTPUT_NORM, "output_activation": "relu"}


def _dae_value(spec, training, key):
    return getattr(spec if hasattr(spec, key) else training, key)


def _training_identity(spec, training):
    """What decides a training run's weights (training.json): a folder holding a run of another
    identity is not resumed. The dae keys in the config's order (:data:`DAE_KEYS`)."""
    dae = {k: _dae_value(spec, training, k) for k in DAE_KEYS}
    return {"generator": {"seed_shape": spec.seed_shape, "blocks": spec.blocks},
            "dae": {k: v for k, v in dae.items()
                    if k not in ("epochs", "out", "data", "precision", "warmup_steps", "norm_photos")
                    and not (k in IDENTITY_DEFAULTS and v == IDENTITY_DEFAULTS[k])},
            "classifier": training.classifier_model, "seed": spec.seed,
            "decoder_output_norm": DECODER_OUTPUT_NORM}


def train_dae(spec, training, classifier, data_dir=None, out_dir=None, epochs=None, verbose=1,
              time_limit=None, record=None):
    """Trains (or resumes) the autoencoder ``spec`` (:class:`AutoencoderSpec`) as ``training`` says
    (:class:`DaeTraining`) for ``classifier`` (D: its input space and size, and the perceptual
    term's layers); returns the output folder. ``data_dir``, ``out_dir``, ``epochs``: instead of
    ``training``'s; ``record``: what training.json records as the run's config (the config dict
    the objects were built from), beside the identity."""
    from dgn.data import ImageDataset

    data_dir = training.images(data_dir)
    out_dir = out_dir or training.out
    epochs = training.epochs if epochs is None else epochs
    if epochs < 1:
        raise DgnError(f"epochs {epochs}: give a whole number of at least 1")
    space, size = classifier.preprocessing, classifier.input_shape[0]
    check_decoder_size(spec, size)  # a decoder of another size fails before the images are read
    if training.freeze_norms and not training.init:
        raise DgnError("dae.freeze_norms fixes the norm statistics of trained weights: give dae.init (a folder "
                       "written by train-dae or export-dae) or set dae.freeze_norms to false")
    # a misspelt layer fails here, before the images are read
    features = perceptual_features(classifier, training.perceptual_layers) if training.perceptual_weight else None
    os.makedirs(out_dir, exist_ok=True)
    state_path = os.path.join(out_dir, STATE)
    identity = _training_identity(spec, training)
    ident_path = os.path.join(out_dir, "training.json")
    # only a folder holding a checkpoint holds a run: one that failed before its first epoch (a wrong
    # folder, no photos) does not keep the corrected command from starting there
    if os.path.isfile(ident_path) and os.path.isfile(state_path):
        with open(ident_path, encoding="utf-8") as fh:
            held = json.load(fh)["identity"]
        if held != identity:
            differ = sorted({f"{part}.{k}" for part in identity if isinstance(identity[part], dict)
                             for k in set(identity[part]) | set((held.get(part) or {}))
                             if identity[part].get(k) != (held.get(part) or {}).get(k)}
                            | {part for part in identity if not isinstance(identity[part], dict)
                               and identity[part] != held.get(part)})
            raise DgnError(f"{out_dir} holds a training run of another configuration (differs in "
                           f"{', '.join(differ) or 'its identity'}); use another --out or delete that folder")
    train_images, val_images, skipped, total = _dataset_images(training, data_dir, size)
    if record is None:
        record = {"autoencoder": asdict(spec), "training": asdict(training)}
    write_json(ident_path, {"identity": identity, "config": record})
    where = data_dir if isinstance(data_dir, str) else " + ".join(data_dir)
    print(f"{total} images in {where}: {len(train_images)} train, {len(val_images)} validation, "
          f"{skipped} unreadable skipped", flush=True)
    train_ds = ImageDataset(train_images, size, space, training.batch_size, augment=training.augment,
                            seed=spec.seed, steps_per_epoch=training.steps_per_epoch)
    val_ds = ImageDataset(val_images, size, space, training.batch_size, augment=False, shuffle=False) \
        if val_images else None
    model, encoder, decoder = build_autoencoder(spec, size, training.precision)
    resuming = os.path.isfile(state_path) and os.path.isfile(os.path.join(out_dir, CHECKPOINT))
    if training.init and not resuming:
        load_parts(training.init, encoder, decoder, space)
        print(f"starting from the trained weights in {training.init}", flush=True)
    if training.freeze_norms:
        # on the statistics dae.init's weights trained with (a resumed run: its checkpoint's, the same)
        stats_batches = []
        count = freeze_norms(encoder, decoder)
        print(f"{count} norms frozen on the statistics of {training.init}", flush=True)
    else:   # the norm statistics of the saved weights (PreciseBN, each epoch)
        stats_batches = norm_batches(train_images, size, space, training.batch_size, training.norm_photos, spec.seed)
    model.compile(optimizer=make_dae_optimizer(training),
                  loss=reconstruction_loss(features, training.perceptual_weight),
                  metrics=[pixel_mse] if features is not None else None)
    initial, wall_before = 0, 0.0
    if resuming:
        with open(state_path, encoding="utf-8") as fh:
            state = json.load(fh)
        initial, wall_before = int(state["epoch"]), float(state.get("wall_seconds", 0.0))
        model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(out_dir, CHECKPOINT))
        train_ds.epoch = initial
        print(f"resuming from the checkpoint of epoch {initial} in {out_dir}", flush=True)
    _keep_log_rows(os.path.join(out_dir, "log.csv"), initial)
    if initial >= epochs:
        print(f"already trained for {initial} epochs (>= {epochs}); nothing to do", flush=True)
        return out_dir

    # the runs that trained dae.init's weights come first in this run's history; a resumed run takes
    # them from its own saved decoder.json (the init folder may have been replaced since it began)
    own = os.path.join(out_dir, "decoder.weights.h5")
    if resuming and os.path.isfile(own):
        earlier = decoder_metadata(own).get("history", [])[:-1]
    elif training.init:
        earlier = decoder_metadata(os.path.join(training.init, "decoder.weights.h5")).get("history", [])
    else:
        earlier = []

    # what the history records: photos whose batch statistics the saved weights carry (0: frozen or the
    # moving averages; fewer than norm_photos when the training photos or whole batches run out)
    used = sum(len(b) for b in stats_batches)

    def saved(epoch, logs, wall):
        history = earlier + [{**run_record(training, epoch, wall, len(train_images)), "norm_photos": used}]
        # the checkpoint that training resumes from keeps the moving averages; frozen norms have no
        # layer here (norm_layers) and keep their statistics
        with kept_norm_statistics(encoder, decoder):
            precise_norm_statistics(encoder, decoder, stats_batches)
            save_parts(out_dir, encoder, decoder, _metadata(spec, space, size, epoch, logs, history, data_dir,
                                                            {"train": len(train_images), "validation": len(val_images)}))

    # the log's row before the checkpoint, whose checkpoint.json marks the epoch done
    callbacks = [keras.callbacks.CSVLogger(os.path.join(out_dir, "log.csv"), append=True),
                 EpochCheckpoint(out_dir, saved, wall_before)]
    if time_limit:
        callbacks.append(TimeLimit(time_limit))
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial,
              callbacks=callbacks, verbose=verbose)
    return out_dir


def _keep_log_rows(path, epochs):
    """log.csv with its header and the rows of the first ``epochs`` epochs only: a kill after an
    epoch's row but before its checkpoint leaves a row that the resumed run writes again."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines(keepends=True)
    keep = lines[:1 + epochs] if epochs else []
    if keep != lines:
        write_atomic(path, "".join(keep).encode("utf-8"))


def reconstruct(encoder, decoder, images_uint8, space, batch_size=8):
    """Clean reconstructions (no noise, moving statistics) of uint8 crops, as uint8."""
    out = []
    for i in range(0, len(images_uint8), batch_size):
        x = preprocessing.from_rgb(np.asarray(images_uint8[i:i + batch_size], dtype="float32"), space)
        y = decoder(encoder(x, training=False), training=False)
        out.append(preprocessing.to_uint8_batch(np.asarray(y), space))
    return np.concatenate(out)


def load_trained(spec, folder):
    """(encoder, decoder, metadata) of a trained autoencoder folder, built as ``spec`` (an
    :class:`AutoencoderSpec`: the encoder's layers, the decoder's seed_shape / blocks) says; the
    decoder's norms and last activation are those its decoder.json records, and so are the encoder's
    layers where it records them (``encoder_filters``, ``dense``: written since 2026-12-01;
    ``encoder_bottleneck`` since 2026-12-07, 0 where it is missing; ``encoder.kind`` "thumbnail": the
    encoder of the progressive recipe, :mod:`dgn.encoders`, since 2026-12-07)."""
    if not os.path.isfile(os.path.join(folder, "decoder.weights.h5")):
        if os.path.isfile(os.path.join(folder, STATE)) and os.path.isfile(os.path.join(folder, "training.json")):
            raise DgnError(f"{folder} holds a training run that has not written its decoder yet (a progressive run "
                           f"writes it from its last stage on); run `dgn train-dae` again to go on")
        raise DgnError(f"no trained autoencoder in {folder}; run `dgn train-dae` first or give --weights a "
                       f"folder written by `dgn train-dae` or `dgn export-dae`")
    meta = decoder_metadata(os.path.join(folder, "decoder.weights.h5"))
    size = meta["input_size"]
    seed_shape, blocks = spec.sized(size)
    recorded = recorded_encoder(meta)   # older files: the spec's filters and dense
    if recorded["kind"] == THUMBNAIL:
        encoder = build_thumbnail_encoder(size, seed_shape, recorded["cell"], recorded["mix"])
    else:
        filters = spec.encoder_filters if recorded["encoder_filters"] is None else recorded["encoder_filters"]
        encoder = build_encoder((size, size, 3), filters, recorded["dense"] or spec.dense, math.prod(seed_shape),
                                bottleneck=recorded["encoder_bottleneck"])
    decoder = build_decoder(seed_shape, blocks, head="decoder", norm=meta.get("norm", "image"),
                            output_activation=meta.get("output_activation", "relu"),
                            output_norm=meta.get("output_norm", "image"))
    load_parts(folder, encoder, decoder)
    return encoder, decoder, meta


def load_parts(folder, encoder, decoder, space=None):
    """Loads a trained folder's encoder.weights.h5 and decoder.weights.h5 into built models,
    refusing weights trained for another classifier's input space when ``space`` is given."""
    if space is not None:
        checked_metadata(os.path.join(folder, "decoder.weights.h5"), space)
    filters = [int(layer.filters) for layer in encoder.layers if layer.name.endswith("_conv1")]
    dense = next((int(layer.units) for layer in encoder.layers if isinstance(layer, keras.layers.Dense)), 0)
    bottleneck = next((int(layer.filters) for layer in encoder.layers if layer.name == "enc_bottleneck"), 0)
    load_weights_strict(encoder, os.path.join(folder, "encoder.weights.h5"), "encoder",
                        hint=f" (built with dae.encoder_filters={filters}, dae.encoder_bottleneck={bottleneck} and "
                             f"dae.dense={dense}: give the values it was trained with, e.g. "
                             f"--set 'dae.encoder_filters=[...]')")
    load_weights_strict(decoder, os.path.join(folder, "decoder.weights.h5"), "decoder")


def center_crops(training, data_dir, size, split="all", limit=None):
    """(uint8 centre crops (n, size, size, 3), unreadable paths) of ``data_dir``'s images: all, or
    train-dae's ``train`` / ``val`` split of them (``training``: the :class:`DaeTraining` whose
    ``wnids`` and ``validation`` split them); the first ``limit`` only if given."""
    from dgn.data import list_and_split, load_images
    from dgn.images import center_crop, eval_short_side

    paths, train, val = list_and_split(data_dir, training.wnids, training.validation)
    if split != "all":
        paths = val if split == "val" else train
    if limit:
        paths = paths[:limit]
    images, _, skipped = load_images(paths, eval_short_side(size))
    if not images:
        part = {"val": "validation split of", "train": "training split of"}.get(split, "")
        why = f"{len(skipped)} unreadable" if skipped else "none"
        raise DgnError(f"no readable photo in the {part + ' ' if part else ''}{data_dir} ({why}); give a folder "
                       f"of JPEG/PNG photos" + (" with more photos (the split holds out a share of each folder)"
                                                if part else ""))
    return np.stack([center_crop(img, size) for img in images]), skipped


def eval_dae(spec, training, data_dir, folder=None, limit=None, split="all"):
    """PSNR (dB, from the mean squared error over all 8-bit RGB pixels) of clean reconstructions
    of the images of ``data_dir`` (``split`` val / train: train-dae's held-out / training part),
    next to the PSNR of thumbnails of the same crops (:func:`thumbnail_baselines`): a code-sized one
    and a 16x16 one. The autoencoder of ``spec`` (:class:`AutoencoderSpec`) trained in ``folder``
    (default ``training.out``)."""
    folder = folder or training.out
    encoder, decoder, meta = load_trained(spec, folder)
    size, space = meta["input_size"], meta["preprocessing"]
    crops, skipped = center_crops(training, data_dir, size, split, limit)
    recon = reconstruct(encoder, decoder, crops, space)
    value, mse = psnr(crops, recon)
    code_size = int(encoder.output_shape[-1])
    summary = {"images": len(crops), "skipped": len(skipped), "psnr": round(value, 4), "mse": round(mse, 4),
               "code_size": code_size, "thumbnails": thumbnail_baselines(crops, code_size),
               "channel_correlation": {"photos": channel_correlation(crops),
                                       "reconstructions": channel_correlation(recon)}}
    return summary, crops, recon


def code_statistics(spec, training, folder, data_dir=None, limit=None, batch_size=16):
    """Per-unit mean and standard deviation of the encoder's codes of the training photos (center
    crops and their mirror images, no noise), written to ``folder/code_stats.npz`` for
    ``generator.code_stats``: the distribution a decoder-prior generator keeps its code in. The
    autoencoder of ``spec`` trained in ``folder``; the photos: ``data_dir`` (default ``training.data``),
    ``training``'s training split of them."""
    import io

    data_dir = data_dir or training.data
    if not data_dir:
        raise DgnError("no image folder: give --data DIR or set dae.data")
    encoder, _, meta = load_trained(spec, folder)
    size, space = meta["input_size"], meta["preprocessing"]
    crops, skipped = center_crops(training, data_dir, size, "train", limit)
    total = np.zeros(encoder.output_shape[-1], "float64")
    squares = np.zeros_like(total)
    count = 0
    for i in range(0, len(crops), batch_size):
        chunk = crops[i:i + batch_size].astype("float32")
        for batch in (chunk, chunk[:, :, ::-1]):
            codes = np.asarray(encoder(preprocessing.from_rgb(batch, space), training=False), "float64")
            total += codes.sum(axis=0)
            squares += np.square(codes).sum(axis=0)
            count += len(codes)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    std = np.maximum(std, 1e-6)
    buffer = io.BytesIO()
    np.savez(buffer, mean=mean.astype("float32"), std=std.astype("float32"), images=count)
    write_atomic(os.path.join(folder, CODE_STATS), buffer.getvalue())
    summary = {"codes": count, "photos": len(crops), "skipped": len(skipped), "units": int(mean.size),
               "mean_abs": round(float(np.abs(mean).mean()), 4), "std_mean": round(float(std.mean()), 4),
               "file": os.path.join(folder, CODE_STATS)}
    if len(crops) < MIN_CODE_STATS_PHOTOS:
        # a unit's standard deviation from n codes is off by about 1 / sqrt(2 (n - 1)) of itself; from
        # one photo and its mirror image it is near 0, and the generator could not leave that code
        summary["warning"] = (f"statistics of {len(crops)} photo(s) only: each unit's spread is a rough "
                              f"guess (use at least {MIN_CODE_STATS_PHOTOS}: more photos in --data or a "
                              f"larger --limit)")
        print(f"warning: {summary['warning']}", file=sys.stderr, flush=True)
    return summary
