"""Grad-CAM over photos at 224 x 224 on the CPU: dgn against tf-keras-vis, side by side, and how closely
dgn's maps on EfficientNet-Lite0 agree with tf-keras-vis's (the reference implementation).

    TF_NUM_INTRAOP_THREADS=1 .venv/bin/python scripts/benchmark_explain.py --data PHOTOS --photos 64 \\
        --batch 16 --repeats 3 --reference 4 --out runs/benchmark_explain.json

Speed: the same photos (the ImageNet evaluation crop), the same model (EfficientNet-Lite0, the shipped
weights), the same layer (``top_relu``, the last 4-D layer: tf-keras-vis is told not to seek the
convolution before it, ``seek_penultimate_conv_layer=False``) and the same batches for both; each top-1
class. The first batch of each includes tracing (dgn compiles a ``tf.function``; tf-keras-vis runs
eagerly) and is reported apart; the steady state is the median over ``--repeats`` passes over all
photos, the two implementations alternating so that the machine's load falls on both alike.

Reference (``--reference N``): on N photos, the per-map Pearson correlation of dgn's and tf-keras-vis's
saliency, SmoothGrad (same noise: seeded per photo), Grad-CAM, Grad-CAM++ and Score-CAM (on
``--scorecam`` photos of them: each costs 1,280 masked images per implementation) maps, with dgn's
``upsample="corners"`` (tf-keras-vis's scipy zoom) and with its default half-pixel upsampling.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def load_photos(folder, count, classifier):
    from dgn.classify import fit_mode
    from dgn.images import fit_to_input, load_image

    paths = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        paths += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith((".jpg", ".jpeg", ".png"))]
    step = max(1, len(paths) // count)
    chosen = paths[::step][:count]
    mode = fit_mode(classifier)
    return chosen, np.stack([fit_to_input(load_image(p), classifier.input_shape[:2], mode) for p in chosen])


def correlations(a, b):
    return [float(np.corrcoef(np.ravel(p), np.ravel(q))[0, 1]) for p, q in zip(a, b)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="a folder of photos")
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--layer", default="top_relu")
    parser.add_argument("--reference", type=int, default=4, help="photos for the correlation check (0: none)")
    parser.add_argument("--scorecam", type=int, default=2, help="of those, photos for Score-CAM")
    parser.add_argument("--out", help="write the numbers here (JSON)")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    import dgn
    from dgn import attribution

    try:
        from tf_keras_vis.gradcam import Gradcam
        from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
        from tf_keras_vis.utils.scores import CategoricalScore
    except ImportError:
        parser.error("tf-keras-vis is not installed: pip install tf-keras-vis")

    classifier = dgn.load_classifier("efficientnet_lite0")
    paths, pixels = load_photos(args.data, args.photos, classifier)
    x = classifier.from_pixels(pixels)
    classes = np.argmax(classifier.predict_logits(x), axis=-1)
    batches = [slice(i, i + args.batch) for i in range(0, len(x), args.batch)]
    gradcam = Gradcam(classifier.model, model_modifier=ReplaceToLinear(), clone=True)

    def run_dgn(part):
        return attribution.explain(classifier, pixels[part], None, "gradcam", layer=args.layer,
                                   batch_size=args.batch)

    def run_vis(part):
        return gradcam(CategoricalScore([int(c) for c in classes[part]]), x[part], penultimate_layer=args.layer,
                       seek_penultimate_conv_layer=False)

    report = {"photos": len(x), "batch": args.batch, "layer": args.layer, "keras": keras.__version__,
              "tensorflow": tf.__version__, "threads": os.environ.get("TF_NUM_INTRAOP_THREADS", "default"),
              "first_batch_seconds": {}, "steady_seconds_per_photo": {}}
    for name, fn in (("dgn", run_dgn), ("tf-keras-vis", run_vis)):
        started = time.perf_counter()
        fn(batches[0])
        report["first_batch_seconds"][name] = time.perf_counter() - started
    timings = {"dgn": [], "tf-keras-vis": []}
    maps = {}
    for _ in range(args.repeats):
        for name, fn in (("dgn", run_dgn), ("tf-keras-vis", run_vis)):
            started = time.perf_counter()
            maps[name] = np.concatenate([fn(part) for part in batches])
            timings[name].append((time.perf_counter() - started) / len(x))
    for name, values in timings.items():
        report["steady_seconds_per_photo"][name] = statistics.median(values)
        report.setdefault("all_seconds_per_photo", {})[name] = values
    corners = np.concatenate([attribution.explain(classifier, pixels[part], None, "gradcam", layer=args.layer,
                                                  upsample="corners") for part in batches])
    report["gradcam_correlation_all_photos"] = {
        "corners": {"min": min(correlations(corners, maps["tf-keras-vis"])),
                    "mean": float(np.mean(correlations(corners, maps["tf-keras-vis"])))},
        "bilinear": {"min": min(correlations(maps["dgn"], maps["tf-keras-vis"])),
                     "mean": float(np.mean(correlations(maps["dgn"], maps["tf-keras-vis"])))}}
    print(f"Grad-CAM at {args.layer}, {len(x)} photos at 224x224, batches of {args.batch}, "
          f"TF_NUM_INTRAOP_THREADS={report['threads']}")
    print("| | first batch (s, with tracing) | steady state (s per photo) |")
    print("|---|---|---|")
    for name in ("dgn", "tf-keras-vis"):
        print(f"| {name} | {report['first_batch_seconds'][name]:.2f} | "
              f"{report['steady_seconds_per_photo'][name]:.4f} |")
    speedup = report["steady_seconds_per_photo"]["tf-keras-vis"] / report["steady_seconds_per_photo"]["dgn"]
    report["speedup"] = speedup
    print(f"dgn is {speedup:.2f}x as fast; map correlation with tf-keras-vis: "
          f"{report['gradcam_correlation_all_photos']}")

    if args.reference:
        from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.scorecam import Scorecam

        n = min(args.reference, len(x))
        score = CategoricalScore([int(c) for c in classes[:n]])
        model = classifier.model
        ref = {"saliency": Saliency(model, model_modifier=ReplaceToLinear())(score, x[:n])}
        smooth = []
        for k in range(n):
            np.random.seed(0)
            smooth.append(Saliency(model, model_modifier=ReplaceToLinear())(
                CategoricalScore([int(classes[k])]), x[k:k + 1], smooth_samples=25, smooth_noise=0.2)[0])
        ref["smoothgrad"] = np.stack(smooth)
        ref["gradcam"] = maps["tf-keras-vis"][:n]
        ref["gradcam++"] = GradcamPlusPlus(model, model_modifier=ReplaceToLinear())(
            score, x[:n], penultimate_layer=args.layer, seek_penultimate_conv_layer=False)
        m = min(args.scorecam, n)
        if m:
            ref["scorecam"] = Scorecam(model, model_modifier=ReplaceToLinear())(
                CategoricalScore([int(c) for c in classes[:m]]), x[:m], penultimate_layer=args.layer,
                seek_penultimate_conv_layer=False, batch_size=32)
        report["reference"] = {}
        print(f"\nAgreement with tf-keras-vis on EfficientNet-Lite0 ({n} photos; Score-CAM {m}): per-map Pearson "
              f"correlation, min / mean")
        print("| method | dgn corners | dgn default (bilinear) |")
        print("|---|---|---|")
        for method, theirs in ref.items():
            count = len(theirs)
            cam = method in attribution.CAM_METHODS
            settings = {"layer": args.layer} if cam else {}
            mine = attribution.explain(classifier, pixels[:count], None, method, **settings)
            row = {"bilinear": correlations(mine, theirs)}
            if cam:
                row["corners"] = correlations(attribution.explain(classifier, pixels[:count], None, method,
                                                                  upsample="corners", **settings), theirs)
            report["reference"][method] = row
            show = lambda v: f"{min(v):.4f} / {np.mean(v):.4f}" if v else "-"  # noqa: E731
            print(f"| {method} | {show(row.get('corners', row['bilinear']))} | {show(row['bilinear'])} |")
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as fh:
            json.dump({**report, "paths": [os.path.basename(p) for p in paths]}, fh, indent=1)


if __name__ == "__main__":
    main()
