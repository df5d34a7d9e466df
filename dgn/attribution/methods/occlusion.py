"""Occlusion (Zeiler and Fergus 2014)."""


import warnings

import numpy as np

from dgn.attribution.gradients import row_slices, run_batches, target_scores
from dgn.attribution.inputs import pixels_in_space
from dgn.attribution.settings import FILLS, Method, ScoreWarning, register
from dgn.errors import DgnError


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


PROBABILITY_FLOOR = 1e-30   # below it, changes of a probability are lost in float32 maps: log-probability


@register
class Occlusion(Method):
    """A ``window`` x ``window`` patch of ``fill`` (grey, black or the image's mean colour) slid with
    ``stride`` (at most the window, so that every pixel is occluded); each pixel gets the mean drop of the
    score over the windows that cover it (signed). A class target is scored by D's probability of it
    (``score`` auto; ``value`` for the logit). All windows of an image go through D in batches. Maps
    (N, H, W), signed."""

    name = "occlusion"
    reference = "Zeiler and Fergus 2014"
    defaults = {"window": None, "stride": None, "fill": "grey", "score": "auto"}

    def validate(self, out):
        self.positive_int(out, "window", allow_none=True)
        self.positive_int(out, "stride", allow_none=True)
        if out["fill"] not in FILLS:
            raise DgnError(f"occlusion fill {out['fill']!r}: give one of {', '.join(FILLS)}")

    def prepare(self, classifier, settings, size):
        height, width = size
        if settings["window"] is not None and None not in size and settings["window"] > min(height, width):
            raise DgnError(f"occlusion window {settings['window']}: D's input is {height}x{width}; give a window of "
                           f"1..{min(height, width)} pixels")
        settings["window"], settings["stride"] = occlusion_defaults(height, width, settings)
        if settings["stride"] > settings["window"]:
            raise DgnError(f"occlusion stride {settings['stride']} is larger than the window {settings['window']}: "
                           f"the pixels between windows would never be occluded; give a stride of at most "
                           f"{settings['window']} or a window of at least {settings['stride']}")
        settings["windows"] = (len(occlusion_windows(height, settings["window"], settings["stride"]))
                               * len(occlusion_windows(width, settings["window"], settings["stride"])))

    def maps(self, classifier, x, target, index, batch, settings, kind):
        score = target_scores(classifier, target, kind)
        (base,) = run_batches(score, [x, target.rows(index)], batch)
        maps = []
        for k, image in enumerate(x):
            if kind == "probability" and base[k] < PROBABILITY_FLOOR:
                warnings.warn(ScoreWarning(f"D's probability of the target is {base[k]:.3g} on image {k}: its changes "
                                           f"would underflow float32, so this map is of the drop in log-probability",
                                           k, "log_probability"))
                log_score = target_scores(classifier, target, "log_probability")
                (log_base,) = run_batches(log_score, [image[None], target.rows([index[k]])], batch)
                maps.append(self.image_map(classifier, image, target.rows(index[k], batch), batch, settings,
                                           log_score, log_base[0]))
            else:
                maps.append(self.image_map(classifier, image, target.rows(index[k], batch), batch, settings, score,
                                           base[k]))
        return np.stack(maps)

    def image_map(self, classifier, image, w_rows, batch, settings, score, base):
        """One image's map (H, W) float64: the mean drop of ``score`` from ``base`` over the windows."""
        height, width = image.shape[:2]
        window, stride = settings["window"], settings["stride"]
        positions = [(y, xx) for y in occlusion_windows(height, window, stride)
                     for xx in occlusion_windows(width, window, stride)]
        if settings["fill"] == "mean":
            fill = image.mean(axis=(0, 1))
        else:
            fill = pixels_in_space(classifier, 0.0 if settings["fill"] == "black" else 127.5)
        total = np.zeros((height, width), "float64")
        count = np.zeros((height, width), "float64")
        drops = []
        for part in row_slices(len(positions), batch):
            chunk = positions[part]
            rows = np.repeat(image[None], batch if len(positions) > batch else len(chunk), axis=0)
            for r, (y, xx) in enumerate(chunk):
                rows[r, y:y + window, xx:xx + window] = fill
            drops += list(float(base) - np.asarray(score(rows, w_rows[:len(rows)]), dtype="float64")[:len(chunk)])
        for (y, xx), drop in zip(positions, drops):
            total[y:y + window, xx:xx + window] += drop
            count[y:y + window, xx:xx + window] += 1.0
        return total / np.maximum(count, 1.0)
