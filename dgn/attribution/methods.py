"""The attribution methods, one function each (see :mod:`dgn.attribution.settings` for the list).
"""


import numpy as np

from dgn.attribution.gradients import row_slices, input_gradient, layer_activation, layer_gradient, run_batches, target_scores
from dgn.attribution.inputs import pixels_in_space, resize_maps
from dgn.attribution.settings import EPSILON
from dgn.errors import DgnError


# ------------------------------------------------------------------------------------------------ layers

def auto_layer(classifier):
    """The last layer (by path) with a 4-D output of more than one position: Grad-CAM's default."""
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


# ------------------------------------------------------------------------------------------------ methods

def saliency_map(classifier, x, target, index, batch, settings, guided=False):
    grad = input_gradient(classifier, target, "value", guided)
    values, logits, g = run_batches(grad, [x, target.rows(index)], batch)
    return np.max(np.abs(g), axis=-1), values, logits


def smoothgrad_map(classifier, x, target, index, batch, settings):
    grad = input_gradient(classifier, target, "value")
    samples, noise = settings["samples"], settings["noise"]
    base = np.random.RandomState(settings["seed"]).standard_normal((samples,) + x.shape[1:]).astype("float32")
    maps = []
    for k, image in enumerate(x):
        sigma = noise * (float(image.max()) - float(image.min()))
        rows = image[None] + base * sigma
        _, _, g = run_batches(grad, [rows, target.rows(index[k], samples)], batch)
        maps.append(np.max(np.mean(np.abs(g), axis=0), axis=-1))
    return np.stack(maps)


def _baseline(classifier, image, name):
    if name == "zero":
        return np.zeros_like(image)
    value = {"black": 0.0, "white": 255.0, "grey": 127.5}[name]
    return np.broadcast_to(pixels_in_space(classifier, value), image.shape).astype("float32")


def integrated_gradients_map(classifier, x, target, index, batch, settings):
    grad = input_gradient(classifier, target, "value")
    steps = settings["steps"]
    alphas = (np.arange(1, steps + 1, dtype="float32") / steps)[:, None, None, None]
    maps = []
    for k, image in enumerate(x):
        base = _baseline(classifier, image, settings["baseline"])
        rows = base[None] + alphas * (image - base)[None]
        _, _, g = run_batches(grad, [rows, target.rows(index[k], steps)], batch)
        maps.append(np.sum((image - base) * g.mean(axis=0), axis=-1))
    return np.stack(maps)


def gradcam_map(classifier, x, target, index, batch, settings, plus=False):
    grad = layer_gradient(classifier, target, settings["layer"])
    values, logits, a, g = run_batches(grad, [x, target.rows(index)], batch)
    a, g = a.astype("float64"), g.astype("float64")
    if plus:
        g2, g3 = g ** 2, g ** 3
        total = a.sum(axis=(1, 2), keepdims=True)
        denom = 2.0 * g2 + total * g3
        alphas = g2 / np.where(denom != 0.0, denom, 1.0)
        norm = alphas.sum(axis=(1, 2), keepdims=True)
        alphas = alphas / np.where(norm != 0.0, norm, 1.0)
        weights = (alphas * np.maximum(g, 0.0)).sum(axis=(1, 2), keepdims=True)
    else:
        weights = g.mean(axis=(1, 2), keepdims=True)
    cam = np.maximum((weights * a).sum(axis=-1), 0.0)
    return resize_maps(cam[..., None], x.shape[1:3], settings["upsample"])[..., 0], values, logits


def scorecam_map(classifier, x, target, index, batch, settings, kind):
    layer = settings["layer"]
    activation = layer_activation(classifier, layer)
    score = target_scores(classifier, target, kind)
    (acts,) = run_batches(activation, [x], batch)
    maps = []
    for k, image in enumerate(x):
        a = acts[k]
        channels = np.arange(a.shape[-1])
        if settings["channels"] is not None and settings["channels"] < len(channels):
            spread = a.reshape(-1, a.shape[-1]).std(axis=0)
            channels = np.sort(np.argsort(-spread, kind="stable")[:settings["channels"]])
        weights = np.zeros(len(channels), "float64")
        w_rows = target.rows(index[k], batch)
        for part in row_slices(len(channels), batch):
            up = resize_maps(a[None, :, :, channels[part]], x.shape[1:3], settings["upsample"])[0]   # (H, W, k)
            low = up.min(axis=(0, 1), keepdims=True)
            high = up.max(axis=(0, 1), keepdims=True)
            masks = np.moveaxis((up - low) / (high - low + EPSILON), -1, 0)[..., None]   # (k, H, W, 1)
            rows = len(masks)
            masked = image[None] * masks
            if rows < batch and len(channels) > batch:
                masked = np.concatenate([masked, np.zeros((batch - rows,) + masked.shape[1:], "float32")])
            values = np.asarray(score(masked.astype("float32"), w_rows[:len(masked)]))[:rows]
            weights[part] = values
        cam = np.maximum((a[..., channels].astype("float64") * weights).sum(axis=-1), 0.0)
        maps.append(cam)
    return resize_maps(np.stack(maps)[..., None], x.shape[1:3], settings["upsample"])[..., 0]


def occlusion_windows(size, window, stride):
    """Start positions along one axis: every ``stride``, and the last window flush with the edge."""
    if window >= size:
        return [0]
    starts = list(range(0, size - window + 1, stride))
    if starts[-1] != size - window:
        starts.append(size - window)
    return starts


def occlusion_defaults(height, width, settings):
    """(window, stride): by default a seventh of the shorter side and half a window."""
    window = settings["window"] or max(1, min(height, width) // 7)
    window = min(window, height, width)
    stride = settings["stride"] or max(1, window // 2)
    return window, stride


def occlusion_map(classifier, x, target, index, batch, settings, kind):
    score = target_scores(classifier, target, kind)
    height, width = x.shape[1:3]
    window, stride = occlusion_defaults(height, width, settings)
    positions = [(y, xx) for y in occlusion_windows(height, window, stride)
                 for xx in occlusion_windows(width, window, stride)]
    (base,) = run_batches(score, [x, target.rows(index)], batch)
    maps = []
    for k, image in enumerate(x):
        if settings["fill"] == "mean":
            fill = image.mean(axis=(0, 1))
        else:
            fill = pixels_in_space(classifier, 0.0 if settings["fill"] == "black" else 127.5)
        total = np.zeros((height, width), "float64")
        count = np.zeros((height, width), "float64")
        drops = []
        w_rows = target.rows(index[k], batch)
        for part in row_slices(len(positions), batch):
            chunk = positions[part]
            rows = np.repeat(image[None], batch if len(positions) > batch else len(chunk), axis=0)
            for r, (y, xx) in enumerate(chunk):
                rows[r, y:y + window, xx:xx + window] = fill
            drops += list(float(base[k]) - np.asarray(score(rows, w_rows[:len(rows)]), dtype="float64")[:len(chunk)])
        for (y, xx), drop in zip(positions, drops):
            total[y:y + window, xx:xx + window] += drop
            count[y:y + window, xx:xx + window] += 1.0
        maps.append(total / np.maximum(count, 1.0))
    return np.stack(maps)
