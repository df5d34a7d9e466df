"""``dgn generate-all``, ``dgn sheet`` and ``dgn report`` (registered by dgn.cli's build_parser)."""

from dgn.cli import SET_HELP


def cmd_generate_all(args):
    from dgn.batch import generate_all, parse_shard
    from dgn.config import load_config

    shard = parse_shard(args.shard)  # a malformed --shard fails before the config and the model load
    from dgn.cli import config_overrides

    cfg = load_config(args.config, config_overrides(args))
    summary = generate_all(cfg, classes=args.classes, batch=args.batch, shard=shard, out_dir=args.out,
                           force=args.force, progress=not args.quiet, judge=args.judge, stack=args.stack)
    print(f"{summary['run_dir']}: {summary['generated']} classes generated, {summary['skipped']} already there"
          + (f"; {summary['line']}" if args.quiet and summary.get("line") else ""))
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
    p = sub.add_parser("generate-all", help="one image per class, B classes per step; resumable, shardable")
    p.add_argument("config", help="YAML experiment config, e.g. configs/paper-pretrained-vgg16.yaml")
    p.add_argument("--classes", default="all", metavar="SPEC",
                   help="all (default), a range 0:100 (100 excluded), or a comma list of indices, wnids or names")
    p.add_argument("--batch", type=int, default=None, metavar="B",
                   help="classes optimized together in one step (default with a GPU: 64 pretrained, "
                        "8 untrained; 1 on CPU); a class's image does not depend on it")
    p.add_argument("--shard", metavar="I/N",
                   help="do shard I of N (I from 0): N processes with the same --classes cover every class once")
    p.add_argument("--out", metavar="DIR", help="run folder (default runs/<config name>/)")
    p.add_argument("--steps", type=int, help="optimization steps (overrides the config)")
    p.add_argument("--seed", type=int, help="random seed (overrides the config)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=SET_HELP)
    p.add_argument("--force", action="store_true",
                   help="if --out holds another config's run, move its files aside and start this one")
    p.add_argument("--stack", default="copies", metavar="copies|vmap",  # checked by batched_generator.check_stack
                   help="untrained configuration: run the B generators as B copies in one step (default) or "
                        "as one G vectorized over stacked weights (vmap; JAX only, same images)")
    p.add_argument("--judge", metavar="MODEL",
                   help="the final report also counts top-1/top-5 under this independent classifier, e.g. "
                        "efficientnet_lite2 (as dgn report --judge)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_generate_all)

    p = sub.add_parser("sheet", help="contact sheets of a run: 100 classes each, labelled")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR", help="where the sheets go (default RUN_DIR/sheets)")
    p.set_defaults(func=cmd_sheet)

    p = sub.add_parser("report", help="top-1/top-5 under D, mean probability, worst classes; report.json "
                                      "and the gallery index.html")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--worst", type=int, default=10, metavar="N", help="how many worst classes to list (default 10)")
    p.add_argument("--judge", metavar="MODEL",
                   help="also count top-1/top-5 under an independent classifier that took no part in making the "
                        "images, e.g. efficientnet_lite2 (a built-in name, .keras file or YAML config); its view "
                        "of each image is kept in RUN_DIR/judge.json and shown in the gallery")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_report)
