"""dgn's objects from a resolved config dict (:func:`dgn.config.load_config`'s ``data``): the one place
where a YAML config becomes classifier, objective, parameterization, transforms and optimizer.

Everything below this module takes those objects; the commands (``dgn generate``, ``generate-all``,
``compare``, ``info``) and the scripts build them here.
"""

import json
import os
from dataclasses import dataclass, field, fields

import keras

from dgn.autoencoder.model import AutoencoderSpec, DaeTraining
from dgn.autoencoder.progressive import ProgressiveRecipe, Stage
from dgn.classifiers import load_classifier
from dgn.errors import ConfigError, DgnError
from dgn.optvis import param
from dgn.optvis.engine import Engine
from dgn.optvis.objectives import parse_target
from dgn.optvis.optimize import auto_learning_rate
from dgn.optvis.transforms import Jitter, Pad, Rotate, Scale, Transforms
from dgn.runs.records import RunInfo, input_files


def kind(data):
    """``parameterization.kind`` of a config dict (generator when absent)."""
    return data.get("parameterization", {}).get("kind", "generator")


def parameterization(data):
    """The :class:`dgn.optvis.param.Parameterization` a config describes (through the registry): its
    fields from the config section named after its kind (``generator:``, ``pixel:``, ``fourier:``, or the
    kind of one registered outside dgn).

    Raises:
        ConfigError: an unknown kind, or a key the parameterization has no field for."""
    name = kind(data)
    if name not in param.PARAMETERIZATIONS:
        raise ConfigError(f"parameterization.kind {name!r}: valid: {', '.join(param.PARAMETERIZATIONS)}")
    settings = dict(data.get(name) or {})   # the section named after the kind
    if name == "generator":
        settings.update(image_gamma_l1=data["regularizers"]["image_gamma_l1"],
                        alpha_l2=data["regularizers"]["alpha_l2"], precision=data.get("precision", "float32"))
    try:
        return param.get(name, **settings)
    except TypeError as err:   # a key of an outside parameterization's section that it has no field for
        raise ConfigError(f"{name}: {err}") from None


def transforms(data):
    """The config's ``transform:`` section and ``parameterization.pad`` as a :class:`Transforms`."""
    t = data["transform"]
    items = [Jitter(t["jitter"]), Scale(*t["scale"]), Rotate(t["rotate"])]
    pad = data.get("parameterization", {}).get("pad", 0)
    if pad:
        items.insert(0, Pad(pad))
    try:
        return Transforms(items, t["samples"])
    except ValueError as err:
        raise ConfigError(f"transform: {err}") from None


def optimizer(section, image_size=None, kind="generator"):
    """A function returning a fresh Keras optimizer for the config's ``optimizer:`` section;
    ``learning_rate: null`` is :func:`dgn.optvis.optimize.auto_learning_rate` of ``image_size`` (D's (H, W))
    and the parameterization's ``kind``."""
    rate = section["learning_rate"]
    name, lr = section["name"], float(auto_learning_rate(image_size, kind) if rate is None else rate)
    if name not in ("adamax", "adam", "sgd"):
        raise ConfigError(f"unknown optimizer {name!r}; valid: adamax, adam, sgd")

    def make():
        if name == "adamax":
            return keras.optimizers.Adamax(lr, beta_1=section["beta_1"], beta_2=section["beta_2"],
                                           epsilon=section["epsilon"])
        if name == "adam":
            return keras.optimizers.Adam(lr, beta_1=section["beta_1"], beta_2=section["beta_2"],
                                         epsilon=section["epsilon"])
        return keras.optimizers.SGD(lr, momentum=section["momentum"], nesterov=section["nesterov"])

    return make


def make_optimizer(section, image_size=None, kind="generator"):
    """One fresh Keras optimizer for the config's ``optimizer:`` section (see :func:`optimizer`)."""
    return optimizer(section, image_size, kind)()


def objective(spec, classifier, data):
    """The :class:`dgn.optvis.objectives.Objective` of target ``spec`` with the config's ``objective:`` settings."""
    obj = data["objective"]
    return parse_target(spec, classifier, obj["activation"], obj["others"])


def classifier(data):
    """D for the config (``classifier:`` section, ``precision``)."""
    clf = load_classifier(data["classifier"], data.get("precision", "float32"))
    clf.files = input_files({"classifier": data["classifier"]})   # digests of its weight files (caches key on them)
    return clf


def snapshots(data):
    """How many renders the final image is the median of (1: the last render); checked against steps."""
    final = data["final"]
    count = final["snapshots"] if final["mode"] == "median" else 1
    if count > data["steps"]:
        raise ConfigError(f"final.snapshots ({count}) is more than steps ({data['steps']}); lower final.snapshots")
    return count


def engine(data, classifier, stack="copies"):
    """The :class:`dgn.optvis.engine.Engine` of a config for ``classifier``: its parameterization,
    transforms, optimizer, ``steps``, ``seed`` and final median (``stack``: see
    :func:`dgn.optvis.generator.check_stack`)."""
    return Engine(classifier, parameterization(data), transforms(data),
                  optimizer(data["optimizer"], classifier.input_shape[:2], kind(data)), data["steps"], seed=data["seed"],
                  snapshots=snapshots(data), stack=stack)


def run_info(cfg):
    """The :class:`dgn.runs.records.RunInfo` of a loaded config (steps, final median, display, seed,
    kind, the config and its file): what every sidecar records of the run."""
    data = cfg.data
    return RunInfo(steps=data["steps"], snapshots=snapshots(data), display=data["output"]["display"],
                   seed=data["seed"], kind=kind(data), config=data, config_file=cfg.path)


def targets(data):
    """The config's ``objective.targets`` (target strings; empty when none)."""
    return [str(t) for t in data["objective"]["targets"] or []]


def atlas_channels(data):
    """The config's ``objective.channels`` (``LAYER[:RANGE]`` specs of a layer atlas), or None."""
    return data["objective"].get("channels") or None


def batch_kind(data):
    """What decides ``generate-all``'s default batch (:func:`dgn.optvis.batch.default_batch`): the generator's
    ``trainable`` ("all" or "alpha"), or the parameterization's kind."""
    return data["generator"]["trainable"] if kind(data) == "generator" else kind(data)


def default_out_dir(data):
    """``output.dir``, else ``runs/<name>``, for a Config or its resolved dict."""
    return data["output"]["dir"] or os.path.join("runs", data["name"])


def classifier_key(data):
    """Two configs with the same key load the same D (``classifier:`` section and ``precision``)."""
    return json.dumps([data["classifier"], data.get("precision", "float32")], sort_keys=True)


@dataclass
class DreamSettings:
    """``dgn dream``'s settings: the config's ``dream:`` section with the command line's overrides
    (:mod:`dgn.config` documents each key), ``layers`` as [(name, weight)], the ``seed``, the
    ``transforms``, and ``config``: the resolved config as the sidecar records it."""

    layers: list
    octaves: int = 3
    octave_scale: float = 1.4
    steps: int = 20
    learning_rate: float = 0.01
    border: int = 2
    max_size: int = 512
    zoom: float = 1.05
    zoom_frames: int = 0
    zoom_steps: int = 10
    zoom_octaves: int = 1
    gif: bool = False
    frame_ms: int = 100
    seed: int = 0
    transforms: Transforms = None
    config: dict = field(default_factory=dict)


def parse_layers(specs):
    """['NAME', 'NAME:WEIGHT', 'A:1,B:2'] -> [(name, weight), ...].

    Raises:
        DgnError: a weight that is not a number, an empty name, or no layers (one line)."""
    out = []
    for spec in specs or []:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            name, _, weight = part.rpartition(":") if ":" in part else (part, "", "1")
            try:
                weight = float(weight)
            except ValueError:
                raise DgnError(f"dream layer {part!r}: expected NAME or NAME:WEIGHT with a numeric weight") from None
            if not name:
                raise DgnError(f"dream layer {part!r}: the layer name is empty")
            out.append((name, weight))
    if not out:
        raise DgnError("no dream layers: set dream.layers in the config or pass --layers NAME[:WEIGHT] "
                       "(`dgn info CONFIG` lists the classifier's layers)")
    return out


def dream(data, layers=None, octaves=None, steps=None, zoom_frames=None, gif=None):
    """The :class:`DreamSettings` of a config's ``dream:`` section and ``seed``, with the command line's
    ``--layers`` / ``--octaves`` / ``--steps`` (per octave) / ``--zoom-frames`` / ``--gif``.

    Raises:
        DgnError: an override out of range, or bad or no layers (one line)."""
    section = dict(data["dream"])
    for name, value, least in (("octaves", octaves, 1), ("steps", steps, 1), ("zoom_frames", zoom_frames, 0)):
        if value is not None:
            if value < least:
                raise DgnError(f"--{name.replace('_', '-')} must be >= {least}, got {value}")
            section[name] = value
    if gif is not None:
        section["gif"] = gif
    specs = parse_layers(layers if layers else section["layers"])
    section["layers"] = [f"{n}:{w:g}" for n, w in specs]
    return DreamSettings(**{**section, "layers": specs}, seed=data["seed"], transforms=transforms(data),
                         config={**data, "dream": section})


def float32_classifier(data):
    """D in float32 whatever the config's ``precision`` (``classifier:`` section): ``dgn dream``'s, the judge's
    (:func:`dgn.runs.judge.load_judge`), the autoencoder's."""
    return load_classifier(data["classifier"])


def build_generator_for(data, classifier, rows=1, seed=0):
    """(model with the config's transforms, f0) of the config's parameterization for ``classifier``:
    what ``dgn generate`` optimizes (the transforms act while optimizing only)."""
    built = parameterization(data).build(classifier, rows, seed)
    return transforms(data).wrap(built.model, classifier.preprocessing, seed), built.f0


# ---------------------------------------------------------------- the autoencoder (dgn train-dae)

def autoencoder(data):
    """The :class:`dgn.autoencoder.model.AutoencoderSpec` of a train-dae config: ``generator.seed_shape`` /
    ``blocks``, the ``dae:`` section's layer keys, ``seed``."""
    dae, gen = data["dae"], data["generator"]
    layers = {f.name: dae[f.name] for f in fields(AutoencoderSpec) if f.name in dae}
    return AutoencoderSpec(seed_shape=gen["seed_shape"], blocks=gen["blocks"], seed=data["seed"], **layers)


def dae_training(data):
    """The :class:`dgn.autoencoder.model.DaeTraining` of a train-dae config: the ``dae:`` section's training
    keys (``dae.out`` null: runs/<name>) and ``classifier.model`` (part of the run's identity)."""
    dae = dict(data["dae"])
    dae["out"] = dae["out"] or os.path.join("runs", data["name"])
    keys = {f.name: dae[f.name] for f in fields(DaeTraining) if f.name in dae}
    return DaeTraining(classifier_model=data["classifier"]["model"], **keys)


def progressive_recipe(data):
    """The :class:`dgn.autoencoder.progressive.ProgressiveRecipe` of a train-dae config with ``dae.stages``: the stages,
    a checkpoint every ``dae.steps_per_epoch`` updates (default 250), ``dae.noise_stddev``,
    ``dae.precision``, ``dae.norm_photos``, ``seed``.

    Raises:
        ConfigError: a stage with an unknown key or a value of the wrong kind."""
    dae = data["dae"]
    known = {f.name: f.type for f in fields(Stage)}
    for i, stage in enumerate(dae["stages"]):
        unknown = sorted(set(stage) - set(known))
        if unknown or "side" not in stage or "updates" not in stage:
            what = f"unknown key {', '.join(unknown)}" if unknown else "side and updates are needed"
            raise ConfigError(f"dae.stages[{i}]: {what}; valid keys: {', '.join(known)}")
        for key, value in list(stage.items()):
            kind = {int: int, float: (int, float), bool: bool}[known[key]]
            if kind is not int and kind is not bool and isinstance(value, str):
                try:   # YAML 1.1 reads 1e-3 (no dot) as a string
                    value = stage[key] = float(value)
                except ValueError:
                    pass
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind) or (kind is not bool and value < 0):
                what = {int: "a whole number of at least 0", bool: "true or false"}.get(kind, "a number of at least 0")
                raise ConfigError(f"dae.stages[{i}].{key}: {value!r} is not valid; give {what}")
    stages = [{"batch_size": dae["batch_size"], **s} for s in dae["stages"]]
    return ProgressiveRecipe(stages=stages, checkpoint_updates=dae["steps_per_epoch"] or 250,
                             noise_stddev=dae["noise_stddev"], precision=dae["precision"], seed=data["seed"],
                             norm_photos=dae["norm_photos"])


def dae_classifier(data):
    """D for a train-dae config (``classifier:`` section, float32): its input space and size, and the
    perceptual term's layers."""
    return float32_classifier(data)
