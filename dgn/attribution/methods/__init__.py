"""The attribution methods, one small class each on :class:`dgn.attribution.settings.Method`, registered
in this order (``--method all``): saliency, smoothgrad, guided, integrated_gradients, gradcam, gradcam++,
scorecam, occlusion.
"""

from dgn.attribution.methods import (saliency, smoothgrad, guided, integrated_gradients, gradcam,  # noqa: F401
                                     scorecam, occlusion)
from dgn.attribution.methods.layers import LayerMethod, auto_layer, check_layer, to_input
from dgn.attribution.methods.occlusion import occlusion_defaults, occlusion_windows

__all__ = ["LayerMethod", "auto_layer", "check_layer", "to_input", "occlusion_defaults", "occlusion_windows"]
