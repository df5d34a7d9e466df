"""Objectives: what to make D do, as a loss to minimize (one value per image in the batch).

They compose like lucid's: ``ClassObjective(...) + 0.5 * ChannelObjective(...)``. Each names the
D layers it reads (``layers``) so the coupled model exposes just those, and reports the target's
``value`` (its activation) for progress and sidecars.
"""

import keras
from keras import ops

from dgn import imagenet
from dgn.errors import DgnError
from dgn.runs.outputs import slug


class Objective:
    """Base: ``loss(outputs)`` and ``value(outputs)`` map D's outputs to shape (batch,)."""

    layers = ()
    variables = ()  # Keras variables the objective reads (a compiled step passes their values in)

    def loss(self, outputs):
        raise NotImplementedError

    def value(self, outputs):
        return -self.loss(outputs)

    def dead(self, outputs):
        """True per image where the target term passes no gradient (the ReLU trap)."""
        return ops.zeros_like(self.value(outputs)) > 1.0

    def describe(self):
        """The target as a JSON-able dict with ``kind`` (class, classes, channel, neuron, sum, ...)."""
        raise NotImplementedError

    @property
    def label(self):
        """A short name: the class name (or index), classes joined by '+', ``layer:channel``,
        ``layer:channel@y,x`` (:func:`target_label`)."""
        return target_label(self.describe())

    def stem(self, spec=None):
        """The file stem of its image (:func:`target_stem`; ``spec``: the target string, for compounds)."""
        return target_stem(self.describe(), spec)

    @property
    def class_indices(self):
        """The classes it involves (:func:`target_classes`)."""
        return target_classes(self.describe())

    def __add__(self, other):
        return SumObjective([self, other])

    def __radd__(self, other):
        return self if other == 0 else SumObjective([other, self])

    def __mul__(self, weight):
        return ScaledObjective(self, float(weight))

    __rmul__ = __mul__

    def __neg__(self):
        return ScaledObjective(self, -1.0)


def target_label(target, numbered=False):
    """A short name for a described target (``Objective.describe()``, a sidecar's ``target``): the class
    name (or index; ``numbered``: "207 golden retriever"), classes joined by '+', ``layer:channel`` or
    ``layer:channel@y,x``; else its ``spec`` or kind."""
    kind = target.get("kind")
    if kind == "class":
        name = (target.get("name") or "").replace("_", " ") if numbered else target.get("name")
        return f"{target['index']} {name}".strip() if numbered else (name or str(target["index"]))
    if kind == "classes":
        return "+".join(c.get("name") or str(c["index"]) for c in target["classes"])
    if kind == "channel":
        return f"{target['layer']}:{target['channel']}"
    if kind == "neuron":
        return f"{target['layer']}:{target['channel']}@{target['y']},{target['x']}"
    return str(target.get("spec", kind))


def target_stem(target, spec=None):
    """The file stem of a described target's image: ``0207_golden_retriever``, ``channel_LAYER_C``,
    ``neuron_LAYER_C_Y_X`` (a layer's call ``LAYER#K`` as ``LAYER+K``, so that it differs from a layer named
    ``LAYER_K``), else the target string ``spec`` made safe (with a hash where changed)."""
    kind = target.get("kind")
    if kind in ("channel", "neuron"):
        target = {**target, "layer": str(target["layer"]).replace("#", "+")}
    if kind == "class":
        return slug(f"{target['index']:04d}_{target['name']}" if target.get("name") else f"{target['index']:04d}")
    if kind == "channel":
        return slug(f"channel_{target['layer']}_{target['channel']}")
    if kind == "neuron":
        return slug(f"neuron_{target['layer']}_{target['channel']}_{target['y']}_{target['x']}")
    text = spec if spec is not None else target_label(target)
    return slug(str(text).replace("*", "x").replace(" ", "_").replace(":", "-"), unique=True)


def target_classes(target):
    """The class indices a described target involves (in order; [] for channels and neurons)."""
    kind = target.get("kind")
    if kind == "class":
        return [target["index"]]
    if kind == "classes":
        return [c["index"] for c in target["classes"]]
    if kind == "sum":
        return [i for t in target["terms"] for i in target_classes(t)]
    return []


class SumObjective(Objective):
    def __init__(self, terms):
        self.terms = []
        for term in terms:
            self.terms.extend(term.terms if isinstance(term, SumObjective) else [term])
        self.layers = tuple(sorted({name for t in self.terms for name in t.layers}))

    def loss(self, outputs):
        return sum(t.loss(outputs) for t in self.terms)

    def value(self, outputs):
        return sum(t.value(outputs) for t in self.terms)

    def dead(self, outputs):
        flags = [t.dead(outputs) for t in self.terms]
        out = flags[0]
        for f in flags[1:]:
            out = ops.logical_and(out, f)
        return out

    def describe(self):
        return {"kind": "sum", "terms": [t.describe() for t in self.terms]}


class ScaledObjective(Objective):
    def __init__(self, term, weight):
        self.term, self.weight = term, weight
        self.layers = term.layers

    def loss(self, outputs):
        return self.weight * self.term.loss(outputs)

    def value(self, outputs):
        return self.weight * self.term.value(outputs)

    def dead(self, outputs):
        return self.term.dead(outputs)

    def describe(self):
        return {**self.term.describe(), "weight": self.weight}


class ClassObjective(Objective):
    """Maximize one or more classes (weighted) of D's final layer.

    ``loss = -sum_t w_t * act(z_t) + others * sum_{j not a target} relu(z_j)`` where ``act`` is
    ``relu`` (the paper: D's softmax replaced by ReLU, lambda = ``others`` = 0.01), ``logit`` (the
    raw logit: always has a gradient) or ``logsoftmax`` (the log-probability).
    """

    def __init__(self, classes, activation="relu", others=0.01, names=None):
        self.classes = [(int(i), float(w)) for i, w in classes]
        self.activation, self.others, self.names = activation, float(others), names

    def _target(self, logits):
        if self.activation == "relu":
            return ops.relu(logits)
        if self.activation == "logit":
            return logits
        if self.activation == "logsoftmax":
            return ops.log_softmax(logits, axis=-1)
        raise ValueError(f"unknown class activation {self.activation!r}")

    def _mask(self, logits):
        weights = [0.0] * int(logits.shape[-1])
        for i, w in self.classes:
            weights[i] += w
        return ops.convert_to_tensor(weights, dtype=logits.dtype)

    def value(self, outputs):
        logits = outputs["logits"]
        return ops.sum(self._target(logits) * self._mask(logits), axis=-1)

    def loss(self, outputs):
        logits = outputs["logits"]
        loss = -self.value(outputs)
        if self.others:
            is_other = ops.cast(ops.equal(self._mask(logits), 0.0), logits.dtype)
            loss = loss + self.others * ops.sum(ops.relu(logits) * is_other, axis=-1)
        return loss

    def dead(self, outputs):
        if self.activation != "relu":
            return super().dead(outputs)
        logits = outputs["logits"]
        targets = ops.cast(ops.greater(self._mask(logits), 0.0), logits.dtype)
        return ops.all(ops.less_equal(logits * targets - (1.0 - targets), 0.0), axis=-1)

    def describe(self):
        infos = [{**imagenet.class_info(i, self.names), "weight": w} for i, w in self.classes]
        if len(infos) == 1 and infos[0]["weight"] == 1.0:
            info = {k: v for k, v in infos[0].items() if k != "weight"}
            return {"kind": "class", **info}
        return {"kind": "classes", "classes": infos}


class ChannelObjective(Objective):
    """Maximize the mean activation of one channel (filter) of a layer."""

    def __init__(self, layer, channel):
        self.layer, self.channel = layer, int(channel)
        self.layers = (layer,)

    def value(self, outputs):
        act = outputs[self.layer][..., self.channel]
        axes = list(range(1, len(act.shape)))
        return ops.mean(act, axis=axes) if axes else act

    def loss(self, outputs):
        return -self.value(outputs)

    def dead(self, outputs):
        """True per image where the channel is exactly 0 everywhere (e.g. after a ReLU): no gradient."""
        act = ops.abs(outputs[self.layer][..., self.channel])
        axes = list(range(1, len(act.shape)))
        return (ops.max(act, axis=axes) if axes else act) <= 0.0

    def describe(self):
        return {"kind": "channel", "layer": self.layer, "channel": self.channel}


class NeuronObjective(Objective):
    """Maximize one neuron: channel ``channel`` at position (y, x) of a layer."""

    def __init__(self, layer, channel, y, x):
        self.layer, self.channel, self.y, self.x = layer, int(channel), int(y), int(x)
        self.layers = (layer,)

    def value(self, outputs):
        return outputs[self.layer][:, self.y, self.x, self.channel]

    def loss(self, outputs):
        return -self.value(outputs)

    def dead(self, outputs):
        """True per image where the neuron is exactly 0 (e.g. after a ReLU): no gradient."""
        return ops.abs(self.value(outputs)) <= 0.0

    def describe(self):
        return {"kind": "neuron", "layer": self.layer, "channel": self.channel, "y": self.y, "x": self.x}


def _split_weight(term):
    if "*" in term:
        weight, atom = term.split("*", 1)
        try:
            value = float(weight)
        except ValueError:
            raise DgnError(f"target term {term!r}: the weight before '*' must be a number") from None
        if not value > 0 or value == float("inf"):
            raise DgnError(f"target term {term!r}: the weight before '*' must be a positive number")
        return value, atom.strip()
    return 1.0, term.strip()


def parse_target(spec, classifier, activation="relu", others=0.01):
    """A target string -> Objective.

    ``207`` / ``n02099601`` / ``golden retriever``: a class. ``207+281`` or ``0.7*207+0.3*281``:
    several classes at once (a compound image). ``channel:LAYER:C``: a filter's mean activation.
    ``neuron:LAYER:C:Y:X``: one neuron. Terms of different kinds may be summed with ``+``.
    """
    text = str(spec).strip()
    if not text:
        raise DgnError("empty target; give a class (207, n02099601, 'golden retriever') or channel:LAYER:C")
    classes, objective = [], None
    terms = text.split("+")
    if any(not t.strip() for t in terms):
        raise DgnError(f"target {text!r}: an empty term between '+' signs; give e.g. 207+281 or 0.7*207+0.3*281")
    for term in terms:
        weight, atom = _split_weight(term)
        if not atom:
            raise DgnError(f"target term {term.strip()!r}: nothing after '*'; give e.g. 0.5*207")
        parts = atom.split(":")
        if parts[0] in ("channel", "neuron"):
            kind = parts[0]
            want = 3 if kind == "channel" else 5
            if len(parts) != want:
                form = "channel:LAYER:C" if kind == "channel" else "neuron:LAYER:C:Y:X"
                raise DgnError(f"target {atom!r}: expected {form}")
            layer = parts[1]
            shape = classifier.layer_output(layer).shape
            try:
                numbers = [int(p) for p in parts[2:]]
            except ValueError:
                raise DgnError(f"target {atom!r}: channel and position must be integers") from None
            channels = int(shape[-1])
            if not 0 <= numbers[0] < channels:
                raise DgnError(f"target {atom!r}: layer {layer} has channels 0..{channels - 1}")
            if kind == "channel":
                term_obj = ChannelObjective(layer, numbers[0])
            else:
                if len(shape) != 4:
                    raise DgnError(f"target {atom!r}: layer {layer} has no spatial positions "
                                   f"(output shape {tuple(shape)}); use channel:{layer}:{numbers[0]}")
                height, width = int(shape[1]), int(shape[2])
                if not (0 <= numbers[1] < height and 0 <= numbers[2] < width):
                    raise DgnError(f"target {atom!r}: layer {layer} has positions y 0..{height - 1}, "
                                   f"x 0..{width - 1}")
                term_obj = NeuronObjective(layer, *numbers)
            term_obj = term_obj if weight == 1.0 else weight * term_obj
            objective = term_obj if objective is None else objective + term_obj
        else:
            index = imagenet.resolve_class(atom, classifier.class_names, classifier.num_classes)
            if any(index == c for c, _ in classes):
                raise DgnError(f"target {text!r} names class {index} twice; give each class once (with a weight, "
                               f"e.g. 2*{index}, to favour it)")
            classes.append((index, weight))
    if classes:
        class_obj = ClassObjective(classes, activation, others, classifier.class_names)
        objective = class_obj if objective is None else class_obj + objective
    return objective


class BatchClassObjective(ClassObjective):
    """One class per image of a batch: row k maximizes class ``classes[k]`` (``dgn generate-all``).

    Only the target mask differs from ClassObjective (one row per image instead of one shared row),
    so row k's loss, value and dead flag are exactly ClassObjective([(classes[k], 1)])'s on that row
    and B classes optimized side by side get the gradients each would get alone. Shapes: (rows,).

    With ``num_classes`` the mask is a Keras variable (``variables``) instead of a constant, so one
    compiled step serves batch after batch: ``set_classes`` retargets the rows without a new trace.
    """

    def __init__(self, classes, activation="relu", others=0.01, names=None, num_classes=None):
        super().__init__([(c, 1.0) for c in classes], activation, others, names)
        self.row_classes = [int(c) for c in classes]
        self.mask_variable = None
        if num_classes is not None:
            self.mask_variable = keras.Variable(self._mask_values(int(num_classes)), trainable=False,
                                                dtype="float32", name="target_mask")
            self.variables = (self.mask_variable,)

    def _mask_values(self, num_classes):
        import numpy as np

        mask = np.zeros((len(self.row_classes), num_classes), dtype="float32")
        mask[np.arange(len(self.row_classes)), self.row_classes] = 1.0
        return mask

    def set_classes(self, classes):
        """Row k now maximizes ``classes[k]``; the number of rows stays (it is the compiled shape)."""
        if self.mask_variable is None or len(classes) != len(self.row_classes):
            raise ValueError(f"set_classes needs the mask variable (num_classes) and {len(self.row_classes)} classes")
        self.row_classes = [int(c) for c in classes]
        self.classes = [(c, 1.0) for c in self.row_classes]
        self.mask_variable.assign(self._mask_values(int(self.mask_variable.shape[-1])))

    def _mask(self, logits):
        if self.mask_variable is not None:
            return ops.cast(self.mask_variable.value, logits.dtype)
        return ops.convert_to_tensor(self._mask_values(int(logits.shape[-1])), dtype=logits.dtype)

    def row(self, k):
        """Row k's target alone: the ClassObjective ``dgn generate`` would use."""
        return ClassObjective([(self.row_classes[k], 1.0)], self.activation, self.others, self.names)

    def describe(self):
        return {"kind": "class_batch", "classes": [imagenet.class_info(c, self.names) for c in self.row_classes]}


class BatchChannelObjective(Objective):
    """One channel of one layer per image of a batch: row k maximizes the mean activation of channel
    ``channels[k]`` of ``layer`` (``dgn generate-all --channels``).

    Row k's value is the layer's per-channel spatial means times a one-hot mask, summed: the mean
    ChannelObjective(layer, channels[k]) computes, with the same gradient, so B channels optimized side
    by side get the gradients each would get alone. Shapes: (rows,). The mask is a Keras variable, so one
    compiled step serves batch after batch (``set_channels``)."""

    def __init__(self, layer, channels, num_channels):
        import numpy as np

        self.layer, self.layers = layer, (layer,)
        self.row_channels = [int(c) for c in channels]
        self._np = np
        self.mask_variable = keras.Variable(self._mask_values(int(num_channels)), trainable=False, dtype="float32",
                                            name="channel_mask")
        self.variables = (self.mask_variable,)

    def _mask_values(self, num_channels):
        mask = self._np.zeros((len(self.row_channels), num_channels), dtype="float32")
        mask[self._np.arange(len(self.row_channels)), self.row_channels] = 1.0
        return mask

    def set_channels(self, channels):
        """Row k now maximizes ``channels[k]``; the number of rows stays (it is the compiled shape)."""
        if len(channels) != len(self.row_channels):
            raise ValueError(f"set_channels needs {len(self.row_channels)} channels")
        self.row_channels = [int(c) for c in channels]
        self.mask_variable.assign(self._mask_values(int(self.mask_variable.shape[-1])))

    def _means(self, outputs):
        act = outputs[self.layer]
        axes = list(range(1, len(act.shape) - 1))
        return ops.mean(act, axis=axes) if axes else act

    def value(self, outputs):
        means = self._means(outputs)
        return ops.sum(means * ops.cast(self.mask_variable.value, means.dtype), axis=-1)

    def loss(self, outputs):
        return -self.value(outputs)

    def dead(self, outputs):
        act = ops.abs(outputs[self.layer])
        axes = list(range(1, len(act.shape) - 1))
        peak = ops.max(act, axis=axes) if axes else act
        return ops.sum(peak * ops.cast(self.mask_variable.value, peak.dtype), axis=-1) <= 0.0

    def row(self, k):
        """Row k's target alone: the ChannelObjective ``dgn generate`` would use."""
        return ChannelObjective(self.layer, self.row_channels[k])

    def describe(self):
        return {"kind": "channel_batch", "layer": self.layer, "channels": list(self.row_channels)}


class StackObjective(Objective):
    """Any objectives, one per image of a batch: row k is ``objectives[k]`` of row k's outputs alone, so
    B images optimized side by side get the gradients each would get alone (:class:`dgn.optvis.engine.Engine`
    uses it for a batch that is not all single classes or all channels of one layer). Shapes: (rows,)."""

    def __init__(self, objectives):
        self.objectives = list(objectives)
        self.layers = tuple(sorted({name for obj in self.objectives for name in obj.layers}))
        self.variables = tuple(v for obj in self.objectives for v in obj.variables)

    def _rows(self, outputs, method):
        return ops.concatenate([getattr(obj, method)({name: out[k:k + 1] for name, out in outputs.items()})
                                for k, obj in enumerate(self.objectives)], axis=0)

    def loss(self, outputs):
        return self._rows(outputs, "loss")

    def value(self, outputs):
        return self._rows(outputs, "value")

    def dead(self, outputs):
        return self._rows(outputs, "dead")

    def row(self, k):
        """Row k's objective."""
        return self.objectives[k]

    def describe(self):
        return {"kind": "stack", "objectives": [obj.describe() for obj in self.objectives]}
