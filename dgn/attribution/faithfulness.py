"""Faithfulness of a map: the deletion and insertion curves.
"""


import numpy as np

from dgn.attribution.gradients import run_batches, target_scores
from dgn.attribution.inputs import pixels_in_space, resolve_targets, as_inputs
from dgn.errors import DgnError
from dgn.optvis.render import as_classifier


# ------------------------------------------------------------------------------------------------ faithfulness

def blur(images, sigma):
    """A Gaussian blur (N, H, W, C), per channel, edges reflected: insertion's starting image."""
    radius = max(1, int(round(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = np.asarray(images, dtype="float64")
    for axis in (1, 2):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        out = sum(w * np.take(padded, np.arange(i, i + out.shape[axis]), axis=axis) for i, w in enumerate(taps))
    return out.astype("float32")


def deletion_insertion(classifier, images, maps, objective=None, steps=32, batch_size=32, fill="grey",
                       sigma=None, order_seed=None):
    """Deletion and insertion curves (Petsiuk et al. 2018): D's score of the target as the pixels are removed
    (set to ``fill``) or inserted (into a blurred copy) in the order of ``maps`` (highest first), in
    ``steps`` equal parts; ties broken by position.

    Args:
        images: as for :func:`attribute` (fitted to D's input). maps: (N, H, W), as :func:`explain` returns.
        objective: as for :func:`attribute` (None: each image's top-1 class); a class is scored by D's
            probability, other targets by their value.
        sigma: the blur's standard deviation in pixels (default: the input's shorter side / 45, 5 at 224).
        order_seed: ignore ``maps`` and use a random order (the baseline), from this seed.

    Returns:
        dict: ``deletion`` and ``insertion`` (N, steps + 1) scores from 0 to all pixels, and their areas
        ``deletion_auc`` and ``insertion_auc`` (N,) (trapezoid over the fraction 0..1; lower deletion and
        higher insertion area is the more faithful map)."""
    if fill not in ("grey", "black"):
        raise DgnError(f"deletion fill {fill!r}: give grey or black")
    classifier = as_classifier(classifier)
    x = as_inputs(classifier, images)
    maps = np.asarray(maps, dtype="float64")
    n, height, width = x.shape[:3]
    if maps.shape != (n, height, width):
        raise DgnError(f"maps of shape {maps.shape}: give one (H, W) map per image, {(n, height, width)}")
    groups, _ = resolve_targets(classifier, objective, x, batch_size)
    sigma = sigma or max(1.0, min(height, width) / 45.0)
    blurred = blur(x, sigma)
    fill_value = pixels_in_space(classifier, 127.5 if fill == "grey" else 0.0)
    pixels = height * width
    counts = np.round(np.linspace(0, pixels, steps + 1)).astype(int)
    deletion = np.zeros((n, steps + 1))
    insertion = np.zeros((n, steps + 1))
    for index, target in groups:
        score = target_scores(classifier, target, target.score_kind("auto"))
        for local, k in enumerate(index):
            if order_seed is not None:
                order = np.random.RandomState(order_seed + k).permutation(pixels)
            else:
                order = np.argsort(-maps[k].reshape(-1), kind="stable")
            rank = np.empty(pixels, int)
            rank[order] = np.arange(pixels)
            rank = rank.reshape(height, width)
            removed = rank[None] < counts[:, None, None]                        # (steps + 1, H, W)
            dele = np.where(removed[..., None], fill_value, x[k][None])
            ins = np.where(removed[..., None], x[k][None], blurred[k][None])
            rows = np.concatenate([dele, ins]).astype("float32")
            (values,) = run_batches(score, [rows, target.rows(local, len(rows))], batch_size)
            deletion[k], insertion[k] = values[:steps + 1], values[steps + 1:]
    fractions = counts / pixels
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    auc = lambda curve: trapezoid(curve, fractions, axis=-1)  # noqa: E731
    return {"deletion": deletion, "insertion": insertion, "fractions": fractions,
            "deletion_auc": auc(deletion), "insertion_auc": auc(insertion)}
