"""``dgn generate``: one image per target, each with a JSON sidecar."""

import hashlib
import os
import platform
import time

import keras
import numpy as np

from dgn import imagenet, preprocessing
from dgn.classifiers import load_classifier
from dgn.errors import ConfigError
from dgn.generator import architecture, build_decoder, build_generator, count_trainable
from dgn.objectives import ClassObjective, parse_target
from dgn.optimize import Problem, make_optimizer, optimize
from dgn.outputs import slug, write_json, write_png
from dgn.precision import dtype_policy, float32_output

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
    from dgn import __version__
    out["dgn"] = __version__
    return out


IMAGE_FLOAT32 = "image_float32"
NO_TARGETS = ("no targets: set objective.targets in the config (e.g. [207], [disc] or [channel:LAYER:C]) or pass "
              "--target T")
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
    code statistics, class index): a run reuses a finished image only if these are unchanged too, since
    retrained weights under the same path change every image."""
    found = {}
    for key, value in data.items():
        if isinstance(value, dict):
            found.update(input_files(value, f"{prefix}{key}."))
        elif isinstance(value, str) and os.path.isabs(value) and os.path.isfile(value):
            found[prefix + key] = file_digest(value)
    return found


def load_code_stats(path, units):
    """(mean, std) of a ``code_stats.npz`` (``dgn code-stats``), checked against the code size."""
    try:
        with np.load(path) as npz:
            mean, std = np.asarray(npz["mean"], "float32"), np.asarray(npz["std"], "float32")
    except (OSError, KeyError, ValueError) as err:
        raise ConfigError(f"generator.code_stats {path} is not a code_stats.npz ({err}); "
                          f"write one with `dgn code-stats`") from None
    if mean.shape != (units,) or std.shape != (units,):
        raise ConfigError(f"generator.code_stats {path} describes {mean.size}-unit codes but the generator's "
                          f"code has {units} (generator.seed_shape); use the decoder's own code_stats.npz")
    return mean, std


def build_generator_for(cfg, classifier, rows=1, seed=0):
    """G for a config, checked against D's input size; the decoder loaded and frozen if asked.
    Other image parameterizations (``parameterization.kind`` pixel, fourier) come from
    dgn.parameterizations, with the same transform wrapping. G computes in the config's
    ``precision``; its image (and the transforms on it) are float32."""
    if cfg.get("parameterization", {}).get("kind", "generator") != "generator":
        from dgn.parameterizations import build_parameterization
        return build_parameterization(cfg, classifier, rows, seed)
    with dtype_policy(cfg.get("precision", "float32")):
        return _build_generator_for(cfg, classifier, rows, seed)


def _build_generator_for(cfg, classifier, rows, seed):
    gen = cfg["generator"]
    height, width, channels = classifier.input_shape
    try:
        seed_shape, blocks, crop = architecture(gen, height, width)
    except ValueError as err:
        raise ConfigError(f"classifier {classifier.name}: {err}") from None
    reg = cfg["regularizers"]
    keras.utils.set_random_seed(seed)
    decoder = build_decoder(seed_shape, blocks, gen["head"], gen["norm"],
                            image_gamma_l1=reg["image_gamma_l1"], output_norm=gen["output_norm"],
                            channels=channels, space=classifier.preprocessing, size=crop, squash=gen["squash"])
    if gen["decoder_weights"]:
        from dgn.autoencoder import load_decoder_weights
        load_decoder_weights(decoder, gen["decoder_weights"], classifier.preprocessing)
    if gen["trainable"] == "alpha":
        decoder.trainable = False
    f_dim = int(np.prod(seed_shape))
    code_stats = load_code_stats(gen["code_stats"], f_dim) if gen["code_stats"] else None
    model = build_generator(
        seed_shape, blocks, gen["head"], gen["norm"], rows=rows, noise=gen["noise"],
        noise_stddev=gen["noise_stddev"], alpha_init=gen["alpha_init"],
        alpha_activation=gen["alpha_activation"], alpha_l2=reg["alpha_l2"], seed=seed, decoder=decoder,
        code_stats=code_stats)
    if model.output.dtype != "float32":
        model = keras.Model(model.input, float32_output(model.output, IMAGE_FLOAT32), name=model.name)
    from dgn.parameterizations import add_transform
    model = add_transform(model, cfg, classifier.preprocessing, seed)  # while optimizing only
    f0 = np.full((rows, f_dim), gen["f0"], dtype="float32")
    return model, f0


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
        order = np.argsort(-logits[b], kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(1, len(order) + 1)
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


def target_stem(objective, spec):
    info = objective.describe()
    if info["kind"] == "class":
        return slug(f"{info['index']:04d}_{info['name']}" if info["name"] else f"{info['index']:04d}")
    if info["kind"] == "channel":
        return slug(f"channel_{info['layer']}_{info['channel']}")
    if info["kind"] == "neuron":
        return slug(f"neuron_{info['layer']}_{info['channel']}_{info['y']}_{info['x']}")
    return slug(str(spec).replace("*", "x").replace(" ", "_").replace(":", "-"), unique=True)


def run_target(cfg, classifier, spec, out_dir, progress=True):
    """Optimizes one target and writes ``<stem>.png`` and ``<stem>.json``; returns the PNG path."""
    data = cfg.data
    objective = parse_target(spec, classifier, data["objective"]["activation"], data["objective"]["others"])
    kind = data.get("parameterization", {}).get("kind", "generator")
    snapshots, steps = final_snapshots(data), data["steps"]
    stem = target_stem(objective, spec)
    started = time.time()
    if kind != "generator":  # pixel / fourier images, possibly in octaves: dgn.parameterizations
        from dgn.parameterizations import optimize_parameterization
        generator, result = optimize_parameterization(data, classifier, objective, steps, snapshots=snapshots,
                                                      progress=progress, label=f"{stem}: {steps} steps, {kind}")
    else:
        generator, f0 = build_generator_for(data, classifier, rows=1, seed=data["seed"])
        problem = Problem(generator, classifier.optimizing.features(objective.layers), objective, f0)
        optimizer = make_optimizer(data["optimizer"], classifier.input_shape[:2])
        label = f"{stem}: {steps} steps, {count_trainable(generator):,} trainable weights"
        result = optimize(problem, optimizer, steps, snapshots=snapshots, progress=progress, label=label)
    png_path = os.path.join(out_dir, stem + ".png")
    rgb, sidecar = image_record(cfg, classifier, objective, result, 0, spec, count_trainable(generator),
                                time.time() - started, kind)
    sidecar["image"] = os.path.basename(png_path)
    for key in ("relu_trap", "dead_unit"):
        if sidecar.get(key):
            print(f"warning: {stem}: {sidecar[key]['warning']}", flush=True)
    write_png(png_path, rgb)
    write_json(os.path.join(out_dir, stem + ".json"), sidecar)
    return png_path, sidecar


def final_snapshots(data):
    """How many renders the final image is the median of (1: the last render); checked against steps."""
    final = data["final"]
    snapshots = final["snapshots"] if final["mode"] == "median" else 1
    if snapshots > data["steps"]:
        raise ConfigError(f"final.snapshots ({snapshots}) is more than steps ({data['steps']}); lower final.snapshots")
    return snapshots


def png_pixels(cfg, classifier, image):
    """A float image in D's input space as the PNG's 8-bit RGB, and that PNG back in D's input space."""
    rgb = preprocessing.to_uint8(np.asarray(image), classifier.preprocessing, cfg.data["output"]["display"])
    return rgb, preprocessing.from_rgb(rgb.astype("float32"), classifier.preprocessing)


def image_record(cfg, classifier, objective, result, k, spec, trainable, seconds, kind="generator", evaluated=None):
    """Row k of an optimization result as (PNG pixels, sidecar): the fields every run writes.

    D is evaluated on the PNG as saved and on the float image before quantization; ``evaluated``:
    that pair of reports already computed (``evaluate``), with the PNG's pixels, as (rgb, on_png, on_raw)."""
    data = cfg.data
    steps, snapshots = data["steps"], final_snapshots(data)
    if evaluated is None:
        image = np.asarray(result.images[k])
        rgb, saved = png_pixels(cfg, classifier, image)
        on_png, on_raw = evaluate(classifier, objective, np.stack([saved, image]))
    else:
        rgb, on_png, on_raw = evaluated
    final_image = ((f"median of the last {snapshots} renders" if snapshots > 1 else "last render")
                   + (" (G's norm as optimized, feature noise off)" if kind == "generator" else f" ({kind} image)")
                   + "; the PNG is D's input space undone"
                   + (", with the authors' display transform" if data["output"]["display"] == "authors"
                      else ", clipped"))
    sidecar = sidecar_fields(cfg, objective, spec, on_png, on_raw, steps=steps, trainable=trainable,
                             losses=result.losses, activations=[v[k] for v in result.values], kind=kind,
                             final_image=final_image, seconds=seconds, seconds_per_step=result.seconds / steps)
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


def sidecar_fields(cfg, objective, spec, on_png, on_raw, *, steps, trainable, losses, activations, kind,
                   final_image, seconds, seconds_per_step, config=None):
    """The fields every output image's JSON sidecar has (``dgn generate``, ``generate-all``,
    ``dream``): the target and what D says of the PNG (``on_png``) and of the float image before
    quantization (``on_raw``), the run (steps, seed, loss, activation), timing, versions and the
    full resolved config. ``image`` is filled in by the writer."""
    return {
        "image": None,
        "target": objective.describe(),
        "target_spec": str(spec),
        **on_png,
        "optimized_image": {key: on_raw[key] for key in ("activation", "prob", "rank")},
        "steps": steps,
        "seed": cfg["seed"],
        "trainable_weights": trainable,
        "loss": {"first": losses[0], "last": losses[-1]},
        "activation_during": {"first": activations[0], "last": activations[-1]},
        "relu_trap": None,
        "dead_unit": None,
        "parameterization": kind,
        "final_image": final_image,
        "wall_seconds": None if seconds is None else round(seconds, 3),
        "seconds_per_step": round(seconds_per_step, 5),
        "backend": keras.backend.backend(),
        "versions": versions(),
        "config": cfg.data if config is None else config,
        "config_file": cfg.path,
        "input_files": input_files(cfg.data if config is None else config),
    }


def default_out_dir(cfg):
    """``output.dir``, else ``runs/<name>``, for a Config or its resolved dict."""
    return cfg["output"]["dir"] or os.path.join("runs", cfg["name"])


def generate(cfg, targets=None, out_dir=None, progress=True):
    """Runs every target of the config (or ``targets``); returns [(png_path, sidecar), ...]."""
    classifier = load_classifier(cfg["classifier"], cfg["precision"])
    targets = list(targets) if targets else list(cfg["objective"]["targets"] or [])
    if not targets:
        raise ConfigError(NO_TARGETS)
    # Resolve every target before the first long optimization, so a typo fails at once.
    for spec in targets:
        parse_target(spec, classifier)
    out_dir = out_dir or default_out_dir(cfg)
    results = []
    for spec in targets:
        results.append(run_target(cfg, classifier, spec, out_dir, progress=progress))
    return results


def describe_result(path, sidecar):
    target = sidecar["target"]
    name = target.get("name") or target.get("layer") or sidecar["target_spec"]
    if sidecar["rank"] is not None:
        return (f"{path}: {name}: p={sidecar['prob']:.3f}, rank {sidecar['rank']} under D "
                f"(top-1: {sidecar['top5'][0]['name'] or sidecar['top5'][0]['index']})")
    return f"{path}: {name}: activation {sidecar['activation']:.3f}"
