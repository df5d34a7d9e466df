"""``dgn report RUN_DIR``: how well D recognizes the generated images (``report.json`` + one line).

Reads the sidecars of any run folder (``dgn generate`` or ``dgn generate-all``): for every class
target, its rank and probability under D, measured on the saved PNG.
"""

import json
import os

from dgn.errors import DgnError

REPORT = "report.json"
NOT_SIDECARS = {"manifest.jsonl", "run.json", REPORT}


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
    kind = target.get("kind")
    if kind == "class":
        return f"{target['index']} {(target.get('name') or '').replace('_', ' ')}".strip()
    if kind == "channel":
        return f"{target['layer']}:{target['channel']}"
    if kind == "neuron":
        return f"{target['layer']}:{target['channel']}@{target['y']},{target['x']}"
    return str(side.get("target_spec") or kind)


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
        "measured_on": "the saved PNGs, under the run's classifier D",
    }


def summary_line(report):
    n = report["classes"]
    if not n:
        return f"{report['images']} images, none with a class target: nothing to rank"
    worst = "; ".join(f"{w['label']} p={w['prob']:.3g} rank {w['rank']}" for w in report["worst"][:3])
    return (f"{n} {'class' if n == 1 else 'classes'}: {report['top1']} top-1 ({100 * report['top1_rate']:.1f} %), {report['top5']} top-5 "
            f"({100 * report['top5_rate']:.1f} %), mean target probability {report['mean_prob']:.3f}"
            + (f"; worst: {worst}" if worst else ""))


def write_report(run_dir, worst=10):
    """Writes ``RUN_DIR/report.json``; returns (report, summary line)."""
    from dgn.outputs import write_json

    entries = load_entries(run_dir)
    if not entries:
        raise DgnError(f"no images with sidecars in {run_dir}; run dgn generate or dgn generate-all into it first")
    report = summarize(entries, worst)
    report["line"] = summary_line(report)
    write_json(os.path.join(run_dir, REPORT), report)
    return report, report["line"]
