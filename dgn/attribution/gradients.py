"""Gradients of a target's value with respect to the input or a layer (TensorFlow or JAX), batched, and
guided backpropagation's ReLUs.
"""


import contextlib

import keras
import numpy as np
from keras import ops

from dgn.classifiers.analysis import split_at_call
from dgn.errors import DgnError


# ------------------------------------------------------------------------------------------ the backends

def backend_name():
    name = keras.backend.backend()
    if name not in ("tensorflow", "jax"):
        raise DgnError(f"attribution maps need the tensorflow or jax backend, not {name}")
    return name


def _compile(fn):
    if backend_name() == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        return tf.function(fn, reduce_retracing=True)
    import jax

    return jax.jit(fn)


def _value_and_grad(fn, x, *args):
    """(values, aux, d sum(values) / dx) where ``fn(x, *args)`` gives (values, one per row, and anything else),
    inside a compiled function."""
    if backend_name() == "tensorflow":
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
        self.jax = backend_name() == "jax"

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


def input_gradient(classifier, target, kind="value", guided=False):
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
    if "#" in layer:   # one call of a shared layer: the graph traced again from a placeholder at that call
        placeholder, tensors = split_at_call(analysis, classifier.model, classifier.name, classifier.output, layer)
    else:
        placeholder, tensors = tensor, {"logits": analysis.logits}
    outputs = {"logits": tensors["logits"]}
    for name in target_layers:
        if name != layer:
            outputs[name] = tensors[name] if "#" in layer else classifier.layer_output(name)
    second = keras.Model([analysis.inputs, placeholder], outputs, name="from_layer")
    first.trainable = second.trainable = False
    return first, second


def layer_gradient(classifier, target, layer):
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


def layer_activation(classifier, layer):
    key = ("layer", layer)
    cache = _kernels(classifier)
    if key not in cache:
        runner = _Runner(keras.Model(classifier.analysis.inputs, classifier.layer_output(layer)))
        compiled = _compile(lambda state, x: runner(state, x))
        cache[key] = (None, lambda x: compiled(runner.state(), x))
    return cache[key][1]


def target_scores(classifier, target, kind):
    """f(x, w) -> per row: the objective's value (``kind`` value), or D's probability of the class targets
    (``probability``: ``sum_c w_c p_c``) or its log (``log_probability``: ``log sum_c w_c p_c``, for
    probabilities that would underflow). Probabilities are computed from the log-probabilities in float64,
    so that a confident D's small changes (1 - p below float32's resolution near 1) are not lost."""
    key = ("scores", target.key(kind))
    cache = _kernels(classifier)
    if key not in cache:
        runner = _Runner(classifier.features(target.layers))
        if kind in ("probability", "log_probability"):
            binary = classifier.head.kind == "binary"
            compiled = _compile(lambda state, x: ops.log_softmax(
                runner(state, x)["logits"] / (2.0 if binary else 1.0), axis=-1))

            def fn(x, w):
                logp = np.asarray(compiled(runner.state(), x), dtype="float64")
                w = np.asarray(w, dtype="float64")
                if kind == "probability":
                    return (np.exp(logp) * w).sum(axis=-1)
                top = logp.max(axis=-1, keepdims=True)
                with np.errstate(divide="ignore"):
                    return np.log((np.exp(logp - top) * w).sum(axis=-1)) + top[..., 0]
        else:
            value = target.value_fn(kind, classifier.head.kind == "binary")
            compiled = _compile(lambda state, x, w: value(runner(state, x), w))

            def fn(x, w):
                return np.asarray(compiled(runner.state(), x, w), dtype="float64")
        cache[key] = (target.objective, fn)
    return cache[key][1]


def row_slices(count, size):
    """Slices of ``size`` rows; with more than one, every call gets ``size`` rows (the last padded), so
    that one compiled shape serves them all."""
    return [slice(i, min(i + size, count)) for i in range(0, count, size)]


def run_batches(fn, arrays, size):
    """Calls fn(*chunk) over the rows of ``arrays`` in chunks of ``size``; numpy results, concatenated."""
    count = len(arrays[0])
    pad = count > size
    parts = []
    for part in row_slices(count, size):
        chunk = [a[part] for a in arrays]
        rows = len(chunk[0])
        if pad and rows < size:
            chunk = [np.concatenate([c, np.zeros((size - rows,) + c.shape[1:], c.dtype)]) for c in chunk]
        out = fn(*chunk)
        out = out if isinstance(out, (tuple, list)) else (out,)
        parts.append([np.asarray(o)[:rows] for o in out])
    return [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]


# ---------------------------------------------------------------------------------- guided backpropagation

_MISSING = object()


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
