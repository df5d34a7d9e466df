"""What the ``dgn`` commands share: the parser class with dgn's error style, the options every command
declares the same way (argparse parents), ``--set`` / ``--steps`` / ``--seed`` as config overrides, and
:func:`library`, through which a command reaches the library once its arguments and config are read.
Imported by :mod:`dgn.cli` and the modules that add commands to it (no import cycle)."""

import argparse
import importlib
import os
import signal
import sys
import threading

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


# Whether the backend's C++ start-up chatter is silenced when it loads (dgn --debug: it is not).
BACKEND = {"quiet": True, "started": False}


def _start_backend():
    """Imports the backend with its C++ start-up chatter (CUDA probing on CPU machines) silenced."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            keras = importlib.import_module("keras")
            if keras.backend.backend() == "tensorflow":
                importlib.import_module("tensorflow").config.list_logical_devices()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def library(module):
    """The library module ``module`` (e.g. ``"dgn.optvis.render"``) for a command to call, imported on
    first use with Keras and the backend (seconds; quietly unless ``--debug``). The command line itself
    (:mod:`dgn.cli` and its command modules) imports only the config loader, so a bad argument or
    config is reported before any of that loads."""
    with HeldInterrupt():
        if not BACKEND["started"]:
            BACKEND["started"] = True
            if BACKEND["quiet"]:
                _start_backend()
        return importlib.import_module(module)


class HeldInterrupt:
    """Holds a Ctrl-C (SIGINT) that arrives inside the block and raises KeyboardInterrupt when it ends.
    Raised during the Keras / backend import, it can land in a garbage-collector callback (JAX's, which
    TensorFlow imports), where Python prints it, ignores it, and the command went on to the end."""

    def __enter__(self):
        self.caught, self.previous = [], None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, lambda signum, frame: self.caught.append(signum))
        return self

    def __exit__(self, kind, value, traceback):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if self.caught and kind is None:
            raise KeyboardInterrupt
        return False


UNREADABLE_EXIT = 2   # a command that read a folder and skipped unreadable photos (the others are done)
UNREADABLE_LISTED = 10


def report_unreadable(errors, total, listed_in=None):
    """The one rule for unreadable photos, in every command that reads photos (classify, explain, compare,
    examples): each is skipped and the others are processed; the first 10 are named on stderr, one line each
    (``dgn: error: cannot read image PATH: reason``), then one line with the count; the command then exits
    with :data:`UNREADABLE_EXIT` (2). ``errors``: one line per unreadable photo; ``total``: photos given.
    Returns the exit code: 0 without errors."""
    for line in list(errors)[:UNREADABLE_LISTED]:
        print(f"dgn: error: {line}", file=sys.stderr)
    if not errors:
        return 0
    more = len(errors) - UNREADABLE_LISTED
    print(f"dgn: warning: {len(errors)} of {total} photos could not be read and were skipped"
          + (f" ({more} not named above)" if more > 0 else "")
          + (f"; all listed in {listed_in}" if listed_in else ""), file=sys.stderr)
    return UNREADABLE_EXIT
