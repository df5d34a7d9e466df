"""The autoencoder's optimizer: a cosine learning rate that continues across runs, and the losses.
"""


import math

import keras
from keras import ops

from dgn.errors import DgnError


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
