"""The README's own-classifier sheet: a row of training images (what each class is), then one row per
``dgn generate-all`` run of configs/own-classifier-example.yaml, each tile labelled with the class, D's
probability (D) and the second network's (J, from the run's judge.json).

    python scripts/shapes_sheet.py docs/images/own-classifier-shapes.png runs/shapes-gen-s0 runs/shapes-gen-s1
"""

import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dgn.runs.outputs import write_png
from dgn.runs.sheets import grid, label_font
from train_shapes_classifier import CLASSES, shapes  # noqa: E402

TILE = 128


def _big(pixels):
    return np.asarray(Image.fromarray(np.asarray(pixels, dtype="uint8")).resize((TILE, TILE), Image.NEAREST))


def main(out, *runs):
    images, labels = shapes(len(CLASSES), seed=99)
    tiles = [_big(img) for img in images]
    texts = list(CLASSES)
    for run in runs:
        judged = {}
        path = os.path.join(run, "judge.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as fh:
                judged = json.load(fh).get("images", {})
        for index, name in enumerate(CLASSES):
            stem = f"{index:04d}_{name.replace(' ', '_')}"
            with open(os.path.join(run, stem + ".json"), encoding="utf-8") as fh:
                side = json.load(fh)
            with Image.open(os.path.join(run, stem + ".png")) as img:
                tiles.append(_big(np.asarray(img.convert("RGB"))))
            judge = judged.get(stem + ".png", {})
            j = f"  J {judge['prob']:.2f}" if "prob" in judge else ""
            texts.append(f"D {side['prob']:.2f}{j}")
    font = label_font(13)
    write_png(out, grid(tiles, len(CLASSES), pad=4, labels=texts, label_height=19, font=font))
    print(out)


if __name__ == "__main__":
    main(*sys.argv[1:])
