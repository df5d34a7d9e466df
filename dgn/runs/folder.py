"""A run folder: which config's run it holds (identity), whether a target's image in it is finished
and can be reused, its manifest, and atomic writes (a temporary name renamed into place).
"""


import errno
import hashlib
import json
import os
import re
import socket
import time

from dgn import build
from dgn.config import config_identity
from dgn.errors import DgnError
from dgn.runs import outputs
from dgn.runs.outputs import check_out_dir, json_bytes, jsonable, read_json
from dgn.runs.records import input_files


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


def describe_difference(theirs, data):
    """What differs between a folder's config ``theirs`` and this run's config ``data``, in a few words:
    ``differing in steps (there 30, here 300)``, and, when the two are of the same config file, that its
    --steps / --seed / --set values made the difference and how to resume that run instead."""
    theirs_id, mine = run_identity(theirs), run_identity(jsonable_config(data))
    diff = differences(theirs_id, mine)
    if not diff:
        return "differing in its config"

    def value(tree, key):
        for part in key.split("."):
            tree = tree.get(part) if isinstance(tree, dict) else None
        return json.dumps(tree, default=str)

    shown = ", ".join(f"{key} (there {value(theirs_id, key)}, here {value(mine, key)})" for key in diff[:3])
    text = f"differing in {shown}" + (f" and {len(diff) - 3} more" if len(diff) > 3 else "")
    if theirs.get("name") is not None and theirs.get("name") == data.get("name"):
        text += ": the same config with other --steps, --seed or --set values; rerun with those to add to that run"
    return text


def jsonable_config(value):
    """A config dict as it reads back from a sidecar (JSON round trip)."""
    return json.loads(json.dumps(value, default=str))


def finished(run_dir, stem, target, identity, files, size=None):
    """The sidecar of ``<stem>.png`` / ``<stem>.json`` in ``run_dir`` if that image is finished and
    reusable, else None: the sidecar names the PNG, its target equals ``target`` (a described
    objective), its config has this ``identity`` (:func:`run_identity`), its weight files have these
    digests (``files``, :func:`dgn.runs.records.input_files`: retrained weights make images again), and the
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
    try:
        with open(os.path.join(out_dir, RUN_FILE), encoding="utf-8") as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return
    theirs = info.get("config") if isinstance(info, dict) else None
    mine = run_identity(jsonable_config(data))
    if force or not isinstance(theirs, dict) or run_identity(theirs) == mine:
        return
    raise DgnError(f"{out_dir} holds a generate-all run ({theirs.get('name') or '?'}) whose images another config "
                   f"makes ({describe_difference(theirs, data)}); give another --out, or --force to write these "
                   f"images there anyway")


MANIFEST = "manifest.jsonl"
TMP_PREFIX = ".tmp-"
RESERVED = {MANIFEST, RUN_FILE, "report.json", "judge.json"}
DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


# --- which run a folder holds ----------------------------------------------------------------------

# Sections that do not change a generate-all image (it always runs parameterization kind "generator").
def fingerprint(data):
    text = json.dumps(run_identity(data), sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def sidecar_paths(run_dir):
    if not os.path.isdir(run_dir):
        return []
    return sorted(os.path.join(run_dir, n) for n in os.listdir(run_dir)
                  if n.endswith(".json") and n not in RESERVED and not n.startswith("."))


def check_run_dir(run_dir, data, force=False):
    """Refuses a folder holding another config's run (unless ``force``: then its files move to
    ``RUN_DIR/replaced-<fingerprint>/``); writes ``run.json`` for this config."""
    mine = run_identity(data)
    theirs, where = None, None
    info = read_json(os.path.join(run_dir, RUN_FILE)) if os.path.isdir(run_dir) else None
    if info is not None and run_identity(info.get("config", {})) != mine:
        theirs, where = info.get("config", {}), RUN_FILE
    if theirs is None:
        for path in sidecar_paths(run_dir):
            side = read_json(path)
            if isinstance(side, dict) and isinstance(side.get("config"), dict) and "image" in side \
                    and run_identity(side["config"]) != mine:
                theirs, where = side["config"], os.path.basename(path)
                break
    if theirs is not None:
        if not force:
            raise DgnError(f"{run_dir} holds another config's run ({where}: {theirs.get('name') or '?'}, "
                           f"{describe_difference(theirs, data)}); give another --out, or --force to move its files "
                           f"aside and start this config's run there")
        _move_aside(run_dir, mine)
    payload = {"name": data["name"], "fingerprint": fingerprint(data), "config": data}
    if info is None or theirs is not None or info.get("fingerprint") != payload["fingerprint"]:
        write_atomic(os.path.join(run_dir, RUN_FILE), json_bytes(payload))


def _move_aside(run_dir, mine):
    moved = 0
    target = None
    for path in sidecar_paths(run_dir) + [os.path.join(run_dir, RUN_FILE)]:
        side = read_json(path)
        if not isinstance(side, dict) or not isinstance(side.get("config"), dict):
            continue
        if run_identity(side["config"]) == mine:
            continue
        if target is None:
            target = os.path.join(run_dir, f"replaced-{fingerprint(side['config'])}")
            os.makedirs(target, exist_ok=True)
        names = [os.path.basename(path)]
        if side.get("image"):
            names.append(side["image"])
        for name in names:
            src = os.path.join(run_dir, name)
            if os.path.exists(src):
                os.replace(src, os.path.join(target, name))
                moved += 1
    manifest = os.path.join(run_dir, MANIFEST)
    if target and os.path.exists(manifest):
        os.replace(manifest, os.path.join(target, MANIFEST))
    if target:
        print(f"--force: moved {moved} files of the other run into {target}", flush=True)


# --- crash-safe files -------------------------------------------------------------------------------

def _tmp_prefix():
    return f"{TMP_PREFIX}{socket.gethostname()}-{os.getpid()}-"


def write_atomic(path, data):
    """dgn.runs.outputs.write_atomic with a temporary name that tells which host and process wrote it."""
    outputs.write_atomic(path, data, prefix=_tmp_prefix())


def clean_stale_tmp(run_dir):
    """Removes temporary files whose writer is dead (this host) or that are over an hour old."""
    if not os.path.isdir(run_dir):
        return 0
    host = socket.gethostname()
    removed = 0
    for folder in (run_dir, os.path.join(run_dir, "sheets")):
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if not name.startswith(TMP_PREFIX):
                continue
            path = os.path.join(folder, name)
            stale = False
            match = re.match(re.escape(TMP_PREFIX + host) + r"-(\d+)-", name)
            if match:
                stale = not _alive(int(match.group(1)))
            try:
                stale = stale or time.time() - os.path.getmtime(path) > 3600
                if stale:
                    os.unlink(path)
                    removed += 1
            except OSError:
                pass
    return removed


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def append_line(path, obj):
    """One manifest line in one write (O_APPEND: lines of concurrent shards do not interleave)."""
    line = (json.dumps(obj, default=jsonable) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def unit_key(unit):
    """The manifest's key of a unit: the class index, or ``channel:LAYER:C``."""
    return f"channel:{unit[1]}:{unit[2]}" if isinstance(unit, tuple) else int(unit)


def manifest_entry(unit, stem, side, extra=None):
    target = side["target"]
    channel = {"unit": unit_key(unit)} if isinstance(unit, tuple) else {}
    return {"index": None if channel else unit, **channel, "wnid": target.get("wnid"), "name": target.get("name"),
            "image": stem + ".png",
            "sidecar": stem + ".json", "prob": side.get("prob"), "rank": side.get("rank"), **(extra or {})}


def read_manifest(run_dir):
    """(entries by unit key: class index or ``channel:LAYER:C``, whether the file needs rewriting: torn or
    duplicate lines)."""
    path = os.path.join(run_dir, MANIFEST)
    entries, dirty = {}, False
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return entries, False
    if raw and not raw.endswith(b"\n"):
        dirty = True
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
            index = str(entry["unit"]) if entry.get("unit") else int(entry["index"])
        except (ValueError, KeyError, TypeError, AttributeError):
            dirty = True
            continue
        if index in entries:
            dirty = True
        entries[index] = entry
    return entries, dirty


def disk_error(exc, path, kept, left):
    if exc.errno in DISK_FULL:
        return DgnError(f"disk full while writing {path}: stopped; the {kept} finished classes are kept, free some "
                        f"space and rerun the same command to do the other {left}")
    return DgnError(f"cannot write {path}: {exc.strerror or exc}; the {kept} finished classes are kept, "
                    f"fix it and rerun the same command to do the other {left}")


def now_iso():
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def reconcile_manifest(run_dir, done, stems):
    """The manifest lists every finished class once: torn or duplicate lines rewrite it; finished classes
    missing from it (killed between the sidecar and the manifest line) are appended."""
    path = os.path.join(run_dir, MANIFEST)
    entries, dirty = read_manifest(run_dir)
    if dirty:
        lines = b"".join((json.dumps(e, default=jsonable) + "\n").encode("utf-8") for e in entries.values())
        write_atomic(path, lines)
    for c, side in done.items():
        if c not in entries:
            append_line(path, manifest_entry(c, stems[c], side, {"time": now_iso(), "recovered": True}))


# --- the run folder as one object -------------------------------------------------------------------

class RunFolder:
    """A run folder of one config: its identity (:func:`run_identity` of the resolved config ``data``
    and the digests of every file the config names, :func:`dgn.runs.records.input_files`), whether an
    image in it is finished and can be reused, its manifest and atomic writes. Every command that writes
    images (``generate``, ``generate-all``, ``compare``'s method folders, ``dream``) writes through one.

    Raises:
        DgnError: ``path`` names an existing file (:func:`check_out_dir`)."""

    def __init__(self, path, data, files=None):
        check_out_dir(path)
        self.path, self.data = os.fspath(path), data
        self.identity = run_identity(jsonable_config(data))
        self.files = input_files(data) if files is None else files

    def file(self, name):
        return os.path.join(self.path, name)

    def claim(self, force=False):
        """For a resumable run (``generate-all``): refuses a folder of another config's run (or, with
        ``force``, moves its files aside), then records this config in ``run.json``
        (:func:`check_run_dir`). Cleans temporary files of dead writers."""
        os.makedirs(self.path, exist_ok=True)
        check_run_dir(self.path, jsonable_config(self.data), force)
        clean_stale_tmp(self.path)

    def refuse_foreign(self, force=False):
        """For a one-off run (``generate``): refuses a folder holding another config's ``generate-all`` run
        unless ``force`` (:func:`refuse_foreign_run`)."""
        refuse_foreign_run(self.path, self.data, force)

    def finished(self, stem, objective, size=None):
        """The sidecar of ``<stem>.png`` if it is a finished image of ``objective`` (an Objective) by this
        config with these very input files, else None (:func:`finished`)."""
        return finished(self.path, stem, objective.describe(), self.identity, self.files, size=size)

    def write_image(self, stem, rgb, sidecar, maps=None, k=0):
        """Writes ``<stem>.png``, row ``k`` of each of the parameterization's ``maps``
        (:func:`dgn.runs.outputs.write_maps`, e.g. MACO's transparency; recorded in ``sidecar``), then the
        sidecar ``<stem>.json`` (the sidecar last: an image is finished when all are there), atomically;
        returns the PNG's path."""
        png = self.file(stem + ".png")
        write_atomic(png, outputs.png_bytes(rgb))
        sidecar.update(outputs.write_maps(self.file(stem), maps, k))
        write_atomic(self.file(stem + ".json"), json_bytes(dict(sidecar, image=stem + ".png")))
        return png

    def record(self, unit, stem, sidecar, extra=None):
        """Appends one manifest line for a finished unit (class index or ("channel", layer, c))."""
        append_line(self.file(MANIFEST), manifest_entry(unit, stem, sidecar, extra))

    def reconcile(self, done, stems):
        """:func:`reconcile_manifest` for the finished units ``done`` ({unit: sidecar})."""
        reconcile_manifest(self.path, done, stems)
