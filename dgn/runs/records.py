"""What every generated image records: D's evaluation of it (activation, probability, rank, top-5;
computed here only) and its JSON sidecar's fields, for ``dgn generate``, ``generate-all``, ``dream``
and :func:`dgn.render`."""

import hashlib
import os
import platform
from dataclasses import dataclass

import keras
import numpy as np

from dgn import __version__, imagenet, preprocessing
from dgn.optvis.objectives import ClassObjective


@dataclass
class RunInfo:
    """How an image was optimized, as its sidecar records it: ``steps``, ``snapshots`` (final median
    of that many renders), ``display`` ("clip" or "authors"), ``seed``, ``kind`` (the
    parameterization), ``config`` (the resolved config dict, or the objects' settings for a run from
    Python) and ``config_file``."""

    steps: int
    snapshots: int = 1
    display: str = "clip"
    seed: int = 0
    kind: str = "generator"
    config: dict = None
    config_file: str = None


TRAP_WARNING = ("the target's ReLU activation was <= 0 (no gradient) for {dead} of {steps} steps{start}: "
                "the paper's loss is stuck there; use objective.activation: logit or logsoftmax")
DEAD_UNIT_WARNING = ("the target unit was exactly 0 everywhere (a dead unit: no gradient) for {dead} of {steps} "
                     "steps{start}{final}: its image shows nothing the unit responds to; try another seed, "
                     "a neuron nearer the centre, or another channel")


def versions():
    out = {"python": platform.python_version(), "keras": keras.__version__, "numpy": np.__version__}
    backend = keras.backend.backend()
    try:
        module = __import__(backend)
        out[backend] = module.__version__
    except ImportError:
        pass
    out["dgn"] = __version__
    return out


_DIGESTS = {}


def file_digest(path):
    """The first 16 hex digits of a file's sha256 (kept per path, size and modification time)."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        sha = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                sha.update(block)
        _DIGESTS[key] = sha.hexdigest()[:16]
    return _DIGESTS[key]


def input_files(data, prefix=""):
    """``{config key: file_digest}`` of every file a config names (decoder weights, classifier weights,
    code statistics, class index; each file of a list, such as ``classifier.custom_code``, as
    ``KEY[i]``): a run reuses a finished image only if these are unchanged too, since retrained weights
    (or edited model code) under the same path change every image."""
    found = {}
    for key, value in data.items():
        if isinstance(value, dict):
            found.update(input_files(value, f"{prefix}{key}."))
        elif isinstance(value, str) and os.path.isabs(value) and os.path.isfile(value):
            found[prefix + key] = file_digest(value)
        elif isinstance(value, list):
            found.update({f"{prefix}{key}[{i}]": file_digest(v) for i, v in enumerate(value)
                          if isinstance(v, str) and os.path.isabs(v) and os.path.isfile(v)})
    return found


def ranking(logits):
    """(order, rank) of one image's logits (C,): class indices from the most to the least likely
    (ties by index), and each class's rank (1 = top-1). The one place ranks are computed."""
    order = np.argsort(-np.asarray(logits), kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(1, len(order) + 1)
    return order, rank


def feature_outputs(classifier, layers, images, chunk=32):
    """D's outputs (``logits`` and the named layers) for images in its input space, as numpy arrays,
    ``chunk`` images per call."""
    feats = classifier.features(layers)
    images = np.asarray(images, dtype="float32")
    count = len(images)
    if count > chunk and count % chunk:  # every call the same shape: a new one costs a compile of each op
        images = np.concatenate([images, np.zeros((chunk - count % chunk,) + images.shape[1:], "float32")])
    parts = [feats(images[i:i + chunk], training=False) for i in range(0, len(images), chunk)]
    return {name: np.concatenate([np.asarray(part[name]) for part in parts])[:count] for name in parts[0]}


def evaluate(classifier, objective, images, outputs=None):
    """What D says of images (in its input space): the target's activation, probability, rank, top-5.
    ``outputs``: D's outputs for them already computed (``feature_outputs``), e.g. for a whole batch."""
    if outputs is None:
        outputs = feature_outputs(classifier, objective.layers, images)
    logits = np.asarray(outputs["logits"], dtype="float64")
    probs = classifier.probabilities(logits)
    values = np.asarray(objective.value(outputs), dtype="float64")
    reports = []
    for b in range(len(logits)):
        order, rank = ranking(logits[b])
        report = {"activation": float(values[b]),
                  "top5": [{**imagenet.class_info(i, classifier.class_names), "prob": float(probs[b, i]),
                            "logit": float(logits[b, i])} for i in order[:5]]}
        classes = _classes_of(objective)
        if classes:
            report["classes"] = [{**imagenet.class_info(i, classifier.class_names), "logit": float(logits[b, i]),
                                  "relu_activation": float(max(logits[b, i], 0.0)),
                                  "prob": float(probs[b, i]), "rank": int(rank[i])} for i, _ in classes]
            report["prob"] = float(sum(c["prob"] for c in report["classes"]))
            report["rank"] = min(c["rank"] for c in report["classes"])
        else:
            report["prob"] = report["rank"] = None
        for name in objective.layers:
            act = np.asarray(outputs[name][b], dtype="float64")
            means = act.reshape(-1, act.shape[-1]).mean(0)
            report.setdefault("layers", {})[name] = {
                "top_channels": [int(c) for c in np.argsort(-means, kind="stable")[:5]]}
        reports.append(report)
    return reports


def _classes_of(objective):
    terms = getattr(objective, "terms", [objective])
    for term in terms:
        term = getattr(term, "term", term)
        if isinstance(term, ClassObjective):
            return term.classes
    return []


def png_pixels(classifier, image, display="clip"):
    """A float image in D's input space as the PNG's 8-bit RGB (``display``: clip, or the authors'
    transform), and that PNG back in D's input space."""
    rgb = preprocessing.to_uint8(np.asarray(image), classifier.preprocessing, display)
    return rgb, preprocessing.from_rgb(rgb.astype("float32"), classifier.preprocessing)


def image_record(run, classifier, objective, result, k, spec, trainable, seconds, evaluated=None):
    """Row k of an optimization result as (PNG pixels, sidecar): the fields every run writes.
    ``run``: the :class:`RunInfo` of the optimization.

    D is evaluated on the PNG as saved and on the float image before quantization; ``evaluated``:
    that pair of reports already computed (``evaluate``), with the PNG's pixels, as (rgb, on_png, on_raw)."""
    steps, snapshots, kind = run.steps, run.snapshots, run.kind
    if evaluated is None:
        image = np.asarray(result.images[k])
        rgb, saved = png_pixels(classifier, image, run.display)
        on_png, on_raw = evaluate(classifier, objective, np.stack([saved, image]))
    else:
        rgb, on_png, on_raw = evaluated
    final_image = ((f"median of the last {snapshots} renders" if snapshots > 1 else "last render")
                   + (" (G's norm as optimized, feature noise off)" if kind == "generator" else f" ({kind} image)")
                   + "; the PNG is D's input space undone"
                   + (", with the authors' display transform" if run.display == "authors" else ", clipped"))
    sidecar = sidecar_fields(run, objective, spec, on_png, on_raw, steps=result.steps or steps, trainable=trainable,
                             losses=result.losses, activations=[v[k] for v in result.values],
                             final_image=final_image, seconds=seconds,
                             seconds_per_step=result.seconds / max(1, result.steps or steps))
    dead = int(result.dead_steps[k])
    if dead:
        start = ", from the first step" if result.dead_at_start[k] else ""
        if objective.describe()["kind"] in ("channel", "neuron"):
            final = ", and is 0 on the saved image" if on_png["activation"] == 0 else ""
            sidecar["dead_unit"] = {"dead_steps": dead, "dead_at_start": bool(result.dead_at_start[k]),
                                    "final_activation": on_png["activation"],
                                    "warning": DEAD_UNIT_WARNING.format(dead=dead, steps=steps, start=start,
                                                                         final=final)}
        else:
            sidecar["relu_trap"] = {"dead_steps": dead, "dead_at_start": bool(result.dead_at_start[k]),
                                    "warning": TRAP_WARNING.format(dead=dead, steps=steps, start=start)}
    return rgb, sidecar


def sidecar_fields(run, objective, spec, on_png, on_raw, *, steps, trainable, losses, activations,
                   final_image, seconds, seconds_per_step):
    """The fields every output image's JSON sidecar has (``dgn generate``, ``generate-all``,
    ``dream``, :func:`dgn.render`): the target and what D says of the PNG (``on_png``) and of the
    float image before quantization (``on_raw``), the run (steps, seed, loss, activation), timing,
    versions and the full resolved config (``run.config``; for a run from Python, the objects'
    settings). ``image`` is filled in by the writer."""
    return {
        "image": None,
        "target": objective.describe(),
        "target_spec": str(spec),
        **on_png,
        "optimized_image": {key: on_raw[key] for key in ("activation", "prob", "rank")},
        "steps": steps,
        "seed": run.seed,
        "trainable_weights": trainable,
        "loss": {"first": losses[0], "last": losses[-1]},
        "activation_during": {"first": activations[0], "last": activations[-1]},
        "relu_trap": None,
        "dead_unit": None,
        "parameterization": run.kind,
        "final_image": final_image,
        "wall_seconds": None if seconds is None else round(seconds, 3),
        "seconds_per_step": round(seconds_per_step, 5),
        "backend": keras.backend.backend(),
        "versions": versions(),
        "config": run.config,
        "config_file": run.config_file,
        "input_files": input_files(run.config or {}),
    }
