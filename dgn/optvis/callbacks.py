"""Callbacks of the optimization loop (:func:`dgn.optvis.optimize.optimize`), as in tf-keras-vis.

A callback sees the run begin, every step end and the run end. What the loop used to do by hand is a
callback here: the progress bar with its ETA (:class:`ProgressBar`), the final image as the median
of the last renders (:class:`Snapshots`), early stopping (:class:`EarlyStopping`) and the
non-gradient operations a parameterization applies between steps (pixel ascent's blur and clipping,
:class:`dgn.optvis.param.pixels.PixelHook`). Users pass their own (:class:`LambdaCallback`, or a
subclass of :class:`Callback`) to ``dgn.render(..., callbacks=[...])``.

Order: the parameterization's callbacks run first, then the user's, then the snapshot and progress
callbacks, so a render after a step shows the step's image after its pixel operations.

The ``stepper`` handed to each callback reads and writes the trainable variables' values
(``stepper.variables``, ``get_values()``, ``set_values(values)``; ``None`` entries are left as
they are), renders the current image (``render()``: images in D's input space, (rows, H, W, C)
float32) and, for a callback with ``needs_grads = True``, gives the step's gradients of the loss
(``gradients()``).
"""

import numpy as np

from dgn.progress import Progress


class Callback:
    """Base class: every hook does nothing. ``needs_grads``: the loop keeps each step's gradients for
    :meth:`on_step_end` (costs memory; off by default)."""

    needs_grads = False

    def on_run_begin(self, run):
        """``run``: the :class:`dgn.optvis.optimize.Run` (steps, rows, label, ``stop``)."""

    def on_step_end(self, step, logs, stepper):
        """After update ``step`` (0-based). ``logs``: ``loss`` (float, the summed objective plus
        regularizers), ``value`` ((rows,) the target activation per image), ``dead`` ((rows,) bool: the
        target term had no gradient). Set ``run.stop = True`` (from :meth:`on_run_begin`'s ``run``) to
        end the run after this step."""

    def on_run_end(self, run, result):
        """``result``: the :class:`dgn.optvis.optimize.Result`; a callback may replace ``result.images``."""


class LambdaCallback(Callback):
    """A callback from plain functions: ``on_step_end(step, logs, stepper)``, ``on_run_end(run, result)``."""

    def __init__(self, on_step_end=None, on_run_end=None, on_run_begin=None, needs_grads=False):
        self._begin, self._step, self._end = on_run_begin, on_step_end, on_run_end
        self.needs_grads = bool(needs_grads)

    def on_run_begin(self, run):
        if self._begin:
            self._begin(run)

    def on_step_end(self, step, logs, stepper):
        if self._step:
            self._step(step, logs, stepper)

    def on_run_end(self, run, result):
        if self._end:
            self._end(run, result)


class ProgressBar(Callback):
    """One line per run with the step count, rate, ETA, loss and mean target activation
    (:class:`dgn.progress.Progress`: a redrawn line on a terminal, a line every few seconds otherwise)."""

    def __init__(self, label=None, enabled=True):
        self.label, self.enabled, self._bar = label, enabled, None

    def on_run_begin(self, run):
        self._bar = Progress(run.steps, "step", self.label if self.label is not None else run.label,
                             enabled=self.enabled)

    def on_step_end(self, step, logs, stepper):
        self._bar.update(step + 1, loss=float(logs["loss"]), activation=float(np.mean(logs["value"])))


class Snapshots(Callback):
    """The final images are the per-pixel median of the renders after each of the last ``count`` steps
    (``final.mode: median``), not the last render. ``count`` 1: off."""

    def __init__(self, count):
        self.count = int(count)
        self._kept, self._first = [], None

    def on_run_begin(self, run):
        self._kept, self._first = [], run.steps - self.count

    def on_step_end(self, step, logs, stepper):
        if self.count > 1 and step >= self._first:
            self._kept.append(stepper.render())

    def on_run_end(self, run, result):
        if self._kept:
            result.images = np.median(np.stack(self._kept), axis=0)


class EarlyStopping(Callback):
    """Ends the run when the loss has not fallen by at least ``min_delta`` for ``patience`` steps
    (after ``start`` steps at least). The result then has fewer steps than asked (``result.steps``)."""

    def __init__(self, patience=50, min_delta=0.0, start=0):
        self.patience, self.min_delta, self.start = int(patience), float(min_delta), int(start)
        self._best, self._since, self._run = None, 0, None

    def on_run_begin(self, run):
        self._best, self._since, self._run = None, 0, run

    def on_step_end(self, step, logs, stepper):
        loss = float(logs["loss"])
        if self._best is None or loss < self._best - self.min_delta:
            self._best, self._since = loss, 0
        else:
            self._since += 1
        if step + 1 >= self.start and self._since >= self.patience:
            self._run.stop = True
