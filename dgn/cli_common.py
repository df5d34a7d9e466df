"""What the ``dgn`` commands share: the parser class with dgn's error style, the options every command
declares the same way (argparse parents), and ``--set`` / ``--steps`` / ``--seed`` as config overrides.
Imported by :mod:`dgn.cli` and the modules that add commands to it (no import cycle)."""

import argparse
import sys

SET_HELP = "override a config value, e.g. steps=100 or generator.noise=none; repeatable"
SET_HELP_CLASSIFIER = "override a config value (dotted keys as in the YAML), e.g. classifier.weights=none; repeatable"
SET_HELP_DAE = "override a config value (dotted keys as in the YAML), e.g. dae.batch_size=8; repeatable"


class Parser(argparse.ArgumentParser):
    """argparse with the rest of dgn's error style: one line (naming where the usage is), exit 2."""

    def error(self, message):
        print(f"dgn: error: {message} (usage: {self.prog} -h)", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text):
    """argparse type: a whole number of at least 1 (epochs, photos), else dgn's one-line error."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1")
    return value


def _parent():
    return argparse.ArgumentParser(add_help=False)


def set_option(help=SET_HELP):
    """``--set KEY=VALUE`` (repeatable)."""
    p = _parent()
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help=help)
    return p


def run_options(steps="optimization steps (overrides the config)"):
    """``--steps N`` and ``--seed N``."""
    p = _parent()
    p.add_argument("--steps", type=int, help=steps)
    p.add_argument("--seed", type=int, help="random seed (overrides the config)")
    return p


def out_option(help="output folder (default runs/<config name>/)"):
    """``--out DIR``."""
    p = _parent()
    p.add_argument("--out", metavar="DIR", help=help)
    return p


def quiet_option(help="no progress output"):
    """``--quiet``."""
    p = _parent()
    p.add_argument("--quiet", action="store_true", help=help)
    return p


def config_overrides(args):
    """``--set`` assignments plus the ``--steps`` / ``--seed`` shortcuts of a command."""
    overrides = list(getattr(args, "set", None) or [])
    if getattr(args, "steps", None) is not None:
        overrides.append(f"steps={args.steps}")
    if getattr(args, "seed", None) is not None:
        overrides.append(f"seed={args.seed}")
    return overrides
