"""SmoothGrad (Smilkov et al. 2017)."""


import numpy as np

from dgn.attribution.gradients import input_gradient, run_batches
from dgn.attribution.settings import Method, register
from dgn.errors import DgnError


@register
class SmoothGrad(Method):
    """The mean of ``|d value / d x|`` over ``samples`` noisy copies ``x + N(0, (noise * (max x - min x))^2)``,
    then the maximum over channels. The noise of image k is
    ``numpy.random.RandomState(seed).standard_normal((samples, H, W, C))`` times its sigma: the same for
    every image whatever the batch (tf-keras-vis draws the same numbers for one image after
    ``numpy.random.seed(seed)``). Maps (N, H, W) >= 0."""

    name = "smoothgrad"
    aliases = ("smooth-grad",)
    reference = "Smilkov et al. 2017"
    defaults = {"samples": 25, "noise": 0.2, "seed": 0}
    pixel_level = True

    def validate(self, out):
        self.positive_int(out, "samples")
        noise = out["noise"]
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 10:
            raise DgnError(f"smoothgrad noise {noise!r}: give the noise's standard deviation as a fraction of the "
                           f"image's value range, e.g. 0.2")
        out["noise"] = float(noise)
        if isinstance(out["seed"], bool) or not isinstance(out["seed"], (int, np.integer)) or out["seed"] < 0:
            raise DgnError(f"smoothgrad seed {out['seed']!r}: give a non-negative integer")
        out["seed"] = int(out["seed"])

    def maps(self, classifier, x, target, index, batch, settings, kind):
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
