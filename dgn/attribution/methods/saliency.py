"""Saliency (Simonyan, Vedaldi and Zisserman 2013)."""


import numpy as np

from dgn.attribution.gradients import input_gradient, run_batches
from dgn.attribution.settings import Method, register


@register
class Saliency(Method):
    """``max_c |d value / d x|``: the gradient in D's input space, its largest magnitude over channels.
    Maps (N, H, W) >= 0."""

    name = "saliency"
    aliases = ("vanilla",)
    reference = "Simonyan, Vedaldi and Zisserman 2013"
    defaults = {}
    pixel_level = True
    direct = True
    guided = False

    def maps(self, classifier, x, target, index, batch, settings, kind):
        grad = input_gradient(classifier, target, "value", self.guided)
        values, logits, g = run_batches(grad, [x, target.rows(index)], batch)
        return np.max(np.abs(g), axis=-1), values, logits
