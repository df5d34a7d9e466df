"""``dgn.render``: activation maximization from Python, with objects (lucid's ``render_vis``).

    import dgn
    clf = dgn.load_classifier("efficientnet_lite0")
    result = dgn.render(clf, "golden retriever", steps=300, seed=0)
    result.save("out/golden")            # out/golden.png and out/golden.json

The classifier is a :class:`dgn.Classifier` (:func:`dgn.load_classifier` for a built-in name or a
``.keras`` file, :func:`dgn.classifier` for a ``keras.Model`` in memory); the objective an
:class:`dgn.optvis.objectives.Objective` or a target string (``"207"``, ``"golden retriever"``,
``"207+281"``, ``"channel:LAYER:C"``, ``"neuron:LAYER:C:Y:X"``); the parameterization one of
:mod:`dgn.optvis.param` (``Generator``, ``Pixels``, ``Fourier``) or its kind; the transforms a list of
:mod:`dgn.optvis.transforms` objects or a :class:`~dgn.optvis.transforms.Transforms`; the optimizer a Keras optimizer
(a fresh copy per run) or its name. Defaults are those of an empty config (``dgn generate`` with a
minimal YAML file): the generator G trained whole, log-probability objective, Adam at
:func:`dgn.optvis.optimize.auto_learning_rate`, jitter 8 / scale 0.9..1.1 / rotate 5 with 4 copies.


``dgn generate``: one image per target, each with a JSON sidecar.
"""


import os
import time
from dataclasses import dataclass

import keras
import numpy as np

from dgn import build
from dgn.build import default_out_dir  # noqa: F401 - dgn.optvis.render.default_out_dir, as before
from dgn.classifiers import Classifier, load_classifier_named
from dgn.errors import ConfigError, DgnError
from dgn.optvis import param as param_module
from dgn.optvis.callbacks import Callback
from dgn.optvis.engine import Engine
from dgn.optvis.generator import count_trainable
from dgn.optvis.objectives import Objective, parse_target
from dgn.optvis.optimize import auto_learning_rate
from dgn.optvis.transforms import Jitter, Pad, Rotate, Scale, Transforms
from dgn.runs.folder import RunFolder
from dgn.runs.outputs import write_json, write_maps, write_png
from dgn.runs.records import RunInfo, image_record


DEFAULT_TRANSFORMS = Transforms([Jitter(8), Scale(0.9, 1.1), Rotate(5.0)], samples=4)
NO_TRANSFORMS = Transforms()


@dataclass
class Rendering:
    """What :func:`render` returns.

    ``images``: (rows, H, W, C) float32 in D's input space, the optimized images (before 8-bit
    quantization); ``rgb``: (rows, H, W, C) uint8, the PNG pixels (C 3, or 1 for a grayscale D);
    ``losses``: per step, the loss (float); ``values``: per step, per image, the target activation;
    ``evaluation``: per image, what D says of the saved PNG (``activation``, ``prob``, ``rank``,
    ``top5``); ``sidecars``: per image, the JSON sidecar ``dgn generate`` would write; ``model``: the
    optimized parameterization (with its transforms); ``maps``: per-image maps of the parameterization,
    name -> (rows, H, W) float32 (MACO's ``"transparency"``), saved beside the image."""

    images: np.ndarray
    rgb: np.ndarray
    losses: list
    values: list
    evaluation: list
    sidecars: list
    model: keras.Model = None
    maps: dict = None

    def save(self, stem, k=0):
        """Writes image ``k`` as ``<stem>.png`` and its sidecar as ``<stem>.json`` (atomically; a
        ``.png`` at the end of ``stem`` is dropped); returns the PNG's path.

        Raises:
            DgnError: an empty stem, an existing folder, or ``k`` out of range."""
        stem = os.fspath(stem)
        if stem.lower().endswith(".png"):
            stem = stem[:-4]
        if not os.path.basename(stem) or os.path.isdir(stem):
            raise DgnError(f"save({stem!r}): give a file stem such as 'runs/mine/golden' (.png and .json are added)")
        if not 0 <= k < len(self.rgb):
            raise DgnError(f"save: image {k} of {len(self.rgb)}")
        png = stem + ".png"
        sidecar = dict(self.sidecars[k], image=os.path.basename(png))
        write_png(png, self.rgb[k])
        sidecar.update(write_maps(stem, self.maps, k))
        write_json(stem + ".json", sidecar)
        return png


def as_classifier(classifier):
    """A :class:`dgn.Classifier` from one, or from a built-in name or ``.keras`` path.

    Raises:
        DgnError: a bare ``keras.Model`` (its input space is unknown) or another type."""
    if isinstance(classifier, Classifier):
        return classifier
    if isinstance(classifier, str):
        return load_classifier_named(classifier)
    if isinstance(classifier, keras.Model):
        raise DgnError("a keras.Model needs its input space: wrap it with dgn.classifier(model, "
                       "preprocessing='tf' | 'caffe' | 'unit' | 'raw')")
    raise DgnError(f"classifier {type(classifier).__name__}: give a dgn.Classifier, a built-in name or a .keras path")


def as_objective(objective, classifier):
    """An Objective from one or from a target string / class index (log-probability of the class)."""
    if isinstance(objective, Objective):
        return objective
    if isinstance(objective, (str, int, np.integer)) and not isinstance(objective, bool):
        return parse_target(str(objective), classifier, "logsoftmax", 0.0)
    raise DgnError(f"objective {objective!r}: give a dgn objective or a target string such as '207', "
                   f"'golden retriever' or 'channel:LAYER:C'")


def as_parameterization(parameterization):
    if parameterization is None:
        return param_module.Generator()
    if isinstance(parameterization, str):
        name = parameterization.strip().lower()
        return param_module.get({"pixels": "pixel", "g": "generator"}.get(name, name))
    if isinstance(parameterization, param_module.Parameterization):
        return parameterization
    raise DgnError(f"parameterization {parameterization!r}: give dgn.param.Generator(), Pixels(), Fourier() or "
                   f"one of {', '.join(param_module.PARAMETERIZATIONS)}")


def as_transforms(transforms, parameterization=None):
    """None: :data:`DEFAULT_TRANSFORMS`, or none for a parameterization with its own (``own_transforms``:
    MACO's crops)."""
    if transforms is None:
        return NO_TRANSFORMS if getattr(parameterization, "own_transforms", False) else DEFAULT_TRANSFORMS
    if isinstance(transforms, Transforms):
        return transforms
    if isinstance(transforms, (Jitter, Scale, Rotate, Pad)) or (callable(transforms)
                                                               and not isinstance(transforms, type)):
        transforms = [transforms]
    if not isinstance(transforms, (list, tuple)):
        raise DgnError(f"transforms {transforms!r}: give a list of dgn.transforms objects (Jitter, Scale, Rotate, "
                       f"Pad) or functions of the images, compose([...], samples=N), or [] for none")
    try:
        return Transforms(list(transforms), samples=1)
    except (TypeError, ValueError) as err:
        raise DgnError(f"transforms: {err}") from None


def as_optimizer(optimizer, image_size, kind="generator"):
    """A function returning a fresh Keras optimizer: from None (Adam at the automatic rate with a config's
    default betas and epsilon 1e-8), a name (``"adam"``, ``"sgd"``, ...: Keras's defaults but the
    automatic rate) or an optimizer (copied from its config)."""
    rate = auto_learning_rate(image_size, kind)
    if optimizer is None:  # the config's default optimizer section
        return lambda: keras.optimizers.Adam(rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    if isinstance(optimizer, str):
        try:
            cls = type(keras.optimizers.get(optimizer))
        except ValueError:
            raise DgnError(f"optimizer {optimizer!r}: give a Keras optimizer or its name (adam, sgd, adamax, "
                           f"...)") from None
        return lambda: cls(learning_rate=rate)
    if isinstance(optimizer, keras.optimizers.Optimizer):
        config = optimizer.get_config()
        return lambda: type(optimizer).from_config(config)
    raise DgnError(f"optimizer {optimizer!r}: give a keras.optimizers.Optimizer or its name")


def as_callbacks(callbacks):
    """A list of :class:`dgn.optvis.callbacks.Callback` from None, one callback or a list of them."""
    if callbacks is None:
        return []
    if isinstance(callbacks, Callback):
        return [callbacks]
    if not isinstance(callbacks, (list, tuple)):
        raise DgnError(f"callbacks {callbacks!r}: give a list of dgn.callbacks.Callback objects")
    bad = [cb for cb in callbacks if not isinstance(cb, Callback)]
    if bad:
        raise DgnError(f"callback {bad[0]!r}: give dgn.callbacks.Callback objects (LambdaCallback wraps functions)")
    return list(callbacks)


def check_settings(objective, steps, snapshots, display, seed):
    """:func:`render`'s small arguments.

    Raises:
        DgnError: one of them out of range (one line)."""
    if not isinstance(steps, int) or steps < 1:
        raise DgnError(f"steps {steps!r}: give a positive integer")
    if not isinstance(snapshots, int) or not 1 <= snapshots <= steps:
        raise DgnError(f"snapshots {snapshots!r}: give an integer from 1 to steps ({steps})")
    if display not in ("clip", "authors"):
        raise DgnError(f"display {display!r}: give clip or authors")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2 ** 32:
        raise DgnError(f"seed {seed!r}: give an integer from 0 to 2**32 - 1")
    if isinstance(objective, (list, tuple)) and not objective:
        raise DgnError("objective []: give an objective, a target string, or a non-empty list of them")


def render(classifier, objective, parameterization=None, transforms=None, optimizer=None, steps=300, seed=0,
           callbacks=(), snapshots=1, display="clip", progress=False):
    """Optimizes images so that ``objective`` of ``classifier`` is maximized (activation maximization;
    Despraz et al. 2017 with the default generator parameterization): one image, or with a list of B
    objectives B images side by side (one optimization step for all), image k the one objective k gets
    alone with the same seed (to float rounding; :mod:`dgn.optvis.engine`).

    Args:
        classifier: a :class:`dgn.Classifier`, a built-in name or a ``.keras`` path.
        objective: an Objective or a target string / class index, or a list of them.
        parameterization: :class:`dgn.optvis.param.Generator` (default), ``Pixels``, ``Fourier``, or a kind name.
        transforms: a list of ``Jitter`` / ``Scale`` / ``Rotate`` / ``Pad`` and functions of the images
            (one copy per step; see :class:`~dgn.optvis.transforms.Transforms`) or a ``Transforms`` (with
            ``samples``); ``[]`` for none.
        optimizer: a Keras optimizer (copied fresh for the run) or its name; default Adam at
            :func:`dgn.optvis.optimize.auto_learning_rate` of D's input size.
        steps: optimizer updates (>= 1). seed: the same seed gives the same image.
        callbacks: :class:`dgn.optvis.callbacks.Callback` objects, run after each step.
        snapshots: the final image is the median of the last ``snapshots`` renders (1: the last).
        display: "clip" (undo D's preprocessing, clip to 0..255) or "authors" (the authors' display).

    Returns:
        :class:`Rendering`, one row per objective.

    Raises:
        DgnError: a bad argument (one line), or the loss became NaN (lower the learning rate)."""
    check_settings(objective, steps, snapshots, display, seed)
    callbacks = as_callbacks(callbacks)
    classifier = as_classifier(classifier)
    many = isinstance(objective, (list, tuple))
    items = list(objective) if many else [objective]
    specs = [item if isinstance(item, (str, int, np.integer)) else None for item in items]
    objectives = [as_objective(item, classifier) for item in items]
    parameterization = as_parameterization(parameterization)
    transforms = as_transforms(transforms, parameterization)
    make_optimizer = as_optimizer(optimizer, classifier.input_shape[:2], parameterization.kind)
    started = time.time()
    engine = Engine(classifier, parameterization, transforms, make_optimizer, steps, seed=seed, snapshots=snapshots,
                    callbacks=callbacks)
    batch = engine.run(objectives if many else objectives[0], progress=progress)
    settings = {"classifier": classifier.name, "parameterization": parameterization.describe(),
                "transform": transforms.describe(), "optimizer": keras.optimizers.serialize(make_optimizer()),
                "steps": steps, "seed": seed, "snapshots": snapshots, "display": display}
    run = RunInfo(steps=steps, snapshots=snapshots, display=display, seed=seed, kind=parameterization.kind,
                  config=settings)
    rgbs, sidecars = [], []
    for k, (spec, obj) in enumerate(zip(specs, objectives)):
        rgb, sidecar = image_record(run, classifier, obj, batch.result, k, spec if spec is not None else obj.label,
                                    batch.trainable, (time.time() - started) / len(objectives))
        rgbs.append(rgb)
        sidecars.append(sidecar)
    return Rendering(images=np.asarray(batch.result.images, dtype="float32"), rgb=np.stack(rgbs),
                     losses=batch.result.losses, values=batch.result.values,
                     evaluation=[{k: s[k] for k in ("activation", "prob", "rank", "top5")} for s in sidecars],
                     sidecars=sidecars, model=batch.model, maps=dict(batch.result.extras))


NO_TARGETS = ("no targets: set objective.targets in the config (e.g. [207], [disc] or [channel:LAYER:C]) or pass "
              "--target T")


def render_target(engine, run, objective, spec, folder, progress=True):
    """Optimizes one target with ``engine`` (:class:`dgn.optvis.engine.Engine`) and writes ``<stem>.png``
    and ``<stem>.json`` into ``folder`` (a :class:`dgn.runs.folder.RunFolder`); returns (PNG path,
    sidecar). ``run``: the :class:`dgn.runs.records.RunInfo` its sidecar records; ``spec``: the target
    string."""
    stem = objective.stem(spec)
    started = time.time()
    label = f"{stem}: {run.steps} steps, {run.kind}" if run.kind != "generator" else \
        (lambda model: f"{stem}: {run.steps} steps, {count_trainable(model):,} trainable weights")
    batch = engine.run(objective, progress=progress, label=label)
    rgb, sidecar = image_record(run, engine.classifier, objective, batch.result, 0, spec, batch.trainable,
                                time.time() - started)
    sidecar["image"] = stem + ".png"
    for key in ("relu_trap", "dead_unit"):
        if sidecar.get(key):
            print(f"warning: {stem}: {sidecar[key]['warning']}", flush=True)
    return folder.write_image(stem, rgb, sidecar, batch.result.extras, 0), sidecar


def generate(cfg, targets=None, out_dir=None, progress=True, force=False):
    """``dgn generate``: every target of the config (or ``targets``), one image each; returns
    [(png_path, sidecar), ...].

    Raises:
        ConfigError: no targets. DgnError: ``out_dir`` is a file, a bad target, or ``out_dir`` holds
            another config's ``generate-all`` run (unless ``force``)."""
    folder = RunFolder(out_dir or default_out_dir(cfg.data), cfg.data)
    classifier = build.classifier(cfg.data)
    targets = list(targets) if targets else build.targets(cfg.data)
    if not targets:
        raise ConfigError(NO_TARGETS)
    # Resolve every target before the first long optimization, so a typo fails at once.
    objectives = [build.objective(spec, classifier, cfg.data) for spec in targets]
    folder.refuse_foreign(force)
    engine, run = build.engine(cfg.data, classifier), build.run_info(cfg)
    return [render_target(engine, run, objective, spec, folder, progress=progress)
            for spec, objective in zip(targets, objectives)]


def describe_result(path, sidecar):
    target = sidecar["target"]
    name = target.get("name") or target.get("layer") or sidecar["target_spec"]
    if sidecar["rank"] is not None:
        return (f"{path}: {name}: p={sidecar['prob']:.3f}, rank {sidecar['rank']} under D "
                f"(top-1: {sidecar['top5'][0]['name'] or sidecar['top5'][0]['index']})")
    return f"{path}: {name}: activation {sidecar['activation']:.3f}"
