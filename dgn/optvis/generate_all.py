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
from dgn.optvis.batch import (unit_batches, accelerated, default_batch, evaluate_batch, select_units,
                              setup_distribution, sidecar_for, unit_objective, unit_spec)
from dgn.optvis.generator import check_stack
from dgn.progress import Progress
from dgn.runs.folder import RunFolder, disk_error, now_iso
from dgn.runs.gallery import write_gallery
from dgn.runs.judge import load_judge
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
    untrained configuration's B generators run (dgn.optvis.generator.build_batched_generator).

    Over 60 lines: the command's steps in the order a run meets them (checks before D loads, selection,
    the folder's finished units, the batches with their crash-safe writes, the last shard's finish), each
    a few lines on the engine and the run folder."""
    data = cfg.data
    if batch is None:
        batch = default_batch(build.batch_kind(data))
    if not isinstance(batch, int) or batch < 1:
        raise DgnError(f"--batch {batch!r}: give a positive number of classes per step, e.g. --batch 8")
    build.snapshots(data)
    build.transforms(data)
    check_stack(stack)  # before the classifier loads
    run_dir = out_dir or build.default_out_dir(data)
    folder = RunFolder(run_dir, data)
    shard = parse_shard(shard) if isinstance(shard, str) else shard
    devices = setup_distribution()
    classifier = build.classifier(data)
    if judge is not None and finish:
        judge = load_judge(judge)
    names = classifier.class_names
    where = "--channels"
    if not channels and classes is None and build.atlas_channels(data):
        channels, where = build.atlas_channels(data), "objective.channels"   # the config's atlas
    everything = select_units(classifier, classes, channels, where)
    selected = shard_of(everything, shard)
    try:
        folder.claim(force)
    except OSError as exc:
        raise disk_error(exc, run_dir, 0, len(selected)) from None
    size = classifier.input_shape[0]
    units = {c: unit_objective(c, names) for c in everything}
    stems = {c: units[c].stem(str(unit_spec(c))) for c in everything}
    done = {}
    for c in selected:
        side = folder.finished(stems[c], units[c], size)
        if side is not None:
            done[c] = side
    folder.reconcile(done, stems)
    todo = [c for c in selected if c not in done]
    engine, run = build.engine(data, classifier, stack), build.run_info(cfg)
    where = f" (shard {shard[0]}/{shard[1]})" if shard else ""
    noun = "channels" if channels else "classes"
    if progress:
        print(f"generate-all{where}: {len(selected)} {noun}, {len(done)} already done, {len(todo)} to do, "
              f"{batch if not todo else min(batch, len(todo))} per step"
              + (f" over {devices} devices" if devices > 1 else "")
              + f", {engine.steps} steps, into {run_dir}", flush=True)
    bar = Progress(len(todo), unit=noun[:-2] if noun == "classes" else "channel", enabled=progress and bool(todo))
    objectives = {c: build.objective(str(unit_spec(c)), classifier, data) for c in todo}
    finished = 0
    shard_text = f"{shard[0]}/{shard[1]}" if shard else None
    pad = accelerated() if pad is None else pad
    for number, chunk in enumerate(unit_batches(todo, batch), start=1):
        started = time.time()
        shown = ", ".join(str(c[2]) if isinstance(c, tuple) else str(c) for c in chunk)
        layer = f" of {chunk[0][1]}" if isinstance(chunk[0], tuple) else ""
        label = f"batch {number}: {noun} {shown}{layer}" if progress and bar.interactive else None
        rows = [objectives[c] for c in chunk]
        if pad and len(chunk) < batch and engine.compiled(rows + [rows[-1]] * (batch - len(chunk))):
            rows += [rows[-1]] * (batch - len(chunk))
        result = engine.run(rows, progress=bool(label), label=label)
        evaluated = evaluate_batch(run, classifier, result, len(chunk))
        seconds = time.time() - started
        for k, c in enumerate(chunk):
            info = {"size": len(chunk), "row": k, "shard": shard_text}
            if isinstance(c, tuple):
                info.update(layer=c[1], channels=[u[2] for u in chunk])
            else:
                info["classes"] = list(chunk)
            if len(rows) > len(chunk):
                info["padded_to"] = len(rows)
            stem, rgb, side = sidecar_for(run, classifier, result, k, unit_spec(c), info, seconds, evaluated[k])
            try:
                folder.write_image(stem, rgb, side, result.result.extras, k)
                folder.record(c, stem, side, {"shard": shard_text, "time": now_iso()})
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
        left = [c for c in everything if c not in selected and folder.finished(stems[c], units[c], size) is None]
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
