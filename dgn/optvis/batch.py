"""Units of a batch run (classes or channels): their selection, batches, finished check, evaluation and
sidecars; :class:`dgn.optvis.engine.Engine` optimizes B of them per step.
"""


import re

import keras
import numpy as np

from dgn import imagenet
from dgn.attribution.examples import parse_channels
from dgn.errors import DgnError
from dgn.optvis.objectives import ChannelObjective, ClassObjective
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


def evaluate_batch(run, classifier, batch, count):
    """(PNG pixels, D on the PNG, D on the float image) for the first ``count`` rows of a
    :class:`dgn.optvis.engine.Batch`, D run once over all of them (one call per image cost more than the
    steps on a GPU). ``run``: the :class:`dgn.runs.records.RunInfo` (its ``display``)."""
    images = np.asarray(batch.result.images[:count])
    pixels = [png_pixels(classifier, image, run.display) for image in images]
    outputs = feature_outputs(classifier, batch.objective.layers,
                              np.concatenate([np.stack([saved for _, saved in pixels]), images]))
    evaluated = []
    for k in range(count):
        pair = {name: value[[k, count + k]] for name, value in outputs.items()}
        on_png, on_raw = evaluate(classifier, batch.row(k), None, outputs=pair)
        evaluated.append((pixels[k][0], on_png, on_raw))
    return evaluated


def sidecar_for(run, classifier, batch, k, spec, batch_info, seconds, evaluated):
    """What ``dgn generate`` writes for one image (dgn.runs.records.image_record), for row k of a
    :class:`dgn.optvis.engine.Batch` whose row k has target string ``spec``; ``evaluated``: row k of
    ``evaluate_batch``. Returns (stem, PNG pixels, sidecar)."""
    rows, size = len(batch.result.images), batch_info.get("size", len(batch.result.images))
    row = batch.row(k)
    stem = row.stem(str(spec))
    rgb, sidecar = image_record(run, classifier, row, batch.result, k, spec, batch.trainable, seconds / size,
                                evaluated=evaluated)
    sidecar["image"] = stem + ".png"
    what = "channels" if row.describe()["kind"] == "channel" else "classes"
    if rows > size:
        sidecar["loss"]["of"] = (f"the batch of {rows} rows (sum): {size} {what}, padded with repeats of the "
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
