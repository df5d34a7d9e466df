"""Receptive fields: which pixels of D's input a unit of a layer sees, from D's layer geometry.

Walking D's graph from a layer back to the input, each layer maps the geometry of its input tensor
(``jump``: input pixels between neighbouring positions; ``size``: the receptive field's side in input
pixels; ``start``: the input pixel coordinate of position 0's receptive-field centre, pixel centres at
integers) to its output's (Araujo et al. 2019, "Computing Receptive Fields of Convolutional Neural
Networks", eqs. 1-2 and 8-9)::

    k' = dilation * (kernel - 1) + 1             (effective kernel)
    jump_out = jump_in * stride
    size_out = size_in + (k' - 1) * jump_in
    start_out = start_in + ((k' - 1) / 2 - pad_before) * jump_in

with ``pad_before`` 0 for ``valid`` padding and, for ``same``, TensorFlow's
``max((ceil(n / stride) - 1) * stride + k' - n, 0) // 2`` for an input of n positions. Zero padding
and cropping shift ``start``; element-wise layers (batch norm, activations, dropout, rescaling) keep
the geometry; where branches merge (add, multiply, concatenate) the field is the union of the
branches' fields; a branch without spatial positions (squeeze-and-excitation's global pooling) is
global context and leaves the spatial branch's geometry. A layer after global pooling or a flatten
sees the whole image. ``CenterCrop``, ``Cropping2D`` and ``Resizing`` (bilinear, half-pixel centres)
move the grid: ``Geometry.crops`` says so (Grad-CAM and Score-CAM then place a layer's grid on the pixels
it covers rather than stretch it over the whole input).
"""

import math
import sys
from dataclasses import dataclass

import keras

from dgn.errors import DgnError


ELEMENTWISE = ("BatchNormalization", "LayerNormalization", "GroupNormalization", "Activation", "ReLU",
               "LeakyReLU", "PReLU", "ELU", "Softmax", "Dropout", "SpatialDropout2D", "GaussianNoise",
               "GaussianDropout", "Rescaling", "Normalization", "Identity", "InputSpace", "Lambda")
MERGE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate")


@dataclass(frozen=True)
class Geometry:
    """A tensor's positions in D's input pixels, per axis (y, x). ``size`` None: the whole image."""

    jump: tuple = (1.0, 1.0)
    size: tuple = (1.0, 1.0)
    start: tuple = (0.0, 0.0)
    whole: bool = False
    crops: bool = False   # a crop or resize inside D moved the grid off the whole input (CenterCrop, Resizing)
    seen: tuple = None    # per axis (low, high): a crop keeps the input pixels p with low < p < high; None: all

    def box(self, y, x, height, width):
        """(top, left, bottom, right) of position (y, x)'s receptive field in a height x width input,
        integer pixels, bottom and right exclusive, clipped to the image."""
        if self.whole:
            return 0, 0, int(height), int(width)
        out = []
        for pos, jump, size, start, limit in zip((y, x), self.jump, self.size, self.start, (height, width)):
            centre = start + pos * jump
            low = int(math.floor(centre - (size - 1) / 2.0 + 1e-9))
            out.append((max(0, low), min(int(limit), low + int(round(size)))))
        (top, bottom), (left, right) = out
        return top, left, bottom, right


WHOLE = Geometry(whole=True)


def _pair(value):
    if isinstance(value, int):
        return value, value
    return tuple(int(v) for v in value)


def _same_pad(n, stride, k_eff):
    out = math.ceil(n / stride)
    return max((out - 1) * stride + k_eff - n, 0) // 2


def _windowed(layer, geometry, in_shape):
    kernel = _pair(getattr(layer, "kernel_size", None) or getattr(layer, "pool_size"))
    strides = _pair(layer.strides if layer.strides is not None else kernel)
    dilation = _pair(getattr(layer, "dilation_rate", 1) or 1)
    padding = str(getattr(layer, "padding", "valid")).lower()
    jump, size, start = [], [], []
    for axis in range(2):
        k_eff = dilation[axis] * (kernel[axis] - 1) + 1
        n = in_shape[1 + axis]
        pad = _same_pad(int(n), strides[axis], k_eff) if padding == "same" else 0
        j = geometry.jump[axis]
        jump.append(j * strides[axis])
        size.append(geometry.size[axis] + (k_eff - 1) * j)
        start.append(geometry.start[axis] + ((k_eff - 1) / 2.0 - pad) * j)
    return Geometry(tuple(jump), tuple(size), tuple(start), crops=geometry.crops, seen=geometry.seen)


def _union(geometries):
    spatial = [g for g in geometries if g is not None and not g.whole]
    if not spatial:
        return WHOLE if any(g is not None and g.whole for g in geometries) else None
    jump = spatial[0].jump
    size, start = [], []
    for axis in range(2):
        lows = [g.start[axis] - (g.size[axis] - 1) / 2.0 for g in spatial]
        highs = [g.start[axis] + (g.size[axis] - 1) / 2.0 for g in spatial]
        size.append(max(highs) - min(lows) + 1)
        start.append((max(highs) + min(lows)) / 2.0)
    seen = None if any(g.seen is None for g in spatial) else tuple(
        (min(g.seen[a][0] for g in spatial), max(g.seen[a][1] for g in spatial)) for a in range(2))
    return Geometry(jump, tuple(size), tuple(start), crops=any(g.crops for g in spatial), seen=seen)


def _resized(geometry, in_shape, out_size):
    """A bilinear resize (half-pixel centres) of n = ``in_shape[1:3]`` positions to m = ``out_size``: output
    position i reads input position ``(i + 1/2) * n / m - 1/2``."""
    jump, size, start = [], [], []
    for axis in range(2):
        scale = int(in_shape[1 + axis]) / float(out_size[axis])
        j = geometry.jump[axis]
        jump.append(j * scale)
        size.append(geometry.size[axis] + max(scale, 1.0) * j)
        start.append(geometry.start[axis] + (0.5 * scale - 0.5) * j)
    return Geometry(tuple(jump), tuple(size), tuple(start), crops=True, seen=geometry.seen)


def _cropped(geometry, first, kept):
    """The geometry after keeping ``kept`` positions from position ``first``, per axis: the grid moves, and
    the input pixels the model sees end half a position beyond the kept ones (``seen``)."""
    start, seen = [], []
    for axis in range(2):
        j, s = geometry.jump[axis], geometry.start[axis]
        start.append(s + first[axis] * j)
        low, high = s + (first[axis] - 0.5) * j, s + (first[axis] + kept[axis] - 0.5) * j
        if geometry.seen is not None:
            low, high = max(low, geometry.seen[axis][0]), min(high, geometry.seen[axis][1])
        seen.append((low, high))
    return Geometry(geometry.jump, geometry.size, tuple(start), crops=True, seen=tuple(seen))


def _step(layer, inputs, tensor_of):
    """The output geometry of ``layer`` called on ``inputs`` (tensors), given their geometries."""
    name = type(layer).__name__
    tensors = [t for t in keras.tree.flatten(list(inputs)) if hasattr(t, "shape")]
    geometries = [tensor_of(t) for t in tensors]
    spatial_in = [(t, g) for t, g in zip(tensors, geometries) if len(t.shape) == 4]
    if name in MERGE:
        return _union(geometries)
    if not spatial_in:
        return WHOLE
    tensor, geometry = spatial_in[0]
    if geometry.whole:
        return WHOLE
    if hasattr(layer, "kernel_size") and hasattr(layer, "strides") and "Transpose" not in name:
        return _windowed(layer, geometry, tensor.shape)
    if hasattr(layer, "pool_size") and hasattr(layer, "strides"):
        return _windowed(layer, geometry, tensor.shape)
    if name.startswith("Global") or name == "Flatten":
        return WHOLE
    if name == "ZeroPadding2D":
        (top, _), (left, _) = layer.padding
        return Geometry(geometry.jump, geometry.size, (geometry.start[0] - top * geometry.jump[0],
                                                       geometry.start[1] - left * geometry.jump[1]),
                        crops=geometry.crops, seen=geometry.seen)
    if name == "Cropping2D":
        (top, bottom), (left, right) = layer.cropping
        n = (int(tensor.shape[1]), int(tensor.shape[2]))
        return _cropped(geometry, (top, left), (n[0] - top - bottom, n[1] - left - right))
    if name == "CenterCrop":
        n = (int(tensor.shape[1]), int(tensor.shape[2]))
        m = (int(layer.height), int(layer.width))
        if m[0] <= n[0] and m[1] <= n[1]:   # Keras crops (n - m) // 2 from the top and left
            return _cropped(geometry, ((n[0] - m[0]) // 2, (n[1] - m[1]) // 2), m)
        return _resized(geometry, tensor.shape, m)
    if name == "Resizing" and not getattr(layer, "crop_to_aspect_ratio", False) \
            and not getattr(layer, "pad_to_aspect_ratio", False):
        return _resized(geometry, tensor.shape, (int(layer.height), int(layer.width)))
    if name == "UpSampling2D":
        sy, sx = _pair(layer.size)
        return Geometry((geometry.jump[0] / sy, geometry.jump[1] / sx), geometry.size, geometry.start,
                        crops=geometry.crops, seen=geometry.seen)
    if name in ELEMENTWISE or name == "Dense" or name in ("PreActivation",):
        return geometry
    raise DgnError(f"the receptive field through layer {layer.name} ({name}) is not known to dgn; "
                   f"examples and patches work for convolution, pooling, padding, merge and element-wise layers")


def geometry(classifier, layer):
    """The :class:`Geometry` of layer ``layer`` (a path, as ``dgn info`` lists) of a classifier.

    Raises:
        DgnError: an unknown layer, or one whose geometry dgn cannot follow (one line)."""
    analysis = classifier.analysis
    target = classifier.layer_output(layer)
    producers = analysis.producers
    memo = {id(analysis.inputs): Geometry()}

    def tensor_of(tensor):
        key = id(tensor)
        if key in memo:
            return memo[key]
        produced = producers.get(key)
        if produced is None:
            # a tensor dgn made (the logits before a softmax) or an unrecorded one: global if not spatial
            if len(tensor.shape) != 4:
                return WHOLE
            history = getattr(tensor, "_keras_history", None)
            if history is None:
                raise DgnError(f"cannot follow layer {layer!r} back to the input of {classifier.name}")
            op = history.operation
            node = op._inbound_nodes[history.node_index]
            memo[key] = _step(op, node.input_tensors, tensor_of)
            return memo[key]
        layer_obj, args = produced
        memo[key] = _step(layer_obj, args, tensor_of)
        return memo[key]

    if len(target.shape) != 4:
        return WHOLE
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 20000))
    try:
        return tensor_of(target)
    finally:
        sys.setrecursionlimit(limit)
