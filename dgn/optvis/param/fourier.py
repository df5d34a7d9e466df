"""lucid's Fourier image (Olah et al. 2017): a 1/f-scaled, colour-decorrelated spectrum.
"""


from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from dgn import preprocessing
from dgn.optvis.param.base import Built, Parameterization, finish_image, fixed_input_size, register


@register
@dataclass
class Fourier(Parameterization):
    """lucid's Fourier image (:class:`dgn.optvis.param.fourier.FourierImage`): a spectrum started at
    N(0, ``init_stddev``), scaled by 1/f^``decay_power``, colour-decorrelated (``decorrelate``),
    squashed by a sigmoid into D's valid range."""

    kind = "fourier"
    rows_independent = True
    init_stddev: float = 0.01
    decay_power: float = 1.0
    decorrelate: bool = True

    def build(self, classifier, rows=1, seed=0):
        space = classifier.preprocessing
        param = preprocessing.parameter_space(space)
        height, width = fixed_input_size(classifier)
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((1,), name="f0")
        image = FourierImage(rows, height, width, param, self.init_stddev, self.decay_power, self.decorrelate,
                             seed=seed, channels=classifier.channels, name="fourier")(inputs)
        model = finish_image(image, inputs, self.kind, space, (height, width), height, width)
        return Built(model, np.ones((rows, 1), dtype="float32"))


# lucid.optvis.param.color: square root of the ImageNet colour covariance (from its SVD).
COLOR_CORRELATION_SVD_SQRT = np.asarray([[0.26, 0.09, 0.02],
                                         [0.27, 0.00, -0.05],
                                         [0.27, -0.09, 0.03]], dtype="float32")


COLOR_CORRELATION = COLOR_CORRELATION_SVD_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0))


def rfft2d_freqs(height, width):
    """Frequency magnitude of each coefficient of a real 2D spectrum (height, width // 2 + 1)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.fftfreq(width)[: width // 2 + 1]
    return np.sqrt(fx * fx + fy * fy)


def inverse_rfft2_bases(height, width):
    """Real matrices for the inverse real 2D DFT as two matmuls (backend independent, differentiable):
    image = (Cy A - Sy B) Cx - (Cy B + Sy A) Sx for a spectrum A + iB of shape (height, width//2+1);
    equals ``np.fft.irfft2(A + iB, s=(height, width))`` (imaginary parts of the DC and Nyquist
    columns ignored, as irfft does)."""
    ky = np.arange(height)
    ay = 2.0 * np.pi * np.outer(ky, ky) / height          # (y, ky), symmetric
    kx = np.arange(width // 2 + 1)
    ax = 2.0 * np.pi * np.outer(kx, np.arange(width)) / width   # (kx, x)
    weight = np.full(len(kx), 2.0)
    weight[0] = 1.0
    if width % 2 == 0:
        weight[-1] = 1.0
    norm = 1.0 / (height * width)
    cx = weight[:, None] * np.cos(ax) * norm
    sx = weight[:, None] * np.sin(ax) * norm
    return [m.astype("float32") for m in (np.cos(ay), np.sin(ay), cx, sx)]


def inverse_rfft2(real, imag, bases):
    """The inverse real 2D DFT of spectra real + i imag (rows, C, H, W//2+1) with
    :func:`inverse_rfft2_bases` ``bases``, as images (rows, H, W, C)."""
    cy, sy, cx, sx = (ops.convert_to_tensor(m) for m in bases)
    pr = ops.einsum("yk,bckx->bcyx", cy, real) - ops.einsum("yk,bckx->bcyx", sy, imag)
    pi = ops.einsum("yk,bckx->bcyx", cy, imag) + ops.einsum("yk,bckx->bcyx", sy, real)
    return ops.transpose(ops.matmul(pr, cx) - ops.matmul(pi, sx), (0, 2, 3, 1))


@keras.saving.register_keras_serializable(package="dgn")
class FourierImage(keras.layers.Layer):
    """lucid's ``fft_image`` + ``to_valid_rgb(decorrelate=True, sigmoid=True)``, in D's input space.

    The variable is a real and an imaginary spectrum (2, rows, 3, H, W//2+1), started at
    N(0, init_stddev) (one draw, the same for every row); it is scaled by ``sqrt(H W) / max(f, 1/max(H, W))^decay_power``, inverse-DFT'd,
    divided by 4 (lucid's constant), colour-decorrelated, squashed by a sigmoid to 0..1 and mapped
    from RGB 0..255 into D's input space."""

    def __init__(self, rows, height, width, space="tf", init_stddev=0.01, decay_power=1.0, decorrelate=True,
                 seed=0, channels=3, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.height, self.width, self.channels = int(rows), int(height), int(width), int(channels)
        self.space, self.init_stddev = space, float(init_stddev)
        self.decay_power, self.decorrelate, self.seed = float(decay_power), bool(decorrelate), int(seed)
        freqs = rfft2d_freqs(self.height, self.width)
        scale = 1.0 / np.maximum(freqs, 1.0 / max(self.height, self.width)) ** self.decay_power
        self._scale = (scale * np.sqrt(self.height * self.width)).astype("float32")
        self._bases = inverse_rfft2_bases(self.height, self.width)

    def build(self, input_shape):
        shape = (2, self.rows, self.channels, self.height, self.width // 2 + 1)
        one = np.random.default_rng(self.seed).normal(0.0, self.init_stddev, (2, 1) + shape[2:]).astype("float32")
        value = np.repeat(one, self.rows, axis=1)   # every row starts where a run of one image starts
        self.spectrum = self.add_weight(
            name="spectrum", shape=shape, trainable=True,
            initializer=lambda shape, dtype=None: ops.convert_to_tensor(value, dtype=dtype))

    def call(self, inputs):
        spec = ops.convert_to_tensor(self.spectrum) * ops.convert_to_tensor(self._scale)
        image = inverse_rfft2(spec[0], spec[1], self._bases) / 4.0
        if self.decorrelate and self.channels == 3:
            image = ops.matmul(image, ops.convert_to_tensor(COLOR_CORRELATION.T))
        rgb = ops.sigmoid(image) * 255.0
        return preprocessing.from_rgb(rgb, self.space)

    def compute_output_shape(self, input_shape):
        return (self.rows, self.height, self.width, self.channels)

    def get_config(self):
        return {**super().get_config(), "rows": self.rows, "height": self.height, "width": self.width,
                "channels": self.channels, "space": self.space, "init_stddev": self.init_stddev, "decay_power": self.decay_power,
                "decorrelate": self.decorrelate, "seed": self.seed}
