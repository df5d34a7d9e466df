"""The normalization layers of the decoder: their statistics kept, measured precisely, or frozen.
"""


import contextlib

import keras
import numpy as np
from keras import ops

from dgn import preprocessing
from dgn.images import center_crop
from dgn.optvis.layers import GeneratorNorm


def norm_layers(encoder, decoder):
    """The norms whose moving statistics training updates: the encoder's ``BatchNormalization`` layers
    and the decoder's :class:`dgn.optvis.layers.GeneratorNorm` layers in ``"batch"`` mode."""
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
    count = min(int(photos), len(images))
    if count <= 0:
        return []
    pick = np.random.default_rng([seed, 7]).choice(len(images), count, replace=False)
    whole = count - count % batch_size or count   # whole batches, or all if fewer than one batch
    crops = np.stack([center_crop(images[i], crop) for i in pick[:whole]]).astype("float32")
    return [preprocessing.from_rgb(crops[i:i + batch_size], space).astype("float32")
            for i in range(0, whole, batch_size)]
