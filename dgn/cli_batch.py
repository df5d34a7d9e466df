"""``dgn generate-all``, ``dgn sheet`` and ``dgn report`` (registered by dgn.cli's build_parser)."""

from dgn.cli_common import SET_HELP_CLASSIFIER, config_overrides, out_option, quiet_option, run_options, set_option


def cmd_generate_all(args):
    from dgn.batch import generate_all, parse_shard
    from dgn.config import load_config

    shard = parse_shard(args.shard)  # a malformed --shard fails before the config and the model load

    cfg = load_config(args.config, config_overrides(args))
    summary = generate_all(cfg, classes=args.classes, batch=args.batch, shard=shard, out_dir=args.out,
                           force=args.force, progress=not args.quiet, judge=args.judge, stack=args.stack,
                           channels=args.channels)
    noun = summary.get("noun", "classes")
    print(f"{summary['run_dir']}: {summary['generated']} {noun} generated, {summary['skipped']} already there"
          + (f"; {summary['line']}" if args.quiet and summary.get("line") else ""))
    return 0


def cmd_examples(args):
    from dgn import build
    from dgn.batch import select_units
    from dgn.config import load_config
    from dgn.errors import DgnError
    from dgn.examples import write_examples
    from dgn.generate import default_out_dir

    if not args.channels and args.classes is None:
        raise DgnError("give --channels LAYER[:RANGE] or --classes SPEC: the units whose examples to find")
    if args.top < 1 or args.batch < 1:
        raise DgnError(f"--top {args.top} / --batch {args.batch}: give at least 1")
    cfg = load_config(args.config, config_overrides(args))
    classifier = build.classifier(cfg.data)
    units = select_units(classifier, args.classes, args.channels)
    units = [("class", u) if not isinstance(u, tuple) else u for u in units]
    run_dir = args.out or default_out_dir(cfg.data)
    if args.maps:
        from dgn.attribution import method_name
        args.maps = method_name(args.maps)   # a bad name fails before the pass
    summary = write_examples(run_dir, classifier, args.data, units, top=args.top, fit=args.fit, batch=args.batch,
                             progress=not args.quiet, maps=args.maps)
    import os
    if any(os.path.isfile(os.path.join(run_dir, stem + ".png")) for stem in summary["stems"]):
        from dgn.gallery import write_gallery   # the run's images: sheets and gallery show their examples
        from dgn.sheets import contact_sheets
        contact_sheets(run_dir)
        write_gallery(run_dir)
    rate = f", {summary['photos_per_second']} photos/s" if summary["photos_per_second"] else " (all cached)"
    print(f"{run_dir}/examples: top {args.top} of {summary['photos']} photos for {summary['units']} units; "
          f"{summary['read']} photos read{rate}"
          + (f"; {summary['unreadable']} unreadable photos skipped (listed in {run_dir}/examples/unreadable.json; "
             f"e.g. {summary['unreadable_first'][0]}: {summary['unreadable_first'][1]})" if summary["unreadable"] else ""))
    return 0


def cmd_sheet(args):
    from dgn.sheets import contact_sheets

    for path in contact_sheets(args.run_dir, out_dir=args.out):
        print(path)
    return 0


def cmd_report(args):
    from dgn.gallery import write_gallery
    from dgn.report import write_report

    report, line = write_report(args.run_dir, worst=args.worst, judge=args.judge, progress=not args.quiet)
    write_gallery(args.run_dir, report)
    print(line)
    return 0


def add_commands(sub):
    p = sub.add_parser("generate-all", help="one image per class, B classes per step; resumable, shardable",
                       parents=[run_options(), out_option("run folder (default runs/<config name>/)"), set_option(),
                                quiet_option()])
    p.add_argument("config", help="YAML experiment config, e.g. configs/paper-pretrained-vgg16.yaml")
    p.add_argument("--classes", default=None, metavar="SPEC",
                   help="all (default), a range 0:100 (100 excluded), or a comma list of indices, wnids or names")
    p.add_argument("--channels", action="append", metavar="LAYER[:RANGE]",
                   help="a layer atlas instead of classes: every channel of LAYER, or LAYER:A:B (A..B-1), LAYER:C, "
                        "LAYER:1,5,9; repeatable (dgn info lists layers)")
    p.add_argument("--batch", type=int, default=None, metavar="B",
                   help="classes optimized together in one step (default with a GPU: 64 pretrained, "
                        "8 untrained; 1 on CPU); a class's image is the one it gets alone up to float rounding: D's "
                        "matrix products over another batch size round differently, and with the default "
                        "log-probability objective (every logit in the gradient) Adam can grow that into visible "
                        "differences within a few steps; with objective.activation: logit they are equal")
    p.add_argument("--shard", metavar="I/N",
                   help="do shard I of N (I from 0): N processes with the same --classes cover every class once; "
                        "auto: I and N from a SLURM job array or a Kubernetes Indexed Job (JOB_COMPLETION_INDEX "
                        "and DGN_SHARD_COUNT); the last shard to end writes the sheets, report and gallery")
    p.add_argument("--force", action="store_true",
                   help="if --out holds another config's run, move its files aside and start this one")
    p.add_argument("--stack", default="copies", metavar="copies|vmap",  # checked by batched_generator.check_stack
                   help="untrained configuration: run the B generators as B copies in one step (default) or "
                        "as one G vectorized over stacked weights (vmap; JAX only, same images)")
    p.add_argument("--judge", metavar="MODEL",
                   help="the final report also counts top-1/top-5 under this independent classifier, e.g. "
                        "efficientnet_lite2 (as dgn report --judge)")
    p.set_defaults(func=cmd_generate_all)

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

    p = sub.add_parser("sheet", help="contact sheets of a run: 100 classes each, labelled")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR", help="where the sheets go (default RUN_DIR/sheets)")
    p.set_defaults(func=cmd_sheet)

    p = sub.add_parser("report", help="top-1/top-5 under D, mean probability, worst classes; report.json "
                                      "and the gallery index.html", parents=[quiet_option()])
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--worst", type=int, default=10, metavar="N", help="how many worst classes to list (default 10)")
    p.add_argument("--judge", metavar="MODEL",
                   help="also count top-1/top-5 under an independent classifier that took no part in making the "
                        "images, e.g. efficientnet_lite2 (a built-in name, .keras file or YAML config); its view "
                        "of each image is kept in RUN_DIR/judge.json and shown in the gallery")
    p.set_defaults(func=cmd_report)
