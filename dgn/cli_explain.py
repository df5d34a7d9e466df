"""``dgn explain`` (registered by dgn.cli's build_parser): attribution maps of photos under D."""

import sys

from dgn.cli_common import out_option, quiet_option, set_option

METHOD_HELP = ("saliency, smoothgrad, guided, integrated_gradients (ig), gradcam, gradcam++, scorecam, occlusion, "
               "or all; repeatable or comma-separated (default gradcam)")


def cmd_explain(args):
    from dgn.config import load_config
    from dgn.explaining import explain_photos

    cfg = load_config(args.config, args.set or [])
    settings = {"layer": args.layer, "samples": args.samples, "noise": args.noise, "seed": args.seed,
                "steps": args.ig_steps, "baseline": args.baseline, "channels": args.channels,
                "window": args.window, "stride": args.stride, "fill": args.fill, "score": args.score,
                "upsample": args.upsample}
    summary = explain_photos(cfg, images=args.image or (), data=args.data, targets=args.target, methods=args.method,
                             out_dir=args.out, settings=settings, batch=args.batch, fit=args.fit,
                             progress=not args.quiet)
    for line in summary["errors"]:
        print(f"dgn: error: {line}", file=sys.stderr)
    print(f"{summary['out_dir']}: {summary['maps']} maps written for {summary['photos']} photos, "
          f"{summary['skipped']} photos already there"
          + (f", {len(summary['errors'])} could not be read" if summary["errors"] else ""))
    return 2 if summary["errors"] else 0


def add_commands(sub):
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
    p.add_argument("--batch", type=int, default=8, metavar="B", help="photos explained together (default 8)")
    p.add_argument("--fit", choices=("auto", "center", "imagenet", "stretch"), default="auto",
                   help="how a photo is brought to D's input size (as dgn classify; default auto)")
    p.set_defaults(func=cmd_explain)
