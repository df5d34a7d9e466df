"""What a Keras classifier is, found once at load time: its input, its logits, its layers by path.

dgn reads every classifier through this analysis, whatever kind of Keras model it is:

- Functional, Sequential (saved or not, with or without an ``Input``), nested models (a pretrained base
  called as one layer: its layers are reached by path, ``base/conv2``), and subclassed models that
  Keras can call on a symbolic input (their inner layers are not reachable; their output is).
- The model is re-traced layer by layer onto a fresh ``keras.Input`` of a fixed size ("the flat
  graph"): the same layer objects and weights, every layer's output a tensor that an objective can
  read. A model with a dynamic size (``None``) is traced at ``input_size``.
- Logits (never probabilities): the pre-activation of a softmax ``Dense`` (also what a channel target on
  that layer reads); the input of a
  ``Softmax`` / ``Activation("softmax")`` layer (both stacked: the Dense's pre-activation); one
  sigmoid or linear unit ``z`` is a binary classifier with classes 0 and 1, logits ``(-z, z)`` and
  probability ``p(1) = sigmoid(z)`` (so its softmax is taken at temperature 2, see
  :meth:`Analysis.probabilities`). Several outputs: one is chosen by name.
- Input: channels last, 1 (grayscale) or 3 (RGB) channels, any height and width.

Every problem is a :class:`~dgn.errors.DgnError` whose message is one line naming what is wrong and
what would be valid.
"""

from dataclasses import dataclass, field

import keras
import numpy as np
from keras import ops

from dgn.errors import DgnError


SOFTMAX_NAMES = ("softmax",)
LINEAR_NAMES = ("linear", None)


@keras.saving.register_keras_serializable(package="dgn")
class PreActivation(keras.layers.Layer):
    """The pre-activation ``x @ kernel + bias`` of a Dense layer (its logits), sharing its weights."""

    def __init__(self, dense, **kwargs):
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, x):
        y = ops.matmul(x, ops.cast(self.dense.kernel, x.dtype))
        if self.dense.use_bias:
            y = y + ops.cast(self.dense.bias, x.dtype)
        return y

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.dense.units,)


@keras.saving.register_keras_serializable(package="dgn")
class BinaryLogits(keras.layers.Layer):
    """One logit z (batch, 1) -> the two logits (-z, z) of classes 0 and 1."""

    def call(self, z):
        return ops.concatenate([-z, z], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (2,)


def _activation_name(layer):
    act = getattr(layer, "activation", None)
    if act is None:
        return None
    name = getattr(act, "__name__", None)
    if name is None:
        try:
            name = keras.activations.serialize(act)
        except Exception:  # noqa: BLE001 - an unknown callable: not softmax, not linear
            name = type(act).__name__
    return name if isinstance(name, str) else str(name)


def _is_softmax_layer(layer):
    return isinstance(layer, keras.layers.Softmax) or (
        isinstance(layer, keras.layers.Activation) and _activation_name(layer) in SOFTMAX_NAMES)


def _is_sigmoid_layer(layer):
    return isinstance(layer, keras.layers.Activation) and _activation_name(layer) == "sigmoid"


def _is_graph_model(layer):
    """A model whose layers dgn can walk: Sequential, or Functional (has a node graph)."""
    if isinstance(layer, keras.Sequential):
        return True
    return isinstance(layer, keras.Model) and hasattr(layer, "_nodes_by_depth") and \
        getattr(layer, "_inputs_struct", None) is not None


def _all_layers(model, prefix=""):
    """(path, layer) of every layer, descending into nested models."""
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.layers.InputLayer):
            continue
        path = prefix + layer.name
        yield path, layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer, path + "/")


def _input_shape(model):
    """(H, W, C) of the model's one input as Keras knows it (dimensions may be None)."""
    shape = None
    try:
        shape = model.input_shape
    except (AttributeError, ValueError):
        pass
    if shape is None and isinstance(model, keras.Sequential):
        for layer in model._layers:
            if isinstance(layer, keras.layers.InputLayer):
                shape = tuple(layer.batch_shape)
                break
    if shape is None:
        build_shape = getattr(model, "_build_shapes_dict", None) or {}
        shape = next(iter(build_shape.values()), None)
    if isinstance(shape, list) and shape and all(s is None or isinstance(s, int) for s in shape):
        shape = tuple(shape)
    if isinstance(shape, list):
        if len(shape) != 1:
            raise DgnError(f"the classifier has {len(shape)} inputs; dgn needs a model with one image input")
        shape = shape[0]
    if isinstance(shape, dict):
        raise DgnError("the classifier takes a dict of inputs; dgn needs a model with one image input")
    if shape is None:
        raise DgnError("the classifier's input shape is unknown (a subclassed model never built); build it "
                       "or save it with an Input, e.g. keras.Input((H, W, 3))")
    return tuple(shape[1:])


@dataclass
class Head:
    """The classifier's output that dgn reads: its name, kind and class count."""

    name: str
    kind: str          # "softmax" (probabilities: logits before them), "logits" or "binary"
    num_classes: int
    note: str = ""


@dataclass
class Analysis:
    """The result of :func:`analyse`: input shape, head, and the flat graph's tensors by path."""

    input_shape: tuple                     # (H, W, C), all known
    head: Head
    inputs: object = None                  # the flat graph's keras.Input
    logits: object = None                  # (batch, classes) tensor of the flat graph
    tensors: dict = field(default_factory=dict)   # path -> output tensor
    layer_types: dict = field(default_factory=dict)
    heads: list = field(default_factory=list)
    producers: dict = field(default_factory=dict)  # id(tensor) -> (layer, call args): the graph, for geometry
    repeated: dict = field(default_factory=dict)   # path -> calls, of a layer called more than once (path#k)

    @property
    def channels(self):
        return int(self.input_shape[-1])

    def probabilities(self, logits):
        """Class probabilities of logits (numpy, (..., classes)): a softmax; for a one-unit binary
        classifier, whose logits are (-z, z), the softmax of the halved logits (= sigmoid(z))."""
        z = np.asarray(logits, dtype="float64")
        if self.head.kind == "binary":
            z = z / 2.0
        e = np.exp(z - z.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def layer_rows(self):
        """Path, type, output shape and channels of every layer (what filter targets can name)."""
        rows = []
        for path, tensor in self.tensors.items():
            shape = tuple(tensor.shape[1:])
            rows.append({"name": path, "type": self.layer_types[path],
                         "shape": [None if s is None else int(s) for s in shape],
                         "channels": int(shape[-1]) if shape and shape[-1] is not None else None})
        return rows


class _Tracer:
    """Re-calls a model's layers on new symbolic tensors, recording each output under its path.
    ``lenient``: a layer that cannot run (e.g. a Dense after Flatten on an input of any size) gives None,
    and so does every layer after it; the others are still traced."""

    def __init__(self, lenient=False):
        self.tensors, self.types, self.producers = {}, {}, {}
        self.calls = []   # (path, output) of every single-output call, in the graph's order
        self.pre_activation = {}
        self.lenient = lenient
        self.substitute = None   # (path, k, tensor): the k-th call of layer ``path`` gives ``tensor`` instead
        self.seen = {}           # path -> calls so far

    def record(self, path, layer, args, outputs):
        for out in keras.tree.flatten(outputs):
            if not (_is_graph_model(layer) and id(out) in self.producers):  # a nested model: its last layer made it
                self.producers[id(out)] = (layer, args)
        single = keras.tree.flatten(outputs)
        if len(single) == 1:
            self.tensors[path] = single[0]
            self.types[path] = type(layer).__name__
            self.calls.append((path, single[0]))

    def by_call(self):
        """({path: output}, {path: calls}): a layer called once under its path; one called n times (shared
        weights on several branches) as ``path#0`` .. ``path#n-1``, in the graph's order, and in ``repeated``."""
        counts = {}
        for path, _ in self.calls:
            counts[path] = counts.get(path, 0) + 1
        tensors, seen = {}, {}
        for path, tensor in self.calls:
            if counts[path] == 1:
                tensors[path] = tensor
            else:
                tensors[f"{path}#{seen.get(path, 0)}"] = tensor
                seen[path] = seen.get(path, 0) + 1
        return tensors, {p: n for p, n in counts.items() if n > 1}

    def call_layer(self, layer, prefix, args, kwargs):
        path = prefix + layer.name
        call = self.seen.get(path, 0)
        self.seen[path] = call + 1
        if self.substitute is not None and self.substitute[:2] == (path, call):
            self.record(path, layer, args, self.substitute[2])
            return self.substitute[2]
        if self.lenient and any(a is None for a in keras.tree.flatten(list(args))):
            return None
        if _is_graph_model(layer):
            inputs = args[0] if len(args) == 1 else list(args)
            outputs = self.trace(layer, inputs, path + "/")
        elif self.lenient:
            try:
                outputs = layer(*args, **kwargs)
            except Exception:  # noqa: BLE001 - this layer cannot run at this input size
                return None
        else:
            outputs = layer(*args, **kwargs)
        if outputs is not None:
            self.record(path, layer, args, outputs)
        return outputs

    def trace(self, model, inputs, prefix=""):
        if isinstance(model, keras.Sequential):
            x = inputs
            for layer in model.layers:
                x = self.call_layer(layer, prefix, (x,), {})
            return x
        if _is_graph_model(model):
            def operation_fn(op):
                return lambda *args, **kwargs: self.call_layer(op, prefix, args, kwargs)
            return model._run_through_graph(inputs, operation_fn=operation_fn)
        return model(inputs)


def _check_data_format(model):
    for path, layer in _all_layers(model):
        if getattr(layer, "data_format", None) == "channels_first":
            raise DgnError(f"layer {path!r} is channels_first; dgn reads channels_last models (images "
                           f"(H, W, C)): rebuild the model with data_format='channels_last'")


def _input_size(shape, input_size, name):
    if len(shape) != 3:
        raise DgnError(f"classifier {name} takes inputs of shape {shape}; dgn needs images (H, W, C) with C "
                       f"1 or 3")
    height, width, channels = shape
    if channels is None or channels not in (1, 3):
        raise DgnError(f"classifier {name} takes {channels}-channel images; dgn makes 1-channel (grayscale) "
                       f"or 3-channel (RGB) images, channels last")
    if input_size is not None:
        want = tuple(int(v) for v in input_size)
        for got, asked, what in ((height, want[0], "height"), (width, want[1], "width")):
            if got is not None and got != asked:
                raise DgnError(f"classifier.input_size {list(want)} does not match the model's fixed {what} "
                               f"{got}; remove classifier.input_size or give [{height}, {width}]")
        height, width = want
    if height is None or width is None:
        raise DgnError(f"classifier {name} takes images of any size ({height}x{width}); set "
                       f"classifier.input_size: [HEIGHT, WIDTH], e.g. [224, 224]")
    return int(height), int(width), int(channels)


def _output_names(model):
    if isinstance(model, keras.Sequential) and model.layers:
        return [model.layers[-1].name]
    names = getattr(model, "output_names", None)
    if names:
        return list(names)
    outputs = keras.tree.flatten(getattr(model, "outputs", None) or [])
    return [getattr(o, "name", f"output_{i}") for i, o in enumerate(outputs)]


def _choose_output(outputs, names, output, name):
    flat = keras.tree.flatten(outputs)
    if len(flat) == 1:
        if output not in (None, names[0] if names else None):
            raise DgnError(f"classifier.output {output!r}: classifier {name} has one output "
                           f"({names[0] if names else 'unnamed'}); remove classifier.output")
        return flat[0], (names[0] if names else "output")
    if len(names) != len(flat):
        names = [f"output_{i}" for i in range(len(flat))]
    if output is None:
        raise DgnError(f"classifier {name} has {len(flat)} outputs ({', '.join(names)}); choose the classifier "
                       f"head with classifier.output: NAME")
    if output not in names:
        raise DgnError(f"classifier.output {output!r} is not an output of {name}; valid: {', '.join(names)}")
    return flat[names.index(output)], output


def _logits(tracer, tensor, head_name, name, depth=0):
    """(logits tensor, kind, note) for an output tensor of the flat graph."""
    layer, args = tracer.producers.get(id(tensor), (None, None))
    units = tensor.shape[-1]
    if layer is None or (isinstance(layer, keras.Model) and not _is_graph_model(layer)):
        return _opaque_logits(tracer, tensor)
    if _is_softmax_layer(layer):
        inner, kind, note = _logits(tracer, args[0], head_name, name, depth + 1)
        if kind == "binary":
            raise DgnError(f"classifier {name}: output {head_name!r} is a softmax over one unit (always 1); "
                           f"a binary classifier needs a sigmoid unit or a softmax over 2 units")
        return inner, "softmax", f"input of {layer.name}" if depth == 0 and note == "output" else note
    if _is_sigmoid_layer(layer):
        if units != 1:
            raise DgnError(f"classifier {name}: output {head_name!r} is {units} sigmoid units (multi-label); "
                           f"dgn reads softmax classifiers or one sigmoid unit (binary)")
        return BinaryLogits(name="binary_logits")(args[0]), "binary", f"input of {layer.name}"
    if isinstance(layer, keras.layers.Dense):
        act = _activation_name(layer)
        if act in SOFTMAX_NAMES or act == "sigmoid" or act in LINEAR_NAMES:
            if act == "sigmoid" and units != 1:
                raise DgnError(f"classifier {name}: output {head_name!r} is {units} sigmoid units (multi-label); "
                               f"dgn reads softmax classifiers or one sigmoid unit (binary)")
            pre = PreActivation(layer, name=f"{layer.name}_logits")(args[0]) if act not in LINEAR_NAMES \
                else tensor
            tracer.pre_activation[id(tensor)] = pre   # channel targets on this layer read logits too
            if units == 1:
                return BinaryLogits(name="binary_logits")(pre), "binary", f"pre-activation of {layer.name}"
            if act in SOFTMAX_NAMES:
                return pre, "softmax", f"pre-activation of {layer.name}"
            return pre, "logits", f"output of {layer.name}"
        raise DgnError(f"classifier {name}: output {head_name!r} ends in Dense {layer.name!r} with activation "
                       f"{act}; dgn needs logits: a linear or softmax Dense (or one sigmoid unit)")
    if isinstance(layer, keras.layers.Activation):
        raise DgnError(f"classifier {name}: output {head_name!r} ends in Activation({_activation_name(layer)}); "
                       f"dgn needs logits: a softmax, a linear Dense, or one sigmoid unit")
    if units == 1:
        return BinaryLogits(name="binary_logits")(tensor), "binary", f"output of {layer.name}"
    return tensor, "logits", f"output of {layer.name} ({type(layer).__name__})"


@keras.saving.register_keras_serializable(package="dgn")
class LogProbabilities(keras.layers.Layer):
    """log(p): logits of probabilities whose softmax layer cannot be reached (softmax(log p) = p)."""

    def call(self, p):
        return ops.log(ops.maximum(p, 1e-30))


def _looks_like_probabilities(tensor, inputs):
    """Whether an opaque output sums to 1 and is non-negative on random inputs."""
    probe = keras.Model(inputs, tensor)
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (4,) + tuple(inputs.shape[1:])).astype("float32")
    y = np.asarray(probe(x, training=False), dtype="float64")
    return bool(np.all(y >= 0) and np.allclose(y.sum(-1), 1.0, atol=1e-3))


def _opaque_logits(tracer, tensor):
    """The output of a model whose layers cannot be walked (subclassed): logits, or log of probabilities."""
    if tensor.shape[-1] == 1:
        return BinaryLogits(name="binary_logits")(tensor), "binary", "output (one unit, taken as a logit)"
    if _looks_like_probabilities(tensor, tracer.inputs):
        return LogProbabilities(name="log_probabilities")(tensor), "softmax", \
            "log of the output probabilities (the model's softmax is not reachable)"
    return tensor, "logits", "output"


def split_at_call(analysis, model, name, output, layer):
    """The classifier from its input and the output of one call of a shared layer (``layer``:
    ``path#k``, as :meth:`Analysis.layer_rows` lists it): ``(placeholder, {"logits": ..., path: ...})``,
    the flat graph traced again with that call's output replaced by a new ``keras.Input`` (the other calls
    of the layer still computed from the image). What Grad-CAM differentiates at a shared layer.

    Raises:
        DgnError: ``layer`` does not name a call of a shared layer."""
    path, _, call = layer.rpartition("#")
    if path not in analysis.repeated or not call.isdigit() or int(call) >= analysis.repeated[path]:
        raise DgnError(f"{layer!r} is not a call of a shared layer of classifier {name}")
    placeholder = keras.Input(tuple(analysis.tensors[layer].shape[1:]), name="at_layer")
    tracer = _Tracer()
    tracer.substitute = (path, int(call), placeholder)
    tensor, head_name = _choose_output(tracer.trace(model, analysis.inputs), _output_names(model), output, name)
    logits = _logits(tracer, tensor, head_name, name)[0]
    called = tracer.by_call()[0]
    return placeholder, {"logits": logits, **{p: tracer.pre_activation.get(id(t), t) for p, t in called.items()}}


def trace_any_size(model, paths, channels):
    """A model from images of any size (None, None, channels) to {path: activation} for the layers
    ``paths`` (DeepDream on photos of their own size). Raises DgnError naming the layers that cannot run
    at any size (those after a fixed-size Flatten / Dense) or that do not exist."""
    inputs = keras.Input((None, None, channels), name="image")
    tracer = _Tracer(lenient=True)
    try:
        tracer.trace(model, inputs)
    except Exception:  # noqa: BLE001 - the layers traced so far are what counts
        pass
    tensors = tracer.by_call()[0]
    missing = [p for p in paths if p not in tensors]
    if not missing:   # a symbolic trace may pass where a real call fails (a Dense after a Flatten of any size)
        probe = np.zeros((1, 37, 45, channels), "float32")
        for path in paths:
            try:
                keras.Model(inputs, tensors[path])(probe, training=False)
            except Exception:  # noqa: BLE001 - this layer cannot run at another size
                missing.append(path)
    if missing:
        raise DgnError(f"layers {', '.join(missing)} cannot run on images of any size; choose convolutional "
                       f"layers before the classifier's fixed-size top (`dgn info CONFIG` lists them)")
    return keras.Model(inputs, {p: tensors[p] for p in paths})


def analyse(model, name="classifier", output=None, input_size=None):
    """Analyses a Keras classifier once.

    Args:
        model: a ``keras.Model`` (Functional, Sequential, nested, or traceable subclassed).
        name: how messages name it.
        output: the name of the classifier head, for a model with several outputs.
        input_size: ``(height, width)`` for a model whose input size is dynamic (None).

    Returns:
        :class:`Analysis`: the flat graph's input and logits, every layer's output by path.

    Raises:
        DgnError: channels_first layers, not 1 or 3 channels, an unknown input size, several inputs,
        several outputs without ``output``, an output that is not a classifier (e.g. Dense(tanh)).
    """
    _check_data_format(model)
    height, width, channels = _input_size(_input_shape(model), input_size, name)
    inputs = keras.Input((height, width, channels), name="image")
    tracer = _Tracer()
    tracer.inputs = inputs
    try:
        outputs = tracer.trace(model, inputs)
    except DgnError:
        raise
    except Exception as exc:  # noqa: BLE001 - a model Keras cannot call symbolically
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise DgnError(f"classifier {name} cannot be traced on a {height}x{width}x{channels} input "
                       f"({type(exc).__name__}: {first[:160]}); give a Functional or Sequential model") from None
    names = _output_names(model)
    tensor, head_name = _choose_output(outputs, names, output, name)
    if len(tensor.shape) != 2:
        raise DgnError(f"classifier {name}: output {head_name!r} has shape {tuple(tensor.shape)}; dgn needs "
                       f"class scores (batch, classes)")
    logits, kind, note = _logits(tracer, tensor, head_name, name)
    classes = 2 if kind == "binary" else int(logits.shape[-1])
    head = Head(name=head_name, kind=kind, num_classes=classes, note=note)
    called, repeated = tracer.by_call()
    tensors = {path: tracer.pre_activation.get(id(t), t) for path, t in called.items()}
    types = {path: tracer.types[path.split("#")[0]] for path in tensors}
    return Analysis(input_shape=(height, width, channels), head=head, inputs=inputs, logits=logits,
                    tensors=tensors, layer_types=types, heads=names, producers=dict(tracer.producers),
                    repeated=repeated)
