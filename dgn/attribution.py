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

What a map explains: the objective's value (``dgn.objectives``: class, compound classes, channel,
neuron, sums). A class target given as a string or index means the class's logit (Grad-CAM's y^c); pass
an objective (``dgn.parse_target(spec, clf, "logsoftmax")``) for another. Score-CAM and occlusion score a
class target by D's probability of it (as Wang et al. and Zeiler and Fergus; ``score="value"`` for the
logit), other targets by their value. Without a target, each image's own top-1 class.

Maps are (N, H, W) float32 in D's input resolution. Gradients come from ``tf.GradientTape`` in a
``tf.function`` (TensorFlow) or ``jax.value_and_grad`` in ``jax.jit`` (JAX).
"""

import contextlib
import json
import time
from dataclasses import dataclass, field

import keras
import numpy as np
from keras import ops

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


# ----------------------------------------------------------------------------------------------- targets

@dataclass
class _Target:
    """What the maps of a group of images explain: per-row class weights (``objective`` None; the value is
    ``sum_c w_c act(z_c)`` with ``activation`` logit, logsoftmax or relu) or one objective for every row."""

    objective: object = None
    activation: str = "logit"
    weights: np.ndarray = None     # (rows, classes) for class targets
    top1: bool = False             # each row's own top-1 class, found in the same call of D (weights None)

    @property
    def layers(self):
        return tuple(self.objective.layers) if self.objective is not None else ()

    def score_kind(self, score):
        """How the perturbation methods score a row: probability (class targets with score auto or
        probability) or value."""
        if score == "probability" and self.objective is not None:
            raise DgnError("score probability is for class targets; this target is a "
                           f"{self.objective.describe().get('kind', 'compound')}: use score value")
        if self.objective is None and score in ("auto", "probability"):
            return "probability"
        return "value"

    def key(self, kind):
        if self.objective is None:
            return ("classes", "probability" if kind == "probability" else self.activation, self.top1)
        return ("objective", _objective_key(self.objective))

    def rows(self, index, count=None):
        """The weights of image ``index`` repeated ``count`` times (or of images ``index``, a list)."""
        if self.objective is None and not self.top1:
            w = self.weights[index]
            return np.repeat(w[None], count, axis=0) if count is not None else w
        n = count if count is not None else len(index)
        return np.zeros((n, 1), "float32")

    def value_fn(self, kind, binary):
        if self.objective is None:
            act = "probability" if kind == "probability" else self.activation
            top1 = self.top1

            def value(outputs, weights):
                logits = outputs["logits"]
                if top1:
                    weights = ops.stop_gradient(ops.one_hot(ops.argmax(logits, axis=-1), logits.shape[-1]))
                if act == "probability":
                    out = ops.softmax(logits / 2.0 if binary else logits, axis=-1)
                elif act == "logsoftmax":
                    out = ops.log_softmax(logits, axis=-1)
                elif act == "relu":
                    out = ops.relu(logits)
                else:
                    out = logits
                return ops.sum(out * ops.cast(weights, out.dtype), axis=-1)
            return value
        objective = self.objective
        return lambda outputs, weights: objective.value(outputs)


def _objective_key(objective):
    """A cache key: the description of dgn's own objectives (equal objectives share compiled functions),
    else the object's identity."""
    if type(objective).__module__ == "dgn.objectives":
        try:
            return type(objective).__name__ + json.dumps(objective.describe(), sort_keys=True, default=str)
        except (NotImplementedError, TypeError, ValueError):
            pass
    return f"id:{id(objective)}"


def target_objective(spec, classifier):
    """The objective ``dgn explain`` uses for a target string or class index: a class means its logit
    (``parse_target(spec, classifier, "logit", 0)``); channel, neuron and compound targets as for generation.
    Raises DgnError for a target the classifier lacks."""
    from dgn.objectives import parse_target

    return parse_target(str(spec), classifier, "logit", 0.0)


def _as_target_objective(objective, classifier):
    from dgn.objectives import Objective

    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, (str, int, np.integer)) and not isinstance(objective, bool):
        return target_objective(objective, classifier)
    raise DgnError(f"objective {objective!r}: give a dgn objective, a target string such as '207', "
                   f"'golden retriever' or 'channel:LAYER:C', or None for each image's top-1 class")


def _class_rows(objective, num_classes):
    """(activation, weights (classes,)) of a plain class objective, else None."""
    from dgn.objectives import ClassObjective

    if type(objective) is not ClassObjective:
        return None
    w = np.zeros(num_classes, "float32")
    for index, weight in objective.classes:
        w[index] += weight
    return objective.activation, w


def _resolve_targets(classifier, objective, x, batch_size):
    """[(image indices, _Target)], and per image the Objective explained."""
    from dgn.objectives import ClassObjective

    n = len(x)
    classes = classifier.num_classes
    if objective is None:
        top1 = np.argmax(classifier.predict_logits(x, batch_size), axis=-1)
        objectives = [ClassObjective([(int(c), 1.0)], "logit", 0.0, classifier.class_names) for c in top1]
    elif isinstance(objective, (list, tuple)):
        if len(objective) != n:
            raise DgnError(f"{len(objective)} objectives for {n} images: give one per image, or one for all")
        objectives = [_as_target_objective(o, classifier) if o is not None else None for o in objective]
        if any(o is None for o in objectives):
            top1 = np.argmax(classifier.predict_logits(x, batch_size), axis=-1)
            objectives = [o if o is not None else ClassObjective([(int(top1[k]), 1.0)], "logit", 0.0,
                                                                 classifier.class_names)
                          for k, o in enumerate(objectives)]
    else:
        objectives = [_as_target_objective(objective, classifier)] * n
    groups, order = {}, []
    for k, obj in enumerate(objectives):
        rows = _class_rows(obj, classes)
        key = ("classes", rows[0]) if rows is not None else ("objective", id(obj))
        if key not in groups:
            groups[key] = ([], [], obj)
            order.append(key)
        groups[key][0].append(k)
        if rows is not None:
            groups[key][1].append(rows[1])
    out = []
    for key in order:
        index, weights, obj = groups[key]
        if key[0] == "classes":
            target = _Target(activation=key[1], weights=np.stack(weights).astype("float32"))
        else:
            target = _Target(objective=obj)
        out.append((index, target))
    return out, objectives


# ------------------------------------------------------------------------------------------ the backends

def _backend():
    name = keras.backend.backend()
    if name not in ("tensorflow", "jax"):
        raise DgnError(f"attribution maps need the tensorflow or jax backend, not {name}")
    return name


def _compile(fn):
    if _backend() == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        return tf.function(fn, reduce_retracing=True)
    import jax

    return jax.jit(fn)


def _value_and_grad(fn, x, *args):
    """(values, aux, d sum(values) / dx) where ``fn(x, *args)`` gives (values, one per row, and anything else),
    inside a compiled function."""
    if _backend() == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            tape.watch(x)
            values, aux = fn(x, *args)
            total = tf.reduce_sum(values)
        grads = tape.gradient(total, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return values, aux, grads
    import jax

    def total(x_):
        values, aux = fn(x_, *args)
        return jax.numpy.sum(values), (values, aux)

    (_, (values, aux)), grads = jax.value_and_grad(total, has_aux=True)(x)
    return values, aux, grads


class _Runner:
    """A Keras model called in inference mode: directly (TensorFlow) or statelessly with its weights as
    arguments (JAX: they are not baked into the compiled function as constants)."""

    def __init__(self, model):
        self.model = model
        self.jax = _backend() == "jax"

    def state(self):
        if not self.jax:
            return ()
        return ([v.value for v in self.model.trainable_variables],
                [v.value for v in self.model.non_trainable_variables])

    def __call__(self, state, inputs):
        if self.jax:
            return self.model.stateless_call(state[0], state[1], inputs, training=False)[0]
        return self.model(inputs, training=False)


def _kernels(classifier):
    """Compiled functions kept with the classifier (reused from batch to batch)."""
    return classifier.__dict__.setdefault("_attribution_kernels", {})


def _input_gradient(classifier, target, kind="value", guided=False):
    """f(x, w) -> (values, logits, d values / d x)."""
    key = ("input_grad", target.key(kind), guided)
    cache = _kernels(classifier)
    if key not in cache:
        runner = _Runner(classifier.features(target.layers))
        value = target.value_fn(kind, classifier.head.kind == "binary")
        swaps = _guided_swaps(classifier, runner.model) if guided else None

        def with_logits(state, x, w):
            outputs = runner(state, x)
            return value(outputs, w), outputs["logits"]

        def fn(state, x, w):
            with _guided(swaps):
                return _value_and_grad(lambda x_, w_: with_logits(state, x_, w_), x, w)

        compiled = _compile(fn)
        cache[key] = (target.objective, lambda x, w: compiled(runner.state(), x, w))
    return cache[key][1]


def _layer_models(classifier, layer, target_layers):
    """(input -> A, [input, A] -> {"logits", target layers}): the classifier split at ``layer`` (branches
    that bypass the layer are still computed from the input)."""
    analysis = classifier.analysis
    tensor = classifier.layer_output(layer)
    first = keras.Model(analysis.inputs, tensor, name="to_layer")
    outputs = {"logits": analysis.logits}
    for name in target_layers:
        if name != layer:
            outputs[name] = classifier.layer_output(name)
    second = keras.Model([analysis.inputs, tensor], outputs, name="from_layer")
    first.trainable = second.trainable = False
    return first, second


def _layer_gradient(classifier, target, layer):
    """f(x, w) -> (values, logits, A, d values / d A) at ``layer``."""
    key = ("layer_grad", target.key("value"), layer)
    cache = _kernels(classifier)
    if key not in cache:
        first, second = _layer_models(classifier, layer, target.layers)
        run_first, run_second = _Runner(first), _Runner(second)
        value = target.value_fn("value", classifier.head.kind == "binary")

        def head(state, x, a, w):
            outputs = dict(run_second(state, [x, a]))
            outputs[layer] = a
            return value(outputs, w), outputs["logits"]

        def fn(state_first, state_second, x, w):
            a = run_first(state_first, x)
            values, logits, grads = _value_and_grad(lambda a_, w_: head(state_second, x, a_, w_), a, w)
            return values, logits, a, grads

        compiled = _compile(fn)
        cache[key] = (target.objective,
                      lambda x, w: compiled(run_first.state(), run_second.state(), x, w))
    return cache[key][1]


def _layer_activation(classifier, layer):
    key = ("layer", layer)
    cache = _kernels(classifier)
    if key not in cache:
        runner = _Runner(keras.Model(classifier.analysis.inputs, classifier.layer_output(layer)))
        compiled = _compile(lambda state, x: runner(state, x))
        cache[key] = (None, lambda x: compiled(runner.state(), x))
    return cache[key][1]


def _scores(classifier, target, kind):
    """f(x, w) -> per row: the objective's value, or D's probability of the class targets. Probabilities are
    computed from the log-probabilities in float64, so that a confident D's small changes (1 - p below
    float32's resolution near 1) are not lost."""
    key = ("scores", target.key(kind))
    cache = _kernels(classifier)
    if key not in cache:
        runner = _Runner(classifier.features(target.layers))
        if kind == "probability":
            binary = classifier.head.kind == "binary"
            compiled = _compile(lambda state, x: ops.log_softmax(
                runner(state, x)["logits"] / (2.0 if binary else 1.0), axis=-1))

            def fn(x, w):
                logp = np.asarray(compiled(runner.state(), x), dtype="float64")
                return (np.exp(logp) * np.asarray(w, dtype="float64")).sum(axis=-1)
        else:
            value = target.value_fn(kind, classifier.head.kind == "binary")
            compiled = _compile(lambda state, x, w: value(runner(state, x), w))

            def fn(x, w):
                return np.asarray(compiled(runner.state(), x, w), dtype="float64")
        cache[key] = (target.objective, fn)
    return cache[key][1]


def _chunks(count, size):
    """Slices of ``size`` rows; with more than one, every call gets ``size`` rows (the last padded), so
    that one compiled shape serves them all."""
    return [slice(i, min(i + size, count)) for i in range(0, count, size)]


def _run(fn, arrays, size):
    """Calls fn(*chunk) over the rows of ``arrays`` in chunks of ``size``; numpy results, concatenated."""
    count = len(arrays[0])
    pad = count > size
    parts = []
    for part in _chunks(count, size):
        chunk = [a[part] for a in arrays]
        rows = len(chunk[0])
        if pad and rows < size:
            chunk = [np.concatenate([c, np.zeros((size - rows,) + c.shape[1:], c.dtype)]) for c in chunk]
        out = fn(*chunk)
        out = out if isinstance(out, (tuple, list)) else (out,)
        parts.append([np.asarray(o)[:rows] for o in out])
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


# ---------------------------------------------------------------------------------- guided backpropagation

def _make_guided(max_value=None):
    @ops.custom_gradient
    def guided_relu(x):
        y = ops.relu(x) if max_value is None else ops.clip(x, 0.0, max_value)

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            passes = ops.cast(x > 0, upstream.dtype)
            if max_value is not None:
                passes = passes * ops.cast(x < max_value, upstream.dtype)
            return upstream * passes * ops.cast(upstream > 0, upstream.dtype)

        return y, grad
    return guided_relu


_GUIDED_RELU = _make_guided()
_GUIDED_RELU6 = _make_guided(6.0)
_LINEAR_NAMES = ("linear", None)


def _activation_name(fn):
    if fn is None:
        return None
    name = getattr(fn, "__name__", None)
    return name if isinstance(name, str) else type(fn).__name__


def _operations(model):
    """The layers a model's graph runs, descending into nested models that are graphs themselves."""
    for op in getattr(model, "operations", None) or getattr(model, "layers", []):
        if isinstance(op, keras.layers.InputLayer):
            continue
        if isinstance(op, keras.Model):
            inner = list(_operations(op))
            if not inner:
                raise DgnError(f"guided backpropagation needs a Functional or Sequential classifier: {op.name!r} "
                               f"is a subclassed model whose activations cannot be reached")
            yield from inner
            continue
        yield op


def _guided_swaps(classifier, model):
    """[(layer, attribute, guided function)] for every ReLU / ReLU6 the model runs; DgnError for another
    activation."""
    if not classifier.layers():
        raise DgnError(f"guided backpropagation needs a Functional or Sequential classifier: the layers of "
                       f"{classifier.name} cannot be reached (a subclassed model); use saliency, smoothgrad or "
                       f"integrated_gradients")
    swaps = []
    for layer in _operations(model):
        if isinstance(layer, keras.layers.ReLU):
            slope, threshold = float(layer.negative_slope or 0.0), float(layer.threshold or 0.0)
            if slope or threshold:
                raise DgnError(f"guided backpropagation handles ReLU and ReLU6; layer {layer.name!r} is a ReLU with "
                               f"negative_slope {slope:g} and threshold {threshold:g}")
            top = layer.max_value
            if top is None:
                fn = _GUIDED_RELU
            elif float(top) == 6.0:
                fn = _GUIDED_RELU6
            else:
                fn = _make_guided(float(top))
            swaps.append((layer, "call", lambda inputs, *a, _fn=fn, **k: _fn(inputs)))
            continue
        if isinstance(layer, (keras.layers.LeakyReLU, keras.layers.PReLU, keras.layers.ELU, keras.layers.Softmax)):
            raise DgnError(f"guided backpropagation handles ReLU and ReLU6; layer {layer.name!r} is "
                           f"{type(layer).__name__}: use saliency, smoothgrad or integrated_gradients")
        if not hasattr(layer, "activation"):
            continue
        name = _activation_name(layer.activation)
        if name in _LINEAR_NAMES:
            continue
        if name == "relu":
            swaps.append((layer, "activation", _GUIDED_RELU))
        elif name == "relu6":
            swaps.append((layer, "activation", _GUIDED_RELU6))
        else:
            raise DgnError(f"guided backpropagation handles ReLU and ReLU6; layer {layer.name!r} uses {name}: use "
                           f"saliency, smoothgrad or integrated_gradients")
    return swaps


@contextlib.contextmanager
def _guided(swaps):
    """ReLUs with guided gradients while a compiled function is traced (the trace keeps them)."""
    if not swaps:
        yield
        return
    saved = []
    try:
        for layer, attr, fn in swaps:
            saved.append((layer, attr, layer.__dict__.get(attr, _MISSING)))
            setattr(layer, attr, fn)
        yield
    finally:
        for layer, attr, old in reversed(saved):
            if old is _MISSING:
                layer.__dict__.pop(attr, None)
            else:
                setattr(layer, attr, old)


_MISSING = object()


# ------------------------------------------------------------------------------------------------ layers

def auto_layer(classifier):
    """The last layer (by path) with a 4-D output of more than one position: Grad-CAM's default."""
    rows = [r for r in classifier.layers() if len(r["shape"]) == 3]
    spatial = [r for r in rows if (r["shape"][0] or 0) * (r["shape"][1] or 0) > 1]
    pick = (spatial or rows)
    if not pick:
        if not classifier.layers():
            raise DgnError(f"classifier {classifier.name} has no reachable layers (a subclassed model): Grad-CAM and "
                           f"Score-CAM need a convolutional layer; use saliency, smoothgrad, integrated_gradients "
                           f"or occlusion")
        raise DgnError(f"classifier {classifier.name} has no layer with a 4-D (batch, height, width, channels) "
                       f"output; use saliency, smoothgrad, integrated_gradients or occlusion")
    last = pick[-1]
    tensor = classifier.layer_output(last["name"])
    same = [r["name"] for r in pick if classifier.layer_output(r["name"]) is tensor]
    return max(same, key=lambda n: n.count("/"))   # a nested model's output: name its inner layer


def check_layer(classifier, layer, method="gradcam"):
    """``layer`` (or the automatic one) after checking that it has spatial dimensions."""
    if layer is None:
        return auto_layer(classifier)
    shape = tuple(classifier.layer_output(layer).shape)
    if len(shape) != 4:
        raise DgnError(f"{method} needs a layer with a 4-D (batch, height, width, channels) output; {layer!r} has "
                       f"shape {shape} without spatial dimensions: give a convolutional layer, e.g. "
                       f"{auto_layer(classifier)!r} (the default)")
    return layer


# ------------------------------------------------------------------------------------------------ inputs

def as_inputs(classifier, images, fit="auto"):
    """Images in D's input space (N, H, W, C) float32 from: uint8 pixels (one image (h, w, 3 or 1), a batch,
    or a list of any sizes: brought to D's input size as ``dgn classify`` does,
    :func:`dgn.images.fit_to_input`), or float arrays already in D's input space at its size."""
    from dgn.classify import fit_mode
    from dgn.images import fit_to_input

    height, width, channels = classifier.input_shape
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = images[None]
    items = list(images) if isinstance(images, (list, tuple)) else None
    if items is None:
        images = np.asarray(images)
        if images.ndim != 4:
            raise DgnError(f"images of shape {images.shape}: give (N, H, W, C) or one (H, W, C) image")
        items = list(images) if images.dtype == np.uint8 and images.shape[1:3] != (height, width) else None
        if items is None:
            if images.dtype == np.uint8:
                return classifier.from_pixels(images)
            if tuple(images.shape[1:]) != (height, width, channels):
                raise DgnError(f"images of shape {tuple(images.shape[1:])} in D's input space: D reads "
                               f"{height}x{width}x{channels} (give uint8 pixels of any size to have them fitted)")
            return np.asarray(images, dtype="float32")
    if not items:
        raise DgnError("no images to explain")
    mode = fit_mode(classifier, fit)
    out = []
    for k, img in enumerate(items):
        img = np.asarray(img)
        if img.dtype != np.uint8:
            if img.shape != (height, width, channels):
                raise DgnError(f"image {k} has shape {img.shape} and dtype {img.dtype}: give uint8 pixels of any "
                               f"size, or floats in D's input space at {height}x{width}x{channels}")
            out.append(img.astype("float32"))
            continue
        if img.ndim == 2:
            img = img[..., None]
        if img.ndim != 3 or img.shape[-1] not in (1, 3):
            raise DgnError(f"image {k} has shape {img.shape}: give (H, W, 3) RGB or (H, W, 1) grayscale pixels")
        rgb = np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img
        out.append(classifier.from_pixels(fit_to_input(np.ascontiguousarray(rgb), (height, width), mode)[None])[0])
    return np.stack(out).astype("float32")


def _pixels_in_space(classifier, value):
    """A pixel value (0..255, all channels) in D's input space, per channel."""
    return classifier.from_pixels(np.full((1, 1, 1, 3), float(value), "float32"))[0, 0, 0]


def _resize(maps, size, mode="bilinear"):
    """(N, h, w, K) -> (N, H, W, K), bilinear: ``bilinear`` with half-pixel centres (tf.image.resize, OpenCV:
    each cell of a layer centred on the pixels it covers), ``corners`` with the corner cells on the corner
    pixels (scipy.ndimage.zoom order 1, which tf-keras-vis uses)."""
    maps = np.asarray(maps, dtype="float32")
    if tuple(maps.shape[1:3]) == tuple(size):
        return maps
    if mode == "bilinear":
        return np.asarray(ops.image.resize(maps, tuple(size), interpolation="bilinear"), dtype="float32")
    out = maps.astype("float64")
    for axis, new in ((1, size[0]), (2, size[1])):
        old = out.shape[axis]
        where = np.linspace(0.0, old - 1.0, new) if new > 1 else np.zeros(1)
        low = np.floor(where).astype(int)
        high = np.minimum(low + 1, old - 1)
        frac = (where - low).reshape([-1 if a == axis else 1 for a in range(out.ndim)])
        out = np.take(out, low, axis=axis) * (1.0 - frac) + np.take(out, high, axis=axis) * frac
    return out.astype("float32")


# ------------------------------------------------------------------------------------------------ methods

def _saliency(classifier, x, target, index, batch, settings, guided=False):
    grad = _input_gradient(classifier, target, "value", guided)
    values, logits, g = _run(grad, [x, target.rows(index)], batch)
    return np.max(np.abs(g), axis=-1), values, logits


def _smoothgrad(classifier, x, target, index, batch, settings):
    grad = _input_gradient(classifier, target, "value")
    samples, noise = settings["samples"], settings["noise"]
    base = np.random.RandomState(settings["seed"]).standard_normal((samples,) + x.shape[1:]).astype("float32")
    maps = []
    for k, image in enumerate(x):
        sigma = noise * (float(image.max()) - float(image.min()))
        rows = image[None] + base * sigma
        _, _, g = _run(grad, [rows, target.rows(index[k], samples)], batch)
        maps.append(np.max(np.mean(np.abs(g), axis=0), axis=-1))
    return np.stack(maps)


def _baseline(classifier, image, name):
    if name == "zero":
        return np.zeros_like(image)
    value = {"black": 0.0, "white": 255.0, "grey": 127.5}[name]
    return np.broadcast_to(_pixels_in_space(classifier, value), image.shape).astype("float32")


def _integrated_gradients(classifier, x, target, index, batch, settings):
    grad = _input_gradient(classifier, target, "value")
    steps = settings["steps"]
    alphas = (np.arange(1, steps + 1, dtype="float32") / steps)[:, None, None, None]
    maps = []
    for k, image in enumerate(x):
        base = _baseline(classifier, image, settings["baseline"])
        rows = base[None] + alphas * (image - base)[None]
        _, _, g = _run(grad, [rows, target.rows(index[k], steps)], batch)
        maps.append(np.sum((image - base) * g.mean(axis=0), axis=-1))
    return np.stack(maps)


def _gradcam(classifier, x, target, index, batch, settings, plus=False):
    grad = _layer_gradient(classifier, target, settings["layer"])
    values, logits, a, g = _run(grad, [x, target.rows(index)], batch)
    a, g = a.astype("float64"), g.astype("float64")
    if plus:
        g2, g3 = g ** 2, g ** 3
        total = a.sum(axis=(1, 2), keepdims=True)
        denom = 2.0 * g2 + total * g3
        alphas = g2 / np.where(denom != 0.0, denom, 1.0)
        norm = alphas.sum(axis=(1, 2), keepdims=True)
        alphas = alphas / np.where(norm != 0.0, norm, 1.0)
        weights = (alphas * np.maximum(g, 0.0)).sum(axis=(1, 2), keepdims=True)
    else:
        weights = g.mean(axis=(1, 2), keepdims=True)
    cam = np.maximum((weights * a).sum(axis=-1), 0.0)
    return _resize(cam[..., None], x.shape[1:3], settings["upsample"])[..., 0], values, logits


def _scorecam(classifier, x, target, index, batch, settings, kind):
    layer = settings["layer"]
    activation = _layer_activation(classifier, layer)
    score = _scores(classifier, target, kind)
    (acts,) = _run(activation, [x], batch)
    maps = []
    for k, image in enumerate(x):
        a = acts[k]
        channels = np.arange(a.shape[-1])
        if settings["channels"] is not None and settings["channels"] < len(channels):
            spread = a.reshape(-1, a.shape[-1]).std(axis=0)
            channels = np.sort(np.argsort(-spread, kind="stable")[:settings["channels"]])
        weights = np.zeros(len(channels), "float64")
        w_rows = target.rows(index[k], batch)
        for part in _chunks(len(channels), batch):
            up = _resize(a[None, :, :, channels[part]], x.shape[1:3], settings["upsample"])[0]   # (H, W, k)
            low = up.min(axis=(0, 1), keepdims=True)
            high = up.max(axis=(0, 1), keepdims=True)
            masks = np.moveaxis((up - low) / (high - low + EPSILON), -1, 0)[..., None]   # (k, H, W, 1)
            rows = len(masks)
            masked = image[None] * masks
            if rows < batch and len(channels) > batch:
                masked = np.concatenate([masked, np.zeros((batch - rows,) + masked.shape[1:], "float32")])
            values = np.asarray(score(masked.astype("float32"), w_rows[:len(masked)]))[:rows]
            weights[part] = values
        cam = np.maximum((a[..., channels].astype("float64") * weights).sum(axis=-1), 0.0)
        maps.append(cam)
    return _resize(np.stack(maps)[..., None], x.shape[1:3], settings["upsample"])[..., 0]


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


def _occlusion(classifier, x, target, index, batch, settings, kind):
    score = _scores(classifier, target, kind)
    height, width = x.shape[1:3]
    window, stride = occlusion_defaults(height, width, settings)
    positions = [(y, xx) for y in occlusion_windows(height, window, stride)
                 for xx in occlusion_windows(width, window, stride)]
    (base,) = _run(score, [x, target.rows(index)], batch)
    maps = []
    for k, image in enumerate(x):
        if settings["fill"] == "mean":
            fill = image.mean(axis=(0, 1))
        else:
            fill = _pixels_in_space(classifier, 0.0 if settings["fill"] == "black" else 127.5)
        total = np.zeros((height, width), "float64")
        count = np.zeros((height, width), "float64")
        drops = []
        w_rows = target.rows(index[k], batch)
        for part in _chunks(len(positions), batch):
            chunk = positions[part]
            rows = np.repeat(image[None], batch if len(positions) > batch else len(chunk), axis=0)
            for r, (y, xx) in enumerate(chunk):
                rows[r, y:y + window, xx:xx + window] = fill
            drops += list(float(base[k]) - np.asarray(score(rows, w_rows[:len(rows)]), dtype="float64")[:len(chunk)])
        for (y, xx), drop in zip(positions, drops):
            total[y:y + window, xx:xx + window] += drop
            count[y:y + window, xx:xx + window] += 1.0
        maps.append(total / np.maximum(count, 1.0))
    return np.stack(maps)


# ------------------------------------------------------------------------------------------------ the API

def attribute(classifier, images, objective=None, method="gradcam", *, batch_size=32, fit="auto", **settings):
    """Attribution maps of ``images`` under ``classifier`` for ``objective`` by ``method``.

    Args:
        classifier: a :class:`dgn.Classifier`, a built-in name or a ``.keras`` path (as :func:`dgn.render`).
        images: uint8 pixels (one image, a batch, or a list of any sizes and 1 or 3 channels: fitted to D's
            input as ``dgn classify`` does, ``fit``), or floats in D's input space at its input size.
        objective: None (each image's top-1 class), a target string or class index ("207", "golden
            retriever", "207+281", "channel:LAYER:C", "neuron:LAYER:C:Y:X"; a class means its logit), an
            Objective, or a list of those, one per image.
        method: one of :data:`METHODS` (aliases: ig, guided_backprop, gradcam_plus_plus, ...).
        batch_size: rows per call of D (noisy copies, masked or occluded images, path points).
        **settings: the method's settings (:data:`DEFAULTS`): ``layer`` (Grad-CAM, Grad-CAM++, Score-CAM),
            ``samples``, ``noise``, ``seed`` (SmoothGrad), ``steps``, ``baseline`` (integrated gradients),
            ``channels`` (Score-CAM), ``window``, ``stride``, ``fill`` (occlusion), ``score`` (Score-CAM,
            occlusion: auto, value or probability).

    Returns:
        :class:`Attribution` (``.maps``: (N, H, W) float32 in D's input resolution).

    Raises:
        DgnError: an unknown method or setting, a target the classifier lacks, a layer without spatial
            dimensions, an activation guided backpropagation does not handle (one line each)."""
    from dgn.rendering import as_classifier

    method = method_name(method)
    settings = check_settings(method, settings)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DgnError(f"batch_size {batch_size!r}: give a positive integer")
    batch_size = int(batch_size)
    classifier = as_classifier(classifier)
    _backend()
    if method in CAM_METHODS:
        settings["layer"] = check_layer(classifier, settings["layer"], method)
        settings["layer_shape"] = [int(s) for s in classifier.layer_output(settings["layer"]).shape[1:]]
    x = as_inputs(classifier, images, fit)
    if not len(x):
        raise DgnError("no images to explain")
    started = time.perf_counter()
    direct = method in DIRECT_METHODS
    if objective is None and direct:   # each image's top-1 class, found in the same call of D as the gradient
        groups, objectives = [(list(range(len(x))), _Target(top1=True))], None
    else:
        groups, objectives = _resolve_targets(classifier, objective, x, batch_size)
    if method == "occlusion":
        settings["window"], settings["stride"] = occlusion_defaults(x.shape[1], x.shape[2], settings)
        settings["windows"] = (len(occlusion_windows(x.shape[1], settings["window"], settings["stride"]))
                               * len(occlusion_windows(x.shape[2], settings["window"], settings["stride"])))
    maps = np.zeros(x.shape[:3], "float32")
    values = np.zeros(len(x), "float64")
    kinds = set()
    for index, target in groups:
        rows, local = x[index], _local(index)
        kind = target.score_kind(settings["score"]) if "score" in settings else "value"
        kinds.add(kind)
        if method in ("saliency", "guided"):
            out, found, logits = _saliency(classifier, rows, target, local, batch_size, settings,
                                           guided=method == "guided")
        elif method in ("gradcam", "gradcam++"):
            out, found, logits = _gradcam(classifier, rows, target, local, batch_size, settings,
                                          plus=method == "gradcam++")
        elif method == "smoothgrad":
            out = _smoothgrad(classifier, rows, target, local, batch_size, settings)
        elif method == "integrated_gradients":
            out = _integrated_gradients(classifier, rows, target, local, batch_size, settings)
        elif method == "scorecam":
            out = _scorecam(classifier, rows, target, local, batch_size, settings, kind)
        else:
            out = _occlusion(classifier, rows, target, local, batch_size, settings, kind)
        maps[index] = out
        if direct:   # the value is the one the gradient was taken of
            values[index] = found
            if target.top1:
                from dgn.objectives import ClassObjective

                objectives = [ClassObjective([(int(c), 1.0)], "logit", 0.0, classifier.class_names)
                              for c in np.argmax(logits, axis=-1)]
        else:
            (values[index],) = _run(_scores(classifier, target, kind), [rows, target.rows(local)], batch_size)
    if "score" in settings:
        settings["score"] = kinds.pop() if len(kinds) == 1 else "per target"
    return Attribution(maps=maps, method=method, settings=settings, targets=[o.describe() for o in objectives],
                       objectives=objectives, values=values, seconds=time.perf_counter() - started)


def _local(index):
    """Rows of a group's weights are in the group's order: 0..len-1."""
    return list(range(len(index)))


def explain(classifier, images, objective=None, method="gradcam", *, batch_size=32, fit="auto", **settings):
    """Attribution maps (N, H, W) float32 in D's input resolution: :func:`attribute`'s ``maps``.

        maps = dgn.explain(clf, photos)                              # Grad-CAM of each top-1 class
        maps = dgn.explain(clf, photos, "207", "smoothgrad", samples=50)
        maps = dgn.explain(clf, photos, "channel:top_conv:12", "integrated_gradients", steps=100)
    """
    return attribute(classifier, images, objective, method, batch_size=batch_size, fit=fit, **settings).maps


# ------------------------------------------------------------------------------------------------ faithfulness

def blur(images, sigma):
    """A Gaussian blur (N, H, W, C), per channel, edges reflected: insertion's starting image."""
    radius = max(1, int(round(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    out = np.asarray(images, dtype="float64")
    for axis in (1, 2):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")
        out = sum(w * np.take(padded, np.arange(i, i + out.shape[axis]), axis=axis) for i, w in enumerate(taps))
    return out.astype("float32")


def deletion_insertion(classifier, images, maps, objective=None, steps=32, batch_size=32, fill="grey",
                       sigma=None, order_seed=None):
    """Deletion and insertion curves (Petsiuk et al. 2018): D's score of the target as the pixels are removed
    (set to ``fill``) or inserted (into a blurred copy) in the order of ``maps`` (highest first), in
    ``steps`` equal parts; ties broken by position.

    Args:
        images: as for :func:`attribute` (fitted to D's input). maps: (N, H, W), as :func:`explain` returns.
        objective: as for :func:`attribute` (None: each image's top-1 class); a class is scored by D's
            probability, other targets by their value.
        sigma: the blur's standard deviation in pixels (default: the input's shorter side / 45, 5 at 224).
        order_seed: ignore ``maps`` and use a random order (the baseline), from this seed.

    Returns:
        dict: ``deletion`` and ``insertion`` (N, steps + 1) scores from 0 to all pixels, and their areas
        ``deletion_auc`` and ``insertion_auc`` (N,) (trapezoid over the fraction 0..1; lower deletion and
        higher insertion area is the more faithful map)."""
    from dgn.rendering import as_classifier

    if fill not in ("grey", "black"):
        raise DgnError(f"deletion fill {fill!r}: give grey or black")
    classifier = as_classifier(classifier)
    x = as_inputs(classifier, images)
    maps = np.asarray(maps, dtype="float64")
    n, height, width = x.shape[:3]
    if maps.shape != (n, height, width):
        raise DgnError(f"maps of shape {maps.shape}: give one (H, W) map per image, {(n, height, width)}")
    groups, _ = _resolve_targets(classifier, objective, x, batch_size)
    sigma = sigma or max(1.0, min(height, width) / 45.0)
    blurred = blur(x, sigma)
    fill_value = _pixels_in_space(classifier, 127.5 if fill == "grey" else 0.0)
    pixels = height * width
    counts = np.round(np.linspace(0, pixels, steps + 1)).astype(int)
    deletion = np.zeros((n, steps + 1))
    insertion = np.zeros((n, steps + 1))
    for index, target in groups:
        score = _scores(classifier, target, target.score_kind("auto"))
        for local, k in enumerate(index):
            if order_seed is not None:
                order = np.random.RandomState(order_seed + k).permutation(pixels)
            else:
                order = np.argsort(-maps[k].reshape(-1), kind="stable")
            rank = np.empty(pixels, int)
            rank[order] = np.arange(pixels)
            rank = rank.reshape(height, width)
            removed = rank[None] < counts[:, None, None]                        # (steps + 1, H, W)
            dele = np.where(removed[..., None], fill_value, x[k][None])
            ins = np.where(removed[..., None], x[k][None], blurred[k][None])
            rows = np.concatenate([dele, ins]).astype("float32")
            (values,) = _run(score, [rows, target.rows(local, len(rows))], batch_size)
            deletion[k], insertion[k] = values[:steps + 1], values[steps + 1:]
    fractions = counts / pixels
    trapezoid = getattr(np, "trapezoid", None) or np.trapz
    auc = lambda curve: trapezoid(curve, fractions, axis=-1)  # noqa: E731
    return {"deletion": deletion, "insertion": insertion, "fractions": fractions,
            "deletion_auc": auc(deletion), "insertion_auc": auc(insertion)}
