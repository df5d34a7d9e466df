"""``dgn compare``: the paper's comparison (its Figure 1 vs Figure 4) on any classifier.

Each config is one method (one row of the sheet): pixel ascent, lucid's Fourier image, the untrained
generator, the pretrained decoder, ... Every target (a column) is optimized with every method by
:func:`dgn.optvis.render.render_target` (the config's :class:`dgn.optvis.engine.Engine`), so each image has its PNG and sidecar under ``OUT/<config name>/``.
The sheet ``OUT/compare.png`` has one row per method; ``OUT/compare.json`` lists, per method and
target, D's probability and rank of the target and, with a judge (an independent classifier, never
used in an objective), the judge's: the exact image resized to the judge's input size.
"""

import os

import numpy as np
from PIL import Image

from dgn import build
from dgn.attribution.examples import Pass, top_photos, unreadable_lines
from dgn.attribution.maps import explain
from dgn.attribution.photos import heat_rgb, overlay
from dgn.errors import DgnError
from dgn.images import fit_to_input, load_image
from dgn.optvis.objectives import ClassObjective, target_classes, target_label
from dgn.optvis.render import NO_TARGETS, render_target
from dgn.runs.folder import RunFolder
from dgn.runs.judge import judge_image, load_judge
from dgn.runs.outputs import check_out_dir, write_json, write_png
from dgn.runs.sheets import MIN_TILE, grid


def finished_image(folder, objective, spec):
    """(PNG path, sidecar) of a target this method already made in its :class:`dgn.runs.folder.RunFolder`
    with this very config and input files (an earlier, interrupted or extended compare into the same
    folder), else None: compare resumes."""
    stem = objective.stem(spec)
    side = folder.finished(stem, objective)
    return None if side is None else (folder.file(stem + ".png"), side)


def compare(configs, targets=None, out_dir="runs/compare", judge=None, progress=True, tile=None, photos=None,
            maps=None):
    """Runs every target with every config; writes the sheet and summary; returns the summary.

    ``photos``: a folder of real photos; a last row shows, for each class target, the photo D (the first
    config's classifier) gives the largest logit of the target's classes (``dgn examples``' cached pass),
    and with ``maps`` (an attribution method, :mod:`dgn.attribution`) one more row with that photo's map.

    Over 60 lines: the checks before any run, the method-by-target loop (reused or rendered, judged,
    labelled) and the sheet's layout are one sequence, each part a few lines."""
    if not configs:
        raise DgnError("compare needs at least one config (one per method)")
    check_out_dir(out_dir)
    names = [cfg.name for cfg in configs]
    if len(set(names)) != len(names):
        raise DgnError(f"compare: two configs have the same name ({', '.join(names)}); give each a distinct "
                       f"'name:' (or --set name=...) so their outputs do not overwrite each other")
    targets = [str(t) for t in targets] if targets else build.targets(configs[0].data)
    if not targets:
        raise DgnError(NO_TARGETS)
    classifiers = {}

    def classifier_for(cfg):
        key = build.classifier_key(cfg.data)
        if key not in classifiers:
            classifiers[key] = build.classifier(cfg.data)
        return classifiers[key]

    for cfg in configs:  # resolve every target with every classifier before the first long run
        for spec in targets:
            build.objective(spec, classifier_for(cfg), cfg.data)
    judge_model = load_judge(judge) if judge else None
    summary = {"targets": targets, "methods": [], "judge": judge}
    tiles, labels = [], []
    reused = 0
    for cfg in configs:
        classifier = classifier_for(cfg)
        row = {"method": cfg.name, "config_file": cfg.path, "classifier": classifier.name,
               "parameterization": build.kind(cfg.data), "results": []}
        engine, run = build.engine(cfg.data, classifier), build.run_info(cfg)
        folder = RunFolder(os.path.join(out_dir, cfg.name), cfg.data)
        for column, spec in enumerate(targets):
            objective = build.objective(spec, classifier, cfg.data)
            found = finished_image(folder, objective, spec)
            if found:
                path, sidecar = found
                reused += 1
            else:
                path, sidecar = render_target(engine, run, objective, spec, folder, progress=progress)
            rgb = np.asarray(Image.open(path).convert("RGB"))
            entry = {"target": spec, "image": os.path.relpath(path, out_dir), "prob": sidecar["prob"],
                     "rank": sidecar["rank"], "activation": sidecar["activation"],
                     "top1": sidecar["top5"][0], "seconds": sidecar["wall_seconds"]}
            label = ""  # scores, then the target: grid() cuts long labels
            if sidecar["prob"] is not None:
                label += f"D {sidecar['prob']:.2f} "
            if judge_model is not None:
                entry["judge"] = judge_image(judge_model, rgb, target_classes(sidecar["target"]))
                if "prob" in entry["judge"]:
                    label += f"J {entry['judge']['prob']:.2f} "
            label += target_label(sidecar["target"])
            if column == 0:  # the row's method, once
                label += f" [{cfg.name}]"
            row["results"].append(entry)
            tiles.append(rgb)
            labels.append(label)
        summary["methods"].append(row)
    if photos:
        photos_row = _photo_rows(configs[0], classifier_for(configs[0]), targets, photos, maps, out_dir, progress)
        tiles += photos_row.tiles
        labels += photos_row.labels
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
    if photos:
        summary["photos"] = photos_row.summary
        summary["photos_unreadable"], summary["photos_read"] = photos_row.errors, photos_row.read
    summary["reused"] = reused
    summary["means"] = _means(summary)
    write_json(os.path.join(out_dir, "compare.json"), summary)
    return summary


class _PhotoRows:
    def __init__(self):
        self.tiles, self.labels, self.summary = [], [], []
        self.errors, self.read = [], 0   # unreadable photos ("PATH: reason"), photos read


def _photo_rows(cfg, classifier, targets, folder, maps, out_dir, progress):
    """The real-photo row (and map row) of the sheet: per class target, the photo with the largest summed
    logit of its classes; other targets get an empty tile."""
    rows = _PhotoRows()
    cached = Pass(classifier, folder, ["logits"], os.path.join(out_dir, "photos", "cache"))
    cached.run(progress=progress)
    logits, _, errors = cached.values("logits")
    rows.errors = unreadable_lines(errors)
    rows.read = len(cached.paths) - len(errors)
    height, width = classifier.input_shape[:2]
    blank = np.full((height, width, 3), 225, dtype="uint8")
    picked = []
    for spec in targets:
        objective = build.objective(spec, classifier, cfg.data)
        classes = objective.class_indices
        if not classes:
            picked.append((spec, None, None, None))
            continue
        best = top_photos(logits[:, classes].sum(axis=1), 1)
        if not best:
            picked.append((spec, None, None, None))
            continue
        i = best[0]
        image = fit_to_input(load_image(cached.paths[i]), (height, width), cached.fit)
        picked.append((spec, image, os.path.relpath(cached.paths[i], cached.folder), float(logits[i, classes].sum())))
    for spec, image, name, value in picked:
        rgb = blank if image is None else (image if image.shape[-1] == 3 else np.repeat(image, 3, axis=-1))
        rows.tiles.append(rgb)
        rows.labels.append("photo: (class targets only)" if image is None else f"photo z {value:.3g} {name}")
        rows.summary.append({"target": spec, "photo": name, "logit": value})
    if maps:

        for (spec, image, name, _), entry in zip(picked, rows.summary):
            if image is None:
                rows.tiles.append(blank)
                rows.labels.append("")
                continue
            objective = ClassObjective([(c, 1.0) for c in build.objective(spec, classifier, cfg.data).class_indices],
                                       "logit", 0.0, names=classifier.class_names)
            heat, _ = heat_rgb(explain(classifier, image[None], objective, maps)[0], maps)
            tile = overlay(image, heat)[0]
            rows.tiles.append(np.asarray(Image.fromarray(tile).resize((width, height), Image.Resampling.BICUBIC)))
            rows.labels.append(f"{maps} map")
            entry["map"] = maps
    return rows


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
