"""Score-CAM (Wang et al. 2020)."""


import warnings

import numpy as np

from dgn.attribution.gradients import layer_activation, row_slices, run_batches, target_scores
from dgn.attribution.methods.layers import LayerMethod, to_input
from dgn.attribution.methods.occlusion import PROBABILITY_FLOOR
from dgn.attribution.settings import EPSILON, ScoreWarning, register
from dgn.errors import DgnError


@register
class ScoreCam(LayerMethod):
    """``ReLU(sum_k s_k A_k)`` where s_k is the score of the input masked by channel k (resized to the input,
    scaled to 0..1: ``x * M_k`` in D's input space); ``channels`` keeps the N channels of largest spatial
    standard deviation (Faster Score-CAM), all by default. A class target is scored by D's probability of
    it (``score`` auto; ``value`` for the logit); where those probabilities underflow float32 (below 1e-30),
    by their ratio to the largest, from log-probabilities (the same map up to a constant factor; a
    :class:`ScoreWarning`). Maps (N, H, W) >= 0."""

    name = "scorecam"
    aliases = ("score-cam", "score_cam")
    reference = "Wang et al. 2020"
    defaults = {"layer": None, "channels": None, "score": "auto", "upsample": "bilinear"}

    def validate(self, out):
        self.positive_int(out, "channels", allow_none=True)

    def prepare(self, classifier, settings, size):
        """The layer (:class:`LayerMethod`); DgnError where ``channels`` exceeds the layer's channels."""
        super().prepare(classifier, settings, size)
        have = settings["layer_shape"][-1]
        if settings["channels"] is not None and settings["channels"] > have:
            raise DgnError(f"scorecam channels {settings['channels']}: layer {settings['layer']!r} has {have} "
                           f"channels; give 1..{have} (or leave it out for all)")

    def maps(self, classifier, x, target, index, batch, settings, kind):
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
            w_rows = target.rows(index[k], batch)
            weights = self.scores(classifier, layer, a, channels, image, x.shape[1:3], w_rows, batch, settings,
                                  score)
            if kind == "probability" and weights.max() < PROBABILITY_FLOOR:
                logs = self.scores(classifier, layer, a, channels, image, x.shape[1:3], w_rows, batch, settings,
                                   target_scores(classifier, target, "log_probability"))
                weights = np.exp(logs - logs.max())
                warnings.warn(ScoreWarning(
                    f"D's probability of the target is at most {np.exp(logs.max()):.3g} "
                    f"on image {k}'s masked copies, below float32's resolution: this map weighs the channels by "
                    f"their probability relative to the largest (from log-probabilities; the same map up to a "
                    f"constant factor)", k, "relative_probability"))
            cam = np.maximum((a[..., channels].astype("float64") * weights).sum(axis=-1), 0.0)
            maps.append(cam)
        return to_input(classifier, layer, np.stack(maps)[..., None], x.shape[1:3], settings["upsample"])[..., 0]

    def scores(self, classifier, layer, a, channels, image, size, w_rows, batch, settings, score):
        """The score of ``image`` masked by each of ``channels`` of its activation ``a`` (float64)."""
        weights = np.zeros(len(channels), "float64")
        for part in row_slices(len(channels), batch):
            up = to_input(classifier, layer, a[None, :, :, channels[part]], size, settings["upsample"])[0]  # (H, W, k)
            low = up.min(axis=(0, 1), keepdims=True)
            high = up.max(axis=(0, 1), keepdims=True)
            masks = np.moveaxis((up - low) / (high - low + EPSILON), -1, 0)[..., None]   # (k, H, W, 1)
            rows = len(masks)
            masked = image[None] * masks
            if rows < batch and len(channels) > batch:
                masked = np.concatenate([masked, np.zeros((batch - rows,) + masked.shape[1:], "float32")])
            weights[part] = np.asarray(score(masked.astype("float32"), w_rows[:len(masked)]))[:rows]
        return weights
