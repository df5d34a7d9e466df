"""``attribute`` and ``explain``: attribution maps of images for targets under a method.
"""


import time
import warnings

import numpy as np

from dgn.attribution.gradients import backend_name, run_batches, target_scores
from dgn.attribution.inputs import resolve_targets, Target, as_inputs
from dgn.attribution.settings import LOCK, Attribution, AttributionWarning, ScoreWarning, get_method
from dgn.errors import DgnError
from dgn.optvis.objectives import ClassObjective
from dgn.optvis.render import as_classifier


# ------------------------------------------------------------------------------------------------ the API

def attribute(classifier, images, objective=None, method="gradcam", *, batch_size=32, fit="auto", **settings):
    """Attribution maps of ``images`` under ``classifier`` for ``objective`` by ``method``.

    Calls run one at a time in a process (a lock; guided backpropagation swaps a model's ReLUs while it
    traces): two threads explaining with one classifier get their own maps, the second waiting for the first.

    Args:
        classifier: a :class:`dgn.Classifier`, a built-in name or a ``.keras`` path (as :func:`dgn.render`).
        images: uint8 pixels (one image, a batch, or a list of any sizes and 1 or 3 channels: fitted to D's
            input as ``dgn classify`` does, ``fit``), or floats in D's input space at its input size.
        objective: None (each image's top-1 class), a target string or class index ("207", "golden
            retriever", "207+281", "channel:LAYER:C", "neuron:LAYER:C:Y:X"; a class means its logit), an
            Objective, or a list of those, one per image.
        method: a registered method's name (:data:`METHODS`; aliases: ig, guided_backprop,
            gradcam_plus_plus, ...) or a :class:`Method` subclass.
        batch_size: rows per call of D (noisy copies, masked or occluded images, path points).
        **settings: the method's settings (:data:`DEFAULTS`): ``layer`` (Grad-CAM, Grad-CAM++, Score-CAM),
            ``samples``, ``noise``, ``seed`` (SmoothGrad), ``steps``, ``baseline`` (integrated gradients),
            ``channels`` (Score-CAM), ``window``, ``stride``, ``fill`` (occlusion), ``score`` (Score-CAM,
            occlusion: auto, value or probability).

    Returns:
        :class:`Attribution` (``.maps``: (N, H, W) float32 in D's input resolution).

    Raises:
        DgnError: an unknown method or setting, a target the classifier lacks, a layer without spatial
            dimensions, an activation guided backpropagation does not handle (one line each)."""
    method = method() if isinstance(method, type) else get_method(method)
    settings = method.check(settings)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DgnError(f"batch_size {batch_size!r}: give a positive integer")
    batch_size = int(batch_size)
    classifier = as_classifier(classifier)
    backend_name()
    with LOCK:
        method.prepare(classifier, settings, classifier.input_shape[:2])
        x = as_inputs(classifier, images, fit)
        if not len(x):
            raise DgnError("no images to explain")
        return _attribute(classifier, x, objective, method, batch_size, settings)


def _attribute(classifier, x, objective, method, batch_size, settings):
    """:func:`attribute` after its checks: the maps of every group of images with the same target."""
    started = time.perf_counter()
    if objective is None and method.direct:   # each image's top-1 class, found in the same call as the gradient
        groups, objectives = [(list(range(len(x))), Target(top1=True))], None
    else:
        groups, objectives = resolve_targets(classifier, objective, x, batch_size)
    maps = np.zeros(x.shape[:3], "float32")
    values = np.zeros(len(x), "float64")
    notes = []
    scores = [None] * len(x)
    for index, target in groups:
        rows, local = x[index], list(range(len(index)))   # a group's weights are in the group's order
        kind = target.score_kind(settings["score"]) if "score" in settings else "value"
        for i in index:
            scores[i] = kind if "score" in settings else None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AttributionWarning)
            out = method.maps(classifier, rows, target, local, batch_size, settings, kind)
        for w in caught:
            if issubclass(w.category, AttributionWarning):
                notes.append(str(w.message))
                if isinstance(w.message, ScoreWarning):
                    scores[index[w.message.image]] = w.message.score
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        shape = np.shape(out[0] if method.direct and isinstance(out, tuple) else out)
        if tuple(shape) != (len(index),) + x.shape[1:3]:
            raise DgnError(f"attribution method {method.name!r} returned maps of shape {tuple(shape)}; expected "
                           f"(N, H, W) = {(len(index),) + x.shape[1:3]}, one map per image at D's input size")
        if method.direct:   # the value is the one the gradient was taken of
            out, values[index], logits = out
            if target.top1:
                objectives = [ClassObjective([(int(c), 1.0)], "logit", 0.0, classifier.class_names)
                              for c in np.argmax(logits, axis=-1)]
        else:
            (values[index],) = run_batches(target_scores(classifier, target, kind), [rows, target.rows(local)],
                                           batch_size)
        maps[index] = out
    if "score" in settings:
        used = set(scores)
        settings["score"] = used.pop() if len(used) == 1 else "per image"
    return Attribution(maps=maps, method=method.name, settings=settings, targets=[o.describe() for o in objectives],
                       objectives=objectives, values=values, seconds=time.perf_counter() - started, notes=notes,
                       scores=scores)


def explain(classifier, images, objective=None, method="gradcam", *, batch_size=32, fit="auto", **settings):
    """Attribution maps (N, H, W) float32 in D's input resolution: :func:`attribute`'s ``maps``.

        maps = dgn.explain(clf, photos)                              # Grad-CAM of each top-1 class
        maps = dgn.explain(clf, photos, "207", "smoothgrad", samples=50)
        maps = dgn.explain(clf, photos, "channel:top_conv:12", "integrated_gradients", steps=100)
    """
    return attribute(classifier, images, objective, method, batch_size=batch_size, fit=fit, **settings).maps
