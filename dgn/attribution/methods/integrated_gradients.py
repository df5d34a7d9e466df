"""Integrated gradients (Sundararajan, Taly and Yan 2017)."""


import numpy as np

from dgn.attribution.gradients import input_gradient, run_batches
from dgn.attribution.inputs import pixels_in_space
from dgn.attribution.settings import BASELINES, Method, register
from dgn.errors import DgnError


@register
class IntegratedGradients(Method):
    """``sum_c (x - x') * mean_k grad(x' + k/m (x - x'))``, k = 1..m (``steps``), from ``baseline`` x' (black,
    white or grey pixels, or ``zero``: D's input 0); signed, and its sum approaches value(x) - value(x') as
    ``steps`` grows (the paper's completeness, eq. 3). Maps (N, H, W), signed."""

    name = "integrated_gradients"
    aliases = ("ig", "integrated-gradients")
    reference = "Sundararajan, Taly and Yan 2017"
    defaults = {"steps": 50, "baseline": "black"}
    pixel_level = True

    def validate(self, out):
        self.positive_int(out, "steps")
        if out["baseline"] not in BASELINES:
            raise DgnError(f"integrated_gradients baseline {out['baseline']!r}: give one of {', '.join(BASELINES)}")

    def maps(self, classifier, x, target, index, batch, settings, kind):
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


def _baseline(classifier, image, name):
    if name == "zero":
        return np.zeros_like(image)
    value = {"black": 0.0, "white": 255.0, "grey": 127.5}[name]
    return np.broadcast_to(pixels_in_space(classifier, value), image.shape).astype("float32")
