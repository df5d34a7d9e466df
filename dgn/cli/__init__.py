"""The ``dgn`` command line. Every user error ends with one line on stderr and exit code 2.

One module per command group, each with a ``cmd_*`` function and an ``add_*`` function (its arguments)
per command: :mod:`.generate` (generate, generate-all, sheet, report), :mod:`.explain` (explain,
examples), :mod:`.baselines` (compare, dream), :mod:`.inspect` (info, classify), :mod:`.autoencoder`
(train-dae, export-dae, eval-dae, code-stats); :mod:`.common` holds what they share. :data:`COMMANDS`
is the order ``dgn --help`` lists them in: the order a user meets them.
"""

import os
import sys

from dgn import __version__
from dgn.cli import autoencoder, baselines, explain, generate, inspect
from dgn.cli.common import BACKEND, Parser
from dgn.errors import DgnError
from dgn.runs.outputs import check_out_dir


COMMANDS = (generate.add_generate, generate.add_generate_all, explain.add_explain, explain.add_examples,
            baselines.add_compare, baselines.add_dream, inspect.add_info, inspect.add_classify, generate.add_sheet,
            generate.add_report, autoencoder.add_train_dae, autoencoder.add_export_dae, autoencoder.add_eval_dae,
            autoencoder.add_code_stats)


def build_parser():
    """The argument parser of ``dgn`` with every command of :data:`COMMANDS`."""
    parser = Parser(prog="dgn", description="Generate the images a trained classifier prefers "
                                             "(Despraz et al. 2017).")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"dgn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None):
    """Runs one command; returns its exit code (0, 1 for a failed file of several, 2 for a user error,
    130 when interrupted)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    BACKEND["quiet"] = not args.debug
    try:
        if getattr(args, "out", None):   # a folder everywhere: a file there is refused before any work
            check_out_dir(args.out)
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
