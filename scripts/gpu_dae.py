"""Trains the autoencoder on the GPU machine in one call: prepare here, run there, finish here.

    python scripts/gpu_dae.py prepare            # here: pack photos + starting weights (none with --scratch),
                                                 # send big files away
    (the run tool: the command `python scripts/gpu_dae.py command` prints, carry ["runs/gpu/travel"])
    python scripts/gpu_dae.py finish --from DIR  # here: files back, check, evaluate, replace if better
    python scripts/gpu_dae.py back               # here: only bring the big files back (if no call is made)
    python scripts/gpu_dae.py check              # here: what a call would send and bring back

``device`` is what runs there. docs/gpu-training.md describes the procedure, its limits and what
each step writes.
"""

import argparse
import datetime
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gpu_pack  # noqa: E402
import gpu_travel  # noqa: E402
from dgn.errors import DgnError  # noqa: E402
from dgn.runs.outputs import write_atomic, write_json

GPU_DIR = os.path.join("runs", "gpu")     # travel/ (carried), stash/, results/, state.json, baselines.json
TRAVEL = GPU_DIR + "/travel"
CONFIG = os.path.join("configs", "dae-dogs.yaml")
SHIPPED = os.path.join("weights", "dae-dogs-efficientnet_lite0")
WHEELS = ("keras", "namex", "optree")       # what the GPU machine lacks of Keras 3 (docs/gpu-training.md)
EXPORT_FILES = ("decoder.weights.h5", "encoder.weights.h5", "decoder.json", "code_stats.npz")
RUN_FILES = ("log.csv", "checkpoint.json", "training.json")
BUNDLE = "dae.tar"
RESULT = "result.json"
DEVICE_LOG = "device.log"
LOG_KEEP = 1024 * 1024          # device.log keeps its last MiB
JSON_RESERVE = 64 * 1024        # plan.json and manifest.json, written after the photos
DEFAULT_UPDATES_PER_SECOND = 20.0   # batch 24 at 224 px until a GPU run measured it (an H100 did 18 in float32)
COMMAND = ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "
           "{travel}/wheels/*.whl && export PYTHONPATH=/tmp/site KERAS_BACKEND=jax PYTHONUNBUFFERED=1 && "
           "python3 scripts/gpu_dae.py device --travel {travel}")
# the run tool's limit for that command: the device step is killed at --kill-after (330 s), then exports,
# computes the code statistics if started before --code-stats-before (300 s) and packs (about a minute);
# with the machine's start (1 to 2 minutes) a call takes about 9 of the session's 15 device minutes,
# leaving the 4 a second start needs
TIMEOUT_S = 420
INIT_RATE, SCRATCH_RATE = 2e-4, 1e-3    # the cosine's default peak from trained weights / from random ones


def say(text):
    print(text, flush=True)


# ---------------------------------------------------------------------------------------- prepare


def wheels_present(folder):
    names = os.listdir(folder) if os.path.isdir(folder) else []
    return all(any(n.startswith(w + "-") and n.endswith(".whl") for n in names) for w in WHEELS)


def fetch_wheels(dest, source=None):
    """keras, namex and optree wheels for the GPU machine's Python 3.12 (x86-64) in ``dest``: kept from
    an earlier prepare, copied from ``source`` (e.g. .whl/), or downloaded with pip at the versions
    installed here."""
    if wheels_present(dest):
        return sorted(os.listdir(dest))
    os.makedirs(dest, exist_ok=True)
    if source:
        for name in os.listdir(source):
            if name.endswith(".whl") and name.split("-")[0] in WHEELS:
                shutil.copyfile(os.path.join(source, name), os.path.join(dest, name))
        if not wheels_present(dest):
            raise DgnError(f"{source} lacks one of the wheels {', '.join(WHEELS)}")
        return sorted(os.listdir(dest))
    from importlib import metadata

    common = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
              "--python-version", "3.12", "--implementation", "cp", "-d", dest]
    platforms = []
    for tag in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"):
        platforms += ["--platform", tag]
    for name in WHEELS:
        try:
            pin = f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            pin = name
        done = subprocess.run(common + (platforms if name == "optree" else []) + [pin], capture_output=True, text=True)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise DgnError(f"cannot download the wheel {pin} ({last}); copy keras, namex and optree wheels for "
                           f"Python 3.12 x86-64 into a folder and pass --wheels FOLDER")
    return sorted(os.listdir(dest))


def read_state(gpu_dir):
    """state.json: where the next photo window starts and the last GPU run's speed (written by finish)."""
    path = os.path.join(gpu_dir, "state.json")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    return {}


def measured_speed(init_meta, batch, state):
    """Updates a second of the last GPU run at this batch size (finish's state, else the decoder's
    history), or None."""
    if state.get("batch") == batch and state.get("updates_per_second"):
        return state["updates_per_second"]
    for run in reversed(init_meta.get("history", [])):
        on_gpu = any(str(d).lower() != "cpu" for d in run.get("devices") or [])  # a CPU dry run is no speed
        if on_gpu and run.get("backend") == "jax" and run.get("batch_size") == batch \
                and run.get("wall_seconds"):
            return run["images_seen"] / batch / run["wall_seconds"]
    return None


def last_run(init_meta):
    """The last run in a decoder.json's history (``init_meta``), or {} where there is none."""
    history = init_meta.get("history") if isinstance(init_meta, dict) else None
    return history[-1] if isinstance(history, list) and history and isinstance(history[-1], dict) else {}


def cosine_position(init_meta, length, rate):
    """Updates of the GPU runs' shared cosine (``length`` updates from ``rate`` to 0, each run with its
    own Adam: ``dae.schedule_start``) already made by the starting weights: the last run in their
    history followed it (its ``decay_steps`` and ``learning_rate``) and ended ``schedule_start`` plus its
    updates into it (a run that began the cosine, at 0, spent its warm-up before it: Keras's
    ``CosineDecay``); 0 when it did not, when its record is incomplete, or when that cosine has ended
    (a new one begins)."""
    last = last_run(init_meta)
    try:
        if not length or last.get("decay_steps") != length or float(last.get("learning_rate")) != rate:
            return 0
        start, seen, batch = int(last["schedule_start"]), int(last["images_seen"]), int(last["batch_size"])
        warmup = int(last.get("warmup_steps") or 0)
    except (KeyError, TypeError, ValueError):
        return 0
    if batch < 1 or start < 0:
        return 0
    done = start + seen // batch - (max(warmup - 1, 0) if start == 0 else 0)
    return done if 0 < done < length else 0


def training_plan(args, init_meta, state, photo_folders, window, rate, norms):
    """plan.json: what the GPU machine runs (paths relative to the travel folder; ``init`` None for a
    run from random weights, ``--scratch``). The learning rate follows one cosine of ``--cosine-updates``
    over successive runs (:func:`cosine_position`; 0: each run its own cosine)."""
    speed, source = args.updates_per_second, "--updates-per-second"
    if not speed:
        speed, source = measured_speed(init_meta, args.batch, state), "the last GPU run"
    if not speed:
        speed, source = DEFAULT_UPDATES_PER_SECOND, "a default (no GPU run measured yet)"
    train_seconds = max(30.0, args.minutes * 60.0 - args.compile_seconds)
    epochs = max(1, int(round(speed * train_seconds / args.steps_per_epoch)))
    if args.epochs:
        epochs = args.epochs
    start = cosine_position(init_meta, args.cosine_updates, rate)
    if args.cosine_updates:  # no epochs past the cosine's end, where the rate is 0
        epochs = min(epochs, max(1, math.ceil((args.cosine_updates - start) / args.steps_per_epoch)))
        schedule = [f"dae.decay_steps={args.cosine_updates}", f"dae.schedule_start={start}"]
    updates = epochs * args.steps_per_epoch
    if not args.cosine_updates:
        schedule = [f"dae.decay_steps={max(0, updates - args.warmup)}", "dae.schedule_start=0"]
    init = None if args.scratch else os.path.basename(os.path.normpath(args.weights))
    # from random weights also when the config names a dae.init
    sets = (["dae.init=null"] if args.scratch else []) + ["dae.validation=0",
            f"dae.batch_size={args.batch}", f"dae.steps_per_epoch={args.steps_per_epoch}",
            f"dae.learning_rate={rate}", f"dae.warmup_steps={args.warmup}", *schedule,
            f"dae.freeze_norms={'true' if norms == 'frozen' else 'false'}",
            "classifier.weights=none", "classifier.class_index=none"]
    return {"config": "config.yaml", "init": init, "photos": photo_folders, "sets": sets,
            "epochs": epochs, "updates": updates, "time_limit_minutes": args.minutes,
            "cosine": {"updates": args.cosine_updates, "start": start, "learning_rate": rate},
            "kill_after_seconds": args.kill_after, "code_stats_before_seconds": args.code_stats_before,
            "shard_bytes": gpu_travel.SHARD_BYTES, "window": window,
            "speed_estimate": {"updates_per_second": round(speed, 2), "from": source},
            "made": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def default_rate(init_meta, length, scratch):
    """The cosine's peak when --learning-rate is not given: the starting weights' last run's while
    the cosine it followed goes on (:func:`cosine_position`), so that successive runs add up; else
    1e-3 from random weights (``scratch``) and 2e-4 from trained ones (1e-3 undid 1.5 dB of the
    shipped weights in 100 updates, docs/autoencoder.md)."""
    last = last_run(init_meta)
    try:
        rate = float(last.get("learning_rate"))
    except (TypeError, ValueError):
        rate = None
    if not scratch and rate and cosine_position(init_meta, length, rate):
        return rate
    return SCRATCH_RATE if scratch else INIT_RATE


def default_norms(init_meta, scratch):
    """--norms when not given: "batch" from random weights; from trained ones, as their last run
    trained ("batch" where its history records ``freeze_norms: false``, e.g. a --scratch result), and
    "frozen" where it records true or nothing (the shipped weights, trained on other photos than both
    folders: on batch statistics a run from them first undid 0.4 dB, docs/autoencoder.md)."""
    if scratch:
        return "batch"
    last = last_run(init_meta)
    return "batch" if last.get("freeze_norms") is False else "frozen"


def prepare(args):
    from dgn.config import load_config

    root, stash = args.root, os.path.join(args.gpu_dir, "stash")
    travel = os.path.join(args.gpu_dir, "travel")
    travel_rel = os.path.relpath(travel, root).replace(os.sep, "/")
    if gpu_travel.away_paths(stash):
        say("big files are still away from an earlier prepare; bringing them back first")
        gpu_travel.bring_back(root, stash)
    if args.cosine_updates < 0:
        raise DgnError(f"--cosine-updates {args.cosine_updates}: give 0 (each run its own cosine) or more updates")
    if args.learning_rate is not None and not (args.learning_rate > 0 and math.isfinite(args.learning_rate)):
        raise DgnError(f"--learning-rate {args.learning_rate:g}: give a finite rate above 0, e.g. 0.0002 (from "
                       f"trained weights) or 0.001 (--scratch)")
    for name, value, low in (("--batch", args.batch, 1), ("--steps-per-epoch", args.steps_per_epoch, 1),
                             ("--warmup", args.warmup, 0), ("--epochs", args.epochs, 1)):
        if value is not None and value < low:
            raise DgnError(f"{name} {value}: give a whole number of at least {low}")
    if not (args.minutes > 0 and math.isfinite(args.minutes)):
        raise DgnError(f"--minutes {args.minutes:g}: give the training minutes there, above 0 (default 4)")
    cfg = load_config(args.config)
    dae = cfg["dae"]
    data = args.data or dae["data"]
    if not data:
        raise DgnError(f"{args.config} names no photos (dae.data); give --data FOLDER")
    if args.scratch and args.norms == "frozen":
        raise DgnError("--norms frozen keeps the starting weights' norm statistics, and --scratch has none: "
                       "leave --norms out (batch) or drop --scratch")
    init_meta = {}
    try:
        if not args.scratch:
            with open(os.path.join(args.weights, "decoder.json"), encoding="utf-8") as fh:
                init_meta = json.load(fh)
    except (OSError, ValueError) as exc:
        raise DgnError(f"--weights {args.weights}: decoder.json is missing or unreadable ({type(exc).__name__}); "
                       f"give a folder written by `dgn train-dae` or `dgn export-dae` (default: {SHIPPED})") from None
    if not isinstance(init_meta, dict):
        raise DgnError(f"--weights {args.weights}: decoder.json holds no object; give a folder written by "
                       f"`dgn train-dae` or `dgn export-dae`")
    if not args.scratch:   # weights the config cannot start from fail here, not on the GPU machine
        load_config(args.config, [f"dae.init={os.path.abspath(args.weights)}"])
    norms = args.norms or default_norms(init_meta, args.scratch)
    # a fresh travel folder; wheels are kept from the last prepare
    os.makedirs(travel, exist_ok=True)
    for name in os.listdir(travel):
        if name != "wheels":
            path = os.path.join(travel, name)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.unlink(path)
    source = args.wheels or (os.path.join(root, ".whl") if wheels_present(os.path.join(root, ".whl")) else None)
    wheels = [] if args.no_wheels else fetch_wheels(os.path.join(travel, "wheels"), source)
    shutil.copyfile(args.config, os.path.join(travel, "config.yaml"))
    init_dir, init_sizes = None, {}
    if not args.scratch:
        init_dir = os.path.join(travel, os.path.basename(os.path.normpath(args.weights)))
        init_sizes = gpu_pack.pack_weights(args.weights, init_dir)
    # what is left of the 64 MiB for photos, once the big tracked files are away
    sizes = gpu_travel.travel_size(root, [travel_rel], assume_away=True)
    budget = gpu_travel.TREE_LIMIT - int(args.margin_mib * gpu_travel.MIB) - sizes["total"] - JSON_RESERVE
    if budget <= 0:
        raise DgnError(f"no room for photos: the tree and starting weights take {sizes['total'] / gpu_travel.MIB:.1f} "
                       f"MiB of {gpu_travel.TREE_LIMIT // gpu_travel.MIB}")
    items = gpu_pack.training_photos(data, dae["wnids"], dae["validation"])
    state = read_state(args.gpu_dir)
    offset = state.get("next_offset", 0) if args.offset is None else args.offset
    photos = os.path.join(travel, "photos")
    t = time.monotonic()
    packed = gpu_pack.pack_photos(gpu_pack.window(items, offset, args.max_photos), photos, budget, args.quality)
    if not packed["photos"]:
        raise DgnError(f"no photo fits the {budget} bytes left; lower --quality or --margin-mib")
    folders = [f"photos/{name}" for name in sorted(packed["folders"])]
    window = {"offset": offset % len(items), "photos": packed["photos"], "of": len(items), "quality": args.quality,
              "bytes": packed["bytes"], "folders": packed["folders"], "skipped": packed["skipped"]}
    rate = args.learning_rate if args.learning_rate is not None else \
        default_rate(init_meta, args.cosine_updates, args.scratch)
    plan = training_plan(args, init_meta, state, folders, window, rate, norms)
    write_json(os.path.join(travel, "plan.json"), plan)
    digest, count = gpu_pack.photos_digest(photos)
    files = {os.path.relpath(os.path.join(init_dir, n), travel): gpu_travel.sha256_file(os.path.join(init_dir, n))
             for n in sorted(os.listdir(init_dir))} if init_dir else {}
    files["config.yaml"] = gpu_travel.sha256_file(os.path.join(travel, "config.yaml"))
    files["plan.json"] = gpu_travel.sha256_file(os.path.join(travel, "plan.json"))
    write_json(os.path.join(travel, "manifest.json"),
               {"files": files, "photos": {"sha256": digest, "count": count}, "wheels": wheels})
    away = [] if args.no_away else gpu_travel.send_away(root, stash)
    say(f"photos: {packed['photos']} of {len(items)} training photos from offset {window['offset']} "
        f"({packed['bytes'] / gpu_travel.MIB:.2f} MiB, {packed['bytes'] / max(packed['photos'], 1) / 1024:.2f} KiB a "
        f"photo, WebP quality {args.quality}, {time.monotonic() - t:.0f} s)")
    say("starting weights for travel: " + ", ".join(f"{n} {b / gpu_travel.MIB:.2f} MiB" for n, b in init_sizes.items())
        if init_sizes else "no starting weights (--scratch): the config's autoencoder from random weights")
    say(f"plan: {plan['epochs']} epochs x {args.steps_per_epoch} updates of {args.batch} = {plan['updates']} updates "
        f"(at {plan['speed_estimate']['updates_per_second']} a second, from {plan['speed_estimate']['from']}), "
        f"--time-limit {args.minutes:g} min")
    cos = plan["cosine"]
    if cos["updates"]:
        say(f"learning rate: updates {cos['start']} to {cos['start'] + plan['updates']} of one cosine of "
            f"{cos['updates']} from {rate:g} to 0 over successive GPU runs" +
            (" (a new cosine: the starting weights' last run did not follow this one, or it ended)"
             if not cos["start"] and not args.scratch else ""))
    how = "frozen on the starting weights' statistics" if norms == "frozen" else "on batch statistics"
    why = "" if args.norms else (" (--norms not given: from random weights)" if args.scratch else
                                 " (--norms not given: as the starting weights' last run trained)")
    say(f"norms: {how}{why}")
    if away:
        say(f"sent away until `finish` or `back`: {len(away)} tracked files ({', '.join(away[:4])}"
            f"{', ...' if len(away) > 4 else ''}); links stand in their place")
    report = check_travel(root, [travel_rel], assume_away=args.no_away)
    if report["total"] > gpu_travel.TREE_LIMIT:
        raise DgnError(f"the call would send {report['total']} bytes, over {gpu_travel.TREE_LIMIT}")
    say(f"run tool: command {COMMAND.format(travel=travel_rel)!r}, carry [\"{travel_rel}\"], timeout_s {TIMEOUT_S}; "
        f"then give_back")
    return plan


# ---------------------------------------------------------------------------------------- check


def check_travel(root, carry, assume_away):
    sizes = gpu_travel.travel_size(root, carry, assume_away=assume_away)
    parts = ", ".join(f"{c} {b / gpu_travel.MIB:.2f}" for c, b in sizes["carry"].items())
    say(f"a call sends {sizes['total'] / gpu_travel.MIB:.2f} MiB of {gpu_travel.TREE_LIMIT // gpu_travel.MIB}: "
        f"tree {sizes['tree'] / gpu_travel.MIB:.2f}" + (f", carry {parts}" if parts else "") +
        ("" if sizes["total"] <= gpu_travel.TREE_LIMIT else
         " -- OVER: largest " + ", ".join(f"{p} {b / gpu_travel.MIB:.1f}" for p, b in sizes["largest"][:3])))
    return sizes


def expected_return(weights):
    """What the device's $OUT will hold for an export like ``weights``: (files, bytes)."""
    members = sum(os.path.getsize(os.path.join(weights, n)) + 512 for n in EXPORT_FILES
                  if os.path.isfile(os.path.join(weights, n)))
    members += 3 * (64 * 1024 + 512) + 1024        # log.csv, checkpoint.json, training.json; tar's end
    shards = math.ceil(members / gpu_travel.SHARD_BYTES)
    return shards + 2, members + 64 * 1024 + LOG_KEEP


def check(args):
    root = args.root
    travel_rel = os.path.relpath(os.path.join(args.gpu_dir, "travel"), root)
    carry = [travel_rel] if os.path.isdir(os.path.join(root, travel_rel)) else []
    if not carry:
        say(f"no {travel_rel} yet: the figures below leave out the photos and weights that `prepare` packs "
            f"into the room left under 64 MiB")
    away = gpu_travel.away_paths(os.path.join(args.gpu_dir, "stash"))
    say(f"big tracked files away now: {len(away)}")
    now = check_travel(root, carry, assume_away=False)
    if not away:
        say("after `prepare` sends them away:")
        later = check_travel(root, carry, assume_away=True)
    else:
        later = now
    files, size = expected_return(args.weights)
    say(f"it brings back about {files} files, {size / gpu_travel.MIB:.2f} MiB (at most {gpu_travel.BACK_FILES} "
        f"files of {gpu_travel.BACK_FILE_LIMIT // gpu_travel.MIB} MiB, {gpu_travel.BACK_TOTAL_LIMIT // gpu_travel.MIB} "
        f"MiB together)")
    if later["total"] > gpu_travel.TREE_LIMIT:
        raise DgnError(f"a call would send {later['total'] / gpu_travel.MIB:.1f} MiB, over the 64 MiB it may")
    if files > gpu_travel.BACK_FILES or size > gpu_travel.BACK_TOTAL_LIMIT:
        raise DgnError(f"the result ({files} files, {size / gpu_travel.MIB:.1f} MiB) would not all come back")
    return 0


# ---------------------------------------------------------------------------------------- device


def verify_travel(travel):
    with open(os.path.join(travel, "manifest.json"), encoding="utf-8") as fh:
        manifest = json.load(fh)
    for rel, digest in manifest["files"].items():
        path = os.path.join(travel, rel)
        if not os.path.isfile(path) or gpu_travel.sha256_file(path) != digest:
            raise DgnError(f"{path} is missing or changed on the way (sha256); prepare again and carry {travel}")
    digest, count = gpu_pack.photos_digest(os.path.join(travel, "photos"))
    if (digest, count) != (manifest["photos"]["sha256"], manifest["photos"]["count"]):
        raise DgnError(f"the photos in {travel} are not the ones prepared ({count} files); prepare again")
    return manifest


def run_logged(cmd, log, deadline):
    """Runs ``cmd``, its output to ``log`` and stdout; kills it (and its children) at ``deadline``
    (time.monotonic()). Returns (exit code, killed)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT,
                            start_new_session=True, text=True, errors="replace")
    killed = threading.Event()

    def kill():
        killed.set()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    timer = threading.Timer(max(0.0, deadline - time.monotonic()), kill)
    timer.start()
    try:
        for line in proc.stdout:
            log.write(line)
            log.flush()
            sys.stdout.write(line)
            sys.stdout.flush()
        code = proc.wait()
    finally:
        timer.cancel()
    if killed.is_set():
        log.write(f"[gpu_dae: killed at its deadline: {' '.join(cmd[2:4])}]\n")
    return code, killed.is_set()


def device_sets(plan, travel):
    """train-dae's --set assignments on the GPU machine: the plan's, and its paths made absolute."""
    photos = [os.path.join(travel, p) for p in plan["photos"]]
    init = [f"dae.init={os.path.join(travel, plan['init'])}"] if plan.get("init") else []
    return [f"dae.data={json.dumps(photos)}"] + init + plan["sets"]


def dgn_command(sets, *args):
    return [sys.executable, "-m", "dgn", *args] + sum((["--set", s] for s in sets), [])


def device(args):
    """On the GPU machine: train from the travelled weights (random ones for a --scratch plan) on the
    travelled photos, export, compute
    the code statistics, and leave in $OUT the export as shards + result.json + device.log."""
    start = time.monotonic()
    out = args.out or os.environ.get("OUT")
    if not out:
        raise DgnError("no output folder: set OUT (the run tool does) or give --out DIR")
    os.makedirs(out, exist_ok=True)
    os.environ.setdefault("KERAS_BACKEND", "jax")
    travel = os.path.join(ROOT, args.travel)
    result = {"format": 1, "status": "failed", "started": datetime.datetime.now(datetime.timezone.utc)
              .isoformat(timespec="seconds")}
    log_path = os.path.join(out, DEVICE_LOG)
    work = args.work or tempfile.mkdtemp(prefix="dgn-gpu-")
    run_dir, export_dir = os.path.join(work, "run"), os.path.join(work, "export")
    try:
        with open(log_path, "w", encoding="utf-8") as log:
            try:
                with open(os.path.join(travel, "plan.json"), encoding="utf-8") as fh:
                    plan = json.load(fh)
                result["plan"] = plan
                verify_travel(travel)
                result["devices"] = accelerators(log, args.allow_cpu)
                sets, config = device_sets(plan, travel), os.path.join(travel, plan["config"])
                kill_at = start + plan["kill_after_seconds"]
                train = dgn_command(sets, "train-dae", config, "--out", run_dir, "--quiet",
                                    "--epochs", str(plan["epochs"]), "--time-limit", str(plan["time_limit_minutes"]))
                code, killed = run_logged(train, log, kill_at)
                result["train"] = train_summary(run_dir, plan, code, killed, time.monotonic() - start)
                if not os.path.isfile(os.path.join(run_dir, "decoder.weights.h5")):
                    raise DgnError(f"train-dae ended (exit {code}{', killed' if killed else ''}) before its first "
                                   f"epoch was saved; see {DEVICE_LOG}")
                check_parts(run_dir)
                # here, not in a child: the GPU is free now that train-dae has ended
                from dgn import build
                from dgn.autoencoder.evaluate import code_statistics
                from dgn.autoencoder.files import export_trained
                from dgn.config import load_config

                export_trained(run_dir, export_dir)
                if time.monotonic() - start < plan["code_stats_before_seconds"]:
                    data = load_config(config, sets).data
                    stats = code_statistics(build.autoencoder(data), build.dae_training(data), export_dir,
                                            os.path.join(travel, "photos"))
                    log.write(f"code statistics: {json.dumps(stats)}\n")
                else:
                    log.write("no time left for the code statistics; finish computes them\n")
                result["bundle"] = bundle(run_dir, export_dir, work, out, plan["shard_bytes"])
                result["code_stats"] = os.path.isfile(os.path.join(export_dir, "code_stats.npz"))
                result["status"] = "ok"
            except Exception as exc:  # noqa: BLE001 - whatever happened there comes back in result.json
                result["error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                log.write(f"[gpu_dae: {result['error']}]\n")
    finally:
        result["device_seconds"] = round(time.monotonic() - start, 1)
        trim_log(log_path)
        write_json(os.path.join(out, RESULT), result)
        shutil.rmtree(work, ignore_errors=True) if not args.work else None
    back = gpu_travel.check_back(out)
    say(f"gpu_dae device: {result['status']}{': ' + result['error'] if 'error' in result else ''}; "
        f"{len(back['files'])} files, {back['bytes'] / gpu_travel.MIB:.2f} MiB in $OUT, {result['device_seconds']} s"
        + (f"; OVER THE LIMITS: {'; '.join(back['problems'])}" if back["problems"] else ""))
    return 0 if result["status"] == "ok" and not back["problems"] else 1


def accelerators(log, allow_cpu=False):
    """JAX's devices as a child process sees them (the parent keeps off the GPU while train-dae runs),
    written to the log.

    Raises:
        DgnError: JAX sees only the CPU (its CUDA plugin did not load) and ``allow_cpu`` is False: the
            minutes would go to a CPU run that saves nothing before its deadline."""
    probe = subprocess.run([sys.executable, "-c", "import jax; print(jax.default_backend()); "
                            "print([d.device_kind for d in jax.devices()])"],
                           capture_output=True, text=True, timeout=120)
    lines = probe.stdout.strip().splitlines()
    log.write(f"jax: {' '.join(lines) or probe.stderr.strip()[-2000:]}\n")
    log.flush()
    if probe.returncode != 0 or not lines:
        raise DgnError(f"JAX does not start there: {(probe.stderr.strip().splitlines() or ['no output'])[-1]}")
    if lines[0] == "cpu" and not allow_cpu:
        raise DgnError("JAX sees no GPU there (its CUDA plugin did not load; device.log has its devices); "
                       "nothing was trained")
    return lines[1] if len(lines) > 1 else ""


def check_parts(run_dir):
    """The decoder, encoder and decoder.json of one epoch. train-dae writes, each by an atomic rename,
    the checkpoint, the decoder, the encoder, decoder.json, and checkpoint.json last, so after a kill
    the three parts are of one epoch exactly when they were written in that order (a kill between
    decoder.json and checkpoint.json leaves a whole epoch that checkpoint.json does not name yet).

    Raises:
        DgnError: a kill while saving left parts of two epochs."""
    times = [os.stat(os.path.join(run_dir, name)).st_mtime_ns
             for name in ("decoder.weights.h5", "encoder.weights.h5", "decoder.json")]
    if not times[0] <= times[1] <= times[2]:
        raise DgnError("train-dae was killed while saving an epoch: its decoder, encoder and decoder.json may "
                       "be from two epochs; give it more time (prepare --kill-after)")


def train_summary(run_dir, plan, code, killed, seconds):
    summary = {"exit_code": code, "killed": killed, "seconds": round(seconds, 1)}
    state = os.path.join(run_dir, "checkpoint.json")
    if os.path.isfile(state):
        with open(state, encoding="utf-8") as fh:
            ckpt = json.load(fh)
        steps = next(s for s in plan["sets"] if s.startswith("dae.steps_per_epoch="))
        batch = next(s for s in plan["sets"] if s.startswith("dae.batch_size="))
        updates = ckpt["epoch"] * int(steps.split("=")[1])
        wall = ckpt.get("wall_seconds")
        summary.update({"epochs": ckpt["epoch"], "updates": updates, "logs": ckpt.get("logs", {}), "wall_seconds": wall,
                        "images_seen": updates * int(batch.split("=")[1]),
                        "updates_per_second": round(updates / wall, 2) if wall else None})
        summary["passes"] = round(summary["images_seen"] / max(plan["window"]["photos"], 1), 1)
    log_csv = os.path.join(run_dir, "log.csv")
    if os.path.isfile(log_csv):
        with open(log_csv, encoding="utf-8") as fh:
            summary["log_csv"] = fh.read()[-16000:]
    return summary


def bundle(run_dir, export_dir, work, out, shard_bytes):
    """The export and the run's small files as one tar, split into shards in ``out``."""
    members = {}
    tar_path = os.path.join(work, BUNDLE)
    with tarfile.open(tar_path, "w") as tar:
        for folder, names in ((export_dir, EXPORT_FILES), (run_dir, RUN_FILES)):
            for name in names:
                path = os.path.join(folder, name)
                if os.path.isfile(path):
                    tar.add(path, arcname=name)
                    members[name] = {"bytes": os.path.getsize(path), "sha256": gpu_travel.sha256_file(path)}
    entry = gpu_travel.split_file(tar_path, out, BUNDLE, shard_bytes)
    entry["members"] = members
    os.unlink(tar_path)
    return entry


def trim_log(path):
    if os.path.isfile(path) and os.path.getsize(path) > LOG_KEEP:
        with open(path, "rb") as fh:
            fh.seek(-LOG_KEEP, os.SEEK_END)
            tail = fh.read()
        write_atomic(path, b"[... earlier lines cut ...]\n" + tail)


# ---------------------------------------------------------------------------------------- finish


def unpack_result(source, dest):
    """Checks and unpacks what a device run returned (``source``: its result.json and shards) into
    ``dest``; returns result.json's contents."""
    path = os.path.join(source, RESULT)
    if not os.path.isfile(path):
        raise DgnError(f"{source} has no {RESULT}; give --from the folder the run's files came back to")
    with open(path, encoding="utf-8") as fh:
        result = json.load(fh)
    if result.get("status") != "ok":
        raise DgnError(f"the device run failed: {result.get('error', 'no error recorded')} (see {source}/{DEVICE_LOG})")
    entry = result["bundle"]
    os.makedirs(dest, exist_ok=True)
    tar_path = os.path.join(dest, BUNDLE)
    gpu_travel.join_shards(source, entry, tar_path)
    with tarfile.open(tar_path) as tar:
        names = tar.getnames()
        if sorted(names) != sorted(entry["members"]) or any(os.path.basename(n) != n for n in names):
            raise DgnError(f"{BUNDLE} holds {names}, not the files result.json lists")
        tar.extractall(dest, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(dest)
    os.unlink(tar_path)
    for name, info in entry["members"].items():
        if gpu_travel.sha256_file(os.path.join(dest, name)) != info["sha256"]:
            raise DgnError(f"{name} from {BUNDLE} does not match its sha256 in result.json")
    shutil.copyfile(path, os.path.join(dest, RESULT))
    return result


def baseline_key(weights, data, limit):
    parts = [gpu_travel.sha256_file(os.path.join(weights, n)) for n in ("decoder.weights.h5", "encoder.weights.h5")]
    return json.dumps([parts, data, limit], sort_keys=True)


def evaluate(cfg, folder, data, limit, split, sheet=None, cache=None):
    """eval-dae's summary of the autoencoder in ``folder`` on ``data`` (and its sheet); cached by the
    weights' sha256 when ``cache`` (a json path) is given."""
    from dgn import build
    from dgn.autoencoder.evaluate import eval_dae

    key = baseline_key(folder, data, limit) + split if cache else None
    stored = {}
    if cache and os.path.isfile(cache):
        with open(cache, encoding="utf-8") as fh:
            stored = json.load(fh)
        if key in stored and not sheet:
            return stored[key]
    summary, crops, recon = eval_dae(build.autoencoder(cfg.data), build.dae_training(cfg.data), data,
                                     folder=folder, limit=limit, split=split)
    if sheet:
        from dgn.runs.sheets import pairs_sheet

        pairs_sheet(sheet, crops[:8], recon[:8])
    if cache:
        stored[key] = summary
        write_json(cache, stored)
    return summary


def replace_weights(result_dir, weights):
    """The shipped autoencoder's files replaced by the result's, each written atomically (decoder.json
    last, so a reader never pairs a new decoder.json with the old weights)."""
    written = {}
    for name in ("encoder.weights.h5", "code_stats.npz", "decoder.weights.h5", "decoder.json"):
        src = os.path.join(result_dir, name)
        if os.path.isfile(src):
            with open(src, "rb") as fh:
                write_atomic(os.path.join(weights, name), fh.read())
            written[name] = {"bytes": os.path.getsize(src), "sha256": gpu_travel.sha256_file(src)}
    return written


def finish(args):
    from dgn.config import load_config

    root = args.root
    restored = gpu_travel.bring_back(root, os.path.join(args.gpu_dir, "stash"))
    if restored:
        say(f"brought back {len(restored)} files sent away by prepare")
    cfg = load_config(args.config)
    data = args.data or cfg["dae"]["data"]
    with open(os.path.join(args.source, RESULT), encoding="utf-8") as fh:
        made = json.load(fh).get("plan", {}).get("made", "unknown").replace(":", "").replace("+0000", "Z")
    dest = os.path.join(args.gpu_dir, "results", f"run-{made}")
    result = unpack_result(args.source, dest)
    plan, train = result["plan"], result.get("train", {})
    say(f"device run: {train.get('epochs')} epochs, {train.get('updates')} updates "
        f"({train.get('updates_per_second')} a second), {train.get('passes')} passes over {plan['window']['photos']} "
        f"photos, loss {train.get('logs', {}).get('loss')}, {result['device_seconds']} s on the device")
    if not os.path.isfile(os.path.join(dest, "code_stats.npz")):
        from dgn import build
        from dgn.autoencoder.evaluate import code_statistics

        say("the device left no code_stats.npz; computing it here (--code-stats-limit photos)")
        code_statistics(build.autoencoder(cfg.data), build.dae_training(cfg.data), dest, data_dir=data,
                        limit=args.code_stats_limit)
    cache = os.path.join(args.gpu_dir, "baselines.json")
    old = evaluate(cfg, args.weights, data, args.limit, "val", cache=cache)
    new = evaluate(cfg, dest, data, args.limit, "val", sheet=os.path.join(dest, "recon-val.png"))
    report = {"result": dest, "validation": {"shipped": old, "new": new}, "min_gain": args.min_gain, "train": train,
              "window": plan["window"]}
    if args.other:
        report["other"] = {"shipped": evaluate(cfg, args.weights, args.other, None, "all", cache=cache),
                           "new": evaluate(cfg, dest, args.other, None, "all",
                                           sheet=os.path.join(dest, "recon-other.png"))}
    else:
        report["other"] = None
    improved = new["psnr"] > old["psnr"] + args.min_gain
    report["replaced"] = improved
    if improved:
        report["written"] = replace_weights(dest, args.weights)
    state = {"next_offset": (plan["window"]["offset"] + plan["window"]["photos"]) % max(plan["window"]["of"], 1)}
    if train.get("updates_per_second"):
        batch = next(int(s.split("=")[1]) for s in plan["sets"] if s.startswith("dae.batch_size="))
        state.update({"updates_per_second": train["updates_per_second"], "batch": batch})
    write_json(os.path.join(args.gpu_dir, "state.json"), state)
    write_json(os.path.join(dest, "finish.json"), report)
    say(f"validation PSNR ({new['images']} photos): shipped {old['psnr']:.3f} dB, new {new['psnr']:.3f} dB "
        f"(16x16 thumbnails {new['thumbnails']['16x16']['psnr']:.2f} dB)")
    if args.other:
        say(f"other photos ({report['other']['new']['images']}): shipped {report['other']['shipped']['psnr']:.3f} dB, "
            f"new {report['other']['new']['psnr']:.3f} dB")
    else:
        say("no non-dog photos evaluated: give --other FOLDER (the shared data has no such set)")
    if improved:
        say(f"replaced {args.weights} (update weights/README.md's table):")
        for name, info in report["written"].items():
            say(f"  {name}  {info['bytes']:,} B  {info['sha256']}")
    else:
        say(f"not replaced: the new decoder is not better by more than {args.min_gain:g} dB; {args.weights} is "
            f"unchanged (the result stays in {dest})")
    say(f"sheets: {os.path.join(dest, 'recon-val.png')}; report: {os.path.join(dest, 'finish.json')}")
    return report


def back(args):
    done = gpu_travel.bring_back(args.root, os.path.join(args.gpu_dir, "stash"))
    say(f"{len(done)} files brought back" + "".join(f"\n  {p}: {s}" for p, s in done.items()))
    return 0


# ---------------------------------------------------------------------------------------- command line


def build_parser():
    parser = argparse.ArgumentParser(prog="gpu_dae.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)
    parser.add_argument("--gpu-dir", default=os.path.join(ROOT, GPU_DIR),
                        help="travel/, stash/, results/ and state (default runs/gpu, ignored by git)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="pack photos and starting weights (none with --scratch) into runs/gpu/travel, "
                                       "send big files away")
    p.add_argument("--config", default=os.path.join(ROOT, CONFIG))
    p.add_argument("--weights", default=os.path.join(ROOT, SHIPPED), help="starting weights (default: the shipped)")
    p.add_argument("--data", nargs="+", help="photo folders (default: the config's dae.data)")
    p.add_argument("--offset", type=int, help="first photo of the travel order (default: where the last run ended)")
    p.add_argument("--max-photos", type=int, help="pack at most this many photos")
    p.add_argument("--quality", type=int, default=40, help="WebP quality (default 40)")
    p.add_argument("--margin-mib", type=float, default=1.0, help="room left under 64 MiB (default 1)")
    p.add_argument("--minutes", type=float, default=4.0, help="train-dae --time-limit there (default 4)")
    p.add_argument("--compile-seconds", type=float, default=45.0, help="of those minutes, not training (default 45)")
    p.add_argument("--kill-after", type=float, default=330.0,
                   help="seconds after the device step starts at which training is killed (default 330)")
    p.add_argument("--code-stats-before", type=float, default=300.0,
                   help="code statistics are computed there only if training ended this early (default 300 s)")
    p.add_argument("--epochs", type=int, help="epochs (default: from the speed estimate and --minutes)")
    p.add_argument("--steps-per-epoch", type=int, default=600)
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--scratch", action="store_true",
                   help="train the config's autoencoder from random weights (no starting weights travel; "
                        "finish still replaces --weights only if better)")
    p.add_argument("--learning-rate", type=float,
                   help="the cosine's peak (default: the starting weights' last run's while its cosine goes on, "
                        "else 2e-4 from trained weights (1e-3 undid 1.5 dB of the shipped ones) and 1e-3 with "
                        "--scratch)")
    p.add_argument("--cosine-updates", type=int, default=18000,
                   help="the learning rate falls to 0 along one cosine of this many updates over successive GPU "
                        "runs, each taking it up where the starting weights' run left it (default 18000, about "
                        "5 runs; 0: each run its own cosine)")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--norms", choices=("frozen", "batch"),
                   help="frozen (default, but batch with --scratch or when the starting weights' last run "
                        "recorded batch norms): the norms train on the starting weights' statistics, fixed "
                        "(dae.freeze_norms); "
                        "batch: on each batch's, which first undid 0.4 dB of the shipped weights on the CPU "
                        "(docs/autoencoder.md)")
    p.add_argument("--updates-per-second", type=float, help="speed estimate (default: the last GPU run's)")
    p.add_argument("--wheels", help="folder with keras, namex and optree wheels (default: .whl/ if it has them, "
                                    "else download with pip)")
    p.add_argument("--no-wheels", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-away", action="store_true", help="leave big tracked files in place (the call will be refused)")
    p.set_defaults(func=prepare)
    p = sub.add_parser("command", help="print the run tool's command and carry list")
    p.add_argument("--travel", default=TRAVEL)
    p.set_defaults(func=lambda a: say(json.dumps({"command": COMMAND.format(travel=a.travel), "carry": [a.travel],
                                                  "timeout_s": TIMEOUT_S})) or 0)
    p = sub.add_parser("device", help="(on the GPU machine) train, export, leave the result in $OUT")
    p.add_argument("--travel", default=TRAVEL)
    p.add_argument("--out", help="default: $OUT")
    p.add_argument("--work", help=argparse.SUPPRESS)
    p.add_argument("--allow-cpu", action="store_true", help="train even if JAX sees no GPU (the CPU dry run)")
    p.set_defaults(func=device)
    p = sub.add_parser("finish", help="check what came back, evaluate, replace the shipped weights if better")
    p.add_argument("--from", dest="source", required=True, help="the folder the run's files came back to")
    p.add_argument("--config", default=os.path.join(ROOT, CONFIG))
    p.add_argument("--weights", default=os.path.join(ROOT, SHIPPED), help="the shipped weights to compare and replace")
    p.add_argument("--data", nargs="+", help="photo folders (default: the config's dae.data; their validation split)")
    p.add_argument("--other", help="a folder of photos that are not dogs, also evaluated (not part of the decision)")
    p.add_argument("--limit", type=int, default=256, help="the first N validation photos (default 256; 0: all)")
    p.add_argument("--min-gain", type=float, default=0.0, help="replace only if PSNR rises by more (dB, default 0)")
    p.add_argument("--code-stats-limit", type=int, default=2000)
    p.set_defaults(func=finish)
    p = sub.add_parser("back", help="bring back the files prepare sent away")
    p.set_defaults(func=back)
    p = sub.add_parser("check", help="what a call sends and brings back, against the limits")
    p.add_argument("--weights", default=os.path.join(ROOT, SHIPPED))
    p.set_defaults(func=check)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.root = os.path.abspath(args.root)
    try:
        value = args.func(args)
        return value if isinstance(value, int) else 0
    except DgnError as exc:
        print(f"gpu_dae: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
