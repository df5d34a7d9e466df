"""Image quality side by side: dgn's methods on the same classifier D and classes, judged by D and by
independent ImageNet classifiers.

    python scripts/benchmark_quality.py --out runs/quality --classes 1,9,130,207,323,417,812,949 --seeds 0 \\
        [--methods quickstart,fourier,maco] [--method NAME=CONFIG.yaml ...] [--set NAME:KEY=VALUE ...] \\
        [--steps N] [--judges efficientnet_lite2,mobilenet_v2]

Methods: ``quickstart``, ``fourier``, ``maco``, ``pixel``, ``pretrained`` (dgn's shipped configs for
EfficientNet-Lite0) or ``NAME=CONFIG.yaml`` (``--method``); ``--set NAME:KEY=VALUE`` overrides one key
of a method's config (``--set maco:maco.crops=8``), ``--steps`` all methods' step counts. Each method
and seed runs as ``dgn generate-all`` into ``OUT/NAME-seedS`` (resumable: a rerun skips what is done),
one class per step on the CPU.

A folder of other images can join the table (``images_of``: an ``images.json`` listing
``{"index", "image", "seconds"}`` per image, e.g. Xplique's, made in an environment of its own) with
``--folder NAME=DIR`` (repeatable).

Every image (PNG) is judged by D and by each judge (resized bicubic to its input): top-1 and top-5
(the class's rank 1 / <= 5) and the mean probability of the class; seconds per class are the
method's wall time per image. Writes ``OUT/quality.md`` (the table), ``OUT/quality.json`` (every image's
numbers) and one contact sheet per method and seed (``OUT/sheets/NAME-seedS.png``). Bad input: one line,
exit code 2.
"""

import argparse
import json
import os
import platform
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from dgn import load_classifier  # noqa: E402
from dgn.config import load_config  # noqa: E402
from dgn.errors import DgnError  # noqa: E402
from dgn.optvis.generate_all import generate_all  # noqa: E402
from dgn.runs.judge import judge_image  # noqa: E402
from dgn.runs.outputs import write_png  # noqa: E402
from dgn.runs.sheets import grid  # noqa: E402

SHIPPED = {"quickstart": "configs/quickstart.yaml", "fourier": "configs/fourier-efficientnet-lite0.yaml",
           "maco": "configs/maco-efficientnet-lite0.yaml", "pixel": "configs/pixel-efficientnet-lite0.yaml",
           "pretrained": "configs/pretrained-efficientnet-lite0.yaml"}


class Usage(Exception):
    """A bad argument (one line)."""


def parse_methods(names, extra, sets, steps):
    """[(name, config path, overrides)] in order."""
    methods = []
    for name in [n.strip() for n in (names or "").split(",") if n.strip()]:
        if name not in SHIPPED:
            raise Usage(f"--methods {name}: valid: {', '.join(SHIPPED)} (or --method NAME=CONFIG.yaml)")
        methods.append([name, os.path.join(ROOT, SHIPPED[name]), []])
    for spec in extra or []:
        name, _, path = spec.partition("=")
        if not name or not path or not os.path.isfile(path):
            raise Usage(f"--method {spec}: give NAME=CONFIG.yaml with an existing config file")
        methods.append([name, path, []])
    names_seen = [m[0] for m in methods]
    if len(set(names_seen)) != len(names_seen):
        raise Usage(f"methods {', '.join(names_seen)}: give each name once")
    for spec in sets or []:
        name, _, override = spec.partition(":")
        if name not in names_seen or "=" not in override:
            raise Usage(f"--set {spec}: give NAME:KEY=VALUE with NAME one of {', '.join(names_seen) or '(none)'}")
        methods[names_seen.index(name)][2].append(override)
    if steps:
        for m in methods:
            m[2].append(f"steps={steps}")
    return methods


def run_dgn(name, config, overrides, classes, seed, out):
    """generate-all of one method and seed into OUT/NAME-seedS; returns the folder."""

    cfg = load_config(config, list(overrides) + [f"seed={seed}"])
    run_dir = os.path.join(out, f"{name}-seed{seed}")
    generate_all(cfg, classes=",".join(map(str, classes)), batch=1, out_dir=run_dir, progress=True, finish=False)
    return run_dir


def images_of(run_dir):
    """[(class index, PNG path, seconds for it)] of a folder: dgn's sidecars, or Xplique's images.json."""
    listing = os.path.join(run_dir, "images.json")
    if os.path.isfile(listing):
        with open(listing) as fh:
            return [(e["index"], os.path.join(run_dir, e["image"]), e["seconds"]) for e in json.load(fh)]
    out = []
    for name in sorted(os.listdir(run_dir)):
        if name.endswith(".json") and name[:4].isdigit():
            with open(os.path.join(run_dir, name)) as fh:
                side = json.load(fh)
            out.append((side["target"]["index"], os.path.join(run_dir, side["image"]), side["wall_seconds"]))
    return out


def judge_all(images, judges):
    """Per image: {judge name: {"rank", "prob"}}."""
    rows = []
    for index, path, seconds in images:
        with Image.open(path) as img:
            rgb = np.asarray(img.convert("RGB"))
        views = {}
        for judge in judges:
            view = judge_image(judge, rgb, [index])
            views[judge.name] = {"rank": view["rank"], "prob": view["prob"]}
        rows.append({"index": index, "image": os.path.basename(path), "seconds": seconds, "judges": views})
    return rows


def summarize(rows, judge_names):
    """Per judge: top-1 count, top-5 count, mean probability; mean seconds per class."""
    out = {"images": len(rows), "seconds": float(np.mean([r["seconds"] for r in rows])) if rows else None}
    for name in judge_names:
        ranks = [r["judges"][name]["rank"] for r in rows]
        out[name] = {"top1": sum(r == 1 for r in ranks), "top5": sum(r <= 5 for r in ranks),
                     "prob": float(np.mean([r["judges"][name]["prob"] for r in rows])) if rows else None}
    return out


def table(results, judge_names):
    head = "| method | " + " | ".join(f"{n}: top-1 / top-5 / mean p" for n in judge_names) + " | s / class |"
    lines = [head, "|" + "---|" * (len(judge_names) + 2)]
    for name, s in results.items():
        cells = [f"{s[j]['top1']} / {s[j]['top5']} of {s['images']}, {s[j]['prob']:.3f}" for j in judge_names]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {s['seconds']:.1f} |")
    return "\n".join(lines) + "\n"


def sheet(run_dir, rows, path):

    tiles = []
    for r in rows:
        with Image.open(os.path.join(run_dir, r["image"])) as img:
            tiles.append(np.asarray(img.convert("RGB").resize((160, 160), Image.Resampling.BICUBIC)))
    labels = [str(r["index"]) for r in rows]
    write_png(path, grid(tiles, min(8, len(tiles)), labels=labels, label_height=12))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--classes", required=True, help="ImageNet class indices, e.g. 1,207,949")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds")
    parser.add_argument("--methods", default="quickstart,fourier,maco")
    parser.add_argument("--method", action="append", help="NAME=CONFIG.yaml (repeatable)")
    parser.add_argument("--set", action="append", dest="sets", help="NAME:KEY=VALUE (repeatable)")
    parser.add_argument("--steps", type=int, default=None, help="every dgn method's steps (default: its config's)")
    parser.add_argument("--judges", default="efficientnet_lite2,mobilenet_v2")
    parser.add_argument("--folder", action="append", default=[], help="NAME=DIR of images with an images.json")
    args = parser.parse_args(argv)
    try:
        try:
            classes = [int(c) for c in args.classes.split(",")]
            seeds = [int(s) for s in args.seeds.split(",")]
        except ValueError:
            raise Usage(f"--classes {args.classes} / --seeds {args.seeds}: give comma-separated whole numbers") from None
        if not classes or any(not 0 <= c < 1000 for c in classes) or any(s < 0 for s in seeds):
            raise Usage("--classes: ImageNet indices 0..999; --seeds: 0 or more")
        if args.steps is not None and args.steps < 1:
            raise Usage(f"--steps {args.steps}: give 1 or more")
        extra = []
        for spec in args.folder:
            name, _, folder = spec.partition("=")
            if not name or not os.path.isfile(os.path.join(folder, "images.json")):
                raise Usage(f"--folder {spec}: give NAME=DIR with DIR/images.json")
            extra.append((name, folder))
        methods = parse_methods(args.methods, args.method, args.sets, args.steps)
        if not methods and not extra:
            raise Usage("no methods: give --methods, --method or --folder")

        try:
            judges = [load_classifier("efficientnet_lite0")] + [load_classifier(n) for n in args.judges.split(",") if n]
        except DgnError as err:
            raise Usage(f"--judges {args.judges}: {err}") from None
        os.makedirs(os.path.join(args.out, "sheets"), exist_ok=True)
        folders = list(extra)
        for seed in seeds:
            for name, config, overrides in methods:
                folders.append((name, run_dgn(name, config, overrides, classes, seed, args.out)))
    except (Usage, DgnError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    names = [j.name for j in judges]
    per_method, every = {}, {}
    for name, run_dir in folders:
        rows = judge_all(images_of(run_dir), judges)
        every[os.path.basename(run_dir)] = rows
        per_method.setdefault(name, []).extend(rows)
        sheet(run_dir, rows, os.path.join(args.out, "sheets", os.path.basename(run_dir) + ".png"))
    results = {name: summarize(rows, names) for name, rows in per_method.items()}
    text = (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()} ({platform.processor() or platform.machine()}), "
            f"D = efficientnet_lite0, classes {args.classes}, seeds {args.seeds}\n\n" + table(results, names))
    with open(os.path.join(args.out, "quality.md"), "w") as fh:
        fh.write(text)
    with open(os.path.join(args.out, "quality.json"), "w") as fh:
        json.dump({"summary": results, "images": every, "argv": sys.argv[1:] if argv is None else argv}, fh, indent=1)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
