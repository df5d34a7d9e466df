"""D's input spaces: how RGB 0..255 pixels map to what the classifier reads, and back.

``caffe``: BGR, ImageNet mean subtracted (VGG-16). ``tf``: x / 127.5 - 1 (EfficientNet-Lite).
``unit``: x / 255. ``raw``: x. The generator works in D's input space; PNGs undo it.
Works on numpy arrays and on backend tensors (keras.ops).
"""

import numpy as np
from keras import ops

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
SPACES = ("caffe", "tf", "unit", "raw")


def _flip_channels(x):
    return x[..., ::-1] if isinstance(x, np.ndarray) else ops.flip(x, axis=-1)


def from_rgb(x, space):
    """RGB in 0..255 -> D's input space."""
    if space == "caffe":
        return _flip_channels(x) - np.asarray(CAFFE_MEAN_BGR, dtype="float32")
    if space == "tf":
        return x / 127.5 - 1.0
    if space == "unit":
        return x / 255.0
    if space == "raw":
        return x
    raise ValueError(f"unknown preprocessing {space!r}; valid: {', '.join(SPACES)}")


def to_rgb(x, space):
    """D's input space -> RGB float in 0..255 (not clipped)."""
    if space == "caffe":
        return _flip_channels(x + np.asarray(CAFFE_MEAN_BGR, dtype="float32"))
    if space == "tf":
        return (x + 1.0) * 127.5
    if space == "unit":
        return x * 255.0
    if space == "raw":
        return x
    raise ValueError(f"unknown preprocessing {space!r}; valid: {', '.join(SPACES)}")


def to_uint8(image, space, display="clip"):
    """One image in D's input space (H, W, 3) -> displayable RGB uint8.

    ``clip``: undo the preprocessing exactly and clip to 0..255 (the PNG is what D sees, up to
    clipping and rounding). ``authors``: the authors' display transform, applied per image:
    shift by the minimum, square root, rescale to 0..255.
    """
    if display != "authors":
        return to_uint8_batch(image, space)
    rgb = to_rgb(np.asarray(image, dtype="float64"), space)
    rgb = np.sqrt(rgb - rgb.min())
    top = rgb.max()
    rgb = rgb * (255.0 / top) if top > 0 else rgb
    return np.clip(np.rint(rgb), 0, 255).astype("uint8")


def to_uint8_batch(images, space):
    """A batch in D's input space -> RGB uint8, clipped (no display transform)."""
    rgb = to_rgb(np.asarray(images, dtype="float64"), space)
    return np.clip(np.rint(rgb), 0, 255).astype("uint8")


def valid_range(space):
    """(low, high) per channel of D's input space: the images of RGB 0 and 255."""
    low = from_rgb(np.zeros(3, dtype="float32"), space)
    high = from_rgb(np.full(3, 255.0, dtype="float32"), space)
    return np.minimum(low, high).tolist(), np.maximum(low, high).tolist()
