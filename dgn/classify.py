"""Classify image files with a Keras classifier whose last layer is softmax.

    model = build_efficientnet_lite("lite0", weights=...)
    names = dgn.imagenet.load_class_index("imagenet_class_index.json")
    results = classify_paths(model, lambda x: x / 127.5 - 1, paths, top=5,
                             class_names=names)

Each result is ``{"image": path, "top": [{"index", "wnid", "name", "prob"}]}``
or, when the file cannot be read, ``{"image": path, "error": "one line"}``.
Images get the standard evaluation crop (:func:`dgn.images.eval_crop`,
short side to crop*256/224 with bicubic, then centre crop) at the model's
input size.
"""

from __future__ import annotations

import os

import numpy as np

from dgn.images import ImageLoadError, eval_crop, fit_to_input, load_image


__all__ = [
    "classify_files",
    "fit_mode",
    "model_input_size",
    "classify_arrays",
    "top_k",
    "classify_paths",
]

DEFAULT_CROP = 224


def model_input_size(model, default=DEFAULT_CROP):
    """(height, width) of the model's static input, or (default, default)."""
    shape = model.input_shape
    if isinstance(shape, list):
        shape = shape[0]
    h, w = shape[1], shape[2]
    if h is None or w is None:
        return default, default
    return int(h), int(w)


def classify_arrays(model, preprocess_fn, images_uint8, batch_size=32):
    """Run ``model`` on uint8 RGB images (N, H, W, 3), all the model's size.

    ``preprocess_fn`` maps a float32 RGB 0..255 batch to model input.
    Returns float32 probabilities (N, classes)."""
    images = np.asarray(images_uint8)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected (N, H, W, 3) images, got {images.shape}")
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].astype(np.float32)
        x = preprocess_fn(batch)
        probs = model(x, training=False)
        out.append(np.asarray(_to_numpy(probs), dtype=np.float32))
    if not out:
        n_classes = model.output_shape[-1]
        return np.zeros((0, n_classes), np.float32)
    return np.concatenate(out, axis=0)


def _to_numpy(x):
    try:
        import keras

        return keras.ops.convert_to_numpy(x)
    except Exception:  # pragma: no cover - plain arrays
        return np.asarray(x)


def top_k(probs, k=5, class_names=None):
    """Top-k entries of one probability vector, highest first, as dicts
    ``{"index", "wnid", "name", "prob"}`` (wnid/name None without names)."""
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    k = max(0, min(int(k), probs.size))
    # stable: ties keep the lower index first
    order = np.argsort(-probs, kind="stable")[:k]
    result = []
    for i in order:
        i = int(i)
        wnid = name = None
        if class_names is not None and i < len(class_names):
            wnid, name = class_names[i]
        result.append({"index": i, "wnid": wnid, "name": name, "prob": float(probs[i])})
    return result


def classify_paths(model, preprocess, paths, top=5, class_names=None,
                   batch_size=32, crop=None):
    """Classify image files, in order, batching the readable ones.

    Args:
        model: Keras model ending in a softmax layer.
        preprocess: callable, float32 RGB 0..255 batch -> model input.
        paths: iterable of image paths.
        top: how many classes to report per image.
        class_names: list of (wnid, name) per class index, or None.
        batch_size: images per forward pass.
        crop: (height, width) to crop to; default: the model's input size
            (224 x 224 if the model takes any size).

    Returns:
        list with one dict per path: ``{"image", "top": [...]}`` or
        ``{"image", "error"}``.
    """
    h, w = crop if crop is not None else model_input_size(model)
    return _classify(paths, lambda img: eval_crop(img, crop=(h, w)),
                     lambda batch: classify_arrays(model, preprocess, batch, batch_size), top, class_names,
                     batch_size)


def _classify(paths, fit, probabilities, top, class_names, batch_size, extra=None):
    """The loop of both classifiers: read and ``fit`` each file, batch the readable ones through
    ``probabilities`` (uint8 batch -> (N, classes)), one result per path in order."""
    paths = [os.fspath(p) for p in paths]
    results, pending = [None] * len(paths), []

    def flush():
        if not pending:
            return
        probs = probabilities(np.stack([img for _, img in pending]))
        for (i, _), p in zip(pending, probs):
            results[i] = {"image": paths[i], **(extra or {}), "top": top_k(p, top, class_names)}
        pending.clear()

    for i, path in enumerate(paths):
        try:
            pending.append((i, fit(load_image(path))))
        except ImageLoadError as exc:
            results[i] = {"image": path, "error": _one_line(exc)}
            continue
        except (ValueError, OSError, MemoryError) as exc:
            results[i] = {"image": path, "error": _one_line(f"{path}: {exc}")}
            continue
        if len(pending) >= batch_size:
            flush()
    flush()
    return results


def _one_line(exc):
    return " ".join(str(exc).split()) or type(exc).__name__


FIT_MODES = ("auto", "center", "imagenet", "stretch")


def fit_mode(classifier, mode="auto"):
    """How photos are brought to D's input size: ``auto`` is the ImageNet evaluation crop for 1000-class
    224 x 224 classifiers, else ``center`` (scale to cover, centre window)."""
    if mode != "auto":
        return mode
    imagenet = classifier.num_classes == 1000 and tuple(classifier.input_shape[:2]) == (224, 224)
    return "imagenet" if imagenet else "center"


def classify_files(classifier, paths, top=5, mode="auto", batch_size=32):
    """Classifies image files with a :class:`dgn.classifiers.Classifier` (any Keras classifier dgn reads).

    Each image is brought to D's input size by :func:`dgn.images.fit_to_input` (an image already at that
    size, such as one dgn generated, is used as is), converted to D's channels and input space; the
    probabilities are D's (softmax of its logits, or sigmoid for a one-unit binary classifier).

    Returns:
        one dict per path, in order: ``{"image", "top": [{"index", "wnid", "name", "prob"}], "fit"}``, or
        ``{"image", "error": "one line"}`` for an unreadable file.
    """
    mode = fit_mode(classifier, mode)
    size = classifier.input_shape[:2]

    def probabilities(batch):
        return classifier.probabilities(classifier.predict_logits(classifier.from_pixels(batch), batch_size))

    return _classify(paths, lambda img: fit_to_input(img, size, mode), probabilities, top, classifier.class_names,
                     batch_size, extra={"fit": mode})
