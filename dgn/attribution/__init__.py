"""Attribution maps: which parts of a photo D's objective depends on (``dgn.explain``).

    import dgn
    clf = dgn.load_classifier("efficientnet_lite0")
    maps = dgn.explain(clf, photos, "golden retriever", "gradcam")     # (N, 224, 224) float32

The shared base of the methods, their registry and settings: :mod:`.settings`; the methods, a small class
each: :mod:`.methods`; the images and targets: :mod:`.inputs`; gradients (TensorFlow or JAX) and guided
backpropagation: :mod:`.gradients`; :func:`attribute` and :func:`explain`: :mod:`.maps`; deletion /
insertion curves: :mod:`.faithfulness`. On top: ``dgn explain``'s folders of photos (:mod:`.photos`) and
dataset examples (:mod:`.examples`, with :mod:`.receptive_field`).
"""

from dgn.attribution.faithfulness import blur, deletion_insertion
from dgn.attribution.inputs import as_inputs, target_objective
from dgn.attribution.maps import attribute, explain
from dgn.attribution.methods import LayerMethod, auto_layer, check_layer, occlusion_defaults, occlusion_windows
from dgn.attribution.settings import (ALIASES, Attribution, AttributionWarning, CAM_METHODS, DEFAULTS,
                                      DIRECT_METHODS, METHODS, Method, PIXEL_METHODS, REFERENCES, REGISTRY,
                                      check_settings, get_method, method_name, register, unregister)

__all__ = ["attribute", "explain", "deletion_insertion", "blur", "Attribution", "METHODS", "ALIASES", "DEFAULTS",
           "REFERENCES", "PIXEL_METHODS", "CAM_METHODS", "DIRECT_METHODS", "method_name", "check_settings",
           "target_objective", "as_inputs", "auto_layer", "check_layer", "occlusion_windows", "occlusion_defaults",
           "Method", "LayerMethod", "AttributionWarning", "REGISTRY", "register", "unregister", "get_method"]
