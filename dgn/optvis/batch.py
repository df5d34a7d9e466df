"""Units of a batch run (classes or channels) and :class:`BatchRunner`, which optimizes B of them per step.
"""


import re

import keras
import numpy as np

from dgn import build, imagenet
from dgn.attribution.examples import parse_channels
from dgn.errors import DgnError
from dgn.optvis.generator import build_batched_generator, count_trainable
from dgn.optvis.objectives import BatchChannelObjective, BatchClassObjective, ChannelObjective, ClassObjective
from dgn.optvis.optimize import Problem, make_stepper, optimize
from dgn.optvis.render import run_info
from dgn.runs.folder import finished
from dgn.runs.records import evaluate, feature_outputs, image_record, png_pixels


# --- input -----------------------------------------------------------------------------------------

def parse_classes(spec, names, num_classes):
    """``all``, ranges ``a:b`` (b excluded), or comma lists of indices, wnids or names -> sorted indices."""
    text = str(spec if spec is not None else "all").strip()
    if text.lower() == "all":
        return list(range(num_classes))
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise DgnError(f"--classes {text!r}: empty item; give e.g. all, 0:100, 1,2,3 or n01440764,goldfish")
        match = re.fullmatch(r"(\d*)\s*:\s*(\d*)", part)
        if match:
            start = int(match.group(1)) if match.group(1) else 0
            stop = int(match.group(2)) if match.group(2) else num_classes
            if not 0 <= start < stop <= num_classes:
                raise DgnError(f"--classes range {part!r} is empty or out of range; the classifier has classes "
                               f"0..{num_classes - 1} (a range a:b includes a, excludes b)")
            out.update(range(start, stop))
        else:
            out.add(imagenet.resolve_class(part, names, num_classes))
    return sorted(out)


# --- finished classes -------------------------------------------------------------------------------

def class_stem(index, names):
    return ClassObjective([(index, 1.0)], names=names).stem(str(index))


def unit_objective(unit, names):
    """A unit of a run (a class index, or ("channel", layer, c)) as the objective ``dgn generate`` uses
    for it (its stem, its described target)."""
    if isinstance(unit, tuple):
        return ChannelObjective(unit[1], unit[2])
    return ClassObjective([(unit, 1.0)], names=names)


def unit_spec(unit):
    """The target string of a unit (what ``dgn generate --target`` takes)."""
    return f"channel:{unit[1]}:{unit[2]}" if isinstance(unit, tuple) else unit


def finished_sidecar(run_dir, unit, stem, identity, size, files, names=None):
    """The sidecar of a finished unit (class or channel) in ``run_dir`` (see :func:`dgn.runs.folder.finished`),
    else None."""
    return finished(run_dir, stem, unit_objective(unit, names).describe(), identity, files, size=size)


# --- the batched optimization -----------------------------------------------------------------------

class BatchRunner:
    """Optimizes batches of classes with the config's parameterization.

    The generator G: one batched generator, objective and compiled step per batch size; each new batch
    resets G's weights and random generators, restarts the optimizer and retargets the objective's
    mask, then runs the step already compiled (compiling it again for every batch took longer than a
    batch's 1,200 steps on a GPU). Pixels and Fourier images: built afresh for every batch, one row per
    class (their variables are the image itself)."""

    def __init__(self, cfg, classifier, stack="copies"):
        data = cfg.data
        self.classifier, self.stack = classifier, stack
        self.parameterization, self.transforms = build.parameterization(data), build.transforms(data)
        self.optimizer = build.optimizer(data["optimizer"], classifier.input_shape[:2], build.kind(data))
        self.steps, self.snapshots, self.seed = data["steps"], build.snapshots(data), data["seed"]
        self.activation, self.others = data["objective"]["activation"], data["objective"]["others"]
        self._compiled = {}  # rows -> (batched generator, objective, problem, optimizer, stepper)

    def compiled(self, rows, unit=None):
        """Whether a step for batches of ``rows`` units (like ``unit``) is already compiled."""
        return ((rows, unit[1]) if isinstance(unit, tuple) else rows) in self._compiled

    def _objective(self, classes):
        return BatchClassObjective(classes, self.activation, self.others, self.classifier.class_names,
                                   num_classes=self.classifier.num_classes)

    def _objective_for(self, units):
        if isinstance(units[0], tuple):
            layer = units[0][1]
            return BatchChannelObjective(layer, [u[2] for u in units], self.classifier.layer_channels(layer))
        return self._objective(units)

    def run(self, classes, progress=False, label=None):
        """(objective, Result, trainable numbers per unit) for one batch of units: class indices, or
        ("channel", layer, c) of one layer."""
        if self.parameterization.kind != "generator":
            objective = self._objective_for(classes)
            model, result = self.parameterization.optimize(
                self.classifier, objective, self.steps, transforms=self.transforms, optimizer=self.optimizer,
                seed=self.seed, rows=len(classes), snapshots=self.snapshots, progress=progress, label=label)
            return objective, result, count_trainable(model) // len(classes)
        rows = len(classes)
        key = (rows, classes[0][1]) if isinstance(classes[0], tuple) else rows   # channels: one step per layer
        if key in self._compiled:
            batched, objective, problem, optimizer, stepper = self._compiled[key]
            batched.reset()
            if isinstance(classes[0], tuple):
                objective.set_channels([u[2] for u in classes])
            else:
                objective.set_classes(classes)
            stepper.reload()
        else:
            batched, objective, problem, optimizer, stepper = self._compiled[key] = self._compile(classes)
        result = optimize(problem, optimizer, self.steps, snapshots=self.snapshots, progress=progress,
                          label=label, stepper=stepper)
        return objective, result, batched.trainable_per_class

    def _compile(self, classes):
        batched = build_batched_generator(self.parameterization, self.transforms, self.classifier, len(classes),
                                          self.seed, self.stack)
        objective = self._objective_for(classes)
        problem = Problem(batched.model, self.classifier.optimizing.features(objective.layers), objective,
                          distribute_rows(batched.f0))
        optimizer = self.optimizer()
        return batched, objective, problem, optimizer, make_stepper(problem, optimizer)


def default_batch(trainable="alpha"):
    """Classes per step when --batch is not given. On CPU 1 (a batch makes each image-step no faster
    there: see scripts/benchmark_batch.py), so the classes still finish one by one. With a GPU/TPU,
    64 for the pretrained configuration (one decoder, B alpha rows: 1,709 image-steps/s at 64 vs
    1,260 at 16 on an H100 in float32, 3,318 at 64 on an H200 in bfloat16) and 8 when every class
    trains its own generator (B generator copies in one compiled step, whose compile time grows with
    B: 353 image-steps/s at 8 vs 166 at 1 on the H100; 375 at 16 in bfloat16 on the H200). Pixel and
    Fourier images (``trainable`` "pixel" / "fourier": no G, each row only its own image) as alpha: 64."""
    if not accelerated():
        return 1
    return 64 if trainable in ("alpha", "pixel", "fourier") else 8


def accelerated():
    """Whether the backend computes on a GPU or TPU."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax
            return jax.devices()[0].platform != "cpu"
        if backend == "tensorflow":
            import tensorflow as tf
            return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    except Exception:
        pass
    return False


def setup_distribution():
    """Under JAX with several visible devices: Keras's DataParallel over all of them (weights replicated,
    the batch's rows split), set before any model is built. Returns the device count."""
    if keras.backend.backend() != "jax":
        return 1
    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        return 1
    if keras.distribution.distribution() is None:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return len(devices)


def distribute_rows(f0):
    """f0 with its rows spread over the devices of the active distribution (when they divide evenly)."""
    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if distribution is None:
        return f0
    count = len(distribution.device_mesh.devices.reshape(-1))
    if f0.shape[0] % count:
        return f0  # a last, smaller batch runs replicated
    return keras.distribution.distribute_tensor(f0, distribution.get_data_layout(f0.shape))


def evaluate_batch(cfg, classifier, objective, result, count):
    """(PNG pixels, D on the PNG, D on the float image) for the first ``count`` rows of a batch's
    result, D run once over all of them (one call per image cost more than the steps on a GPU)."""
    images = np.asarray(result.images[:count])
    pixels = [png_pixels(classifier, image, cfg.data["output"]["display"]) for image in images]
    outputs = feature_outputs(classifier, objective.layers,
                              np.concatenate([np.stack([saved for _, saved in pixels]), images]))
    evaluated = []
    for k in range(count):
        pair = {name: value[[k, count + k]] for name, value in outputs.items()}
        on_png, on_raw = evaluate(classifier, objective.row(k), None, outputs=pair)
        evaluated.append((pixels[k][0], on_png, on_raw))
    return evaluated


def sidecar_for(cfg, classifier, objective, k, result, per_class, batch_info, seconds, evaluated):
    """What ``dgn generate`` writes for one image (dgn.optvis.render.image_record), for row k of a batch;
    ``evaluated``: row k of ``evaluate_batch``."""
    units = getattr(objective, "row_classes", None) or getattr(objective, "row_channels")
    rows, classes = len(units), batch_info.get("size", len(units))
    row = objective.row(k)
    spec = units[k] if hasattr(objective, "row_classes") else f"channel:{objective.layer}:{units[k]}"
    stem = row.stem(str(spec))
    rgb, sidecar = image_record(run_info(cfg), classifier, row, result, k, spec, per_class, seconds / classes,
                                evaluated=evaluated)
    sidecar["image"] = stem + ".png"
    what = "classes" if hasattr(objective, "row_classes") else "channels"
    if rows > classes:
        sidecar["loss"]["of"] = (f"the batch of {rows} rows (sum): {classes} {what}, padded with repeats of the "
                                 f"last to the compiled batch size")
    elif rows > 1:
        sidecar["loss"]["of"] = f"the batch of {rows} {what} (sum)"
    sidecar["batch"] = batch_info
    return stem, rgb, sidecar


def unit_batches(items, size):
    """Batches of at most ``size`` units; channels of different layers never share a batch."""
    groups = {}
    for item in items:
        groups.setdefault(item[1] if isinstance(item, tuple) else None, []).append(item)
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]


def select_units(classifier, classes=None, channels=None, where="--channels"):
    """The units a run covers, in order: class indices (``classes``: see :func:`parse_classes`; default all)
    or, with ``channels`` (a list of ``LAYER[:RANGE]``, :func:`dgn.attribution.examples.parse_channels`),
    ("channel", layer, c) tuples.

    Raises:
        DgnError: both given, or a bad spec (one line)."""
    if channels:
        if classes not in (None, "all"):
            raise DgnError("give --classes or --channels, not both (a run is of classes or of channels)")

        units = []
        for spec in channels:
            layer, picked = parse_channels(spec, classifier, where)
            units += [("channel", layer, c) for c in picked]
        return list(dict.fromkeys(units))
    return parse_classes("all" if classes is None else classes, classifier.class_names, classifier.num_classes)
