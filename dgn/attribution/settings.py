"""Attribution maps: which parts of a photo D's objective depends on (``dgn.explain``).

    import dgn
    clf = dgn.load_classifier("efficientnet_lite0")
    maps = dgn.explain(clf, photos, "golden retriever", "gradcam")     # (N, 224, 224) float32

Methods (:data:`METHODS`; settings and their defaults in :data:`DEFAULTS`):

- ``saliency`` (Simonyan et al. 2013): ``max_c |d value / d x|``, the gradient in D's input space.
- ``smoothgrad`` (Smilkov et al. 2017): the mean of ``|d value / d x|`` over ``samples`` noisy copies
  ``x + N(0, (noise * (max x - min x))^2)``, then the maximum over channels. The noise of image k is
  ``numpy.random.RandomState(seed).standard_normal((samples, H, W, C))`` times its sigma: the same for
  every image whatever the batch (tf-keras-vis draws the same numbers for one image after
  ``numpy.random.seed(seed)``).
- ``guided`` (guided backpropagation, Springenberg et al. 2014): the gradient with every ReLU passing
  back only positive gradients where its input was positive; ``max_c |.|``. Handled: ReLU and ReLU6
  (``activation="relu"`` / ``"relu6"`` of any layer, ``Activation``, ``keras.layers.ReLU`` without a
  negative slope or threshold); a classifier with another activation on the way to its logits (swish,
  GELU, leaky ReLU, sigmoid, tanh, ...) is refused in one line. Nonlinearities hidden inside custom
  layers are not seen (their ordinary gradient is used).
- ``integrated_gradients`` (Sundararajan et al. 2017): ``sum_c (x - x') * mean_k grad(x' + k/m (x - x'))``,
  k = 1..m (``steps``), from ``baseline`` x' (black, white or grey pixels, or ``zero``: D's input 0);
  signed, and its sum approaches value(x) - value(x') as ``steps`` grows.
- ``gradcam`` (Selvaraju et al. 2017): ``ReLU(sum_k mean_ij(dA_k) A_k)`` at a layer A (``layer``; default
  the last layer with a 4-D output), bilinearly resized to D's input size.
- ``gradcam++`` (Chattopadhay et al. 2018): the weights ``sum_ij alpha_ij ReLU(dA_ij)`` with
  ``alpha = g^2 / (2 g^2 + sum_ab A_ab g^3)`` normalized to sum 1 over positions (the authors' code). The
  factor exp(S) of the paper's exponential score is one positive number per image and is left out (it
  overflows in float32 above 88).
- ``scorecam`` (Wang et al. 2020): ``ReLU(sum_k s_k A_k)`` where s_k is the score of the input masked by
  channel k (resized to the input, scaled to 0..1: ``x * M_k`` in D's input space); ``channels`` keeps the
  N channels of largest spatial standard deviation (Faster Score-CAM), all by default.
- ``occlusion`` (Zeiler and Fergus 2014): a ``window`` x ``window`` patch of ``fill`` (grey, black or the
  image's mean colour) slid with ``stride``; each pixel gets the mean drop of the score over the windows
  that cover it (signed). All windows of an image go through D in batches of ``batch_size``.

What a map explains: the objective's value (``dgn.optvis.objectives``: class, compound classes, channel,
neuron, sums). A class target given as a string or index means the class's logit (Grad-CAM's y^c); pass
an objective (``dgn.parse_target(spec, clf, "logsoftmax")``) for another. Score-CAM and occlusion score a
class target by D's probability of it (as Wang et al. and Zeiler and Fergus; ``score="value"`` for the
logit), other targets by their value. Without a target, each image's own top-1 class.

Maps are (N, H, W) float32 in D's input resolution. Gradients come from ``tf.GradientTape`` in a
``tf.function`` (TensorFlow) or ``jax.value_and_grad`` in ``jax.jit`` (JAX).
"""


from dataclasses import dataclass, field

import numpy as np

from dgn.errors import DgnError


METHODS = ("saliency", "smoothgrad", "guided", "integrated_gradients", "gradcam", "gradcam++", "scorecam",
           "occlusion")


ALIASES = {"ig": "integrated_gradients", "integrated-gradients": "integrated_gradients",
           "guided_backprop": "guided", "guided-backprop": "guided", "guided_backpropagation": "guided",
           "gradcampp": "gradcam++", "gradcam_plus_plus": "gradcam++", "grad-cam": "gradcam",
           "grad-cam++": "gradcam++", "score-cam": "scorecam", "score_cam": "scorecam", "vanilla": "saliency",
           "smooth-grad": "smoothgrad"}


DEFAULTS = {
    "saliency": {},
    "smoothgrad": {"samples": 25, "noise": 0.2, "seed": 0},
    "guided": {},
    "integrated_gradients": {"steps": 50, "baseline": "black"},
    "gradcam": {"layer": None, "upsample": "bilinear"},
    "gradcam++": {"layer": None, "upsample": "bilinear"},
    "scorecam": {"layer": None, "channels": None, "score": "auto", "upsample": "bilinear"},
    "occlusion": {"window": None, "stride": None, "fill": "grey", "score": "auto"},
}


REFERENCES = {
    "saliency": "Simonyan, Vedaldi and Zisserman 2013",
    "smoothgrad": "Smilkov et al. 2017",
    "guided": "Springenberg et al. 2014",
    "integrated_gradients": "Sundararajan, Taly and Yan 2017",
    "gradcam": "Selvaraju et al. 2017",
    "gradcam++": "Chattopadhay et al. 2018",
    "scorecam": "Wang et al. 2020",
    "occlusion": "Zeiler and Fergus 2014",
}


PIXEL_METHODS = ("saliency", "smoothgrad", "guided", "integrated_gradients")   # maps at pixel level


CAM_METHODS = ("gradcam", "gradcam++", "scorecam")                               # maps of a layer


DIRECT_METHODS = ("saliency", "guided", "gradcam", "gradcam++")    # one gradient at the image itself


BASELINES = ("black", "white", "grey", "zero")


FILLS = ("grey", "black", "mean")


SCORES = ("auto", "value", "probability")


UPSAMPLES = ("bilinear", "corners")


EPSILON = 1e-7   # keras.backend.epsilon(): Score-CAM's mask normalization, as tf-keras-vis


@dataclass
class Attribution:
    """What :func:`attribute` returns: ``maps`` (N, H, W) float32 in D's input resolution; ``method``;
    ``settings`` (resolved: the layer found, the window, ...); ``targets``: per image, the objective's
    description (``Objective.describe()``); ``objectives``: per image, the Objective explained; ``values``:
    per image, what the map explains at the image (the objective's value, or D's probability for
    ``score="probability"``); ``seconds``: the time taken."""

    maps: np.ndarray
    method: str
    settings: dict
    targets: list
    objectives: list
    values: np.ndarray
    seconds: float
    notes: list = field(default_factory=list)


def method_name(name):
    """The canonical method name of ``name`` (case, '-' and aliases allowed); DgnError listing them."""
    key = str(name).strip().lower().replace(" ", "_")
    key = ALIASES.get(key, key)
    if key not in METHODS:
        raise DgnError(f"unknown attribution method {name!r}; valid: {', '.join(METHODS)}")
    return key


def check_settings(method, settings):
    """``method``'s settings: the defaults updated by ``settings``, each checked; DgnError (one line)."""
    method = method_name(method)
    valid = DEFAULTS[method]
    unknown = sorted(set(settings) - set(valid))
    if unknown:
        allowed = ", ".join(valid) if valid else "none"
        raise DgnError(f"{method} has no setting {unknown[0]!r}; its settings: {allowed}")
    out = dict(valid)
    out.update({k: v for k, v in settings.items() if v is not None or k == "layer"})

    def positive_int(key, allow_none=False):
        value = out[key]
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DgnError(f"{method} {key} {value!r}: give a positive integer")
        out[key] = int(value)

    if method == "smoothgrad":
        positive_int("samples")
        noise = out["noise"]
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not 0 <= noise < 10:
            raise DgnError(f"smoothgrad noise {noise!r}: give the noise's standard deviation as a fraction of the "
                           f"image's value range, e.g. 0.2")
        out["noise"] = float(noise)
        if isinstance(out["seed"], bool) or not isinstance(out["seed"], (int, np.integer)) or out["seed"] < 0:
            raise DgnError(f"smoothgrad seed {out['seed']!r}: give a non-negative integer")
        out["seed"] = int(out["seed"])
    elif method == "integrated_gradients":
        positive_int("steps")
        if out["baseline"] not in BASELINES:
            raise DgnError(f"integrated_gradients baseline {out['baseline']!r}: give one of {', '.join(BASELINES)}")
    elif method == "scorecam":
        positive_int("channels", allow_none=True)
    elif method == "occlusion":
        positive_int("window", allow_none=True)
        positive_int("stride", allow_none=True)
        if out["fill"] not in FILLS:
            raise DgnError(f"occlusion fill {out['fill']!r}: give one of {', '.join(FILLS)}")
    if "upsample" in out and out["upsample"] not in UPSAMPLES:
        raise DgnError(f"{method} upsample {out['upsample']!r}: give bilinear (half-pixel centres) or corners "
                       f"(corners aligned, as scipy.ndimage.zoom and tf-keras-vis)")
    if "score" in out and out["score"] not in SCORES:
        raise DgnError(f"{method} score {out['score']!r}: give one of {', '.join(SCORES)}")
    if "layer" in out and out["layer"] is not None and not isinstance(out["layer"], str):
        raise DgnError(f"{method} layer {out['layer']!r}: give a layer name (`dgn info CONFIG` lists them)")
    return out
