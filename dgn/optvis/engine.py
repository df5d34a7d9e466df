"""The one engine: B objectives optimized side by side, one image each, with any parameterization.

:func:`dgn.render`, ``dgn generate``, ``generate-all`` (classes and channels), ``compare`` and ``dream``
all run an :class:`Engine`. Row k of a batch is the image objective k gets alone with the same seed:
each row has its own variables and its own transformed copies (every row draws what a batch of one
draws), and D runs each row independently (inference mode). The numbers agree to float rounding; D's
matrix products over another batch size may round differently in the last bit (see ``dgn
generate-all --batch``).

How the rows are made, by parameterization:

- the generator G (:class:`dgn.optvis.param.Generator`): :func:`dgn.optvis.generator.build_batched_generator`
  (one decoder and B alpha rows with a trained decoder, else B copies of G or, on JAX, one vectorized G);
- a parameterization whose ``build(rows=B)`` already gives row k what ``build(rows=1)`` gives
  (``rows_independent``: :class:`~dgn.optvis.param.Pixels`, :class:`~dgn.optvis.param.Fourier`):
  its own ``optimize`` with ``rows=B`` (octaves included);
- any other registered parameterization: B copies of its single build in one model.

A batch of single classes, or of channels of one layer, is optimized with a retargetable objective
(:class:`~dgn.optvis.objectives.BatchClassObjective`, :class:`~dgn.optvis.objectives.BatchChannelObjective`):
its compiled step is kept and reused for every later batch of that size (weights, random generators
and optimizer reset, target mask changed); compiling again for every batch took longer than a batch's
1,200 steps on a GPU. Other batches (compound targets, neurons, mixes) use a
:class:`~dgn.optvis.objectives.StackObjective`, compiled per batch.
"""

from dataclasses import dataclass

import keras
import numpy as np

from dgn.optvis.generator import BatchedGenerator, GeneratorStack, build_batched_generator, count_trainable
from dgn.optvis.objectives import (BatchChannelObjective, BatchClassObjective, ChannelObjective, ClassObjective,
                                   StackObjective)
from dgn.optvis.optimize import Problem, make_stepper, optimize


@dataclass
class Batch:
    """What :meth:`Engine.run` returns: ``objective`` (the batch's; :meth:`row` gives row k's alone),
    ``result`` (:class:`dgn.optvis.optimize.Result`, ``result.images`` (rows, H, W, C) float32 in D's
    input space), ``model`` (the optimized parameterization with its transforms) and ``trainable``
    (trainable numbers per row)."""

    objective: object
    result: object
    model: keras.Model
    trainable: int
    objectives: list = None

    def row(self, k):
        """Row k's objective as it would be optimized alone."""
        if self.objectives is not None:
            return self.objectives[k]
        return self.objective.row(k) if hasattr(self.objective, "row") else self.objective


class Engine:
    """Optimizes objectives of ``classifier`` (a :class:`dgn.Classifier`) with one parameterization,
    transforms (:class:`dgn.optvis.transforms.Transforms`), optimizer (a function returning a fresh Keras
    optimizer), ``steps``, ``seed`` and ``snapshots`` (the final image is the median of the last
    ``snapshots`` renders). ``callbacks``: :mod:`dgn.optvis.callbacks` objects run after every step.
    ``stack``: how B untrained generators run ("copies" or "vmap", JAX only). ``features``: D's feature
    model to use instead of ``classifier.optimizing.features`` (``dgn dream``'s size-agnostic D)."""

    def __init__(self, classifier, parameterization, transforms, optimizer, steps, *, seed=0, snapshots=1,
                 callbacks=(), stack="copies", features=None):
        self.classifier, self.parameterization, self.transforms = classifier, parameterization, transforms
        self.optimizer, self.steps, self.seed, self.snapshots = optimizer, steps, seed, snapshots
        self.callbacks, self.stack, self.features = list(callbacks), stack, features
        self._compiled = {}  # key -> (rows' model, objective, problem, optimizer, stepper)

    def run(self, objectives, progress=False, label=None):
        """Optimizes one objective (an :class:`~dgn.optvis.objectives.Objective`: one image) or a list of
        B objectives (B images, row k for objective k); returns a :class:`Batch`. ``label``: the
        progress line's text, or a function of the model giving it."""
        if not isinstance(objectives, (list, tuple)):
            model, result = self._optimize(objectives, 1, progress, label)
            return Batch(objectives, result, model, count_trainable(model))
        objectives = list(objectives)
        key, objective = self._objective(objectives)
        rows = len(objectives)
        if self.parameterization.kind != "generator" and self.parameterization.rows_independent:
            model, result = self._optimize(objective, rows, progress, label)
            return Batch(objective, result, model, count_trainable(model) // rows, objectives)
        if key is not None and key in self._compiled:
            batched, objective, problem, optimizer, stepper = self._compiled[key]
            batched.reset()
            _retarget(objective, objectives)
            stepper.reload()
        else:
            batched, objective, problem, optimizer, stepper = compiled = self._compile(objective, rows)
            if key is not None:
                self._compiled[key] = compiled
        text = label(batched.model) if callable(label) else label
        result = optimize(problem, optimizer, self.steps, snapshots=self.snapshots, progress=progress, label=text,
                          stepper=stepper)
        return Batch(objective, result, batched.model, batched.trainable_per_class, objectives)

    def compiled(self, objectives):
        """Whether a step for this batch's shape (its size and kind of objectives) is already compiled."""
        return self._key(list(objectives)) in self._compiled

    def _optimize(self, objective, rows, progress, label):
        return self.parameterization.optimize(
            self.classifier, objective, self.steps, transforms=self.transforms, optimizer=self.optimizer,
            seed=self.seed, rows=rows, callbacks=self.callbacks, snapshots=self.snapshots, progress=progress,
            label=label, features=self.features)

    def _key(self, objectives):
        """The compiled step's key of a retargetable batch, else None."""
        if all(type(o) is ClassObjective and len(o.classes) == 1 and o.classes[0][1] == 1.0 for o in objectives):
            settings = {(o.activation, o.others) for o in objectives}
            if len(settings) == 1:
                return ("class", len(objectives)) + settings.pop()
        if all(type(o) is ChannelObjective for o in objectives) and len({o.layer for o in objectives}) == 1:
            return ("channel", len(objectives), objectives[0].layer)
        return None

    def _objective(self, objectives):
        """(key, the batch's objective) for a list of row objectives."""
        key = self._key(objectives)
        if key is None:
            return None, StackObjective(objectives)
        if key[0] == "class":
            first = objectives[0]
            return key, BatchClassObjective([o.classes[0][0] for o in objectives], first.activation, first.others,
                                            self.classifier.class_names, num_classes=self.classifier.num_classes)
        layer = objectives[0].layer
        return key, BatchChannelObjective(layer, [o.channel for o in objectives], self.classifier.layer_channels(layer))

    def _compile(self, objective, rows):
        if self.parameterization.kind == "generator":
            batched = build_batched_generator(self.parameterization, self.transforms, self.classifier, rows,
                                              self.seed, self.stack)
        else:
            batched = stack_copies(self.parameterization, self.transforms, self.classifier, rows, self.seed)
        features = self.features or self.classifier.optimizing.features(objective.layers)
        problem = Problem(batched.model, features, objective, distribute_rows(batched.f0),
                          list(batched.callbacks) + self.callbacks)
        optimizer = self.optimizer()
        return batched, objective, problem, optimizer, make_stepper(problem, optimizer)


def _retarget(objective, objectives):
    if isinstance(objective, BatchClassObjective):
        objective.set_classes([o.classes[0][0] for o in objectives])
    else:
        objective.set_channels([o.channel for o in objectives])


def stack_copies(parameterization, transforms, classifier, rows, seed):
    """A :class:`dgn.optvis.generator.BatchedGenerator` of ``rows`` copies of ``parameterization``'s single
    build (each with its transforms, all with ``seed``): row k goes through copy k, which is what a run of
    one image optimizes; the copies' callbacks all run."""
    copies = []
    for _ in range(rows):
        built = parameterization.build(classifier, 1, seed)
        copies.append((transforms.wrap(built.model, classifier.preprocessing, seed), built))
    single, built = copies[0]
    per_row = count_trainable(single)
    if rows == 1:
        return BatchedGenerator(single, built.f0, per_row, built.callbacks)
    inputs = keras.Input(built.f0.shape[1:], name="f0")
    model = keras.Model(inputs, GeneratorStack([m for m, _ in copies], name="copies")(inputs),
                        name=f"{parameterization.kind}_stack")
    callbacks = [cb for _, b in copies for cb in b.callbacks]
    return BatchedGenerator(model, np.repeat(built.f0, rows, axis=0), per_row, callbacks)


def distribute_rows(f0):
    """f0 with its rows spread over the devices of the active distribution (when they divide evenly)."""
    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if distribution is None:
        return f0
    count = len(distribution.device_mesh.devices.reshape(-1))
    if f0.shape[0] % count:
        return f0  # a last, smaller batch runs replicated
    return keras.distribution.distribute_tensor(f0, distribution.get_data_layout(f0.shape))
