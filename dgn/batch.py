"""``dgn generate-all``: one image per class, B classes per optimization step, resumable and shardable.

Layout of RUN_DIR (the same as ``dgn generate``'s, so sheets, gallery and report read both):
``<stem>.png`` and ``<stem>.json`` per class (stem ``0207_golden_retriever``), ``run.json`` (the
config the run belongs to), ``manifest.jsonl`` (one line per finished class), ``sheets/``,
``report.json`` and ``index.html``.

Crash safety: every file goes to a temporary name and is renamed into place; a class is finished
when its PNG and its sidecar (written last) are present and valid. A kill at any moment loses at
most the batch in flight; the rerun skips finished classes, removes temporary files left by dead
processes and completes the manifest.
"""

import errno
import hashlib
import json
import os
import re
import socket
import time

import keras
import numpy as np

from dgn import imagenet
from dgn.errors import DgnError
from dgn import build
from dgn.generate import default_out_dir, run_info
from dgn.objectives import BatchChannelObjective, BatchClassObjective, ChannelObjective, ClassObjective
from dgn.records import image_record, input_files
from dgn.runs import RUN_FILE, differences, finished, run_identity
from dgn import outputs
from dgn.outputs import json_bytes, jsonable, png_bytes, read_json
from dgn.progress import Progress

MANIFEST = "manifest.jsonl"
TMP_PREFIX = ".tmp-"
RESERVED = {MANIFEST, RUN_FILE, "report.json", "judge.json"}
DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


# --- input -----------------------------------------------------------------------------------------

def parse_classes(spec, names, num_classes):
    """``all``, ranges ``a:b`` (b excluded), or comma lists of indices, wnids or names -> sorted indices."""
    text = str(spec if spec is not None else "all").strip()
    if text.lower() == "all":
        return list(range(num_classes))
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise DgnError(f"--classes {text!r}: empty item; give e.g. all, 0:100, 1,2,3 or n01440764,goldfish")
        match = re.fullmatch(r"(\d*)\s*:\s*(\d*)", part)
        if match:
            start = int(match.group(1)) if match.group(1) else 0
            stop = int(match.group(2)) if match.group(2) else num_classes
            if not 0 <= start < stop <= num_classes:
                raise DgnError(f"--classes range {part!r} is empty or out of range; the classifier has classes "
                               f"0..{num_classes - 1} (a range a:b includes a, excludes b)")
            out.update(range(start, stop))
        else:
            out.add(imagenet.resolve_class(part, names, num_classes))
    return sorted(out)


SHARD_ENV = (("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),      # a SLURM job array (--array=0-N)
             ("JOB_COMPLETION_INDEX", "DGN_SHARD_COUNT"),            # a Kubernetes Indexed Job (count passed in)
             ("DGN_SHARD_INDEX", "DGN_SHARD_COUNT"))                 # anything else


def auto_shard(env=None):
    """(I, N) from a job-array scheduler's environment: SLURM's ``SLURM_ARRAY_TASK_ID`` (less
    ``SLURM_ARRAY_TASK_MIN`` when the array does not start at 0) and ``SLURM_ARRAY_TASK_COUNT``; a
    Kubernetes Indexed Job's ``JOB_COMPLETION_INDEX`` with its completions count passed in as
    ``DGN_SHARD_COUNT``; or ``DGN_SHARD_INDEX`` / ``DGN_SHARD_COUNT``.

    Raises:
        DgnError: none of them set, or not numbers (one line naming them)."""
    env = os.environ if env is None else env
    for index_key, count_key in SHARD_ENV:
        if env.get(index_key, "").strip() and not env.get(count_key, "").strip():
            raise DgnError(f"--shard auto: {index_key} is set but not {count_key}, the number of shards; set it "
                           f"(for a Kubernetes Indexed Job: to its completions)")
        if env.get(index_key, "").strip() and env.get(count_key, "").strip():
            try:
                index, count = int(env[index_key]), int(env[count_key])
                if index_key == "SLURM_ARRAY_TASK_ID":
                    index -= int(env.get("SLURM_ARRAY_TASK_MIN", "0") or 0)
            except ValueError:
                raise DgnError(f"--shard auto: {index_key}={env[index_key]!r} and {count_key}={env[count_key]!r} "
                               f"must be integers") from None
            if count < 1 or not 0 <= index < count:
                raise DgnError(f"--shard auto: {index_key}={env[index_key]} and {count_key}={env[count_key]} give shard "
                               f"{index} of {count}; the index must be 0..{count - 1}")
            return index, count
    raise DgnError("--shard auto: no shard in the environment; set SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT "
                   "(a SLURM array), JOB_COMPLETION_INDEX and DGN_SHARD_COUNT (a Kubernetes Indexed Job), or "
                   "DGN_SHARD_INDEX and DGN_SHARD_COUNT; or give --shard I/N")


def parse_shard(text):
    """``I/N`` (I counts from 0) -> (I, N); ``auto``: :func:`auto_shard`."""
    if text is None:
        return None
    if str(text).strip().lower() == "auto":
        return auto_shard()
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not match:
        raise DgnError(f"--shard {text!r}: expected I/N with 0 <= I < N, e.g. --shard 0/4 ... --shard 3/4")
    index, count = int(match.group(1)), int(match.group(2))
    if count < 1 or not 0 <= index < count:
        raise DgnError(f"--shard {text!r}: I counts from 0, so I must be 0..{max(count - 1, 0)} "
                       f"(and N >= 1), e.g. --shard 0/{max(count, 1)}")
    return index, count


def shard_of(classes, shard):
    """Shard I of N: every N-th class of the sorted selection, starting at the I-th. The N shards of one
    selection are disjoint and cover it; every process must get the same --classes."""
    if shard is None:
        return list(classes)
    index, count = shard
    return list(classes)[index::count]


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
        diff = differences(run_identity(theirs), mine)
        shown = ", ".join(diff[:4]) + (f" and {len(diff) - 4} more" if len(diff) > 4 else "")
        if not force:
            raise DgnError(f"{run_dir} holds another config's run ({where}: {theirs.get('name') or '?'}, differing "
                           f"in {shown or 'its config'}); give another --out, or --force to move its files aside "
                           f"and start this config's run there")
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
    """dgn.outputs.write_atomic with a temporary name that tells which host and process wrote it."""
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


def _append_line(path, obj):
    """One manifest line in one write (O_APPEND: lines of concurrent shards do not interleave)."""
    line = (json.dumps(obj, default=jsonable) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


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


def _disk_error(exc, path, kept, left):
    if exc.errno in DISK_FULL:
        return DgnError(f"disk full while writing {path}: stopped; the {kept} finished classes are kept, free some "
                        f"space and rerun the same command to do the other {left}")
    return DgnError(f"cannot write {path}: {exc.strerror or exc}; the {kept} finished classes are kept, "
                    f"fix it and rerun the same command to do the other {left}")


# --- finished classes -------------------------------------------------------------------------------

def class_stem(index, names):
    return ClassObjective([(index, 1.0)], names=names).stem(str(index))


def unit_objective(unit, names):
    """A unit of a run (a class index, or ("channel", layer, c)) as the objective ``dgn generate`` uses
    for it (its stem, its described target)."""
    if isinstance(unit, tuple):
        return ChannelObjective(unit[1], unit[2])
    return ClassObjective([(unit, 1.0)], names=names)


def unit_key(unit):
    """The manifest's key of a unit: the class index, or ``channel:LAYER:C``."""
    return f"channel:{unit[1]}:{unit[2]}" if isinstance(unit, tuple) else int(unit)


def unit_spec(unit):
    """The target string of a unit (what ``dgn generate --target`` takes)."""
    return f"channel:{unit[1]}:{unit[2]}" if isinstance(unit, tuple) else unit


def finished_sidecar(run_dir, unit, stem, identity, size, files, names=None):
    """The sidecar of a finished unit (class or channel) in ``run_dir`` (see :func:`dgn.runs.finished`),
    else None."""
    return finished(run_dir, stem, unit_objective(unit, names).describe(), identity, files, size=size)


def manifest_entry(unit, stem, side, extra=None):
    target = side["target"]
    channel = {"unit": unit_key(unit)} if isinstance(unit, tuple) else {}
    return {"index": None if channel else unit, **channel, "wnid": target.get("wnid"), "name": target.get("name"),
            "image": stem + ".png",
            "sidecar": stem + ".json", "prob": side.get("prob"), "rank": side.get("rank"), **(extra or {})}


# --- the batched optimization -----------------------------------------------------------------------

class BatchRunner:
    """Optimizes batches of classes with the config's parameterization.

    The generator G: one batched generator, objective and compiled step per batch size; each new batch
    resets G's weights and random generators, restarts the optimizer and retargets the objective's
    mask, then runs the step already compiled (compiling it again for every batch took longer than a
    batch's 1,200 steps on a GPU). Pixels and Fourier images: built afresh for every batch, one row per
    class (their variables are the image itself)."""

    def __init__(self, cfg, classifier, stack="copies"):
        data = cfg.data
        self.classifier, self.stack = classifier, stack
        self.parameterization, self.transforms = build.parameterization(data), build.transforms(data)
        self.optimizer = build.optimizer(data["optimizer"], classifier.input_shape[:2])
        self.steps, self.snapshots, self.seed = data["steps"], build.snapshots(data), data["seed"]
        self.activation, self.others = data["objective"]["activation"], data["objective"]["others"]
        self._compiled = {}  # rows -> (batched generator, objective, problem, optimizer, stepper)

    def compiled(self, rows, unit=None):
        """Whether a step for batches of ``rows`` units (like ``unit``) is already compiled."""
        return ((rows, unit[1]) if isinstance(unit, tuple) else rows) in self._compiled

    def _objective(self, classes):
        return BatchClassObjective(classes, self.activation, self.others, self.classifier.class_names,
                                   num_classes=self.classifier.num_classes)

    def _objective_for(self, units):
        if isinstance(units[0], tuple):
            layer = units[0][1]
            return BatchChannelObjective(layer, [u[2] for u in units], self.classifier.layer_channels(layer))
        return self._objective(units)

    def run(self, classes, progress=False, label=None):
        """(objective, Result, trainable numbers per unit) for one batch of units: class indices, or
        ("channel", layer, c) of one layer."""
        from dgn.generator import count_trainable
        from dgn.optimize import optimize

        if self.parameterization.kind != "generator":
            objective = self._objective_for(classes)
            model, result = self.parameterization.optimize(
                self.classifier, objective, self.steps, transforms=self.transforms, optimizer=self.optimizer,
                seed=self.seed, rows=len(classes), snapshots=self.snapshots, progress=progress, label=label)
            return objective, result, count_trainable(model) // len(classes)
        rows = len(classes)
        key = (rows, classes[0][1]) if isinstance(classes[0], tuple) else rows   # channels: one step per layer
        if key in self._compiled:
            batched, objective, problem, optimizer, stepper = self._compiled[key]
            batched.reset()
            if isinstance(classes[0], tuple):
                objective.set_channels([u[2] for u in classes])
            else:
                objective.set_classes(classes)
            stepper.reload()
        else:
            batched, objective, problem, optimizer, stepper = self._compiled[key] = self._compile(classes)
        result = optimize(problem, optimizer, self.steps, snapshots=self.snapshots, progress=progress,
                          label=label, stepper=stepper)
        return objective, result, batched.trainable_per_class

    def _compile(self, classes):
        from dgn.batched_generator import build_batched_generator
        from dgn.optimize import Problem, make_stepper

        batched = build_batched_generator(self.parameterization, self.transforms, self.classifier, len(classes),
                                          self.seed, self.stack)
        objective = self._objective_for(classes)
        problem = Problem(batched.model, self.classifier.optimizing.features(objective.layers), objective,
                          distribute_rows(batched.f0))
        optimizer = self.optimizer()
        return batched, objective, problem, optimizer, make_stepper(problem, optimizer)


def default_batch(trainable="alpha"):
    """Classes per step when --batch is not given. On CPU 1 (a batch makes each image-step no faster
    there: see scripts/benchmark_batch.py), so the classes still finish one by one. With a GPU/TPU,
    64 for the pretrained configuration (one decoder, B alpha rows: 1,709 image-steps/s at 64 vs
    1,260 at 16 on an H100 in float32, 3,318 at 64 on an H200 in bfloat16) and 8 when every class
    trains its own generator (B generator copies in one compiled step, whose compile time grows with
    B: 353 image-steps/s at 8 vs 166 at 1 on the H100; 375 at 16 in bfloat16 on the H200). Pixel and
    Fourier images (``trainable`` "pixel" / "fourier": no G, each row only its own image) as alpha: 64."""
    if not accelerated():
        return 1
    return 64 if trainable in ("alpha", "pixel", "fourier") else 8


def accelerated():
    """Whether the backend computes on a GPU or TPU."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax
            return jax.devices()[0].platform != "cpu"
        if backend == "tensorflow":
            import tensorflow as tf
            return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))
    except Exception:
        pass
    return False


def setup_distribution():
    """Under JAX with several visible devices: Keras's DataParallel over all of them (weights replicated,
    the batch's rows split), set before any model is built. Returns the device count."""
    if keras.backend.backend() != "jax":
        return 1
    devices = keras.distribution.list_devices()
    if len(devices) < 2:
        return 1
    if keras.distribution.distribution() is None:
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    return len(devices)


def distribute_rows(f0):
    """f0 with its rows spread over the devices of the active distribution (when they divide evenly)."""
    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if distribution is None:
        return f0
    count = len(distribution.device_mesh.devices.reshape(-1))
    if f0.shape[0] % count:
        return f0  # a last, smaller batch runs replicated
    return keras.distribution.distribute_tensor(f0, distribution.get_data_layout(f0.shape))


def evaluate_batch(cfg, classifier, objective, result, count):
    """(PNG pixels, D on the PNG, D on the float image) for the first ``count`` rows of a batch's
    result, D run once over all of them (one call per image cost more than the steps on a GPU)."""
    from dgn.records import evaluate, feature_outputs, png_pixels

    images = np.asarray(result.images[:count])
    pixels = [png_pixels(classifier, image, cfg.data["output"]["display"]) for image in images]
    outputs = feature_outputs(classifier, objective.layers,
                              np.concatenate([np.stack([saved for _, saved in pixels]), images]))
    evaluated = []
    for k in range(count):
        pair = {name: value[[k, count + k]] for name, value in outputs.items()}
        on_png, on_raw = evaluate(classifier, objective.row(k), None, outputs=pair)
        evaluated.append((pixels[k][0], on_png, on_raw))
    return evaluated


def sidecar_for(cfg, classifier, objective, k, result, per_class, batch_info, seconds, evaluated):
    """What ``dgn generate`` writes for one image (dgn.generate.image_record), for row k of a batch;
    ``evaluated``: row k of ``evaluate_batch``."""
    units = getattr(objective, "row_classes", None) or getattr(objective, "row_channels")
    rows, classes = len(units), batch_info.get("size", len(units))
    row = objective.row(k)
    spec = units[k] if hasattr(objective, "row_classes") else f"channel:{objective.layer}:{units[k]}"
    stem = row.stem(str(spec))
    rgb, sidecar = image_record(run_info(cfg), classifier, row, result, k, spec, per_class, seconds / classes,
                                evaluated=evaluated)
    sidecar["image"] = stem + ".png"
    what = "classes" if hasattr(objective, "row_classes") else "channels"
    if rows > classes:
        sidecar["loss"]["of"] = (f"the batch of {rows} rows (sum): {classes} {what}, padded with repeats of the "
                                 f"last to the compiled batch size")
    elif rows > 1:
        sidecar["loss"]["of"] = f"the batch of {rows} {what} (sum)"
    sidecar["batch"] = batch_info
    return stem, rgb, sidecar


def _batches(items, size):
    """Batches of at most ``size`` units; channels of different layers never share a batch."""
    groups = {}
    for item in items:
        groups.setdefault(item[1] if isinstance(item, tuple) else None, []).append(item)
    return [group[i:i + size] for group in groups.values() for i in range(0, len(group), size)]


def select_units(classifier, classes=None, channels=None, where="--channels"):
    """The units a run covers, in order: class indices (``classes``: see :func:`parse_classes`; default all)
    or, with ``channels`` (a list of ``LAYER[:RANGE]``, :func:`dgn.examples.parse_channels`),
    ("channel", layer, c) tuples.

    Raises:
        DgnError: both given, or a bad spec (one line)."""
    if channels:
        if classes not in (None, "all"):
            raise DgnError("give --classes or --channels, not both (a run is of classes or of channels)")
        from dgn.examples import parse_channels

        units = []
        for spec in channels:
            layer, picked = parse_channels(spec, classifier, where)
            units += [("channel", layer, c) for c in picked]
        return list(dict.fromkeys(units))
    return parse_classes("all" if classes is None else classes, classifier.class_names, classifier.num_classes)


def generate_all(cfg, classes=None, batch=None, shard=None, out_dir=None, force=False, progress=True,
                 finish=True, pad=None, judge=None, stack="copies", channels=None):
    """Runs every selected class (or, with ``channels``, every selected channel: a layer atlas) not yet
    finished in ``out_dir``; returns a summary dict. With a shard, the sheets, report and gallery are
    written by the shard that ends last (when every unit of the whole selection is finished).

    ``pad``: a last batch smaller than ``batch`` is padded with repeats of its last class to the size
    already compiled, rather than compiling a second step (rows are independent, so the extra rows
    change no image). Default: on a GPU/TPU, where compiling costs more than the extra rows.
    ``judge``: an independent classifier (name, .keras file or YAML config) that also scores every
    image in the final report (loaded first, so a bad name fails before any work). ``stack``: how the
    untrained configuration's B generators run (dgn.batched_generator.build_batched_generator)."""
    data = cfg.data
    kind = build.kind(data)
    if batch is None:
        batch = default_batch(data["generator"]["trainable"] if kind == "generator" else kind)
    if not isinstance(batch, int) or batch < 1:
        raise DgnError(f"--batch {batch!r}: give a positive number of classes per step, e.g. --batch 8")
    build.snapshots(data)
    build.transforms(data)
    from dgn.batched_generator import check_stack
    check_stack(stack)  # before the classifier loads
    shard = parse_shard(shard) if isinstance(shard, str) else shard
    devices = setup_distribution()
    classifier = build.classifier(data)
    if judge is not None and finish:
        from dgn.judge import load_judge
        judge = load_judge(judge)
    names = classifier.class_names
    where = "--channels"
    if not channels and classes is None and data["objective"].get("channels"):
        channels, where = data["objective"]["channels"], "objective.channels"   # the config's atlas
    everything = select_units(classifier, classes, channels, where)
    selected = shard_of(everything, shard)
    run_dir = out_dir or default_out_dir(data)
    try:
        os.makedirs(run_dir, exist_ok=True)
        check_run_dir(run_dir, data, force)
    except OSError as exc:
        raise _disk_error(exc, run_dir, 0, len(selected)) from None
    clean_stale_tmp(run_dir)
    identity, size, files = run_identity(data), classifier.input_shape[0], input_files(data)
    stems = {c: unit_objective(c, names).stem(str(unit_spec(c))) for c in everything}
    done = {}
    for c in selected:
        side = finished_sidecar(run_dir, c, stems[c], identity, size, files, names)
        if side is not None:
            done[c] = side
    _reconcile_manifest(run_dir, done, stems)
    todo = [c for c in selected if c not in done]
    where = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    noun = "channels" if channels else "classes"
    if progress:
        print(f"generate-all{where}: {len(selected)} {noun}, {len(done)} already done, {len(todo)} to do, "
              f"{batch if not todo else min(batch, len(todo))} per step"
              + (f" over {devices} devices" if devices > 1 else "")
              + f", {data['steps']} steps, into {run_dir}", flush=True)
    bar = Progress(len(todo), unit=noun[:-2] if noun == "classes" else "channel", enabled=progress and bool(todo))
    runner = BatchRunner(cfg, classifier, stack)
    finished = 0
    shard_text = f"{shard[0]}/{shard[1]}" if shard else None
    pad = accelerated() if pad is None else pad
    for number, chunk in enumerate(_batches(todo, batch), start=1):
        started = time.time()
        shown = ", ".join(str(c[2]) if isinstance(c, tuple) else str(c) for c in chunk)
        layer = f" of {chunk[0][1]}" if isinstance(chunk[0], tuple) else ""
        label = f"batch {number}: {noun} {shown}{layer}" if progress and bar.interactive else None
        rows = list(chunk)
        if pad and len(chunk) < batch and runner.compiled(batch, chunk[0]):
            rows += [chunk[-1]] * (batch - len(chunk))
        objective, result, per_class = runner.run(rows, progress=bool(label), label=label)
        evaluated = evaluate_batch(cfg, classifier, objective, result, len(chunk))
        seconds = time.time() - started
        for k, c in enumerate(chunk):
            info = {"size": len(chunk), "row": k, "shard": shard_text}
            if isinstance(c, tuple):
                info.update(layer=c[1], channels=[u[2] for u in chunk])
            else:
                info["classes"] = list(chunk)
            if len(rows) > len(chunk):
                info["padded_to"] = len(rows)
            stem, rgb, side = sidecar_for(cfg, classifier, objective, k, result, per_class, info, seconds,
                                          evaluated[k])
            try:
                write_atomic(os.path.join(run_dir, stem + ".png"), png_bytes(rgb))
                write_atomic(os.path.join(run_dir, stem + ".json"), json_bytes(side))
                _append_line(os.path.join(run_dir, MANIFEST),
                             manifest_entry(c, stem, side, {"shard": shard_text, "time": _now()}))
            except OSError as exc:
                raise _disk_error(exc, os.path.join(run_dir, stem), len(done) + finished,
                                  len(todo) - finished) from None
            for key in ("relu_trap", "dead_unit"):
                if side.get(key) and progress:
                    print(f"warning: {stem}: {side[key]['warning']}", flush=True)
            finished += 1
            if side["prob"] is not None:
                bar.update(finished, prob=float(side["prob"]))
            else:
                bar.update(finished, activation=float(side["activation"]))
    summary = {"run_dir": run_dir, "selected": len(selected), "skipped": len(done), "generated": finished,
               "noun": noun}
    if finish and shard is not None:
        left = [c for c in everything if c not in selected
                and finished_sidecar(run_dir, c, stems[c], identity, size, files, names) is None]
        if left:
            finish = False
            summary["left_in_other_shards"] = len(left)
            if progress:
                print(f"shard {shard[0]}/{shard[1]} done; {len(left)} {noun} left to other shards: the last shard "
                      f"to end writes the sheets, report and gallery", flush=True)
    if finish:
        try:
            summary.update(finish_run(run_dir, progress=progress, judge=judge))
        except OSError as exc:
            raise _disk_error(exc, run_dir, len(done) + finished, 0) from None
    return summary


def finish_run(run_dir, progress=True, judge=None):
    """Contact sheets, report.json and index.html for everything in the folder (``judge``: see
    dgn.report.judge_run)."""
    from dgn.gallery import write_gallery
    from dgn.report import load_entries, write_report
    from dgn.sheets import contact_sheets

    if not load_entries(run_dir):
        return {}
    sheets = contact_sheets(run_dir)
    report, line = write_report(run_dir, judge=judge, progress=progress)
    gallery = write_gallery(run_dir, report)
    if progress:
        print(f"{len(sheets)} contact sheet(s) in {os.path.join(run_dir, 'sheets')}; gallery {gallery}", flush=True)
        print(line, flush=True)
    return {"sheets": sheets, "report": report, "gallery": gallery, "line": line}


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _reconcile_manifest(run_dir, done, stems):
    """The manifest lists every finished class once: torn or duplicate lines rewrite it; finished classes
    missing from it (killed between the sidecar and the manifest line) are appended."""
    path = os.path.join(run_dir, MANIFEST)
    entries, dirty = read_manifest(run_dir)
    if dirty:
        lines = b"".join((json.dumps(e, default=jsonable) + "\n").encode("utf-8") for e in entries.values())
        write_atomic(path, lines)
    for c, side in done.items():
        if c not in entries:
            _append_line(path, manifest_entry(c, stems[c], side, {"time": _now(), "recovered": True}))
