"""Run folders: what decides an image (a config's identity) and the one check that a finished image
can be reused, shared by ``dgn generate-all`` and ``dgn compare``."""

import json
import os

from dgn import build
from dgn.config import config_identity

IGNORED_KEYS = (("name",), ("output", "dir"), ("objective", "targets"), ("objective", "channels"), ("dae",),
                ("dream",))
# The sections another parameterization reads, which do not decide this one's images.
UNUSED_BY = {"generator": (("pixel",), ("fourier",)),
             "pixel": (("generator",), ("fourier",), ("regularizers",)),
             "fourier": (("generator",), ("pixel",), ("regularizers",))}


def run_identity(data):
    """The part of a config that decides the images: not its name, output folder or target list, nor
    the sections of other parameterizations than its own (for the generator: exactly as before
    pixel and Fourier images could run here, so earlier runs' images are still reused)."""
    return config_identity(data, IGNORED_KEYS + UNUSED_BY.get(build.kind(data), ()))


def differences(a, b, prefix=""):
    """The dotted keys whose values differ between two config dicts."""
    keys = []
    for key in sorted(set(a) | set(b)):
        full = f"{prefix}{key}"
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            keys.extend(differences(va, vb, full + "."))
        elif va != vb:
            keys.append(full)
    return keys


def jsonable_config(value):
    """A config dict as it reads back from a sidecar (JSON round trip)."""
    return json.loads(json.dumps(value, default=str))


def finished(run_dir, stem, target, identity, files, size=None):
    """The sidecar of ``<stem>.png`` / ``<stem>.json`` in ``run_dir`` if that image is finished and
    reusable, else None: the sidecar names the PNG, its target equals ``target`` (a described
    objective), its config has this ``identity`` (:func:`run_identity`), its weight files have these
    digests (``files``, :func:`dgn.records.input_files`: retrained weights make images again), and the
    PNG decodes completely (at ``size`` x ``size`` pixels where given)."""
    from PIL import Image

    try:
        with open(os.path.join(run_dir, stem + ".json"), encoding="utf-8") as fh:
            side = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(side, dict) or side.get("image") != stem + ".png":
        return None
    if side.get("target") != jsonable_config(target):
        return None
    if not isinstance(side.get("config"), dict) or run_identity(side["config"]) != identity:
        return None
    if side.get("input_files") != files:
        return None
    try:
        with Image.open(os.path.join(run_dir, stem + ".png")) as img:
            if size is not None and img.size != (size, size):
                return None
            img.load()  # decodes every byte: a truncated file fails here
    except Exception:
        return None
    return side


RUN_FILE = "run.json"


def refuse_foreign_run(out_dir, data, force=False):
    """``dgn generate`` into a folder holding another config's ``generate-all`` run (its ``run.json``):
    a one-line error unless ``force``, so the run's images are not overwritten by another method's.

    Raises:
        DgnError: the folder's run is of a config that makes other images."""
    from dgn.errors import DgnError

    try:
        with open(os.path.join(out_dir, RUN_FILE), encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return
    theirs = info.get("config") if isinstance(info, dict) else None
    mine = run_identity(jsonable_config(data))
    if force or not isinstance(theirs, dict) or run_identity(theirs) == mine:
        return
    diff = differences(run_identity(theirs), mine)
    shown = ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
    raise DgnError(f"{out_dir} holds a generate-all run ({theirs.get('name') or '?'}) whose images another config "
                   f"makes (differing in {shown}); give another --out, or --force to write these images there anyway")
