"""``dgn report RUN_DIR``: how well D recognizes the generated images (``report.json`` + one line).

Reads the sidecars of any run folder (``dgn generate`` or ``dgn generate-all``): for every class
target, its rank and probability under D, measured on the saved PNG. With a judge (``--judge
efficientnet_lite2``: an independent classifier that took no part in making the images) the same
counts under the judge, on the exact PNG resized to its input: whether another network, not only
D, calls each image its class. The judge's view of each image is kept in ``judge.json`` and reused
while the PNG is unchanged, so a later report (generate-all writes one at its end) keeps it.
"""

import json
import os

from dgn.errors import DgnError
from dgn.optvis.objectives import target_label
from dgn.progress import Progress
from dgn.runs import judge as judging   # judging.judge_image: looked up at each call (tests replace it)
from dgn.runs.outputs import write_json


REPORT = "report.json"
JUDGE = "judge.json"
SAVE_EVERY = 50  # judged images between saves of judge.json
NOT_SIDECARS = {"manifest.jsonl", "run.json", REPORT, JUDGE}


def load_entries(run_dir):
    """One dict per image of the folder (sidecar + PNG present), sorted by class index then file name."""
    if not os.path.isdir(run_dir):
        raise DgnError(f"run folder not found: {run_dir}; give the folder dgn generate / generate-all wrote")
    entries = []
    for name in sorted(os.listdir(run_dir)):
        if not name.endswith(".json") or name in NOT_SIDECARS or name.startswith("."):
            continue
        try:
            with open(os.path.join(run_dir, name), encoding="utf-8") as fh:
                side = json.load(fh)
        except (OSError, ValueError):
            continue
        if not isinstance(side, dict) or "image" not in side or "target" not in side:
            continue
        if not os.path.isfile(os.path.join(run_dir, side["image"])):
            continue
        target = side["target"] or {}
        kind = target.get("kind")
        top = (side.get("top5") or [{}])[0]
        entry = {"image": side["image"], "sidecar": name, "kind": kind,
                 "index": target.get("index") if kind == "class" else None,
                 "wnid": target.get("wnid"), "name": target.get("name"),
                 "label": _label(target, side), "prob": side.get("prob"), "rank": side.get("rank"),
                 "activation": side.get("activation"),
                 "top1": {"index": top.get("index"), "name": top.get("name"), "prob": top.get("prob")},
                 "relu_trap": bool(side.get("relu_trap")), "side": side}
        entries.append(entry)
    entries.sort(key=lambda e: (e["index"] is None, e["index"] if e["index"] is not None else 0, e["sidecar"]))
    return entries


def _label(target, side):
    if target.get("kind") in ("class", "channel", "neuron"):
        return target_label(target, numbered=True)
    return str(side.get("target_spec") or target.get("kind"))


def _short(e):
    return {"index": e["index"], "name": e["name"], "label": e["label"], "image": e["image"],
            "prob": e["prob"], "rank": e["rank"],
            "top1": e["top1"]["name"] if e["top1"]["name"] else e["top1"]["index"]}


def summarize(entries, worst=10):
    """Counts top-1 / top-5 under D, mean target probability and the worst classes (by rank, then probability)."""
    ranked = [e for e in entries if e["rank"] is not None and e["prob"] is not None]
    n = len(ranked)
    top1 = sum(1 for e in ranked if e["rank"] == 1)
    top5 = sum(1 for e in ranked if e["rank"] <= 5)
    probs = sorted(float(e["prob"]) for e in ranked)
    bad = sorted(ranked, key=lambda e: (-int(e["rank"]), float(e["prob"])))[:worst]  # worst rank first
    return {
        "images": len(entries),
        "classes": n,
        "other_targets": len(entries) - n,
        "top1": top1, "top5": top5,
        "top1_rate": top1 / n if n else None,
        "top5_rate": top5 / n if n else None,
        "mean_prob": sum(probs) / n if n else None,
        "median_prob": (probs[n // 2] if n % 2 else (probs[n // 2 - 1] + probs[n // 2]) / 2) if n else None,
        "relu_trap": sum(1 for e in entries if e["relu_trap"]),
        "worst": [_short(e) for e in bad],
        # channel and neuron images (a layer atlas): the activation each reaches on its saved PNG
        "units": [{"label": e["label"], "image": e["image"], "activation": e["activation"],
                   "dead_unit": bool(e["side"].get("dead_unit"))}
                  for e in entries if e["kind"] in ("channel", "neuron")],
        "measured_on": "the saved PNGs, under the run's classifier D",
    }


def _top1(view):
    """The judge's first class: its name, or its index for a judge without class names."""
    return view["top1"]["name"] if view["top1"].get("name") else view["top1"].get("index")


def _judged(entry, view):
    """An image's short entry with the judge's view of it."""
    return {**_short(entry), "judge_prob": view["prob"], "judge_rank": view["rank"], "judge_top1": _top1(view)}


def summarize_judge(entries, views, classifier, worst=10):
    """The judge's counts over the class-target images it has a view of (``views``: image -> view)."""
    judged = [(e, views[e["image"]]) for e in entries
              if e["index"] is not None and e["image"] in views and "rank" in views[e["image"]]]
    n = len(judged)
    top1 = sum(1 for _, v in judged if v["rank"] == 1)
    top5 = sum(1 for _, v in judged if v["rank"] <= 5)
    both = sum(1 for e, v in judged if v["rank"] == 1 and e["rank"] == 1)
    best = sorted(judged, key=lambda ev: (ev[1]["rank"], -ev[1]["prob"]))[:worst]
    bad = sorted(judged, key=lambda ev: (-ev[1]["rank"], ev[1]["prob"]))[:worst]   # the judge's worst rank first
    return {
        "classifier": classifier,
        "classes": n,
        "not_judged": sum(1 for e in entries if e["index"] is not None) - n,
        "top1": top1, "top5": top5,
        "top1_rate": top1 / n if n else None,
        "top5_rate": top5 / n if n else None,
        "mean_prob": sum(v["prob"] for _, v in judged) / n if n else None,
        "top1_under_both": both,
        "best": [_judged(e, v) for e, v in best],
        "worst": [_judged(e, v) for e, v in bad],
        "measured_on": "the saved PNGs resized (bicubic) to the judge's input; the judge took no part in making them",
    }


def summary_line(report):
    n = report["classes"]
    units = report.get("units") or []
    if not n and units:
        acts = [u["activation"] for u in units if u["activation"] is not None]
        dead = sum(1 for u in units if u["dead_unit"])
        return (f"{len(units)} unit images (channels / neurons): activation on the saved PNG mean "
                f"{sum(acts) / len(acts):.4g}, min {min(acts):.4g}, max {max(acts):.4g}"
                + (f"; {dead} dead units (0 everywhere)" if dead else ""))
    if not n:
        return f"{report['images']} images, none with a class target: nothing to rank"
    worst = "; worst under D: " + "; ".join(f"{w['label']} p={w['prob']:.3g} rank {w['rank']}"
                                            for w in report["worst"][:3]) if report["worst"] else ""
    judge = report.get("judge")
    judged = ""
    if judge and judge["classes"]:
        # D ranks its own images first almost always (every p=1.000): the judge's worst say more.
        worst = "; worst under the judge: " + "; ".join(
            f"{w['label']} p={w['judge_prob']:.3g} rank {w['judge_rank']} (judge's top-1: {w['judge_top1']})"
            for w in judge["worst"][:3])
        judged = (f"; judged by {judge['classifier']}: {judge['top1']} top-1 ({100 * judge['top1_rate']:.1f} %), "
                  f"{judge['top5']} top-5 ({100 * judge['top5_rate']:.1f} %), mean probability {judge['mean_prob']:.3f}"
                  + (f" ({judge['not_judged']} not judged)" if judge["not_judged"] else ""))
    return (f"{n} {'class' if n == 1 else 'classes'}: {report['top1']} top-1 ({100 * report['top1_rate']:.1f} %), {report['top5']} top-5 "
            f"({100 * report['top5_rate']:.1f} %), mean target probability {report['mean_prob']:.3f}"
            + judged + worst)


def _signature(path):
    st = os.stat(path)
    return f"{st.st_size}:{st.st_mtime_ns}"


def read_judge(run_dir):
    """``judge.json`` as (classifier name, {image: view}) for the PNGs still as judged; (None, {}) if absent."""
    try:
        with open(os.path.join(run_dir, JUDGE), encoding="utf-8") as fh:
            data = json.load(fh)
        views = {}
        for image, view in data["images"].items():
            path = os.path.join(run_dir, image)
            if os.path.isfile(path) and view.get("png") == _signature(path):
                views[image] = view
        return data["classifier"], views
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, {}


def judge_run(run_dir, judge, entries=None, progress=True):
    """Judges every class-target image of the folder not yet judged by this judge; writes ``judge.json``.
    ``judge``: a classifier name, .keras file or YAML config (see dgn.runs.judge.load_judge), or a
    classifier already loaded."""
    from PIL import Image


    entries = load_entries(run_dir) if entries is None else entries
    model = judging.load_judge(judge) if isinstance(judge, (str, os.PathLike)) else judge
    name, views = read_judge(run_dir)
    if name != model.name:
        views = {}
    todo = [e for e in entries if e["index"] is not None and e["image"] not in views]
    bar = Progress(len(todo), unit="image", label=f"judging with {model.name}", enabled=progress and bool(todo))
    for i, e in enumerate(todo, start=1):
        path = os.path.join(run_dir, e["image"])
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        views[e["image"]] = {**judging.judge_image(model, rgb, [e["index"]]), "png": _signature(path)}
        bar.update(i)
        if i % SAVE_EVERY == 0:  # an interrupted judging resumes from here
            write_json(os.path.join(run_dir, JUDGE), {"classifier": model.name, "images": views})
    write_json(os.path.join(run_dir, JUDGE), {"classifier": model.name, "images": views})
    return model.name, views


def write_report(run_dir, worst=10, judge=None, progress=True):
    """Writes ``RUN_DIR/report.json``; returns (report, summary line). ``judge``: judge the images
    first (see ``judge_run``); without it, an earlier ``judge.json`` still counts for unchanged PNGs."""
    entries = load_entries(run_dir)
    if not entries:
        raise DgnError(f"no images with sidecars in {run_dir}; run dgn generate or dgn generate-all into it first")
    report = summarize(entries, worst)
    name, views = judge_run(run_dir, judge, entries, progress) if judge else read_judge(run_dir)
    if name is not None and views:
        report["judge"] = summarize_judge(entries, views, name, worst)
    report["line"] = summary_line(report)
    write_json(os.path.join(run_dir, REPORT), report)
    return report, report["line"]
