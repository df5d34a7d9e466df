"""What the layer-based methods (Grad-CAM, Grad-CAM++, Score-CAM) share: the layer (checked, or found),
and a layer's grid brought back to the input pixels it covers.
"""


import numpy as np

from dgn.attribution.inputs import resize_maps
from dgn.attribution.receptive_field import geometry
from dgn.attribution.settings import Method
from dgn.errors import DgnError


PLAIN = {"InputLayer", "Rescaling", "Normalization", "Resizing", "CenterCrop", "Cropping2D", "ZeroPadding2D",
         "Reshape", "Permute", "Activation", "Lambda", "Identity"}   # 4-D layers that only carry the input


def auto_layer(classifier):
    """The last layer (by path) with a 4-D output of more than one position: Grad-CAM's default.

    Raises:
        DgnError: no such layer, or only layers that carry the input (Rescaling, Resizing, ...) (one line)."""
    rows = [r for r in classifier.layers() if len(r["shape"]) == 3]
    spatial = [r for r in rows if (r["shape"][0] or 0) * (r["shape"][1] or 0) > 1]
    pick = (spatial or rows)
    if not pick:
        if not classifier.layers():
            raise DgnError(f"classifier {classifier.name} has no reachable layers (a subclassed model): Grad-CAM and "
                           f"Score-CAM need a convolutional layer; use saliency, smoothgrad, integrated_gradients "
                           f"or occlusion")
        raise DgnError(f"classifier {classifier.name} has no layer with a 4-D (batch, height, width, channels) "
                       f"output; use saliency, smoothgrad, integrated_gradients or occlusion")
    if spatial and all(r["type"] in PLAIN or r["type"].startswith("Random") for r in spatial):
        raise DgnError(f"classifier {classifier.name} has no convolutional layer with a spatial grid (only "
                       f"{', '.join(sorted({r['type'] for r in spatial}))}): give --layer (Python: layer=) or use "
                       f"saliency, smoothgrad, integrated_gradients or occlusion")
    last = pick[-1]
    tensor = classifier.layer_output(last["name"])
    same = [r["name"] for r in pick if classifier.layer_output(r["name"]) is tensor]
    return max(same, key=lambda n: n.count("/"))   # a nested model's output: name its inner layer


def check_layer(classifier, layer, method="gradcam"):
    """``layer`` (or the automatic one) after checking that it has spatial dimensions."""
    if layer is None:
        return auto_layer(classifier)
    shape = tuple(classifier.layer_output(layer).shape)
    if len(shape) != 4:
        raise DgnError(f"{method} needs a layer with a 4-D (batch, height, width, channels) output; {layer!r} has "
                       f"shape {shape} without spatial dimensions: give a convolutional layer, e.g. "
                       f"{auto_layer(classifier)!r} (the default)")
    return layer


def to_input(classifier, layer, maps, size, mode):
    """A layer's maps (N, h, w, K) at D's input ``size`` (H, W): resized over the whole input
    (:func:`dgn.attribution.inputs.resize_maps`), or, where D crops or resizes inside (``CenterCrop``,
    ``Cropping2D``, ``Resizing`` before the layer), placed on the input pixels the layer's grid covers
    (its receptive-field geometry, :func:`dgn.attribution.receptive_field.geometry`): cell (i, j)'s centre
    at input pixel ``start + (i, j) * jump``, interpolated bilinearly between centres, 0 outside the span
    ``start - jump / 2 .. start + (h - 1/2) * jump`` (after a crop: outside the cropped pixels, the model
    sees, the edge cells reaching the crop's border)."""
    geom = _crop_geometry(classifier, layer)
    if geom is None:
        return resize_maps(maps, size, mode)
    maps = np.asarray(maps, dtype="float64")
    for axis, new in ((1, size[0]), (2, size[1])):
        old, jump, start = maps.shape[axis], geom.jump[axis - 1], geom.start[axis - 1]
        where = (np.arange(new, dtype="float64") - start) / jump     # position in cells, centres at integers
        inside = (where >= -0.5) & (where <= old - 0.5)
        if geom.seen is not None:   # a crop: the edge cells reach the crop's border, the pixels D sees
            pixel = np.arange(new, dtype="float64")
            inside = (pixel > geom.seen[axis - 1][0]) & (pixel < geom.seen[axis - 1][1])
        where = np.clip(where, 0.0, old - 1.0)
        low = np.floor(where).astype(int)
        high = np.minimum(low + 1, old - 1)
        shape = [-1 if a == axis else 1 for a in range(maps.ndim)]
        frac = (where - low).reshape(shape)
        maps = (np.take(maps, low, axis=axis) * (1.0 - frac) + np.take(maps, high, axis=axis) * frac) \
            * inside.reshape(shape)
    return maps.astype("float32")


def _crop_geometry(classifier, layer):
    """The layer's geometry where a crop or resize inside D moved its grid off the whole input, else None."""
    cache = classifier.__dict__.setdefault("_crop_geometry", {})
    if layer not in cache:
        try:
            geom = geometry(classifier, layer)
        except DgnError:
            geom = None
        cache[layer] = geom if geom is not None and not geom.whole and geom.crops else None
    return cache[layer]


class LayerMethod(Method):
    """A method of a layer's activations (``layer`` setting; default :func:`auto_layer`)."""

    def prepare(self, classifier, settings, size):
        settings["layer"] = check_layer(classifier, settings["layer"], self.name)
        settings["layer_shape"] = [int(s) for s in classifier.layer_output(settings["layer"]).shape[1:]]
