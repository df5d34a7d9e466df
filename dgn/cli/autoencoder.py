"""The autoencoder's commands: ``dgn train-dae``, ``export-dae``, ``eval-dae``, ``code-stats``."""

import json
import os
import sys

from dgn.cli.common import SET_HELP_DAE, library, out_option, positive_int, quiet_option, set_option
from dgn.config import load_config
from dgn.errors import DgnError


def _train_progressive(args, cfg, training, data_dir):
    """train-dae with ``dae.stages``: the paper's decoder trained stage by stage (:mod:`dgn.autoencoder.progressive`)."""
    if args.epochs is not None:
        raise DgnError("--epochs does not apply to a progressive recipe (dae.stages): set each stage's updates")
    build = library("dgn.build")
    train_progressive = library("dgn.autoencoder.progressive").train_progressive
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
    if args.time_limit is not None and args.time_limit <= 0:
        raise DgnError(f"--time-limit {args.time_limit:g}: give a positive number of minutes, e.g. --time-limit 30")
    overrides = list(args.set or [])
    cfg = load_config(args.config, overrides)
    build = library("dgn.build")
    train_dae = library("dgn.autoencoder.training").train_dae
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
    export_trained = library("dgn.autoencoder.files").export_trained

    sizes = export_trained(args.folder, args.dest, args.encoder_dtype)
    for name, size in sizes.items():
        print(f"{os.path.join(args.dest, name)}  {size / 2 ** 20:.1f} MiB")
    return 0


def cmd_eval_dae(args):
    if args.sheet and not args.sheet.lower().endswith(".png"):
        raise DgnError(f"--sheet {args.sheet}: the sheet is a PNG file; give a name ending in .png")
    cfg = load_config(args.config, args.set or [])
    build = library("dgn.build")
    eval_dae = library("dgn.autoencoder.evaluate").eval_dae
    summary, crops, recon = eval_dae(build.autoencoder(cfg.data), build.dae_training(cfg.data), args.data,
                                     folder=args.weights, limit=args.limit, split=args.split)
    if args.sheet:
        pairs_sheet = library("dgn.runs.sheets").pairs_sheet
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
    cfg = load_config(args.config, args.set or [])
    build = library("dgn.build")
    code_statistics = library("dgn.autoencoder.evaluate").code_statistics
    print(json.dumps(code_statistics(build.autoencoder(cfg.data), build.dae_training(cfg.data), args.weights,
                                     data_dir=args.data, limit=args.limit)))
    return 0


def add_train_dae(sub):
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


def add_export_dae(sub):
    p = sub.add_parser("export-dae", help="copy a trained autoencoder to a weights folder (encoder as float16)")
    p.add_argument("folder", help="training folder written by train-dae")
    p.add_argument("dest", help="e.g. weights/dae-dogs-efficientnet_lite0")
    p.add_argument("--encoder-dtype", choices=("float16", "float32"), default="float16",
                   help="the encoder's weights as float16 (default: half the size) or float32; the decoder stays exact")
    p.set_defaults(func=cmd_export_dae)


def add_eval_dae(sub):
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


def add_code_stats(sub):
    p = sub.add_parser("code-stats", help="mean and spread of the encoder's codes of the training photos "
                                          "(code_stats.npz, for generator.code_stats)",
                       parents=[set_option(SET_HELP_DAE)])
    p.add_argument("config", help="the autoencoder's training config, e.g. configs/dae-dogs.yaml")
    p.add_argument("--weights", metavar="DIR", required=True, help="trained autoencoder folder; the file goes there")
    p.add_argument("--data", metavar="DIR", help="image folder (default dae.data; its training split is used)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N training photos")
    p.set_defaults(func=cmd_code_stats)

