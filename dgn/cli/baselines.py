"""``dgn compare`` (one sheet row per method) and ``dgn dream`` (DeepDream): the baselines the paper
compares against, on the core loop."""

import os

from dgn.cli.common import config_overrides, library, out_option, quiet_option, report_unreadable, set_option
from dgn.config import load_config
from dgn.errors import DgnError


def cmd_compare(args):
    configs = [load_config(path, config_overrides(args)) for path in args.configs]
    out = args.out or os.path.join("runs", "compare")
    maps = None
    if args.maps:
        method_name = library("dgn.attribution.settings").method_name
        if not args.photos:
            raise DgnError("--maps needs --photos DIR: the maps are of the real photos")
        maps = method_name(args.maps)
    compare = library("dgn.optvis.compare").compare
    describe = library("dgn.optvis.compare").describe
    summary = compare(configs, targets=args.target, out_dir=out, judge=args.judge, progress=not args.quiet,
                      photos=args.photos, maps=maps)
    print(f"{os.path.join(out, 'compare.png')}: {len(summary['methods'])} methods x {len(summary['targets'])} targets"
          + (f" ({summary['reused']} finished images reused)" if summary["reused"] else ""))
    for line in describe(summary):
        print(line)
    unreadable = summary.get("photos_unreadable") or []
    return report_unreadable(unreadable, summary.get("photos_read", 0) + len(unreadable))


def cmd_dream(args):
    if not os.path.isfile(args.image):
        raise DgnError(f"cannot read image {args.image!r}: file not found" if not os.path.isdir(args.image)
                       else f"cannot read image {args.image!r}: is a directory")
    # --steps here is dream.steps (per octave), not the config's steps: only --set and --seed override
    overrides = list(args.set or []) + ([f"seed={args.seed}"] if args.seed is not None else [])
    cfg = load_config(args.config, overrides)
    run_dream = library("dgn.optvis.dream").run_dream
    path, sidecar = run_dream(cfg, args.image, layers=args.layers, octaves=args.octaves, steps=args.steps,
                              zoom_frames=args.zoom_frames, gif=True if args.gif else None, out_dir=args.out,
                              progress=not args.quiet)
    norm = sidecar["layer_norm"]
    print(f"{path}: {sidecar['size'][1]}x{sidecar['size'][0]}, layer norm {norm['photo']:.4g} -> {norm['dream']:.4g}")
    frames = sidecar.get("frames")
    if frames:
        folder = os.path.join(os.path.dirname(path), frames["folder"])
        print(f"{folder}/: {frames['count']} frames" + (f"; {os.path.join(os.path.dirname(path), frames['gif'])}"
                                                       if frames.get("gif") else ""))
    return 0


def add_compare(sub):
    p = sub.add_parser("compare", help="one sheet row per method (config) for a list of targets",
                       parents=[set_option("override a value in every config; repeatable"), quiet_option()])
    p.add_argument("configs", nargs="+", metavar="CONFIG", help="one config per method, e.g. configs/pixel-*.yaml")
    p.add_argument("--target", action="append", metavar="T", help="a column; repeatable (default: the first "
                                                                   "config's objective.targets)")
    p.add_argument("--steps", type=int, help="steps for every method (overrides the configs)")
    p.add_argument("--judge", metavar="MODEL", help="an independent classifier that also scores every image, "
                                                    "e.g. efficientnet_lite2, a .keras file or a YAML config (never used "
                                                    "in an objective)")
    p.add_argument("--out", metavar="DIR", help="output folder (default runs/compare/); images already made there "
                   "by the same config are reused, so an interrupted or extended compare resumes")
    p.add_argument("--photos", metavar="DIR", help="a folder of real photos: a last row shows, per class target, the "
                   "photo with D's largest logit of it")
    p.add_argument("--maps", metavar="METHOD", help="with --photos: one more row with each photo's attribution map "
                   "(gradcam, saliency, ...: dgn explain's methods)")
    p.set_defaults(func=cmd_compare)


def add_dream(sub):
    p = sub.add_parser("dream", help="DeepDream a photo (octaves, optional zoom loop and GIF)",
                       parents=[out_option(), set_option(), quiet_option()])
    p.add_argument("config", help="e.g. configs/dream-efficientnet-lite0.yaml")
    p.add_argument("--image", required=True, metavar="PATH", help="the photo (any size and mode)")
    p.add_argument("--layers", nargs="+", metavar="NAME[:W]", help="layers to amplify (overrides dream.layers)")
    p.add_argument("--octaves", type=int, metavar="N", help="overrides dream.octaves")
    p.add_argument("--steps", type=int, metavar="N", help="steps per octave (overrides dream.steps)")
    p.add_argument("--zoom-frames", type=int, metavar="N", help="zoom loop: N more frames (overrides dream.zoom_frames)")
    p.add_argument("--gif", action="store_true", help="also write the zoom frames as an animated GIF")
    p.add_argument("--seed", type=int, help="random seed (overrides the config)")
    p.set_defaults(func=cmd_dream)

