"""The models of the progressive recipe's stages: the decoder up to a stage's side, the new block faded in
over the previous stage's image upsampled (:class:`FadeIn`), a block trained on random windows of the
previous stage's features (:class:`Window`), and the stage's loss.
"""


import keras
from keras import ops

from dgn.autoencoder.encoders import ResizeTo
from dgn.optvis.generator import build_decoder


@keras.saving.register_keras_serializable(package="dgn")
class FadeIn(keras.layers.Layer):
    """``old + t * (new - old)`` for inputs [old, new] of the same shape; ``t`` (0..1) is a non-trainable
    weight that training moves from 0 to 1 (:class:`FadeSchedule`), so a new block enters without a jolt."""

    def build(self, input_shape):
        self.t = self.add_weight(name="t", shape=(), initializer="zeros", trainable=False, autocast=False)

    def call(self, inputs):
        old, new = inputs
        t = ops.cast(self.t, new.dtype)
        return old + t * (new - old)

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="dgn")
class Window(keras.layers.Layer):
    """A ``size`` x ``size`` window of (batch, H, W, C) at the offset (row, column) that the second input
    holds in its first row (batch, 2) int32, times ``scale``: the same window of every image of the batch."""

    def __init__(self, size, scale=1, **kwargs):
        super().__init__(**kwargs)
        self.size, self.scale = int(size), int(scale)

    def call(self, inputs):
        x, offset = inputs
        start = ops.cast(offset[0], "int32") * self.scale
        return ops.slice(x, ops.stack([0, start[0], start[1], 0]),
                         (ops.shape(x)[0], self.size, self.size, x.shape[3]))

    def compute_output_shape(self, input_shape):
        return (input_shape[0][0], self.size, self.size, input_shape[0][3])

    def get_config(self):
        return {**super().get_config(), "size": self.size, "scale": self.scale}


def decoder_layers_until(decoder, side):
    """The decoder's layers (in call order, from ``reshape``) whose output is at most ``side`` px: the
    blocks of a stage. The whole decoder's layers for its own side."""
    layers = []
    for layer in decoder.layers[1:]:
        shape = layer.output.shape
        if len(shape) == 4 and shape[1] > side:
            break
        layers.append(layer)
    return layers


def stage_sides(decoder):
    """Sides (px) of the decoder's stages: after each block's last norm, the head's image last."""
    sides = [layer.output.shape[1] for layer in decoder.layers if layer.name.endswith("_bn2")
             and layer.name.startswith("block")]
    return sides + [decoder.output.shape[1]]


def build_stage(encoder, decoder, side, previous=None, to_rgb=None, window=0, fade=None):
    """The model trained at stage ``side``: D-space photo (batch, N, N, 3) -> encoder -> the
    decoder's layers up to ``side`` -> (a temporary 1x1 conv to RGB unless ``side`` is the decoder's
    own) -> image (batch, side, side, 3); with ``previous`` (the side of the stage before), the new
    block fades in over the previous stage's output, upsampled (:class:`FadeIn`).

    ``window`` > 0 (with ``previous``): the new block runs on a ``window`` x ``window`` window of the
    previous stage's features only, at the offset (row, column) of a second input (batch, 2), and the
    model makes the image of that window, (batch, 2 * window - k + 1, ...) for the block's first kernel
    k, at 2 * offset in the stage's image (:func:`window_output`): the patch training of super-resolution
    networks, which the decoder, convolutional after its first block, allows. Its borders differ from
    the whole image's by what the zero padding of the block's 'same' convolutions sees (the loss leaves
    them out, :func:`shrunk_mse`).

    ``to_rgb``: dict of the temporary RGB convolutions by side, shared between stages (filled here);
    ``fade``: the :class:`FadeIn` layer to use (one shared with another model of the same stage: the
    window model and the whole one must fade together). Returns (model, fade layer or None)."""
    to_rgb = {} if to_rgb is None else to_rgb
    size = encoder.input.shape[1]
    photo = keras.Input((size, size, 3), name="photo")
    offset = keras.Input((2,), dtype="int32", name="offset") if window else None
    x = encoder(photo)
    outputs = {}
    windowed = False
    for layer in decoder_layers_until(decoder, side):
        if window and not windowed and len(x.shape) == 4 and x.shape[1] == previous \
                and layer.output.shape[1] > previous:   # the new block starts here: on the window only
            x, windowed = Window(window, name=f"window_{previous}")([x, offset]), True
        x = layer(x)
        if len(x.shape) == 4 and not windowed:
            outputs[x.shape[1]] = x      # each side's last tensor: the block's output
    final = side == decoder.output.shape[1]

    def rgb(at, tensor):
        if at == decoder.output.shape[1]:
            return tensor
        if at not in to_rgb:
            to_rgb[at] = keras.layers.Conv2D(3, 1, name=f"to_rgb_{at}")
        return to_rgb[at](tensor)

    image = x if final else rgb(side, x)
    if previous is not None:
        old = ResizeTo(side, name=f"up_{previous}_{side}")(rgb(previous, outputs[previous]))
        if window:
            old = Window(image.shape[1], scale=2, name=f"window_{side}")([old, offset])
        fade = fade or FadeIn(name=f"fade_{side}")
        image = fade([old, image])
    image = keras.layers.Activation("linear", dtype="float32", name="stage_image")(image)
    inputs = [photo, offset] if window else photo
    return keras.Model(inputs, image, name=f"stage_{side}" + (f"_window_{window}" if window else "")), fade


def window_output(window, kernel):
    """Side (px) of the image a window of ``window`` features makes through a block whose first
    (upsampling, valid) convolution has ``kernel`` taps."""
    return 2 * window - kernel + 1


def shrunk_mse(side, margin=0):
    """Loss of stage ``side``: MSE between the stage's image and the photo shrunk to side x side
    (antialiased bilinear), per image, in D's input space; ``margin`` px at each border left out (a
    window's, :func:`build_stage`)."""

    def loss(y_true, y_pred):
        target = ops.image.resize(y_true, (side, side), interpolation="bilinear", antialias=True) \
            if y_true.shape[1] != side else y_true
        diff = ops.cast(target, "float32") - ops.cast(y_pred, "float32")
        if margin:
            diff = diff[:, margin:-margin, margin:-margin, :]
        return ops.mean(ops.square(diff), axis=(1, 2, 3))

    loss.__name__ = f"mse_{side}"
    return loss


def build_paper_decoder(seed_shape, blocks, output_activation="linear", output_norm="moving"):
    """The decoder that ships: the paper's G with head 8b, hidden norms on batch statistics."""
    return build_decoder(seed_shape, blocks, head="decoder", norm="batch", output_activation=output_activation,
                         output_norm=output_norm)
