"""What an attribution map is of: the images brought to D's input space, and the target of each.
"""


import json
from dataclasses import dataclass

import numpy as np
from keras import ops

from dgn.classify import fit_mode
from dgn.errors import DgnError
from dgn.images import fit_to_input
from dgn.optvis.objectives import ClassObjective, Objective, parse_target


# ----------------------------------------------------------------------------------------------- targets

@dataclass
class Target:
    """What the maps of a group of images explain: per-row class weights (``objective`` None; the value is
    ``sum_c w_c act(z_c)`` with ``activation`` logit, logsoftmax or relu) or one objective for every row."""

    objective: object = None
    activation: str = "logit"
    weights: np.ndarray = None     # (rows, classes) for class targets
    top1: bool = False             # each row's own top-1 class, found in the same call of D (weights None)

    @property
    def layers(self):
        return tuple(self.objective.layers) if self.objective is not None else ()

    def score_kind(self, score):
        """How the perturbation methods score a row: probability (class targets with score auto or
        probability) or value."""
        if score == "probability" and self.objective is not None:
            raise DgnError("score probability is for class targets; this target is a "
                           f"{self.objective.describe().get('kind', 'compound')}: use score value")
        if self.objective is None and score in ("auto", "probability"):
            return "probability"
        return "value"

    def key(self, kind):
        if self.objective is None:
            return ("classes", kind if kind in ("probability", "log_probability") else self.activation, self.top1)
        return ("objective", _objective_key(self.objective))

    def rows(self, index, count=None):
        """The weights of image ``index`` repeated ``count`` times (or of images ``index``, a list)."""
        if self.objective is None and not self.top1:
            w = self.weights[index]
            return np.repeat(w[None], count, axis=0) if count is not None else w
        n = count if count is not None else len(index)
        return np.zeros((n, 1), "float32")

    def value_fn(self, kind, binary):
        if self.objective is None:
            act = "probability" if kind == "probability" else self.activation
            top1 = self.top1

            def value(outputs, weights):
                logits = outputs["logits"]
                if top1:
                    weights = ops.stop_gradient(ops.one_hot(ops.argmax(logits, axis=-1), logits.shape[-1]))
                if act == "probability":
                    out = ops.softmax(logits / 2.0 if binary else logits, axis=-1)
                elif act == "logsoftmax":
                    out = ops.log_softmax(logits, axis=-1)
                elif act == "relu":
                    out = ops.relu(logits)
                else:
                    out = logits
                return ops.sum(out * ops.cast(weights, out.dtype), axis=-1)
            return value
        objective = self.objective
        return lambda outputs, weights: objective.value(outputs)


def _objective_key(objective):
    """A cache key: the description of dgn's own objectives (equal objectives share compiled functions),
    else the object's identity."""
    if type(objective).__module__ == "dgn.optvis.objectives":
        try:
            return type(objective).__name__ + json.dumps(objective.describe(), sort_keys=True, default=str)
        except (NotImplementedError, TypeError, ValueError):
            pass
    return f"id:{id(objective)}"


def target_objective(spec, classifier):
    """The objective ``dgn explain`` uses for a target string or class index: a class means its logit
    (``parse_target(spec, classifier, "logit", 0)``); channel, neuron and compound targets as for generation.
    Raises DgnError for a target the classifier lacks."""
    return parse_target(str(spec), classifier, "logit", 0.0)


def _as_target_objective(objective, classifier):
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, (str, int, np.integer)) and not isinstance(objective, bool):
        return target_objective(objective, classifier)
    raise DgnError(f"objective {objective!r}: give a dgn objective, a target string such as '207', "
                   f"'golden retriever' or 'channel:LAYER:C', or None for each image's top-1 class")


def _class_rows(objective, num_classes):
    """(activation, weights (classes,)) of a plain class objective, else None."""
    if type(objective) is not ClassObjective:
        return None
    w = np.zeros(num_classes, "float32")
    for index, weight in objective.classes:
        w[index] += weight
    return objective.activation, w


def resolve_targets(classifier, objective, x, batch_size):
    """[(image indices, Target)], and per image the Objective explained."""
    n = len(x)
    classes = classifier.num_classes
    if objective is None:
        top1 = np.argmax(classifier.predict_logits(x, batch_size), axis=-1)
        objectives = [ClassObjective([(int(c), 1.0)], "logit", 0.0, classifier.class_names) for c in top1]
    elif isinstance(objective, (list, tuple)):
        if len(objective) != n:
            raise DgnError(f"{len(objective)} objectives for {n} images: give one per image, or one for all")
        objectives = [_as_target_objective(o, classifier) if o is not None else None for o in objective]
        if any(o is None for o in objectives):
            top1 = np.argmax(classifier.predict_logits(x, batch_size), axis=-1)
            objectives = [o if o is not None else ClassObjective([(int(top1[k]), 1.0)], "logit", 0.0,
                                                                 classifier.class_names)
                          for k, o in enumerate(objectives)]
    else:
        objectives = [_as_target_objective(objective, classifier)] * n
    groups, order = {}, []
    for k, obj in enumerate(objectives):
        rows = _class_rows(obj, classes)
        key = ("classes", rows[0]) if rows is not None else ("objective", id(obj))
        if key not in groups:
            groups[key] = ([], [], obj)
            order.append(key)
        groups[key][0].append(k)
        if rows is not None:
            groups[key][1].append(rows[1])
    out = []
    for key in order:
        index, weights, obj = groups[key]
        if key[0] == "classes":
            target = Target(activation=key[1], weights=np.stack(weights).astype("float32"))
        else:
            target = Target(objective=obj)
        out.append((index, target))
    return out, objectives


# ------------------------------------------------------------------------------------------------ inputs

def as_inputs(classifier, images, fit="auto"):
    """Images in D's input space (N, H, W, C) float32 from: uint8 pixels (one image (h, w, 3 or 1), a batch,
    or a list of any sizes: brought to D's input size as ``dgn classify`` does,
    :func:`dgn.images.fit_to_input`), or float arrays already in D's input space at its size.

    Raises:
        DgnError: another dtype (uint16, int, bool), pixels with other than 1 or 3 channels, floats of
            another shape, not finite, or outside D's input range (by more than a tenth of it) (one line)."""
    height, width, channels = classifier.input_shape
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    items = list(images) if isinstance(images, (list, tuple)) else None
    if items is None:
        images = np.asarray(images)
        if images.ndim != 4:
            raise DgnError(f"images of shape {images.shape}: give (N, H, W, C) or one (H, W, C) image")
        _check_dtype(images.dtype, "images")
        items = list(images) if images.dtype == np.uint8 and (images.shape[1:3] != (height, width)
                                                               or images.shape[-1] != 3) else None
        if items is None:
            if images.dtype == np.uint8:
                return classifier.from_pixels(images)
            if tuple(images.shape[1:]) != (height, width, channels):
                raise DgnError(f"images of shape {tuple(images.shape[1:])} in D's input space: D reads "
                               f"{height}x{width}x{channels} (give uint8 pixels of any size to have them fitted)")
            return _check_floats(classifier, np.asarray(images, dtype="float32"), "images")
    if not items:
        raise DgnError("no images to explain")
    mode = fit_mode(classifier, fit)
    out = []
    for k, img in enumerate(items):
        img = np.asarray(img)
        _check_dtype(img.dtype, f"image {k}")
        if img.dtype != np.uint8:
            if img.shape != (height, width, channels):
                raise DgnError(f"image {k} has shape {img.shape} and dtype {img.dtype}: give uint8 pixels of any "
                               f"size, or floats in D's input space at {height}x{width}x{channels}")
            out.append(_check_floats(classifier, img.astype("float32"), f"image {k}"))
            continue
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3 or img.shape[-1] not in (1, 3):
            raise DgnError(f"image {k} has shape {img.shape}: give (H, W, 3) RGB or (H, W, 1) grayscale pixels")
        rgb = np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img
        out.append(classifier.from_pixels(fit_to_input(np.ascontiguousarray(rgb), (height, width), mode)[None])[0])
    return np.stack(out).astype("float32")


def _check_dtype(dtype, what):
    """DgnError unless ``dtype`` is uint8 (pixels) or a float (D's input space)."""
    if dtype != np.uint8 and not np.issubdtype(dtype, np.floating):
        raise DgnError(f"{what} of dtype {dtype}: give uint8 pixels (0..255) or floats in D's input space "
                       f"(convert other integers, e.g. uint16, to uint8 first)")


def _check_floats(classifier, x, what):
    """``x`` (floats in D's input space) after checking that they are finite and within D's input range."""
    if not np.isfinite(x).all():
        raise DgnError(f"{what} hold NaN or infinite values: give finite floats in D's input space")
    if not isinstance(classifier.preprocessing, str):
        return x
    ends = np.stack([pixels_in_space(classifier, 0.0), pixels_in_space(classifier, 255.0)])
    low, high = float(ends.min()), float(ends.max())
    margin = 0.1 * (high - low)
    if x.size and (x.min() < low - margin or x.max() > high + margin):
        raise DgnError(f"{what} range {x.min():.4g}..{x.max():.4g} lies outside D's input range {low:.4g}.."
                       f"{high:.4g} ({classifier.preprocessing} preprocessing of pixels 0..255): give floats in "
                       f"that range, or uint8 pixels")
    return x


def pixels_in_space(classifier, value):
    """A pixel value (0..255, all channels) in D's input space, per channel."""
    return classifier.from_pixels(np.full((1, 1, 1, 3), float(value), "float32"))[0, 0, 0]


def resize_maps(maps, size, mode="bilinear"):
    """(N, h, w, K) -> (N, H, W, K), bilinear: ``bilinear`` with half-pixel centres (tf.image.resize, OpenCV:
    each cell of a layer centred on the pixels it covers), ``corners`` with the corner cells on the corner
    pixels (scipy.ndimage.zoom order 1, which tf-keras-vis uses)."""
    maps = np.asarray(maps, dtype="float32")
    if tuple(maps.shape[1:3]) == tuple(size):
        return maps
    if mode == "bilinear":
        return np.asarray(ops.image.resize(maps, tuple(size), interpolation="bilinear"), dtype="float32")
    out = maps.astype("float64")
    for axis, new in ((1, size[0]), (2, size[1])):
        old = out.shape[axis]
        where = np.linspace(0.0, old - 1.0, new) if new > 1 else np.zeros(1)
        low = np.floor(where).astype(int)
        high = np.minimum(low + 1, old - 1)
        frac = (where - low).reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        out = np.take(out, low, axis=axis) * (1.0 - frac) + np.take(out, high, axis=axis) * frac
    return out.astype("float32")
