"""D's input spaces: how RGB 0..255 pixels map to what the classifier reads, and back.

| value | D reads | range | for |
|---|---|---|---|
| ``caffe`` | BGR, ImageNet mean subtracted | about -124..152 | VGG-16 (Keras applications) |
| ``tf`` | x / 127.5 - 1 | -1..1 | EfficientNet-Lite, MobileNet, Inception |
| ``unit`` | x / 255 | 0..1 | models trained on images divided by 255 |
| ``raw`` | x | 0..255 | models with Rescaling / Normalization inside |

Images have 3 (RGB) or 1 (grayscale) channels; ``caffe`` needs 3. Image parameterizations work in
:func:`parameter_space` and :func:`to_input_space` maps that into D's space, so a model reading 0..1
and the same model with ``Rescaling(1/255)`` inside reading 0..255 get the same optimization.
Works on numpy arrays and on backend tensors (keras.ops).
"""

import numpy as np
from keras import ops

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
SPACES = ("caffe", "tf", "unit", "raw")


def _flip_channels(x):
    if x.shape[-1] == 1:
        return x
    return x[..., ::-1] if isinstance(x, np.ndarray) else ops.flip(x, axis=-1)


def _mean(x):
    mean = np.asarray(CAFFE_MEAN_BGR, dtype="float32")
    return mean if x.shape[-1] == 3 else mean.mean(keepdims=True)


def from_rgb(x, space):
    """RGB in 0..255 -> D's input space."""
    if space == "caffe":
        return _flip_channels(x) - _mean(x)
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
        return _flip_channels(x + _mean(x))
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


def valid_range(space, channels=3):
    """(low, high) per channel of D's input space: the images of pixel values 0 and 255."""
    low = from_rgb(np.zeros(channels, dtype="float32"), space)
    high = from_rgb(np.full(channels, 255.0, dtype="float32"), space)
    return np.minimum(low, high).tolist(), np.maximum(low, high).tolist()


def to_channels(pixels, channels):
    """Pixel values (..., 3 or 1), float32, with ``channels`` channels: RGB to grayscale by ITU-R 601 luma
    (as Pillow's convert("L")), grayscale to RGB by repetition; unchanged when they already match."""
    x = np.asarray(pixels, dtype="float32")
    if x.shape[-1] == 3 and channels == 1:
        return x @ np.asarray([[0.299], [0.587], [0.114]], dtype="float32")
    if x.shape[-1] == 1 and channels == 3:
        return np.repeat(x, 3, axis=-1)
    return x


def parameter_space(space):
    """The space image parameterizations (G, pixels, Fourier, DeepDream's steps) work in for D's ``space``:
    ``tf`` (-1..1) for ``unit`` and ``raw``, so their behaviour does not depend on the range D reads;
    ``tf`` and ``caffe`` themselves (the paper's G writes VGG-16's caffe space directly)."""
    return "tf" if space in ("unit", "raw") else space


def to_input_space(x, space):
    """An image in :func:`parameter_space` -> D's input space (an affine map; identity for tf and caffe)."""
    param = parameter_space(space)
    return x if param == space else from_rgb(to_rgb(x, param), space)
