"""``dgn generate``: one image per target, each with a JSON sidecar."""

import os
import time

from dgn import build
from dgn.errors import ConfigError
from dgn.generator import count_trainable
from dgn.outputs import write_json, write_png
from dgn.records import RunInfo, image_record

NO_TARGETS = ("no targets: set objective.targets in the config (e.g. [207], [disc] or [channel:LAYER:C]) or pass "
              "--target T")


def run_info(cfg):
    """The :class:`RunInfo` of a loaded config (steps, final median, display, seed, kind, the config)."""
    data = cfg.data
    return RunInfo(steps=data["steps"], snapshots=build.snapshots(data), display=data["output"]["display"],
                   seed=data["seed"], kind=build.kind(data), config=data, config_file=cfg.path)


def run_target(cfg, classifier, spec, out_dir, progress=True):
    """Optimizes one target and writes ``<stem>.png`` and ``<stem>.json``; returns (PNG path, sidecar)."""
    data = cfg.data
    objective = build.objective(spec, classifier, data)
    run = run_info(cfg)
    stem = objective.stem(spec)
    parameterization = build.parameterization(data)
    started = time.time()
    label = f"{stem}: {run.steps} steps, {run.kind}" if run.kind != "generator" else \
        (lambda model: f"{stem}: {run.steps} steps, {count_trainable(model):,} trainable weights")
    model, result = parameterization.optimize(
        classifier, objective, run.steps, transforms=build.transforms(data),
        optimizer=build.optimizer(data["optimizer"], classifier.input_shape[:2]), seed=data["seed"],
        snapshots=run.snapshots, progress=progress, label=label)
    png_path = os.path.join(out_dir, stem + ".png")
    rgb, sidecar = image_record(run, classifier, objective, result, 0, spec, count_trainable(model),
                                time.time() - started)
    sidecar["image"] = os.path.basename(png_path)
    for key in ("relu_trap", "dead_unit"):
        if sidecar.get(key):
            print(f"warning: {stem}: {sidecar[key]['warning']}", flush=True)
    write_png(png_path, rgb)
    write_json(os.path.join(out_dir, stem + ".json"), sidecar)
    return png_path, sidecar


def default_out_dir(cfg):
    """``output.dir``, else ``runs/<name>``, for a Config or its resolved dict."""
    return cfg["output"]["dir"] or os.path.join("runs", cfg["name"])


def generate(cfg, targets=None, out_dir=None, progress=True, force=False):
    """Runs every target of the config (or ``targets``); returns [(png_path, sidecar), ...].

    Raises:
        ConfigError: no targets. DgnError: a bad target, or ``out_dir`` holds another config's
            ``generate-all`` run (unless ``force``)."""
    from dgn.runs import refuse_foreign_run

    classifier = build.classifier(cfg.data)
    targets = list(targets) if targets else list(cfg["objective"]["targets"] or [])
    if not targets:
        raise ConfigError(NO_TARGETS)
    # Resolve every target before the first long optimization, so a typo fails at once.
    for spec in targets:
        build.objective(spec, classifier, cfg.data)
    out_dir = out_dir or default_out_dir(cfg)
    refuse_foreign_run(out_dir, cfg.data, force)
    results = []
    for spec in targets:
        results.append(run_target(cfg, classifier, spec, out_dir, progress=progress))
    return results


def describe_result(path, sidecar):
    target = sidecar["target"]
    name = target.get("name") or target.get("layer") or sidecar["target_spec"]
    if sidecar["rank"] is not None:
        return (f"{path}: {name}: p={sidecar['prob']:.3f}, rank {sidecar['rank']} under D "
                f"(top-1: {sidecar['top5'][0]['name'] or sidecar['top5'][0]['index']})")
    return f"{path}: {name}: activation {sidecar['activation']:.3f}"
