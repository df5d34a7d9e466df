"""``dgn generate``, ``dgn generate-all`` (one image per class or channel, B per step), and the run
folder's ``dgn sheet`` and ``dgn report``."""

from dgn.cli.common import config_overrides, library, out_option, quiet_option, run_options, set_option
from dgn.config import load_config
from dgn.runs.shards import parse_shard


def cmd_generate(args):
    cfg = load_config(args.config, config_overrides(args))
    describe_result = library("dgn.optvis.render").describe_result
    generate = library("dgn.optvis.render").generate
    results = generate(cfg, targets=args.target, out_dir=args.out, progress=not args.quiet, force=args.force)
    for path, sidecar in results:
        print(describe_result(path, sidecar))
    return 0


def cmd_generate_all(args):
    shard = parse_shard(args.shard)  # a malformed --shard fails before the config and the model load
    cfg = load_config(args.config, config_overrides(args))
    generate_all = library("dgn.optvis.generate_all").generate_all
    summary = generate_all(cfg, classes=args.classes, batch=args.batch, shard=shard, out_dir=args.out,
                           force=args.force, progress=not args.quiet, judge=args.judge, stack=args.stack,
                           channels=args.channels)
    noun = summary.get("noun", "classes")
    print(f"{summary['run_dir']}: {summary['generated']} {noun} generated, {summary['skipped']} already there"
          + (f"; {summary['line']}" if args.quiet and summary.get("line") else ""))
    return 0


def cmd_sheet(args):
    contact_sheets = library("dgn.runs.sheets").contact_sheets
    for path in contact_sheets(args.run_dir, out_dir=args.out):
        print(path)
    return 0


def cmd_report(args):
    write_gallery = library("dgn.runs.gallery").write_gallery
    write_report = library("dgn.runs.report").write_report

    report, line = write_report(args.run_dir, worst=args.worst, judge=args.judge, progress=not args.quiet)
    write_gallery(args.run_dir, report)
    print(line)
    return 0


def add_generate(sub):
    p = sub.add_parser("generate", help="one image per target, with a JSON sidecar",
                       parents=[run_options(), out_option(), set_option(), quiet_option()])
    p.add_argument("config", help="YAML experiment config, e.g. configs/quickstart.yaml")
    p.add_argument("--target", action="append", metavar="T",
                   help="class (index, wnid or name), 'a+b', channel:LAYER:C or neuron:LAYER:C:Y:X; repeatable")
    p.add_argument("--force", action="store_true",
                   help="if --out holds another config's generate-all run, write there anyway")
    p.set_defaults(func=cmd_generate)


def add_generate_all(sub):
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
    p.add_argument("--stack", default="copies", metavar="copies|vmap",  # checked by dgn.optvis.generator.check_stack
                   help="untrained configuration: run the B generators as B copies in one step (default) or "
                        "as one G vectorized over stacked weights (vmap; JAX only, same images)")
    p.add_argument("--judge", metavar="MODEL",
                   help="the final report also counts top-1/top-5 under this independent classifier, e.g. "
                        "efficientnet_lite2 (as dgn report --judge)")
    p.set_defaults(func=cmd_generate_all)


def add_sheet(sub):
    p = sub.add_parser("sheet", help="contact sheets of a run: 100 classes each, labelled")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--out", metavar="DIR", help="where the sheets go (default RUN_DIR/sheets)")
    p.set_defaults(func=cmd_sheet)


def add_report(sub):
    p = sub.add_parser("report", help="top-1/top-5 under D, mean probability, worst classes; report.json "
                                      "and the gallery index.html", parents=[quiet_option()])
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--worst", type=int, default=10, metavar="N", help="how many worst classes to list (default 10)")
    p.add_argument("--judge", metavar="MODEL",
                   help="also count top-1/top-5 under an independent classifier that took no part in making the "
                        "images, e.g. efficientnet_lite2 (a built-in name, .keras file or YAML config); its view "
                        "of each image is kept in RUN_DIR/judge.json and shown in the gallery")
    p.set_defaults(func=cmd_report)

