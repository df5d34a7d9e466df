"""``dgn compare``: the paper's comparison (its Figure 1 vs Figure 4) on any classifier.

Each config is one method (one row of the sheet): pixel ascent, lucid's Fourier image, the untrained
generator, the pretrained decoder, ... Every target (a column) is optimized with every method by
:func:`dgn.generate.run_target`, so each image has its PNG and sidecar under ``OUT/<config name>/``.
The sheet ``OUT/compare.png`` has one row per method; ``OUT/compare.json`` lists, per method and
target, D's probability and rank of the target and, with a judge (an independent classifier, never
used in an objective), the judge's: the exact image resized to the judge's input size.
"""

import json
import os

import numpy as np
from PIL import Image

from dgn import imagenet, preprocessing
from dgn.config import config_identity
from dgn.errors import DgnError
from dgn.outputs import write_json, write_png
from dgn.sheets import MIN_TILE


def load_judge(name):
    """An independent classifier: a built-in name, ``FILE.keras:PREPROCESSING`` (e.g. ``shapes.keras:raw``),
    or a YAML config whose ``classifier:`` section is used (class names, input size, head)."""
    from dgn.classifiers import BUILTIN, load_classifier
    from dgn.config import load_config
    name = str(name)
    path, _, space = name.rpartition(":")
    if space in preprocessing.SPACES and path:
        overrides = [f"classifier.model={path}", f"classifier.preprocessing={space}"]
    else:
        path, overrides = name, [f"classifier.model={name}"]
    if path.endswith((".yaml", ".yml")) and os.path.isfile(path):
        cfg = load_config(path)
    elif path not in BUILTIN and not os.path.isfile(path):
        raise DgnError(f"--judge {name}: not found; give a built-in classifier ({', '.join(BUILTIN)}), "
                       f"FILE.keras:PREPROCESSING (e.g. mine.keras:raw) or a YAML config, e.g. --judge "
                       f"efficientnet_lite2")
    elif path.endswith(".keras") and len(overrides) == 1:
        raise DgnError(f"--judge {name}: say what input the model reads: {name}:PREPROCESSING with one of "
                       f"{', '.join(preprocessing.SPACES)} (e.g. {name}:raw), or a YAML config")
    else:
        cfg = load_config(text="", overrides=overrides)
    return load_classifier(cfg["classifier"])


def judge_image(judge, rgb, classes):
    """The judge's view of a uint8 RGB image resized (bicubic) to its input size: top-1, and the summed
    probability and best rank of ``classes`` (indices)."""
    height, width = judge.input_shape[:2]
    img = np.asarray(rgb, dtype="uint8")
    if img.shape[:2] != (height, width):
        img = np.asarray(Image.fromarray(img).resize((width, height), Image.Resampling.BICUBIC))
    outside = [c for c in classes or () if c is not None and c >= judge.num_classes]
    if outside:
        raise DgnError(f"judge {judge.name} has {judge.num_classes} classes, so it cannot score class {outside[0]}; "
                       f"give a judge trained on the same classes as the images' classifier")
    logits = judge.predict_logits(judge.from_pixels(img if img.ndim == 3 else img[..., None])[None])[0]
    probs = judge.probabilities(logits)
    order = np.argsort(-logits, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(1, len(order) + 1)
    top = int(order[0])
    out = {"classifier": judge.name, "top1": {**imagenet.class_info(top, judge.class_names),
                                               "prob": float(probs[top])}}
    if classes:
        out["prob"] = float(sum(probs[c] for c in classes))
        out["rank"] = int(min(rank[c] for c in classes))
    return out


def finished_image(method_dir, cfg, classifier, spec):
    """(PNG path, sidecar) of a target this method already made with this very config (an earlier,
    interrupted or extended compare into the same folder), else None: compare resumes."""
    from dgn.generate import input_files, target_stem
    from dgn.objectives import parse_target
    objective = parse_target(spec, classifier, cfg["objective"]["activation"], cfg["objective"]["others"])
    stem = target_stem(objective, spec)
    png = os.path.join(method_dir, stem + ".png")
    try:
        with open(os.path.join(method_dir, stem + ".json"), encoding="utf-8") as fh:
            sidecar = json.load(fh)
        with Image.open(png) as img:
            img.load()   # decodes every byte: a truncated file fails here
    except (OSError, ValueError):
        return None
    same = (isinstance(sidecar, dict) and sidecar.get("image") == stem + ".png"
            and sidecar.get("target") == _json(objective.describe())
            and _identity(sidecar.get("config")) == _identity(_json(cfg.data))
            and sidecar.get("input_files") == input_files(cfg.data))  # retrained weights: made again
    return (png, sidecar) if same else None


def _json(value):
    return json.loads(json.dumps(value, default=str))


# What does not decide a method's image: its name, output folder and target list.
IGNORED_KEYS = (("name",), ("output", "dir"), ("objective", "targets"))


def _identity(config):
    """What decides a method's image (None for a sidecar without a config)."""
    return config_identity(config, IGNORED_KEYS) if isinstance(config, dict) else None


def target_label(target):
    """A short name for a sidecar's target: the class name (or index), classes joined by '+',
    ``layer:channel`` or ``layer:channel@y,x``."""
    kind = target.get("kind")
    if kind == "class":
        return target.get("name") or str(target["index"])
    if kind == "classes":
        return "+".join(c.get("name") or str(c["index"]) for c in target["classes"])
    if kind == "channel":
        return f"{target['layer']}:{target['channel']}"
    if kind == "neuron":
        return f"{target['layer']}:{target['channel']}@{target['y']},{target['x']}"
    return str(target.get("spec", kind))


def _classes(sidecar):
    target = sidecar["target"]
    if target.get("kind") == "class":
        return [target["index"]]
    if target.get("kind") == "classes":
        return [c["index"] for c in target["classes"]]
    return []


def compare(configs, targets=None, out_dir="runs/compare", judge=None, progress=True, tile=None):
    """Runs every target with every config; writes the sheet and summary; returns the summary."""
    from dgn.classifiers import load_classifier
    from dgn.generate import run_target
    from dgn.objectives import parse_target
    from dgn.sheets import grid

    if not configs:
        raise DgnError("compare needs at least one config (one per method)")
    names = [cfg.name for cfg in configs]
    if len(set(names)) != len(names):
        raise DgnError(f"compare: two configs have the same name ({', '.join(names)}); give each a distinct "
                       f"'name:' (or --set name=...) so their outputs do not overwrite each other")
    targets = [str(t) for t in (targets or configs[0]["objective"]["targets"] or [])]
    if not targets:
        from dgn.generate import NO_TARGETS
        raise DgnError(NO_TARGETS)
    classifiers = {}

    def classifier_for(cfg):
        key = json.dumps([cfg["classifier"], cfg["precision"]], sort_keys=True)
        if key not in classifiers:
            classifiers[key] = load_classifier(cfg["classifier"], cfg["precision"])
        return classifiers[key]

    for cfg in configs:  # resolve every target with every classifier before the first long run
        for spec in targets:
            parse_target(spec, classifier_for(cfg))
    judge_model = load_judge(judge) if judge else None
    summary = {"targets": targets, "methods": [], "judge": judge}
    tiles, labels = [], []
    reused = 0
    for cfg in configs:
        classifier = classifier_for(cfg)
        row = {"method": cfg.name, "config_file": cfg.path, "classifier": classifier.name,
               "parameterization": cfg.data.get("parameterization", {}).get("kind", "generator"), "results": []}
        for column, spec in enumerate(targets):
            method_dir = os.path.join(out_dir, cfg.name)
            found = finished_image(method_dir, cfg, classifier, spec)
            if found:
                path, sidecar = found
                reused += 1
            else:
                path, sidecar = run_target(cfg, classifier, spec, method_dir, progress=progress)
            rgb = np.asarray(Image.open(path).convert("RGB"))
            entry = {"target": spec, "image": os.path.relpath(path, out_dir), "prob": sidecar["prob"],
                     "rank": sidecar["rank"], "activation": sidecar["activation"],
                     "top1": sidecar["top5"][0], "seconds": sidecar["wall_seconds"]}
            label = ""  # scores, then the target: grid() cuts long labels
            if sidecar["prob"] is not None:
                label += f"D {sidecar['prob']:.2f} "
            if judge_model is not None:
                entry["judge"] = judge_image(judge_model, rgb, _classes(sidecar))
                if "prob" in entry["judge"]:
                    label += f"J {entry['judge']['prob']:.2f} "
            label += target_label(sidecar["target"])
            if column == 0:  # the row's method, once
                label += f" [{cfg.name}]"
            row["results"].append(entry)
            tiles.append(rgb)
            labels.append(label)
        summary["methods"].append(row)
    size = tile or tiles[0].shape[:2]
    small = max(size) < MIN_TILE   # small images (a 32x32 classifier's) are enlarged, pixel for pixel, so labels fit
    if small and not tile:
        factor = -(-MIN_TILE // max(size))
        size = (size[0] * factor, size[1] * factor)
    resample = Image.Resampling.NEAREST if small else Image.Resampling.BICUBIC
    tiles = [t if t.shape[:2] == tuple(size) else
             np.asarray(Image.fromarray(t).resize((size[1], size[0]), resample)) for t in tiles]
    sheet = grid(tiles, columns=len(targets), pad=4, labels=labels, label_height=12)
    write_png(os.path.join(out_dir, "compare.png"), sheet)
    summary["sheet"] = "compare.png"
    summary["reused"] = reused
    summary["means"] = _means(summary)
    write_json(os.path.join(out_dir, "compare.json"), summary)
    return summary


def _means(summary):
    """Per method: how often the target is top-1 under D (and the judge), and the mean probabilities."""
    out = {}
    for row in summary["methods"]:
        res = [r for r in row["results"] if r["rank"] is not None]
        if not res:
            continue
        stats = {"top1_d": sum(r["rank"] == 1 for r in res) / len(res),
                 "prob_d": float(np.mean([r["prob"] for r in res]))}
        judged = [r["judge"] for r in res if r.get("judge") and "rank" in r["judge"]]
        if judged:
            stats["top1_judge"] = sum(j["rank"] == 1 for j in judged) / len(judged)
            stats["top5_judge"] = sum(j["rank"] <= 5 for j in judged) / len(judged)
            stats["prob_judge"] = float(np.mean([j["prob"] for j in judged]))
        out[row["method"]] = stats
    return out


def describe(summary):
    lines = []
    for method, stats in summary["means"].items():
        text = f"{method}: top-1 under D {stats['top1_d']:.0%} (mean p {stats['prob_d']:.3f})"
        if "top1_judge" in stats:
            text += (f"; under {summary['judge']} top-1 {stats['top1_judge']:.0%}, top-5 {stats['top5_judge']:.0%} "
                     f"(mean p {stats['prob_judge']:.3f})")
        lines.append(text)
    return lines
