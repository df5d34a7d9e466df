"""The one optimization loop: G's trainable variables are updated so that D's objective improves.

The step is compiled once per run for the active backend (``tf.function`` on TensorFlow,
``jax.jit`` with donated state on JAX) and computes exactly: image = G(f0) (noise and G's norm in
training mode), outputs = D(image) (inference mode), loss = sum of the objective over the batch
(for each image the mean over the transformed copies D saw of it, see ``transform.samples``) + G's
regularization losses, one optimizer update.

Everything else a run does between steps is a callback (:mod:`dgn.optvis.callbacks`): the progress bar,
the median of the last renders, early stopping, and the non-gradient operations of a
parameterization (periodic blur, clipping of small pixel values or contributions), which read and
write the trainable variables' values through the stepper (``stepper.variables``, ``get_values()``,
``set_values(values)``) and, with ``needs_grads = True``, read the step's gradients
(``stepper.gradients()``). Without such a callback the compiled step is exactly the one above.
"""

import time
from dataclasses import dataclass, field

import keras
import numpy as np
from keras import ops

from dgn.errors import DgnError
from dgn.optvis.callbacks import ProgressBar, Snapshots


@dataclass
class Problem:
    """What one run optimizes: G (f0 -> image), D's feature model, the objective and f0, and the
    parameterization's own callbacks (:mod:`dgn.optvis.callbacks`; e.g. pixel ascent's blur and clipping),
    which the compiled step is built for (gradients kept if one has ``needs_grads``)."""

    generator: keras.Model
    features: keras.Model
    objective: object
    f0: np.ndarray
    callbacks: list = field(default_factory=list)

    @property
    def needs_grads(self):
        return any(getattr(cb, "needs_grads", False) for cb in self.callbacks)


@dataclass
class Run:
    """One call of :func:`optimize`, as callbacks see it: set ``stop`` to end it after a step."""

    steps: int
    rows: int
    label: str = None
    stop: bool = False


@dataclass
class Result:
    images: np.ndarray              # (rows, H, W, C) in D's input space: the final images
    losses: list = field(default_factory=list)
    values: list = field(default_factory=list)       # per step, per image: target activation
    dead_steps: np.ndarray = None   # per image: steps whose target term had no gradient
    dead_at_start: np.ndarray = None
    seconds: float = 0.0
    steps: int = 0                  # steps run (fewer than asked when a callback stopped the run)
    extras: dict = field(default_factory=dict)       # per-image maps a callback adds (MACO's "transparency")


def objective_terms(objective, outputs, rows):
    """(loss, value, dead), each of shape (rows,), of D's ``outputs`` for ``rows`` images. When the
    transform showed D several copies of each image (``transform.samples``; copy s of image k at row
    ``s * rows + k``), loss and value are the means over an image's copies and dead means dead in all."""
    copies = next(iter(outputs.values())).shape[0] // rows
    if copies == 1:
        return objective.loss(outputs), objective.value(outputs), objective.dead(outputs)
    losses, values, deads = [], [], []
    for s in range(copies):
        part = {name: out[s * rows:(s + 1) * rows] for name, out in outputs.items()}
        losses.append(objective.loss(part))
        values.append(objective.value(part))
        deads.append(objective.dead(part))
    dead = deads[0]
    for d in deads[1:]:
        dead = ops.logical_and(dead, d)
    return sum(losses) / copies, sum(values) / copies, dead


def auto_learning_rate(image_size, kind="generator"):
    """The default step size (Adam) for images of ``image_size`` (height, width) made by the
    parameterization ``kind``. The generator's (and any other kind's): 0.002 at 224 x 224 (the
    quickstart's, measured on EfficientNet-Lite0), growing as 224 / short side up to 0.01 (measured on
    32 x 32 classifiers, where 0.002 reaches a class that 0.01 reaches in 150 steps only after many more).
    ``fourier`` and ``maco``: :data:`SPECTRUM_RATES`, the same at every size: their variables are
    spectra scaled so that an Adam step (about ``rate`` on every coefficient) changes the image by an
    amount that hardly depends on its size (lucid's 1/f scale: ~ rate * sqrt(2 pi ln N) for N x N
    images; MACO's phase is normalized every step), whereas the generator's and the pixels' steps
    change it less at small sizes (docs/measurements.md, "Size-aware defaults")."""
    if kind in SPECTRUM_RATES:
        return float(SPECTRUM_RATES[kind])
    short = 224.0 if image_size is None else float(min(image_size))
    return float(min(0.01, max(0.002, 0.002 * 224.0 / short)))


# Adam's step size at 224 x 224 for the spectrum parameterizations: Fourier's is lucid's 0.05 (as
# configs/fourier-efficientnet-lite0.yaml); MACO's phase (normalized to std 1 each step) chosen by the sweep in
# docs/measurements.md ("MACO").
SPECTRUM_RATES = {"fourier": 0.05, "maco": 0.5}


class _TensorFlowStepper:
    def __init__(self, problem, optimizer):
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")  # one fresh tf.function per run is intended, not retracing
        gen, feats, objective = problem.generator, problem.features, problem.objective
        variables = gen.trainable_variables
        f0 = tf.constant(problem.f0)
        rows = problem.f0.shape[0]
        optimizer.build(variables)
        self._optimizer, self._opt_initial = optimizer, [np.array(v.numpy()) for v in optimizer.variables]
        self.variables, self._grads = variables, None
        self._need_grads = need_grads = problem.needs_grads

        @tf.function(jit_compile=False, reduce_retracing=True)
        def step():
            with tf.GradientTape() as tape:
                image = gen(f0, training=True)
                outputs = feats(image, training=False)
                per_image, value, dead = objective_terms(objective, outputs, rows)
                loss = tf.reduce_sum(per_image)
                if gen.losses:
                    loss = loss + tf.add_n(gen.losses)
            grads = tape.gradient(loss, variables)
            optimizer.apply(grads, variables)
            if need_grads:
                return loss, value, dead, grads
            return loss, value, dead

        @tf.function(jit_compile=False)
        def render():
            return gen(f0, training=False)

        self._step, self._render = step, render

    def step(self):
        out = self._step()
        if self._need_grads:
            out, self._grads = out[:3], out[3]
        return tuple(np.asarray(t) for t in out)

    def render(self):
        return np.asarray(self._render())

    def reload(self):
        """Starts again from G's and the objective's variables as they are now, with a fresh optimizer
        state, reusing the traced step (the compiled step reads every variable when it runs)."""
        for var, value in zip(self._optimizer.variables, self._opt_initial):
            var.assign(value)
        self._grads = None

    def sync(self):
        pass

    def get_values(self):
        return [np.asarray(v) for v in self.variables]

    def set_values(self, values):
        _check_values(self.variables, values)
        for var, value in zip(self.variables, values):
            if value is not None:
                var.assign(np.asarray(value, dtype=var.dtype))

    def gradients(self):
        return None if self._grads is None else [np.asarray(g) for g in self._grads]


class _JaxStepper:
    def __init__(self, problem, optimizer):
        import jax

        gen, feats, objective = problem.generator, problem.features, problem.objective
        optimizer.build(gen.trainable_variables)
        self._gen, self._optimizer = gen, optimizer
        self.variables, self._grads = gen.trainable_variables, None
        self._need_grads = need_grads = problem.needs_grads
        self._f0 = jax.numpy.asarray(problem.f0)
        self._feat_state = ([v.value for v in feats.trainable_variables],
                            [v.value for v in feats.non_trainable_variables])
        self._opt_initial = [np.array(v.value) for v in optimizer.variables]
        self._obj_vars = obj_vars = list(objective.variables)
        self.reload()

        rows = problem.f0.shape[0]

        def loss_fn(trainable, non_trainable, f0, feat_state, obj_state):
            image, non_trainable, losses = gen.stateless_call(
                trainable, non_trainable, f0, training=True, return_losses=True)
            outputs, _ = feats.stateless_call(*feat_state, image, training=False)
            if obj_vars:  # the objective's variables (a batch's target mask) are inputs of the step
                with keras.StatelessScope(state_mapping=list(zip(obj_vars, obj_state))):
                    per_image, value, dead = objective_terms(objective, outputs, rows)
            else:
                per_image, value, dead = objective_terms(objective, outputs, rows)
            loss = jax.numpy.sum(per_image) + sum(losses)
            return loss, (non_trainable, value, dead)

        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

        def step(state, f0, feat_state, obj_state):
            trainable, non_trainable, opt_vars = state
            (loss, (non_trainable, value, dead)), grads = grad_fn(trainable, non_trainable, f0, feat_state,
                                                                  obj_state)
            trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
            if need_grads:
                return (trainable, non_trainable, opt_vars), (loss, value, dead, grads)
            return (trainable, non_trainable, opt_vars), (loss, value, dead)

        def render(state, f0):
            return gen.stateless_call(state[0], state[1], f0, training=False)[0]

        self._step = jax.jit(step, donate_argnums=(0,))
        self._render = jax.jit(render)

    def reload(self):
        """Starts again from G's and the objective's variables as they are now, with a fresh optimizer
        state, reusing the compiled step (same shapes: a new batch of classes, say)."""
        import jax.numpy as jnp

        gen = self._gen  # copies: the step donates its state, the variables keep theirs
        self._state = ([jnp.array(v.value) for v in gen.trainable_variables],
                       [jnp.array(v.value) for v in gen.non_trainable_variables],
                       [jnp.array(value) for value in self._opt_initial])
        self._obj_state = [v.value for v in self._obj_vars]
        self._grads = None

    def step(self):
        self._state, metrics = self._step(self._state, self._f0, self._feat_state, self._obj_state)
        if self._need_grads:
            metrics, self._grads = metrics[:3], metrics[3]
        return tuple(np.asarray(t) for t in metrics)

    def get_values(self):
        return [np.asarray(v) for v in self._state[0]]

    def set_values(self, values):
        import jax.numpy as jnp

        _check_values(self._state[0], values)
        trainable = [old if new is None else jnp.asarray(new, dtype=old.dtype)
                     for old, new in zip(self._state[0], values)]
        self._state = (trainable,) + tuple(self._state[1:])

    def gradients(self):
        return None if self._grads is None else [np.asarray(g) for g in self._grads]

    def render(self):
        return np.asarray(self._render(self._state, self._f0))

    def sync(self):
        trainable, non_trainable, opt_vars = self._state
        for var, value in zip(self._gen.trainable_variables, trainable):
            var.assign(value)
        for var, value in zip(self._gen.non_trainable_variables, non_trainable):
            var.assign(value)
        for var, value in zip(self._optimizer.variables, opt_vars):
            var.assign(value)


def _check_values(variables, values):
    """set_values' argument: one array (or None) per trainable variable, each of its shape."""
    values = list(values)
    if len(values) != len(variables):
        raise DgnError(f"set_values got {len(values)} arrays for {len(variables)} trainable variables; give one "
                       f"per variable (None leaves it)")
    for k, (var, value) in enumerate(zip(variables, values)):
        if value is not None and tuple(np.shape(value)) != tuple(var.shape):
            raise DgnError(f"set_values: array {k} has shape {tuple(np.shape(value))}, the variable "
                           f"{tuple(var.shape)}")


def make_stepper(problem, optimizer):
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _TensorFlowStepper(problem, optimizer)
    if backend == "jax":
        return _JaxStepper(problem, optimizer)
    raise DgnError(f"the {backend} backend is not supported; set KERAS_BACKEND=tensorflow (default) or jax")


def optimize(problem, optimizer, steps, snapshots=1, progress=True, label=None, stepper=None, callbacks=()):
    """Runs ``steps`` updates; the final images are the last render or, with ``snapshots`` > 1, the
    per-pixel median of the renders after each of the last ``snapshots`` steps (:class:`Snapshots`).
    Renders use the same G statistics as the optimization (see GeneratorNorm) with the feature noise
    off. ``callbacks``: the user's (:mod:`dgn.optvis.callbacks`), run after the problem's own each step.
    ``stepper``: one made by ``make_stepper`` for this problem and optimizer, reloaded
    (``stepper.reload()``) since its last run, to reuse its compiled step.

    Raises:
        DgnError: the loss became NaN or infinite (one line: lower the learning rate)."""
    callbacks = list(callbacks)
    if stepper is None:   # the step keeps gradients if any callback, the problem's or the user's, reads them
        stepper = make_stepper(Problem(problem.generator, problem.features, problem.objective, problem.f0,
                                       list(problem.callbacks) + callbacks), optimizer)
    elif any(getattr(cb, "needs_grads", False) for cb in callbacks) and not getattr(stepper, "_need_grads", False):
        raise DgnError("a callback needs the gradients but the given stepper was built without them; build it "
                       "for a Problem that has that callback")
    rows = problem.f0.shape[0]
    run = Run(steps=steps, rows=rows, label=label)
    everyone = list(problem.callbacks) + callbacks + [Snapshots(snapshots), ProgressBar(label, progress)]
    result = Result(images=None)
    dead_steps = np.zeros(rows, dtype=int)
    for cb in everyone:
        cb.on_run_begin(run)
    start = time.perf_counter()
    for i in range(steps):
        loss, value, dead = stepper.step()
        if i == 0:
            result.dead_at_start = np.asarray(dead, dtype=bool)
        dead_steps += np.asarray(dead, dtype=int)
        result.losses.append(float(loss))
        result.values.append(np.asarray(value, dtype=float).tolist())
        if not np.isfinite(loss):
            raise DgnError(f"the loss became {float(loss)} at step {i + 1}; lower optimizer.learning_rate")
        logs = {"loss": loss, "value": value, "dead": dead}
        for cb in everyone:
            cb.on_step_end(i, logs, stepper)
        result.steps = i + 1
        if run.stop:
            break
    result.seconds = time.perf_counter() - start
    stepper.sync()
    result.images = stepper.render()
    result.dead_steps = dead_steps
    for cb in everyone:
        cb.on_run_end(run, result)
    if not np.all(np.isfinite(result.images)):
        raise DgnError("the image became NaN or infinite (a callback wrote such values, or the optimizer diverged); "
                       "lower optimizer.learning_rate or check the callback")
    return result
