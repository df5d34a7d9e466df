"""``dgn explain`` (attribution maps of photos under D) and ``dgn examples`` (the dataset photos that
excite each unit most)."""

import os
import sys

from dgn.cli.common import (SET_HELP_CLASSIFIER, config_overrides, library, out_option, quiet_option,
                             report_unreadable, set_option)
from dgn.config import load_config
from dgn.errors import DgnError


METHOD_HELP = ("saliency, smoothgrad, guided, integrated_gradients (ig), gradcam, gradcam++, scorecam, occlusion, "
               "or all; repeatable or comma-separated (default gradcam)")


def setting_pairs(items):
    """{key: value} of ``--setting KEY=VALUE`` flags: a value is read as an integer, a number, none, true or
    false where it is one, else kept as text. DgnError (one line) for an item without '='."""
    out = {}
    for item in items or ():
        key, sep, text = str(item).partition("=")
        if not sep or not key.strip():
            raise DgnError(f"--setting {item!r}: give KEY=VALUE, e.g. --setting window=8")
        text = text.strip()
        value = {"none": None, "null": None, "true": True, "false": False}.get(text.lower(), text)
        if value is text:
            for kind in (int, float):
                try:
                    value = kind(text)
                    break
                except ValueError:
                    continue
        out[key.strip()] = value
    return out


def cmd_explain(args):
    cfg = load_config(args.config, args.set or [])
    settings = {"layer": args.layer, "samples": args.samples, "noise": args.noise, "seed": args.seed,
                "steps": args.ig_steps, "baseline": args.baseline, "channels": args.channels,
                "window": args.window, "stride": args.stride, "fill": args.fill, "score": args.score,
                "upsample": args.upsample}
    for key, value in setting_pairs(args.setting).items():
        if settings.get(key) is not None:
            raise DgnError(f"--setting {key}= and its own flag both given: give one")
        settings[key] = value
    photos = library("dgn.attribution.photos")
    photos.method_settings(photos.method_list(args.method), settings)   # bad names fail before D is loaded
    build = library("dgn.build")
    default_out_dir = library("dgn.optvis.render").default_out_dir
    classifier = build.classifier(cfg.data)
    summary = photos.explain_photos(classifier, images=args.image or (), data=args.data, targets=args.target,
                                    methods=args.method,
                                    out_dir=args.out or os.path.join(default_out_dir(cfg), "explain"),
                                    settings=settings, batch=args.batch, fit=args.fit, progress=not args.quiet,
                                    identity=cfg.data["classifier"])
    for line in summary["notes"]:
        print(f"dgn: warning: {line}", file=sys.stderr)
    print(f"{summary['out_dir']}: {summary['maps']} maps written for {summary['photos']} photos, "
          f"{summary['skipped']} photos already there"
          + (f", {len(summary['errors'])} could not be read" if summary["errors"] else ""))
    return report_unreadable(summary["errors"], summary["photos"])


def cmd_examples(args):
    if not args.channels and args.classes is None:
        raise DgnError("give --channels LAYER[:RANGE] or --classes SPEC: the units whose examples to find")
    if args.top < 1 or args.batch < 1:
        raise DgnError(f"--top {args.top} / --batch {args.batch}: give at least 1")
    cfg = load_config(args.config, config_overrides(args))
    build = library("dgn.build")
    select_units = library("dgn.optvis.batch").select_units
    write_examples = library("dgn.attribution.examples").write_examples
    default_out_dir = library("dgn.optvis.render").default_out_dir
    classifier = build.classifier(cfg.data)
    units = select_units(classifier, args.classes, args.channels)
    units = [("class", u) if not isinstance(u, tuple) else u for u in units]
    run_dir = args.out or default_out_dir(cfg.data)
    if args.maps:
        method_name = library("dgn.attribution.settings").method_name
        args.maps = method_name(args.maps)   # a bad name fails before the pass
    summary = write_examples(run_dir, classifier, args.data, units, top=args.top, fit=args.fit, batch=args.batch,
                             progress=not args.quiet, maps=args.maps)
    if any(os.path.isfile(os.path.join(run_dir, stem + ".png")) for stem in summary["stems"]):
        write_gallery = library("dgn.runs.gallery").write_gallery
        contact_sheets = library("dgn.runs.sheets").contact_sheets
        contact_sheets(run_dir)
        write_gallery(run_dir)
    rate = f", {summary['photos_per_second']} photos/s" if summary["photos_per_second"] else " (all cached)"
    print(f"{run_dir}/examples: top {args.top} of {summary['readable']} readable photos for {summary['units']} units; "
          f"{summary['read']} photos read{rate}"
          + (f"; {summary['unreadable']} unreadable photos skipped (listed in {run_dir}/examples/unreadable.json; "
             f"e.g. {summary['unreadable_first'][0]}: {summary['unreadable_first'][1]})" if summary["unreadable"] else ""))
    return report_unreadable(summary["unreadable_errors"], summary["photos"],
                             os.path.join(run_dir, "examples", "unreadable.json"))


def add_explain(sub):
    p = sub.add_parser("explain", help="attribution maps (saliency, SmoothGrad, guided backprop, integrated "
                                       "gradients, Grad-CAM(++), Score-CAM, occlusion) of photos under D",
                       parents=[out_option("output folder (default runs/<config name>/explain/)"), set_option(),
                                quiet_option()])
    p.add_argument("config", help="YAML config: its classifier is explained (e.g. configs/quickstart.yaml)")
    p.add_argument("--image", nargs="+", metavar="PATH", help="photos of any size and mode")
    p.add_argument("--data", metavar="DIR",
                   help="a folder of photos (subfolders too); resumable: photos already done are skipped")
    p.add_argument("--target", action="append", metavar="T",
                   help="class (index, wnid or name), 'a+b', channel:LAYER:C or neuron:LAYER:C:Y:X; repeatable "
                        "(default: each photo's top-1 class). A class's map is of its logit")
    p.add_argument("--method", action="append", metavar="M", help=METHOD_HELP)
    p.add_argument("--layer", metavar="NAME",
                   help="gradcam, gradcam++, scorecam: the layer (default: the last with a 4-D output)")
    p.add_argument("--samples", type=int, metavar="N", help="smoothgrad: noisy copies (default 25)")
    p.add_argument("--noise", type=float, metavar="F",
                   help="smoothgrad: noise standard deviation as a fraction of the image's value range (default 0.2)")
    p.add_argument("--seed", type=int, metavar="S", help="smoothgrad: noise seed (default 0)")
    p.add_argument("--ig-steps", type=int, metavar="N", help="integrated_gradients: path steps (default 50)")
    p.add_argument("--baseline", metavar="B", help="integrated_gradients: black (default), white, grey or zero")
    p.add_argument("--channels", type=int, metavar="N",
                   help="scorecam: only the N channels of largest spatial spread (default: all)")
    p.add_argument("--window", type=int, metavar="PX", help="occlusion: window side (default: shorter side / 7)")
    p.add_argument("--stride", type=int, metavar="PX", help="occlusion: stride (default: half the window)")
    p.add_argument("--fill", metavar="F", help="occlusion: grey (default), black or mean (the photo's mean colour)")
    p.add_argument("--score", metavar="S",
                   help="scorecam, occlusion: auto (default: D's probability of a class target), value or "
                        "probability")
    p.add_argument("--upsample", metavar="U",
                   help="gradcam, gradcam++, scorecam: bilinear (default, half-pixel centres) or corners "
                        "(corner-aligned, as tf-keras-vis)")
    p.add_argument("--setting", action="append", metavar="KEY=VALUE",
                   help="a method's setting by name (any registered method's, e.g. window=8); repeatable")
    p.add_argument("--batch", type=int, default=8, metavar="B", help="photos explained together (default 8)")
    p.add_argument("--fit", choices=("auto", "center", "imagenet", "stretch"), default="auto",
                   help="how a photo is brought to D's input size (as dgn classify; default auto)")
    p.set_defaults(func=cmd_explain)


def add_examples(sub):
    p = sub.add_parser("examples", help="dataset examples: the photos (and the patch of each) that excite each "
                                        "channel or class most, cached, beside the run's images",
                       parents=[out_option("run folder (default runs/<config name>/)"), set_option(SET_HELP_CLASSIFIER),
                                quiet_option()])
    p.add_argument("config", help="a YAML config; its classifier (and, for the run folder, its name) is used")
    p.add_argument("--data", metavar="DIR", required=True, help="a folder of photos (searched recursively)")
    p.add_argument("--channels", action="append", metavar="LAYER[:RANGE]",
                   help="every channel of LAYER, or LAYER:A:B, LAYER:C, LAYER:1,5,9; repeatable")
    p.add_argument("--classes", default=None, metavar="SPEC", help="classes instead: all, 0:100, 1,207,...")
    p.add_argument("--top", type=int, default=9, metavar="K", help="photos per unit (default 9)")
    p.add_argument("--batch", type=int, default=32, metavar="N", help="photos per call of D (default 32)")
    p.add_argument("--maps", metavar="METHOD", help="also the attribution map of the unit on each example photo "
                   "(gradcam, saliency, ...: dgn explain's methods), shown in the gallery beside the patches")
    p.add_argument("--fit", choices=("auto", "center", "imagenet", "stretch"), default="auto",
                   help="how photos are brought to D's input size (as dgn classify)")
    p.set_defaults(func=cmd_examples)

