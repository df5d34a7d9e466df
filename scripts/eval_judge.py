#!/usr/bin/env python
"""Top-1/top-5 of dgn's built-in ImageNet classifiers, loaded by name exactly as ``--judge NAME``
loads them, on ImageNet photos in a ``<wnid>/<image>`` folder layout (folder name = label); with
``--torchvision``, also torchvision's own MobileNetV2 on exactly the same crops.

    python scripts/eval_judge.py --models mobilenet_v2,efficientnet_lite2 \
        --data ../shared/data/imagenet-dogs --class-index ../shared/data/imagenet_class_index.json

Crop: dgn.images.eval_crop (short side to crop*256/224, PIL bicubic, centre crop) at each
model's input size, the crop scripts/eval_classifier.py uses.  Input: the classifier's own
``from_pixels`` (its dgn preprocessing space).  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "scripts"))

from eval_classifier import Row, crop_batches, list_images  # noqa: E402

from dgn.imagenet import load_class_index  # noqa: E402


def dgn_predictor(name):
    from dgn.classifiers import load_classifier_named

    clf = load_classifier_named(name)
    return clf.input_shape[0], lambda pixels: clf.predict_logits(clf.from_pixels(pixels), batch_size=32)


def torchvision_predictor(pth):
    import torch
    from convert_mobilenet_v2 import import_torchvision

    import_torchvision()
    from torchvision.models import mobilenet_v2

    from dgn.classifiers.mobilenet_v2 import IMAGENET_MEAN, IMAGENET_STD

    model = mobilenet_v2(weights=None)
    model.load_state_dict(torch.load(pth, map_location="cpu"))
    model.eval()

    def predict(pixels):
        x = (pixels / 255.0 - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32))).numpy()

    return 224, predict


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,efficientnet_lite2", help="built-in classifier names")
    ap.add_argument("--data", required=True, help="folder of <wnid>/<image> files")
    ap.add_argument("--class-index", required=True, help="imagenet_class_index.json")
    ap.add_argument("--torchvision", metavar="PTH", help="also torchvision's mobilenet_v2 with this state dict")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--limit", type=int, default=0, help="evaluate only N images, evenly spaced")
    args = ap.parse_args(argv)

    names = load_class_index(args.class_index, 1000)
    items = list_images(args.data, {wnid: i for i, (wnid, _) in enumerate(names)})
    if args.limit:
        items = items[:: max(1, len(items) // args.limit)][: args.limit]
    rows, sizes = [], {}
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        size, predict = dgn_predictor(name)
        rows.append(Row("dgn", name, "its own (from_pixels)", predict))
        sizes[name] = size
    if args.torchvision:
        size, predict = torchvision_predictor(args.torchvision)
        rows.append(Row("torchvision", "mobilenet_v2 ", "(x/255-mean)/std", predict))
        sizes["mobilenet_v2 "] = size

    labels_all, skipped, t0 = [], [], time.time()
    for done, crops, labels in crop_batches(items, set(sizes.values()), args.batch_size, skipped):
        labels_all.extend(labels)
        for r in rows:
            r.update(np.stack(crops[sizes[r.variant]]).astype(np.float32), labels)
        print(f"\r{done}/{len(items)} images, {time.time() - t0:.0f}s", end="", file=sys.stderr)
    print(file=sys.stderr)

    labels_all = np.array(labels_all)
    counts = np.bincount(labels_all, minlength=len(names))
    big = labels_all == counts.argmax()
    print(f"\n{len(labels_all)} images from {args.data} ({len(skipped)} unreadable), "
          f"{len(set(labels_all.tolist()))} classes; {int(big.sum())} in {names[counts.argmax()][0]} "
          f"({names[counts.argmax()][1]}).  Crop: short side to crop*256/224 (bicubic), centre crop.\n")
    print(f"| model | input | preprocessing | top-1 | top-5 | top-1 {names[counts.argmax()][0]} "
          f"(n={int(big.sum())}) | top-1 other (n={int((~big).sum())}) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        t1, t5 = np.array(r.top1), np.array(r.top5)
        print(f"| {r.framework} {r.variant.strip()} | {sizes[r.variant]} | {r.prep} | {100 * t1.mean():.2f} % | "
              f"{100 * t5.mean():.2f} % | {100 * t1[big].mean():.2f} % | {100 * t1[~big].mean():.2f} % |")
    k = next((r for r in rows if r.variant == "mobilenet_v2"), None)
    t = next((r for r in rows if r.framework == "torchvision"), None)
    if k and t:
        agree = np.mean(np.array(k.pred) == np.array(t.pred))
        print(f"\nmobilenet_v2: dgn and torchvision top-1 predictions agree on {100 * agree:.2f} % of images")
    for msg in skipped:
        print("unreadable:", msg)


if __name__ == "__main__":
    main()
