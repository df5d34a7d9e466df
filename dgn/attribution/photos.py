"""``dgn explain``: attribution maps of photos (:mod:`dgn.attribution`), written beside them. (Not
``dgn/explain.py``: importing a submodule of that name would replace the function ``dgn.explain`` on the
package.)

For each photo, target and method, in ``OUT/<photo>/``:

- ``<target>_<method>.png``: the map over the photo as D saw it (brought to D's input size as ``dgn
  classify`` does), enlarged to at least 224 pixels on its shorter side;
- ``<target>_<method>.npy``: the raw map, float32 (H, W) in D's input resolution;
- ``<target>_<method>.json``: its sidecar (target, D's probability, method and settings, timing), written
  last: a photo whose sidecars exist and match (same file contents, classifier, fit, target, method and
  settings) is skipped, so an interrupted run over a folder resumes where it stopped;
- ``input.png``: the photo as D saw it.

``<target>`` is ``top1`` for each photo's own top-1 class (the default), else the target's stem
(``0207_golden_retriever``, ``channel_LAYER_C``, ...). Photos are read in batches; an unreadable one is
reported in one line and the others are still processed.
"""

import hashlib
import io
import json
import math
import os

import numpy as np
from PIL import Image

from dgn import attribution, preprocessing
from dgn.classify import FIT_MODES, fit_mode
from dgn.errors import DgnError
from dgn.images import ImageLoadError, fit_to_input, load_image
from dgn.optvis.objectives import ClassObjective
from dgn.progress import Progress
from dgn.runs.outputs import read_json, slug, write_atomic, write_json, write_png
from dgn.runs.records import evaluate, feature_outputs, versions


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
SETTING_FLAGS = {"layer": "--layer", "samples": "--samples", "noise": "--noise", "seed": "--seed",
                 "steps": "--ig-steps", "baseline": "--baseline", "channels": "--channels", "window": "--window",
                 "stride": "--stride", "fill": "--fill", "score": "--score", "upsample": "--upsample"}
KEY_VERSION = 1   # bump when the maps of unchanged settings would change: older sidecars no longer match
DISPLAY_SIDE = 224


def collect_photos(images=(), data=None):
    """[(path, stem)] of the photos named (``images``) and those under folder ``data`` (recursively, files
    with an image extension, sorted; hidden ones skipped). Stems are unique: a folder's relative path with
    '/' as '__', or a file's name (with a short hash where two are the same).

    Raises:
        DgnError: ``data`` is not a folder or holds no photo; no photo at all."""
    found = [os.fspath(p) for p in images or ()]
    named = len(found)
    if data is not None:
        if not os.path.isdir(data):
            raise DgnError(f"--data {data}: not a folder")
        inside = []
        for folder, subfolders, names in os.walk(data):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            inside += [os.path.join(folder, n) for n in names
                       if not n.startswith(".") and n.lower().endswith(IMAGE_EXTENSIONS)]
        if not inside:
            raise DgnError(f"no photos in {data} (looked for {', '.join(IMAGE_EXTENSIONS)} files, in subfolders "
                           f"too)")
        found += sorted(inside)
    if not found:
        raise DgnError("no photos: give --image PATH... or --data DIR")
    photos, seen, stems = [], set(), {}
    for k, path in enumerate(found):
        real = os.path.abspath(path)
        if real in seen:
            continue
        seen.add(real)
        if k >= named:
            text = os.path.splitext(os.path.relpath(path, data))[0].replace(os.sep, "__")
        else:
            text = os.path.splitext(os.path.basename(path))[0]
        stem = slug(text, unique=True)
        if stem in stems:
            stem = f"{stem}-{hashlib.sha1(real.encode('utf-8')).hexdigest()[:8]}"
        stems[stem] = real
        photos.append((path, stem))
    return photos


def method_list(methods):
    """Canonical method names, in order, without repeats; ``all`` for every method (default: gradcam)."""
    out = []
    for item in methods or ["gradcam"]:
        for name in str(item).split(","):
            if not name.strip():
                continue
            names = attribution.METHODS if name.strip().lower() == "all" else [attribution.method_name(name)]
            out += [n for n in names if n not in out]
    if not out:
        raise DgnError("no attribution method: give --method NAME (one of "
                       f"{', '.join(attribution.METHODS)}, or all)")
    return out


def method_settings(methods, settings):
    """{method: its checked settings} from the command's flags: each flag goes to the methods that have it;
    a flag no chosen method has is refused (it would do nothing)."""
    given = {k: v for k, v in (settings or {}).items() if v is not None}
    for key in given:
        if not any(key in attribution.DEFAULTS[m] for m in methods):
            owners = [m for m in attribution.METHODS if key in attribution.DEFAULTS[m]]
            if not owners:
                known = sorted({k for m in attribution.METHODS for k in attribution.DEFAULTS[m]})
                raise DgnError(f"no attribution method has a setting {key!r}; the settings: {', '.join(known)}")
            flag = SETTING_FLAGS.get(key, key)
            raise DgnError(f"{flag} is a setting of {', '.join(owners) or 'no method'}, which is not among the methods "
                           f"({', '.join(methods)}); add --method {owners[0] if owners else 'NAME'}")
    return {m: attribution.check_settings(m, {k: v for k, v in given.items() if k in attribution.DEFAULTS[m]})
            for m in methods}


def heat_rgb(values, method):
    """The map for display in 0..1: pixel-level maps by the 99th percentile of |map| (their few extreme
    pixels would hide the rest); CAMs and occlusion by the maximum of their positive part."""
    values = np.asarray(values, dtype="float64")
    if attribution.get_method(method).pixel_level:
        mag = np.abs(values)
        top = float(np.percentile(mag, 99)) if mag.size else 0.0
        return np.clip(mag / top, 0.0, 1.0) if top > 0 else np.zeros_like(mag), {"shows": "|map|",
                                                                                 "scale": "99th percentile",
                                                                                 "scale_value": top}
    pos = np.maximum(values, 0.0)
    top = float(pos.max()) if pos.size else 0.0
    return np.clip(pos / top, 0.0, 1.0) if top > 0 else np.zeros_like(pos), {"shows": "positive part",
                                                                            "scale": "maximum",
                                                                            "scale_value": top}


def turbo(values):
    """Google's Turbo colour map (its polynomial approximation) of values in 0..1 -> RGB uint8."""
    x = np.clip(np.asarray(values, dtype="float64"), 0.0, 1.0)
    r = 0.13572138 + x * (4.61539260 + x * (-42.66032258 + x * (132.13108234 + x * (-152.94239396 + x * 59.28637943))))
    g = 0.09140261 + x * (2.19418839 + x * (4.84296658 + x * (-14.18503333 + x * (4.27729857 + x * 2.82956604))))
    b = 0.10667330 + x * (12.64194608 + x * (-60.58204836 + x * (110.36276771 + x * (-89.90310912 + x * 27.34824973))))
    return np.clip(np.rint(np.stack([r, g, b], axis=-1) * 255.0), 0, 255).astype("uint8")


def overlay(rgb, heat, strength=0.7):
    """The photo (H, W, 3 or 1, uint8) with ``heat`` (H, W) in 0..1 laid over it in Turbo colours, each pixel
    covered in proportion to its heat; both enlarged (bicubic photo, bilinear map) to at least 224 pixels on
    the shorter side. Returns (RGB uint8, enlargement factor)."""
    rgb = np.asarray(rgb, dtype="uint8")
    if rgb.ndim == 3 and rgb.shape[-1] == 1:
        rgb = np.repeat(rgb, 3, axis=-1)
    height, width = heat.shape
    factor = max(1, math.ceil(DISPLAY_SIDE / min(height, width)))
    if factor > 1:
        size = (width * factor, height * factor)
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BICUBIC), dtype="uint8")
        heat = np.asarray(Image.fromarray(np.asarray(heat, "float32"), "F").resize(size, Image.Resampling.BILINEAR))
    alpha = (strength * np.clip(heat, 0.0, 1.0))[..., None]
    out = rgb.astype("float64") * (1.0 - alpha) + turbo(heat).astype("float64") * alpha
    return np.clip(np.rint(out), 0, 255).astype("uint8"), factor


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype="float32"))
    return buffer.getvalue()


def _sha1(path):
    """The photo's sha1, or the one-line reason it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return hashlib.sha1(fh.read()).hexdigest(), None
    except FileNotFoundError:
        return None, f"cannot read image {path!r}: file not found"
    except IsADirectoryError:
        return None, f"cannot read image {path!r}: is a directory"
    except OSError as exc:
        return None, f"cannot read image {path!r}: {' '.join(str(exc).split())}"


def _jsonable_settings(settings):
    return {k: v for k, v in settings.items() if k not in ("layer_shape", "windows")}


def explain_photos(classifier, images=(), data=None, targets=None, methods=None, out_dir=None, settings=None,
                   batch=8, fit="auto", batch_size=32, progress=True, identity=None):
    """Runs ``dgn explain``: the maps of every photo (``images``, and those under ``data``) for every target
    (default: each photo's top-1 class) and method (default: gradcam), written under ``out_dir``; photos
    whose outputs are there and match are skipped.

    Args:
        classifier: a :class:`dgn.Classifier` (built by :mod:`dgn.build` from a config, or in Python).
        settings: the methods' settings by name (``layer``, ``samples``, ``window``, ...; None: default).
        batch: photos read and explained together. batch_size: rows per call of D.
        identity: what identifies the classifier in the resume key (JSON-able; ``dgn explain`` gives its
            config's ``classifier:`` section); default the classifier's name and preprocessing.

    Returns:
        dict: ``out_dir``, ``photos``, ``maps`` (written), ``skipped`` (photos already done), ``errors``
        (one line per photo that could not be read), ``notes`` (what the methods warned of, one line each).

    Raises:
        DgnError: no photos, an empty folder, an unknown method, setting, target or layer (one line)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise DgnError(f"--batch {batch!r}: give a positive number of photos")
    if fit not in FIT_MODES:
        raise DgnError(f"--fit {fit!r}: give one of {', '.join(FIT_MODES)}")
    if out_dir is None:
        raise DgnError("explain_photos: give out_dir, the folder the maps are written to")
    photos = collect_photos(images, data)
    methods = method_list(methods)
    job = _Job(classifier, methods, method_settings(methods, settings), targets, fit, out_dir, batch_size,
               identity if identity is not None else {"name": classifier.name,
                                                      "preprocessing": classifier.preprocessing})
    summary = {"out_dir": out_dir, "photos": len(photos), "maps": 0, "skipped": 0, "errors": [], "notes": []}
    bar = Progress(len(photos), unit="photo", enabled=progress,
                   label=f"explain: {len(photos)} photo(s) x {len(job.specs)} target(s) x {', '.join(methods)} "
                         f"-> {out_dir}")
    for start in range(0, len(photos), batch):
        loaded = job.load(photos[start:start + batch], summary)
        if loaded:
            job.explain(loaded, summary)
        bar.update(min(len(photos), start + batch), maps=summary["maps"])
    return summary


class _Job:
    """One ``dgn explain`` run: the checked methods, settings and targets, the resume keys and file names,
    and the work on each batch of photos."""

    def __init__(self, classifier, methods, chosen, targets, fit, out_dir, batch_size, identity):
        self.classifier, self.methods, self.chosen = classifier, methods, chosen
        self.specs = list(dict.fromkeys(str(t) for t in targets)) if targets else [None]
        self.objectives = {spec: attribution.target_objective(spec, classifier) for spec in self.specs
                           if spec is not None}
        self.layers = sorted({name for objective in self.objectives.values() for name in objective.layers})
        self.size = classifier.input_shape[:2]
        for method, s in chosen.items():
            attribution.get_method(method).prepare(classifier, s, self.size)
        self.mode = fit_mode(classifier, fit)
        self.out_dir, self.batch_size = out_dir, batch_size
        self.identity = json.dumps(identity, sort_keys=True, default=str)
        self.stems = {spec: ("top1" if spec is None else self.objectives[spec].stem(spec)) for spec in self.specs}
        seen = {}
        for spec, stem in self.stems.items():
            if stem in seen:
                raise DgnError(f"targets {seen[stem]!r} and {spec!r} would both be written to {stem}_*: "
                               f"give one of them only (or one as a class index, the other by name)")
            seen[stem] = spec

    def key_of(self, sha, spec, method):
        return {"version": KEY_VERSION, "source_sha1": sha, "classifier": self.identity, "fit": self.mode,
                "target": "top1" if spec is None else spec, "method": method,
                "settings": _jsonable_settings(self.chosen[method])}

    def names(self, stem, spec, method):
        base = os.path.join(self.out_dir, stem, f"{self.stems[spec]}_{method}")
        return base + ".png", base + ".npy", base + ".json"

    def finished(self, stem, sha, spec, method):
        png, npy, side = self.names(stem, spec, method)
        sidecar = read_json(side)
        return bool(sidecar) and sidecar.get("key") == self.key_of(sha, spec, method) and os.path.isfile(png) \
            and os.path.isfile(npy)

    def load(self, photos, summary):
        """The photos of a batch that still have maps to make, read and fitted to D's input."""
        loaded = []
        for path, stem in photos:
            sha, problem = _sha1(path)
            if problem:
                summary["errors"].append(problem)
                continue
            jobs = {(spec, m) for spec in self.specs for m in self.methods if not self.finished(stem, sha, spec, m)}
            if not jobs:
                summary["skipped"] += 1
                continue
            try:
                pixels = load_image(path)
            except ImageLoadError as exc:
                summary["errors"].append(str(exc))
                continue
            loaded.append({"path": path, "stem": stem, "sha": sha, "jobs": jobs, "size": list(pixels.shape[:2]),
                           "fitted": fit_to_input(pixels, self.size, self.mode)})
        return loaded

    def explain(self, loaded, summary):
        """The maps of a batch of loaded photos, every target and method they still need, written."""
        classifier = self.classifier
        fitted = np.stack([item["fitted"] for item in loaded])
        x = classifier.from_pixels(fitted)
        shown = fitted if classifier.channels == 3 else \
            np.clip(np.rint(preprocessing.to_channels(fitted, 1)), 0, 255).astype("uint8")
        for k, item in enumerate(loaded):
            write_png(os.path.join(self.out_dir, item["stem"], "input.png"), shown[k])
        # D's outputs once per batch: the top-1 classes and what the sidecars report
        outputs = feature_outputs(classifier, self.layers, x, self.batch_size)
        top1 = [ClassObjective([(int(c), 1.0)], "logit", 0.0, classifier.class_names)
                for c in np.argmax(outputs["logits"], axis=-1)]
        reports = {}
        for spec in self.specs:
            for method in self.methods:
                rows = [k for k, item in enumerate(loaded) if (spec, method) in item["jobs"]]
                if not rows:
                    continue
                s = self.chosen[method]
                request = {key: s[key] for key in attribution.DEFAULTS[method]}
                target = [top1[k] for k in rows] if spec is None else self.objectives[spec]
                result = attribution.attribute(classifier, x[rows], target, method, batch_size=self.batch_size,
                                               **request)
                summary["notes"] += [f"{method}: {n}" for n in result.notes]
                for j, k in enumerate(rows):
                    objective = result.objectives[j]
                    report_key = (spec, k, json.dumps(result.targets[j], sort_keys=True))
                    if report_key not in reports:
                        reports[report_key] = evaluate(classifier, objective, x[k:k + 1],
                                                       {n: v[k:k + 1] for n, v in outputs.items()})[0]
                    self.write(loaded[k], spec, result, j, reports[report_key], shown[k], len(rows))
                    summary["maps"] += 1

    def write(self, item, spec, result, j, report, shown, rows):
        """Map j of ``result`` (photo ``item``): its picture, raw map and sidecar (written last)."""
        method, objective, m = result.method, result.objectives[j], result.maps[j]
        settings = dict(result.settings)
        if result.scores and result.scores[j] is not None:   # how this image was scored (log-probability ...)
            settings["score"] = result.scores[j]
        heat, display = heat_rgb(m, method)
        picture, factor = overlay(shown, heat)
        png, npy, side = self.names(item["stem"], spec, method)
        write_png(png, picture)
        write_atomic(npy, _npy_bytes(m))
        sidecar = {
            "image": os.path.basename(png), "map": os.path.basename(npy), "input": "input.png",
            "source_image": os.path.abspath(item["path"]), "source_size": item["size"],
            "fit": self.mode, "input_size": list(self.size),
            "classifier": self.classifier.name,
            "target_spec": "top1" if spec is None else spec,
            "target": result.targets[j],
            "target_label": objective.label,
            "value": float(report["activation"]),
            "prob": report["prob"], "rank": report["rank"], "top5": report["top5"],
            "method": method, "reference": attribution.REFERENCES[method],
            "settings": settings,
            "explains": _explains(settings, objective),
            "map_stats": {"min": float(m.min()), "max": float(m.max()), "mean": float(m.mean()),
                          "shape": list(m.shape)},
            "display": {**display, "enlarged": factor},
            "seconds": round(result.seconds / rows, 4),
            "versions": versions(),
            "key": self.key_of(item["sha"], spec, method),
        }
        if result.notes:
            sidecar["notes"] = list(result.notes)
        write_json(side, sidecar)


def _explains(settings, objective):
    """In words, the number the map is of."""
    score = settings.get("score")
    if score == "probability":
        return "D's probability of the class"
    if score == "log_probability":
        return "D's log-probability of the class (its probability underflows float32)"
    if score == "relative_probability":
        return ("D's probability of the class relative to its largest over the masked copies (from "
                "log-probabilities: the probability underflows float32)")
    if type(objective) is ClassObjective:
        return {"logit": "the class's logit", "logsoftmax": "the class's log-probability",
                "relu": "ReLU of the class's logit"}.get(objective.activation, objective.activation)
    return "the objective's value"
