"""The independent judge: a second classifier, never part of an objective, that scores generated images
(``--judge`` of ``generate-all``, ``report``, ``compare``)."""

import os

import numpy as np
from PIL import Image

from dgn import build, imagenet, preprocessing
from dgn.classifiers import BUILTIN, split_model
from dgn.config import load_config
from dgn.errors import DgnError
from dgn.runs.records import ranking


def load_judge(name):
    """An independent classifier: a built-in name, ``FILE.keras:PREPROCESSING`` (e.g. ``shapes.keras:raw``),
    or a YAML config whose ``classifier:`` section is used (class names, input size, head)."""
    name = str(name)
    path, space = split_model(name)
    if space:
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
    return build.float32_classifier(cfg.data)


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
    order, rank = ranking(logits)
    top = int(order[0])
    out = {"classifier": judge.name, "top1": {**imagenet.class_info(top, judge.class_names),
                                               "prob": float(probs[top])}}
    if classes:
        out["prob"] = float(sum(probs[c] for c in classes))
        out["rank"] = int(min(rank[c] for c in classes))
    return out
