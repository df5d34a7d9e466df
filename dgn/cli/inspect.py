"""``dgn info`` (the classifier, its layers and the image parameterization) and ``dgn classify``."""

import json

from dgn.cli.common import SET_HELP_CLASSIFIER, library, report_unreadable, set_option
from dgn.config import load_config
from dgn.errors import DgnError


def cmd_info(args):
    cfg = load_config(args.config, args.set or [])
    load_classifier = library("dgn.classifiers").load_classifier
    classifier = load_classifier(cfg["classifier"])
    print(describe_classifier(classifier))
    print(describe_parameterization(cfg, classifier))
    print(f"{'layer':<32} {'type':<22} {'output shape':<20} channels")
    for row in classifier.layers():
        shape = "x".join("?" if s is None else str(s) for s in row["shape"])
        print(f"{row['name']:<32} {row['type']:<22} {shape:<20} {row['channels']}")
    if not classifier.layers():
        print("(no layers reachable: a subclassed model; class targets only)")
    return 0


def describe_classifier(classifier):
    """Lines about D for ``dgn info``: input, preprocessing and range, head and logits, classes."""
    preprocessing = library("dgn.preprocessing")

    h, w, c = classifier.input_shape
    low, high = preprocessing.valid_range(classifier.preprocessing, c)
    head = classifier.head
    kind = {"softmax": "softmax classifier", "logits": "logits", "binary": "one-unit binary classifier"}[head.kind]
    names = classifier.class_names
    shown = ", ".join(f"{i} {n}" for i, (_, n) in enumerate(names[:5])) + (", ..." if len(names) > 5 else "") \
        if names else "none (targets by index)"
    return (f"classifier {classifier.name}: input {h}x{w}x{c} ({'grayscale' if c == 1 else 'RGB'}), "
            f"preprocessing {classifier.preprocessing} (values {min(low):g}..{max(high):g})\n"
            f"head {head.name!r}: {kind}, {classifier.num_classes} classes; logits = {head.note}\n"
            f"class names: {shown}")


def describe_parameterization(cfg, classifier):
    """The line about the image parameterization a config builds on this classifier (``dgn info``)."""
    build_generator_for = library("dgn.build").build_generator_for
    count_trainable = library("dgn.optvis.generator").count_trainable

    kind = cfg["parameterization"]["kind"]
    model, _ = build_generator_for(cfg.data, classifier, rows=1, seed=cfg["seed"])
    shape = "x".join(str(int(s)) for s in model.output.shape[1:])
    text = f"{kind if kind != 'generator' else 'generator G'}: makes {shape} images, " \
           f"{count_trainable(model):,} trainable weights"
    if kind == "generator":
        gen = model.get_layer("decoder") if any(l.name == "decoder" for l in model.layers) else None
        reshape = gen.get_layer("reshape").output.shape[1:] if gen is not None else None
        if reshape is not None:
            text += f" (seed {'x'.join(str(int(s)) for s in reshape)}"
            text += ", sized to D)" if cfg["generator"]["seed_shape"] is None else ")"
    return text


def cmd_classify(args):
    if args.config and args.classifier:
        raise DgnError("give --config or --classifier, not both")
    if args.top < 1:
        raise DgnError(f"--top {args.top}: give at least 1")
    overrides = list(args.set or [])
    if args.classifier:
        model, space = library("dgn.classifiers").split_model(args.classifier)
        overrides.append(f"classifier.model={model}")
        if space:
            overrides.append(f"classifier.preprocessing={space}")
    cfg = load_config(args.config, overrides) if args.config else load_config(text="", overrides=overrides)
    load_classifier = library("dgn.classifiers").load_classifier
    classify_files = library("dgn.classify").classify_files
    classifier = load_classifier(cfg["classifier"])
    results = classify_files(classifier, args.images, top=args.top, mode=args.fit)
    errors = []
    for result in results:
        if "error" in result:
            errors.append(result["error"])
            if not args.json:
                continue
        if args.json:
            print(json.dumps(result))
            continue
        print(result["image"])
        for row in result["top"]:
            label = " ".join(str(v) for v in (row["wnid"], row["name"]) if v) or "(no class names)"   # names without wnids
            print(f"  {row['index']:4d} {label:<40} {row['prob']:.4f}")
    return report_unreadable(errors, len(results))


def add_info(sub):
    p = sub.add_parser("info", help="list the classifier's layers and classes", parents=[set_option(SET_HELP_CLASSIFIER)])
    p.add_argument("config", help="a YAML config; its classifier: section is read")
    p.set_defaults(func=cmd_info)


def add_classify(sub):
    p = sub.add_parser("classify", help="top-K classes of image files under a classifier",
                       parents=[set_option(SET_HELP_CLASSIFIER)])
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--config", help="take the classifier from this config")
    p.add_argument("--classifier", metavar="MODEL[:PREPROCESSING]",
                   help="a built-in classifier (default efficientnet_lite0) or a .keras file with its input space, "
                        "as --judge: FILE.keras:PREPROCESSING (caffe, tf, unit or raw), e.g. mine.keras:tf")
    p.add_argument("--top", type=int, default=5, metavar="K", help="classes listed per image (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--fit", choices=("auto", "center", "imagenet", "stretch"), default="auto",
                   help="how a photo is brought to the classifier's input size (an image already at that size "
                        "is used as is): auto = the ImageNet 256/224 crop for 1000-class 224x224 classifiers, "
                        "else center (scale to cover, centre window)")
    p.set_defaults(func=cmd_classify)

