"""``dgn generate-all``: one image per class, B classes per optimization step, resumable and shardable.

Layout of RUN_DIR (the same as ``dgn generate``'s, so sheets, gallery and report read both):
``<stem>.png`` and ``<stem>.json`` per class (stem ``0207_golden_retriever``), ``run.json`` (the
config the run belongs to), ``manifest.jsonl`` (one line per finished class), ``sheets/``,
``report.json`` and ``index.html``.

Crash safety: every file goes to a temporary name and is renamed into place; a class is finished
when its PNG and its sidecar (written last) are present and valid. A kill at any moment loses at
most the batch in flight; the rerun skips finished classes, removes temporary files left by dead
processes and completes the manifest.


Run folders: what decides an image (a config's identity) and the one check that a finished image
can be reused, shared by ``dgn generate-all`` and ``dgn compare``.
"""


import os
import time

from dgn import build
from dgn.errors import DgnError
from dgn.optvis.batch import (BatchRunner, unit_batches, accelerated, default_batch, evaluate_batch, finished_sidecar,
                              select_units, setup_distribution, sidecar_for, unit_objective, unit_spec)
from dgn.optvis.generator import check_stack
from dgn.optvis.render import default_out_dir
from dgn.progress import Progress
from dgn.runs.folder import (MANIFEST, append_line, disk_error, now_iso, reconcile_manifest, check_run_dir,
                             clean_stale_tmp, manifest_entry, run_identity, write_atomic)
from dgn.runs.gallery import write_gallery
from dgn.runs.judge import load_judge
from dgn.runs.outputs import json_bytes, png_bytes, write_maps
from dgn.runs.records import input_files
from dgn.runs.report import load_entries, write_report
from dgn.runs.shards import parse_shard, shard_of
from dgn.runs.sheets import contact_sheets


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
    untrained configuration's B generators run (dgn.optvis.generator.build_batched_generator)."""
    data = cfg.data
    kind = build.kind(data)
    if batch is None:
        batch = default_batch(data["generator"]["trainable"] if kind == "generator" else kind)
    if not isinstance(batch, int) or batch < 1:
        raise DgnError(f"--batch {batch!r}: give a positive number of classes per step, e.g. --batch 8")
    build.snapshots(data)
    build.transforms(data)
    check_stack(stack)  # before the classifier loads
    shard = parse_shard(shard) if isinstance(shard, str) else shard
    devices = setup_distribution()
    classifier = build.classifier(data)
    if judge is not None and finish:
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
        raise disk_error(exc, run_dir, 0, len(selected)) from None
    clean_stale_tmp(run_dir)
    identity, size, files = run_identity(data), classifier.input_shape[0], input_files(data)
    stems = {c: unit_objective(c, names).stem(str(unit_spec(c))) for c in everything}
    done = {}
    for c in selected:
        side = finished_sidecar(run_dir, c, stems[c], identity, size, files, names)
        if side is not None:
            done[c] = side
    reconcile_manifest(run_dir, done, stems)
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
    for number, chunk in enumerate(unit_batches(todo, batch), start=1):
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
                side.update(write_maps(os.path.join(run_dir, stem), result.extras, k))   # before the sidecar
                write_atomic(os.path.join(run_dir, stem + ".json"), json_bytes(side))
                append_line(os.path.join(run_dir, MANIFEST),
                             manifest_entry(c, stem, side, {"shard": shard_text, "time": now_iso()}))
            except OSError as exc:
                raise disk_error(exc, os.path.join(run_dir, stem), len(done) + finished,
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
            raise disk_error(exc, run_dir, len(done) + finished, 0) from None
    return summary


def finish_run(run_dir, progress=True, judge=None):
    """Contact sheets, report.json and index.html for everything in the folder (``judge``: see
    dgn.runs.report.judge_run)."""
    if not load_entries(run_dir):
        return {}
    sheets = contact_sheets(run_dir)
    report, line = write_report(run_dir, judge=judge, progress=progress)
    gallery = write_gallery(run_dir, report)
    if progress:
        print(f"{len(sheets)} contact sheet(s) in {os.path.join(run_dir, 'sheets')}; gallery {gallery}", flush=True)
        print(line, flush=True)
    return {"sheets": sheets, "report": report, "gallery": gallery, "line": line}
