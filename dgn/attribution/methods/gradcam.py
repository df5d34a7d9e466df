"""Grad-CAM (Selvaraju et al. 2017) and Grad-CAM++ (Chattopadhay et al. 2018)."""


import numpy as np

from dgn.attribution.gradients import layer_gradient, run_batches
from dgn.attribution.methods.layers import LayerMethod, to_input
from dgn.attribution.settings import register


@register
class GradCam(LayerMethod):
    """``ReLU(sum_k mean_ij(dA_k) A_k)`` at a layer A (``layer``; default the last layer with a 4-D output),
    bilinearly resized to D's input size (``upsample``: bilinear with half-pixel centres, or corners as
    tf-keras-vis); where D crops or resizes before the layer, placed on the pixels the layer sees
    (:func:`~dgn.attribution.methods.layers.to_input`). Maps (N, H, W) >= 0."""

    name = "gradcam"
    aliases = ("grad-cam",)
    reference = "Selvaraju et al. 2017"
    defaults = {"layer": None, "upsample": "bilinear"}
    direct = True

    def weights(self, a, g):
        """The weight of each channel, (N, 1, 1, K): the mean gradient."""
        return g.mean(axis=(1, 2), keepdims=True)

    def maps(self, classifier, x, target, index, batch, settings, kind):
        grad = layer_gradient(classifier, target, settings["layer"])
        values, logits, a, g = run_batches(grad, [x, target.rows(index)], batch)
        a, g = a.astype("float64"), g.astype("float64")
        cam = np.maximum((self.weights(a, g) * a).sum(axis=-1), 0.0)
        return to_input(classifier, settings["layer"], cam[..., None], x.shape[1:3],
                        settings["upsample"])[..., 0], values, logits


@register
class GradCamPlusPlus(GradCam):
    """Grad-CAM with the weights ``sum_ij alpha_ij ReLU(dA_ij)``, ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)``
    normalized to sum 1 over positions (the authors' code). The factor exp(S) of the paper's exponential
    score is one positive number per image and is left out (it overflows in float32 above 88)."""

    name = "gradcam++"
    aliases = ("gradcampp", "gradcam_plus_plus", "grad-cam++")
    reference = "Chattopadhay et al. 2018"

    def weights(self, a, g):
        g2, g3 = g ** 2, g ** 3
        total = a.sum(axis=(1, 2), keepdims=True)
        denom = 2.0 * g2 + total * g3
        alphas = g2 / np.where(denom != 0.0, denom, 1.0)
        norm = alphas.sum(axis=(1, 2), keepdims=True)
        alphas = alphas / np.where(norm != 0.0, norm, 1.0)
        return (alphas * np.maximum(g, 0.0)).sum(axis=(1, 2), keepdims=True)
