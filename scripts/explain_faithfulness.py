"""Faithfulness of dgn's attribution maps: deletion and insertion curves (Petsiuk et al. 2018, RISE).

For each photo (its top-1 class under D) and each method, the pixels are removed (set to grey) or inserted
(into a blurred copy) in the order of the map, most important first, in ``--steps`` equal parts; D's
probability of the class along the way gives a curve, and its area (AUC, over the fraction of pixels 0..1)
says how faithful the map is: a low deletion AUC (the probability falls as soon as the map's top pixels are
gone) and a high insertion AUC (it rises as soon as they are back) are better. A random order is the
baseline every method should beat.

    TF_NUM_INTRAOP_THREADS=1 .venv/bin/python scripts/explain_faithfulness.py --data PHOTOS \\
        --pattern 'ILSVRC2012_val_*' --minutes 15 --out runs/faithfulness.json

Photos are taken round-robin over the subfolders (sorted), so that every class comes early; the run stops
starting new photos after ``--minutes`` (or at ``--max-photos``) and prints a Markdown table.
"""

import argparse
import fnmatch
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

EXTENSIONS = (".jpg", ".jpeg", ".png")


def photo_list(folder, pattern):
    """Photos under ``folder`` matching ``pattern``, round-robin over the subfolders (each sorted)."""
    groups = {}
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(EXTENSIONS) and fnmatch.fnmatch(name, pattern):
                groups.setdefault(root, []).append(os.path.join(root, name))
    ordered, queues = [], [groups[k] for k in sorted(groups)]
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return ordered


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a folder of photos (subfolders too)")
    parser.add_argument("--pattern", default="*", help="file name pattern, e.g. 'ILSVRC2012_val_*' (held-out photos)")
    parser.add_argument("--classifier", default="efficientnet_lite0")
    parser.add_argument("--methods", default="all", help="comma-separated methods, or all")
    parser.add_argument("--steps", type=int, default=16, help="parts the pixels are removed / inserted in")
    parser.add_argument("--batch", type=int, default=4, help="photos explained together")
    parser.add_argument("--minutes", type=float, default=15.0, help="stop starting new photos after this long")
    parser.add_argument("--max-photos", type=int, default=100)
    parser.add_argument("--scorecam-channels", type=int, default=128,
                        help="Score-CAM: the N channels of largest spread (Faster Score-CAM); 0: all")
    parser.add_argument("--occlusion-stride", type=int, default=None, help="occlusion stride (default: half a window)")
    parser.add_argument("--out", help="write the per-photo numbers and the summary here (JSON)")
    args = parser.parse_args(argv)

    import dgn
    from dgn import attribution
    from dgn.classify import fit_mode
    from dgn.attribution.photos import method_list
    from dgn.images import ImageLoadError, fit_to_input, load_image

    classifier = dgn.load_classifier(args.classifier)
    methods = method_list([args.methods])
    settings = {m: {} for m in methods}
    if "scorecam" in settings and args.scorecam_channels:
        settings["scorecam"]["channels"] = args.scorecam_channels
    if "occlusion" in settings and args.occlusion_stride:
        settings["occlusion"]["stride"] = args.occlusion_stride
    paths = photo_list(args.data, args.pattern)[:args.max_photos]
    if not paths:
        parser.error(f"no photos matching {args.pattern!r} under {args.data}")
    size, mode = classifier.input_shape[:2], fit_mode(classifier)
    names = methods + ["random"]
    rows, seconds = [], {m: 0.0 for m in methods}
    started = time.time()
    done = 0
    for start in range(0, len(paths), args.batch):
        if time.time() - started > args.minutes * 60:
            break
        batch_paths, pixels = [], []
        for path in paths[start:start + args.batch]:
            try:
                pixels.append(fit_to_input(load_image(path), size, mode))
                batch_paths.append(path)
            except ImageLoadError as exc:
                print(f"skipped: {exc}", file=sys.stderr)
        if not pixels:
            continue
        pixels = np.stack(pixels)
        maps = {}
        for method in methods:
            result = attribution.attribute(classifier, pixels, None, method, **settings[method])
            maps[method] = result.maps
            seconds[method] += result.seconds
            targets = [t["index"] for t in result.targets]
        curves = {m: attribution.deletion_insertion(classifier, pixels, maps[m], None, steps=args.steps)
                  for m in methods}
        curves["random"] = attribution.deletion_insertion(classifier, pixels, np.zeros(pixels.shape[:3]), None,
                                                          steps=args.steps, order_seed=start)
        for k, path in enumerate(batch_paths):
            rows.append({"photo": os.path.relpath(path, args.data), "class": targets[k],
                         **{m: {"deletion": float(curves[m]["deletion_auc"][k]),
                                "insertion": float(curves[m]["insertion_auc"][k]),
                                "start": float(curves[m]["deletion"][k][0])} for m in names}})
        done += len(batch_paths)
        print(f"{done} photos, {time.time() - started:.0f} s", flush=True)

    summary = {}
    for m in names:
        dele = np.array([r[m]["deletion"] for r in rows])
        ins = np.array([r[m]["insertion"] for r in rows])
        summary[m] = {"deletion_auc": float(dele.mean()), "deletion_sem": float(dele.std(ddof=1) / np.sqrt(len(dele)))
                      if len(dele) > 1 else 0.0,
                      "insertion_auc": float(ins.mean()), "insertion_sem": float(ins.std(ddof=1) / np.sqrt(len(ins)))
                      if len(ins) > 1 else 0.0,
                      "beats_random_deletion": int(sum(r[m]["deletion"] < r["random"]["deletion"] for r in rows)),
                      "beats_random_insertion": int(sum(r[m]["insertion"] > r["random"]["insertion"] for r in rows)),
                      "map_seconds_per_photo": seconds.get(m, 0.0) / max(1, len(rows))}
    print(f"\n{len(rows)} photos, {args.steps} steps, {time.time() - started:.0f} s\n")
    print("| method | deletion AUC (lower is better) | insertion AUC (higher is better) | beats random (del / ins) "
          "| map s/photo |")
    print("|---|---|---|---|---|")
    for m in names:
        s = summary[m]
        print(f"| {m} | {s['deletion_auc']:.3f} ± {s['deletion_sem']:.3f} | {s['insertion_auc']:.3f} ± "
              f"{s['insertion_sem']:.3f} | {s['beats_random_deletion']} / {s['beats_random_insertion']} of {len(rows)} "
              f"| {s['map_seconds_per_photo']:.2f} |")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "photos": len(rows), "seconds": time.time() - started,
                       "summary": summary, "rows": rows, "settings": settings}, fh, indent=1)


if __name__ == "__main__":
    main()
