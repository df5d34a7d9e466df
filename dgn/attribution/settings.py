"""Attribution methods: the shared base :class:`Method`, the one registry (:func:`register`), and what
:func:`dgn.attribute` returns (:class:`Attribution`).

    import dgn
    clf = dgn.load_classifier("efficientnet_lite0")
    maps = dgn.explain(clf, photos, "golden retriever", "gradcam")     # (N, 224, 224) float32

Each method is a small class on :class:`Method`, one file each in :mod:`dgn.attribution.methods`
(saliency and guided backpropagation, SmoothGrad, integrated gradients, Grad-CAM and Grad-CAM++,
Score-CAM, occlusion; each class's docstring gives its formula and paper). A new method is one class::

    @dgn.attribution.register
    class Edges(dgn.attribution.Method):
        name = "edges"
        defaults = {"scale": 1.0}
        def maps(self, classifier, x, target, index, batch, settings, kind):
            return np.abs(np.diff(x, axis=1, append=0)).sum(-1) * settings["scale"]   # (N, H, W)

and is then known to :func:`dgn.explain`, :func:`dgn.attribute`, ``dgn explain --method edges`` (its
settings by ``--setting scale=2``), ``dgn examples --maps`` and ``--method all``. :data:`METHODS`,
:data:`DEFAULTS`, :data:`REFERENCES`, :data:`ALIASES` and the groups are live views of the registry.

What a map explains: the objective's value (``dgn.optvis.objectives``: class, compound classes, channel,
neuron, sums). A class target given as a string or index means the class's logit (Grad-CAM's y^c); pass
an objective (``dgn.parse_target(spec, clf, "logsoftmax")``) for another. Score-CAM and occlusion score a
class target by D's probability of it (as Wang et al. and Zeiler and Fergus; ``score="value"`` for the
logit), other targets by their value. Without a target, each image's own top-1 class.

Maps are (N, H, W) float32 in D's input resolution. Gradients come from ``tf.GradientTape`` in a
``tf.function`` (TensorFlow) or ``jax.value_and_grad`` in ``jax.jit`` (JAX).
"""



import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from dgn.errors import DgnError


BASELINES = ("black", "white", "grey", "zero")


FILLS = ("grey", "black", "mean")


SCORES = ("auto", "value", "probability")


UPSAMPLES = ("bilinear", "corners")


EPSILON = 1e-7   # keras.backend.epsilon(): Score-CAM's mask normalization, as tf-keras-vis


class AttributionWarning(UserWarning):
    """What a method warns of while it computes maps (``warnings.warn(text, AttributionWarning)``):
    collected into :attr:`Attribution.notes` (``dgn explain`` prints them and writes them to the sidecar)."""


class ScoreWarning(AttributionWarning):
    """An :class:`AttributionWarning` that image ``image`` (its row in the call to :meth:`Method.maps`) was
    scored otherwise than the setting says: ``score`` is what its map is of (``log_probability``, where D's
    probability underflows), recorded in :attr:`Attribution.scores`."""

    def __init__(self, text, image, score):
        super().__init__(text)
        self.image, self.score = image, score


LOCK = threading.RLock()   # one attribution at a time in a process (guided backprop swaps layers' ReLUs)


class Method:
    """The shared base of attribution methods. A subclass sets:

    - ``name``: the canonical name (``dgn explain --method NAME``); ``aliases``: other spellings;
    - ``reference``: the paper; ``defaults``: {setting: default} (every setting it accepts);
    - ``pixel_level``: True for maps at pixel level (shown as |map| scaled by its 99th percentile), False for
      maps of a layer or of occluded regions (shown as their positive part scaled by the maximum);
    - ``direct``: True when :meth:`maps` returns ``(maps, values, logits)`` from one call of D at the images
      (the value the map explains and D's logits, so that each image's top-1 class costs no extra call);

    and implements :meth:`maps` (warning with :class:`AttributionWarning` of anything the user should know); :meth:`validate` checks its own settings and :meth:`prepare` resolves
    those that depend on the classifier (a layer, a window). Register it with :func:`register`."""

    name = None
    aliases = ()
    reference = ""
    defaults = {}
    pixel_level = False
    direct = False

    def check(self, settings):
        """The defaults updated by ``settings`` (None keeps a default), each checked.

        Raises:
            DgnError: a setting the method does not have, or a bad value (one line)."""
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            allowed = ", ".join(self.defaults) if self.defaults else "none"
            raise DgnError(f"{self.name} has no setting {unknown[0]!r}; its settings: {allowed}")
        out = dict(self.defaults)
        out.update({k: v for k, v in settings.items() if v is not None or k == "layer"})
        if "upsample" in out and out["upsample"] not in UPSAMPLES:
            raise DgnError(f"{self.name} upsample {out['upsample']!r}: give bilinear (half-pixel centres) or "
                           f"corners (corners aligned, as scipy.ndimage.zoom and tf-keras-vis)")
        if "score" in out and out["score"] not in SCORES:
            raise DgnError(f"{self.name} score {out['score']!r}: give one of {', '.join(SCORES)}")
        if "layer" in out and out["layer"] is not None and not isinstance(out["layer"], str):
            raise DgnError(f"{self.name} layer {out['layer']!r}: give a layer name (`dgn info CONFIG` lists them)")
        self.validate(out)
        return out

    def validate(self, settings):
        """Checks (and may normalize, in place) the method's own settings; DgnError in one line."""

    def prepare(self, classifier, settings, size):
        """Resolves, in place, the settings that depend on the classifier or the input ``size`` (H, W)."""

    def maps(self, classifier, x, target, index, batch, settings, kind):
        """Maps (N, H, W) of images ``x`` (N, H, W, C) in D's input space for ``target``
        (:class:`dgn.attribution.inputs.Target`; ``target.rows(index)`` its per-row weights), calling D on
        at most ``batch`` rows at a time; ``kind``: how a score-based method scores a row (value or
        probability). A ``direct`` method returns ``(maps, values, logits)``."""
        raise NotImplementedError

    def positive_int(self, settings, key, allow_none=False):
        """Checks that ``settings[key]`` is a positive integer (or None with ``allow_none``), in place."""
        value = settings[key]
        if value is None and allow_none:
            return
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise DgnError(f"{self.name} {key} {value!r}: give a positive integer")
        settings[key] = int(value)


REGISTRY = {}   # canonical name -> Method instance, in registration order


def register(cls):
    """Registers a :class:`Method` subclass (usable as a class decorator); returns the class.

    Raises:
        DgnError: not a Method subclass with a name, or a name or alias another method has."""
    if not (isinstance(cls, type) and issubclass(cls, Method)) or not cls.name:
        raise DgnError(f"register({cls!r}): give a subclass of dgn.attribution.Method with a name")
    def same(m):   # the same class registered again (a module imported twice) replaces itself
        return (type(m).__module__, type(m).__qualname__) == (cls.__module__, cls.__qualname__)

    taken = {n for m in REGISTRY.values() if not same(m) for n in (m.name, *m.aliases)}
    clash = [n for n in (cls.name, *cls.aliases) if n in taken]
    if clash:
        raise DgnError(f"attribution method name {clash[0]!r} is already taken")
    REGISTRY[cls.name] = cls()
    return cls


def unregister(name):
    """Removes a registered method (by canonical name); no error if it is not there."""
    REGISTRY.pop(name, None)


def get_method(name):
    """The registered :class:`Method` of ``name`` (case, '-', spaces and aliases allowed).

    Raises:
        DgnError: an unknown name, listing the valid ones."""
    key = str(name).strip().lower().replace(" ", "_")
    if key not in REGISTRY:
        key = ALIASES.get(key, key)
    if key not in REGISTRY:
        raise DgnError(f"unknown attribution method {name!r}; valid: {', '.join(REGISTRY)}")
    return REGISTRY[key]


class _Names(Sequence):
    """The registered methods' names for which ``keep(method)`` holds, in registration order (a live view)."""

    def __init__(self, keep=lambda m: True):
        self._keep = keep

    def _names(self):
        return tuple(n for n, m in REGISTRY.items() if self._keep(m))

    def __getitem__(self, i):
        return self._names()[i]

    def __len__(self):
        return len(self._names())

    def __repr__(self):
        return repr(self._names())


class _Table(Mapping):
    """{name: value(method)} over the registry (a live view)."""

    def __init__(self, value, pairs=None):
        self._value, self._pairs = value, pairs

    def _dict(self):
        if self._pairs:
            return {a: m.name for m in REGISTRY.values() for a in m.aliases}
        return {n: self._value(m) for n, m in REGISTRY.items()}

    def __getitem__(self, key):
        return self._dict()[key]

    def __iter__(self):
        return iter(self._dict())

    def __len__(self):
        return len(self._dict())

    def __repr__(self):
        return repr(self._dict())


METHODS = _Names()                                               # every method
PIXEL_METHODS = _Names(lambda m: m.pixel_level)                  # maps at pixel level
CAM_METHODS = _Names(lambda m: "layer" in m.defaults)            # maps of a layer
DIRECT_METHODS = _Names(lambda m: m.direct)                      # one gradient at the image itself
DEFAULTS = _Table(lambda m: dict(m.defaults))                    # name -> {setting: default}
REFERENCES = _Table(lambda m: m.reference)                       # name -> the paper
ALIASES = _Table(None, pairs=True)                               # alias -> name


@dataclass
class Attribution:
    """What :func:`attribute` returns: ``maps`` (N, H, W) float32 in D's input resolution; ``method``;
    ``settings`` (resolved: the layer found, the window, ...); ``targets``: per image, the objective's
    description (``Objective.describe()``); ``objectives``: per image, the Objective explained; ``values``:
    per image, what the map explains at the image (the objective's value, or D's probability for
    ``score="probability"``); ``seconds``: the time taken; ``notes``: lines about what was done differently
    (e.g. a score computed as a log-probability where the probability underflows); ``scores``: per image,
    how a score-based method scored it (``value``, ``probability``, ``log_probability``; None for the
    others)."""

    maps: np.ndarray
    method: str
    settings: dict
    targets: list
    objectives: list
    values: np.ndarray
    seconds: float
    notes: list = field(default_factory=list)
    scores: list = field(default_factory=list)


def method_name(name):
    """The canonical method name of ``name`` (case, '-' and aliases allowed); DgnError listing them."""
    return get_method(name).name


def check_settings(method, settings):
    """``method``'s settings: the defaults updated by ``settings``, each checked; DgnError (one line)."""
    return get_method(method).check(settings)
