"""The ``dgn`` command line. Every user error ends with one line on stderr and exit code 2."""

import os
import sys

from dgn.cli_common import (SET_HELP_CLASSIFIER, SET_HELP_DAE, Parser, config_overrides, out_option, positive_int,
                            quiet_option, run_options, set_option)


def _quiet_backend():
    """Imports the backend with its C++ start-up chatter (CUDA probing on CPU machines) silenced."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import keras
            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf
                tf.config.list_logical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cmd_generate(args):
    from dgn.config import load_config
    from dgn.generate import describe_result, generate

    cfg = load_config(args.config, config_overrides(args))
    results = generate(cfg, targets=args.target, out_dir=args.out, progress=not args.quiet, force=args.force)
    for path, sidecar in results:
        print(describe_result(path, sidecar))
    return 0


def cmd_info(args):
    from dgn.classifiers import load_classifier
    from dgn.config import load_config

    cfg = load_config(args.config, args.set or [])
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
    from dgn import preprocessing

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
    from dgn.build import build_generator_for
    from dgn.generator import count_trainable

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


def _train_progressive(args, cfg, training, data_dir):
    """train-dae with ``dae.stages``: the paper's decoder trained stage by stage (:mod:`dgn.progressive`)."""
    from dgn import build
    from dgn.errors import DgnError
    from dgn.progressive import train_progressive

    if args.epochs is not None:
        raise DgnError("--epochs does not apply to a progressive recipe (dae.stages): set each stage's updates")
    recipe = build.progressive_recipe(cfg.data)
    classifier = build.dae_classifier(cfg.data)
    seed_shape, blocks = build.autoencoder(cfg.data).sized(classifier.input_shape[0])
    out = args.out or training.out
    finished = train_progressive(recipe, data_dir, classifier.preprocessing, classifier.input_shape[0], out,
                                 seed_shape, blocks, training.validation, training.wnids, args.time_limit)
    print(f"trained decoder: {out}/decoder.weights.h5 (and encoder.weights.h5, decoder.json)" if finished else
          f"stopped after a checkpoint in {out}; run the same command again to resume")
    return 0


def cmd_train_dae(args):
    from dgn import build
    from dgn.autoencoder import train_dae
    from dgn.config import load_config
    from dgn.errors import DgnError

    if args.time_limit is not None and args.time_limit <= 0:
        raise DgnError(f"--time-limit {args.time_limit:g}: give a positive number of minutes, e.g. --time-limit 30")
    overrides = list(args.set or [])
    cfg = load_config(args.config, overrides)
    training = build.dae_training(cfg.data)
    data_dir = training.images(args.data)   # before D is loaded: no folder fails at once
    if cfg.data["dae"]["stages"]:
        return _train_progressive(args, cfg, training, data_dir)
    out = train_dae(build.autoencoder(cfg.data), training, build.dae_classifier(cfg.data), data_dir=data_dir,
                    out_dir=args.out, epochs=args.epochs, verbose=1 if not args.quiet else 2,
                    time_limit=args.time_limit, record=cfg.data)
    print(f"trained autoencoder: {out}/decoder.weights.h5 (and encoder.weights.h5, log.csv)")
    return 0


def cmd_export_dae(args):
    from dgn.autoencoder import export_trained

    sizes = export_trained(args.folder, args.dest, args.encoder_dtype)
    for name, size in sizes.items():
        print(f"{os.path.join(args.dest, name)}  {size / 2 ** 20:.1f} MiB")
    return 0


def cmd_eval_dae(args):
    import json

    from dgn import build
    from dgn.autoencoder import eval_dae
    from dgn.config import load_config

    if args.sheet and not args.sheet.lower().endswith(".png"):
        from dgn.errors import DgnError
        raise DgnError(f"--sheet {args.sheet}: the sheet is a PNG file; give a name ending in .png")
    cfg = load_config(args.config, args.set or [])
    summary, crops, recon = eval_dae(build.autoencoder(cfg.data), build.dae_training(cfg.data), args.data,
                                     folder=args.weights, limit=args.limit, split=args.split)
    if args.sheet:
        from dgn.sheets import pairs_sheet
        pairs_sheet(args.sheet, crops[:8], recon[:8])
        print(f"sheet: {args.sheet} (the first {min(8, len(crops))} photos over their reconstructions)")
    thumbs = {}  # one entry a side: the code-sized thumbnail may be the 16x16 one
    for key, t in summary["thumbnails"].items():
        thumbs.setdefault(t["side"], (f"{t['side']}x{t['side']} thumbnail ({t['numbers']} numbers"
                                      f"{', code-sized' if key == 'code' else ''}) {t['psnr']:.2f} dB"))
    thumbs = "; ".join(thumbs.values())
    print(f"{summary['images']} images: autoencoder (code of {summary['code_size']} numbers) "
          f"{summary['psnr']:.2f} dB; {thumbs}", file=sys.stderr)
    print(json.dumps(summary))
    return 0


def cmd_code_stats(args):
    import json

    from dgn import build
    from dgn.autoencoder import code_statistics
    from dgn.config import load_config

    cfg = load_config(args.config, args.set or [])
    print(json.dumps(code_statistics(build.autoencoder(cfg.data), build.dae_training(cfg.data), args.weights,
                                     data_dir=args.data, limit=args.limit)))
    return 0


def cmd_classify(args):
    import json

    from dgn.classifiers import load_classifier
    from dgn.classify import classify_files
    from dgn.config import load_config
    from dgn.errors import DgnError

    if args.config and args.classifier:
        raise DgnError("give --config or --classifier, not both")
    if args.top < 1:
        raise DgnError(f"--top {args.top}: give at least 1")
    overrides = list(args.set or [])
    if args.classifier:
        overrides.append(f"classifier.model={args.classifier}")
    cfg = load_config(args.config, overrides) if args.config else load_config(text="", overrides=overrides)
    classifier = load_classifier(cfg["classifier"])
    results = classify_files(classifier, args.images, top=args.top, mode=args.fit)
    failed = 0
    for result in results:
        if "error" in result:
            failed += 1
            print(f"dgn: {result['error']}", file=sys.stderr)
            if not args.json:
                continue
        if args.json:
            print(json.dumps(result))
            continue
        print(result["image"])
        for row in result["top"]:
            label = f"{row['wnid']} {row['name']}" if row["name"] else "(no class names)"
            print(f"  {row['index']:4d} {label:<40} {row['prob']:.4f}")
    return 1 if failed else 0


def build_parser():
    parser = Parser(prog="dgn", description="Generate the images a trained classifier prefers "
                                             "(Despraz et al. 2017).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    from dgn import __version__
    parser.add_argument("--version", action="version", version=f"dgn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    p = sub.add_parser("generate", help="one image per target, with a JSON sidecar",
                       parents=[run_options(), out_option(), set_option(), quiet_option()])
    p.add_argument("config", help="YAML experiment config, e.g. configs/quickstart.yaml")
    p.add_argument("--target", action="append", metavar="T",
                   help="class (index, wnid or name), 'a+b', channel:LAYER:C or neuron:LAYER:C:Y:X; repeatable")
    p.add_argument("--force", action="store_true",
                   help="if --out holds another config's generate-all run, write there anyway")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("train-dae", help="train the denoising autoencoder (resumes from its checkpoint)",
                       parents=[out_option("training folder (overrides dae.out)"), set_option(SET_HELP_DAE),
                                quiet_option("one line per epoch instead of a progress bar")])
    p.add_argument("config", help="e.g. configs/dae-dogs.yaml")
    p.add_argument("--data", metavar="DIR", help="image folder (overrides dae.data)")
    p.add_argument("--epochs", type=positive_int, help="total epochs (overrides dae.epochs)")
    p.add_argument("--time-limit", type=float, metavar="MINUTES",
                   help="stop after the first epoch (with dae.stages: checkpoint) that ends past this many "
                        "minutes (resume later)")
    p.set_defaults(func=cmd_train_dae)

    p = sub.add_parser("export-dae", help="copy a trained autoencoder to a weights folder (encoder as float16)")
    p.add_argument("folder", help="training folder written by train-dae")
    p.add_argument("dest", help="e.g. weights/dae-dogs-efficientnet_lite0")
    p.add_argument("--encoder-dtype", choices=("float16", "float32"), default="float16",
                   help="the encoder's weights as float16 (default: half the size) or float32; the decoder stays exact")
    p.set_defaults(func=cmd_export_dae)

    p = sub.add_parser("eval-dae", help="reconstruct a folder of images; prints PSNR as JSON",
                       parents=[set_option(SET_HELP_DAE)])
    p.add_argument("config", help="the autoencoder's training config, e.g. configs/dae-dogs.yaml")
    p.add_argument("--data", metavar="DIR", required=True, help="a folder of photos (searched recursively)")
    p.add_argument("--weights", metavar="DIR", help="trained autoencoder folder (default dae.out)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N photos")
    p.add_argument("--split", choices=("all", "train", "val"), default="all",
                   help="val / train: only the images train-dae held out / trained on (its split of DIR)")
    p.add_argument("--sheet", metavar="PNG", help="also write originals next to reconstructions")
    p.set_defaults(func=cmd_eval_dae)

    p = sub.add_parser("code-stats", help="mean and spread of the encoder's codes of the training photos "
                                          "(code_stats.npz, for generator.code_stats)",
                       parents=[set_option(SET_HELP_DAE)])
    p.add_argument("config", help="the autoencoder's training config, e.g. configs/dae-dogs.yaml")
    p.add_argument("--weights", metavar="DIR", required=True, help="trained autoencoder folder; the file goes there")
    p.add_argument("--data", metavar="DIR", help="image folder (default dae.data; its training split is used)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N training photos")
    p.set_defaults(func=cmd_code_stats)

    p = sub.add_parser("classify", help="top-K classes of image files under a classifier",
                       parents=[set_option(SET_HELP_CLASSIFIER)])
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("--config", help="take the classifier from this config")
    p.add_argument("--classifier", help="a built-in classifier (default efficientnet_lite0) or a .keras file")
    p.add_argument("--top", type=int, default=5, metavar="K", help="classes listed per image (default 5)")
    p.add_argument("--json", action="store_true", help="one JSON object per image")
    p.add_argument("--fit", choices=("auto", "center", "imagenet", "stretch"), default="auto",
                   help="how a photo is brought to the classifier's input size (an image already at that size "
                        "is used as is): auto = the ImageNet 256/224 crop for 1000-class 224x224 classifiers, "
                        "else center (scale to cover, centre window)")
    p.set_defaults(func=cmd_classify)

    from dgn import cli_baselines, cli_batch, cli_explain
    cli_batch.add_commands(sub)
    cli_baselines.add_commands(sub)
    cli_explain.add_commands(sub)
    p = sub.add_parser("info", help="list the classifier's layers and classes", parents=[set_option(SET_HELP_CLASSIFIER)])
    p.add_argument("config", help="a YAML config; its classifier: section is read")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:
        _quiet_backend()
    from dgn.errors import DgnError

    try:
        return args.func(args)
    except DgnError as exc:
        if args.debug:
            raise
        print(f"dgn: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("dgn: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (dgn info CONFIG | head): not an error of dgn's
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI boundary: one line, not a traceback
        if args.debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        print(f"dgn: internal error: {type(exc).__name__}: {first} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
