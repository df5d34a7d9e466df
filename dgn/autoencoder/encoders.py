"""The thumbnail encoder: the encoder that trains the paper's decoder on a CPU (issue 33).

The paper's encoder (five conv blocks, two dense layers: :func:`dgn.autoencoder.model.build_encoder`) reads
the 224 px photo and costs as much as the decoder to train. The encoder is only the means of training
the decoder, so this one reads a small copy of the photo and starts as its thumbnail: shrink to
2 * cell * seed-side px (60 for the paper's 5 x 5 seed), a learned 2x2 convolution with stride 2 to
30 x 30 x 4 (initialized as the 2x2 box mean of R, G, B, a 30 x 30 thumbnail, and a detail channel), a
space-to-depth rearrangement onto the code's 5 x 5 grid (144 numbers a cell) and a learned 1x1
convolution to the code's 128 channels (``mix="local"``, about 18,600 weights), or the two as one dense
layer from the whole 30 x 30 x 4 map to the code (``mix="global"``, 11.5 M weights, the progressive
recipe's default: the encoder can then move what it codes to where the paper's G draws each cell),
initialized to copy the thumbnail's 108 numbers a cell with bias 1, so that the paper's f = alpha * 1
with alpha >= 0 starts at the mid-grey image and reaches every photo's code. All linear; the code can
hold 3,200 numbers' worth of the 60 px copy, where the 30 x 30 thumbnail alone would give it 2,700
(22.2 dB at 224 on the held-out dogs, below the code-sized thumbnail's 22.6).
"""

import keras
import numpy as np
from keras import ops

THUMBNAIL = "thumbnail"


@keras.saving.register_keras_serializable(package="dgn")
class SpaceToDepth(keras.layers.Layer):
    """(batch, H, W, C) -> (batch, H / b, W / b, b * b * C): each b x b block of pixels becomes the
    channels of one cell (row-major within the block, then the channels)."""

    def __init__(self, block, **kwargs):
        super().__init__(**kwargs)
        self.block = int(block)

    def call(self, x):
        b = self.block
        h, w, c = x.shape[1], x.shape[2], x.shape[3]
        x = ops.reshape(x, (-1, h // b, b, w // b, b, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, h // b, w // b, b * b * c))

    def compute_output_shape(self, input_shape):
        b = self.block
        n, h, w, c = input_shape
        return (n, None if h is None else h // b, None if w is None else w // b, b * b * c)

    def get_config(self):
        return {**super().get_config(), "block": self.block}


@keras.saving.register_keras_serializable(package="dgn")
class ResizeTo(keras.layers.Layer):
    """Bilinear resize of (batch, H, W, C) images to ``side`` x ``side`` (antialiased when shrinking)."""

    def __init__(self, side, **kwargs):
        super().__init__(**kwargs)
        self.side = int(side)

    def call(self, x):
        return ops.image.resize(x, (self.side, self.side), interpolation="bilinear",
                                antialias=bool(x.shape[1] and x.shape[1] > self.side))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.side, self.side, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "side": self.side}


def thumbnail_encoder_input(seed_shape, cell=6):
    """Side (pixels) of the small copy the thumbnail encoder reads: 2 * cell * the seed's side (60 for
    the paper's 5 x 5 seed and cells of 6 x 6 thumbnail pixels)."""
    return 2 * cell * int(seed_shape[0])


def build_thumbnail_encoder(input_size, seed_shape, cell=6, mix="local", name="encoder"):
    """The encoder that trains the decoder here: input (batch, input_size, input_size, 3) in D's input
    space; output (batch, prod(seed_shape)), the code in the decoder's reshape order (cell row, cell
    column, channel).

    Layers, all linear: shrink to 2 * cell * seed side px (``ResizeTo``, antialiased bilinear); Conv 2x2
    stride 2 to ``q = ceil(seed channels / cell**2)`` channels (4 for the paper's 128 and cell 6), the
    first three initialized as the 2x2 box mean of R, G, B (a cell * seed-side thumbnail) and the others
    as the 2x2 checkerboard detail of the grey level; space-to-depth by ``cell`` (q * cell**2 numbers a
    code cell); Conv 1x1 to the seed's channels, initialized to copy the thumbnail's 3 * cell**2 numbers
    into the first channels with bias 1 and to small random mixtures of all of them into the rest. So the
    code can hold as many numbers of the small copy as it has (3,200 of the 60 px copy's 10,800), and
    starts as its thumbnail.

    ``mix="global"``: the space-to-depth and the 1x1 convolution are one dense layer from the whole
    30 x 30 x q map to the code (11.5 M weights for the paper's code), initialized to the same map, so
    that the encoder can move what it codes to where in the code the decoder draws it: the paper's G
    draws code cell c around pixel 64 c of its 224 px image (its valid convolutions crop 96 of the
    320 px its 5 x 5 cells span), not at 44.8 c as the thumbnail lays the photo out.

    Raises:
        ValueError: the seed is not square, a cell's thumbnail does not fit its channels, or ``mix`` is
            not "local" or "global"."""
    side, channels = int(seed_shape[0]), int(seed_shape[2])
    if int(seed_shape[1]) != side or 3 * cell * cell > channels:
        raise ValueError(f"the thumbnail encoder needs a square seed with at least {3 * cell * cell} channels, "
                         f"not {list(seed_shape)}")
    small = 2 * cell * side
    q = -(-channels // (cell * cell))
    image = keras.Input((input_size, input_size, 3), name="image")
    x = ResizeTo(small, name="enc_shrink")(image)
    box = np.zeros((2, 2, 3, q), "float32")
    for c in range(3):
        box[:, :, c, c] = 0.25
    box[:, :, :, 3:] = (np.array([[1, -1], [-1, 1]], "float32") / 12.0)[:, :, None, None]
    x = keras.layers.Conv2D(q, 2, strides=2, name="enc_box", kernel_initializer=keras.initializers.Constant(box))(x)
    k = q * cell * cell
    rng = np.random.default_rng(0)
    copy = (rng.standard_normal((k, channels)) * 0.01).astype("float32")
    thumbnail = [i for i in range(k) if i % q < 3]       # (row, column, channel) order: the RGB entries
    copy[:, :len(thumbnail)] = 0.0
    copy[thumbnail, np.arange(len(thumbnail))] = 1.0
    if mix == "local":
        x = SpaceToDepth(cell, name="enc_cells")(x)
        x = keras.layers.Conv2D(channels, 1, name="enc_code", bias_initializer="ones",
                                kernel_initializer=keras.initializers.Constant(copy[None, None]))(x)
        features = keras.layers.Flatten(name="flatten")(x)
    elif mix == "global":
        x = keras.layers.Flatten(name="flatten")(x)
        features = keras.layers.Dense(side * side * channels, name="enc_code", bias_initializer="ones",
                                      kernel_initializer=keras.initializers.Constant(
                                          _global_copy(copy, side, cell, q, channels)))(x)
    else:
        raise ValueError(f"mix must be local or global, not {mix!r}")
    return keras.Model(image, features, name=name)


def _global_copy(copy, side, cell, q, channels):
    """The (side * cell)**2 * q x side**2 * channels matrix of space-to-depth by ``cell`` followed by the
    1x1 convolution ``copy`` (k x channels), in Flatten's (row, column, channel) order on both sides."""
    width = side * cell
    matrix = np.zeros((width * width * q, side * side * channels), "float32")
    for i in range(side):
        for j in range(side):
            for r in range(cell):
                for c in range(cell):
                    for color in range(q):
                        src = ((i * cell + r) * width + (j * cell + c)) * q + color
                        k = (r * cell + c) * q + color
                        dst = (i * side + j) * channels
                        matrix[src, dst:dst + channels] = copy[k]
    return matrix
