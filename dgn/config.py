"""The one config loader: YAML experiment files, validated against a schema, with ``--set`` overrides.

Every problem ends in a :class:`~dgn.errors.ConfigError` whose message is one line naming the key,
what is wrong and what would be valid. Relative paths in a config resolve against the config's folder.
"""

import copy
import json
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from dgn.errors import ConfigError, DgnError
from dgn.weights import decoder_metadata, recorded_encoder, trained_output_norm


@dataclass
class Field:
    """One config value: accepted types, default, and optional choices / bounds / path flag."""

    types: tuple
    default: Any
    choices: tuple = ()
    minimum: float = None
    maximum: float = None
    nullable: bool = False
    path: bool = False          # resolve relative to the config file's folder
    keywords: tuple = ()        # string values that are not paths (e.g. "imagenet", "auto")
    item: Any = None            # for lists: a check applied to each element
    empty: bool = False         # for lists: [] is valid
    help: str = ""
    omit: bool = False          # left out of the resolved config unless given (not part of a run's identity)
    aliases: tuple = ()         # (other spelling, choice) pairs accepted and stored as the choice


def _int_pair_list(value):
    return (isinstance(value, list) and len(value) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value))


SCHEMA = {
    "name": Field((str,), None, nullable=True, help="run name (default: the config file's stem)"),
    "seed": Field((int,), 0, minimum=0),
    "classifier": {
        "model": Field((str,), "efficientnet_lite0", path=True,
                       keywords=("efficientnet_lite0", "efficientnet_lite2", "mobilenet_v2", "vgg16", "tiny"),
                       help="efficientnet_lite0, efficientnet_lite2, mobilenet_v2, vgg16, tiny, or a .keras file"),
        "weights": Field((str,), "imagenet", nullable=True, path=True, keywords=("imagenet", "none"),
                         help="imagenet, none, or a .h5 / .weights.h5 file"),
        "preprocessing": Field((str,), None, nullable=True, choices=("caffe", "tf", "unit", "raw"),
                               help="D's input space (default: the model's own)"),
        "class_index": Field((str,), "auto", nullable=True, path=True, keywords=("auto", "none"),
                             help="auto, none, or a class names file: Keras's imagenet_class_index.json, a JSON "
                                  "list, a JSON object {index: name}, or a text file with one name per line"),
        "num_classes": Field((int,), 10, minimum=2, help="classes of the tiny built-in model"),
        "input_size": Field((int, list), None, nullable=True, item=None,
                            help="[height, width] (or one number) for a model whose input size is dynamic; "
                                 "the tiny built-in model's size (default 32)"),
        "output": Field((str,), None, nullable=True,
                        help="the classifier head (output name) for a model with several outputs"),
        "custom_code": Field((list,), None, nullable=True, path=True, item=lambda v: isinstance(v, str) and v.strip(),
                             help="Python files imported before the .keras model is loaded: those that define its "
                                  "custom layers or model class (registered with "
                                  "@keras.saving.register_keras_serializable)"),
        "safe_mode": Field((bool,), True, omit=True,
                           help="false to trust a .keras file that holds Python code (a Lambda layer): Keras's "
                                "safe_mode=False; only for files from a source you trust"),
    },
    "generator": {
        "seed_shape": Field((list,), None, nullable=True, item=lambda v: isinstance(v, int) and v > 0,
                            help="shape the feature vector is reshaped to, [h, w, c] (null, with blocks null: "
                                 "G sized to D's input; [5, 5, 128] at 224)"),
        "blocks": Field((list,), None, nullable=True, item=_int_pair_list,
                        help="list of [filters, kernel]: UpSampling2D(2), Conv valid, BN, Conv same, BN (null: "
                             "the paper's last blocks, as many as D's input size needs)"),
        "head": Field((str,), "image", choices=("image", "decoder"),
                      help="image: paper's 8a (no pretraining); decoder: 8b (autoencoder's decoder)"),
        "decoder_weights": Field((str,), None, nullable=True, path=True,
                                 help="weights of a trained decoder (dgn train-dae), or the folder holding them"),
        "trainable": Field((str,), "all", choices=("all", "alpha"),
                           help="all: train the whole generator; alpha: only the feature scale"),
        "norm": Field((str,), "image", choices=("image", "batch", "moving"),
                      help="statistics of the generator's batch norms while optimizing"),
        "output_norm": Field((str,), None, nullable=True, choices=("image", "batch", "moving"),
                             help="statistics of G's last norm (on the image); default: generator.norm, or "
                                  "moving for a decoder whose last norm trained as an affine map "
                                  "(dae.output_norm: moving)"),
        "code_stats": Field((str,), None, nullable=True, path=True,
                            help="code_stats.npz of the decoder (dgn code-stats): optimize z in "
                                 "f = mean + std * z, the encoder's code distribution of real photos"),
        "f0": Field((int, float), 1.0, help="constant value of the initial feature vector f0"),
        "noise": Field((str,), "none", choices=("additive", "multiplicative", "none"),
                       help="noise on f0 each step (the paper: additive, sigma 2)"),
        "noise_stddev": Field((int, float), 2.0, minimum=0),
        "squash": Field((bool,), True,
                        help="map G's output into D's valid input range with a sigmoid, so D optimizes what the "
                             "PNG holds (the paper: off: values outside are clipped in the PNG)"),
        "alpha_init": Field((str,), "glorot_uniform", choices=("glorot_uniform", "ones", "zeros")),
        "alpha_activation": Field((str,), "linear", choices=("linear", "relu")),
    },
    "transform": {
        "jitter": Field((int,), 8, minimum=0, help="random shift in pixels at 224x224 (scaled with D's input size), "
                        "each step (0: off)"),
        "scale": Field((list,), [0.9, 1.1], item=lambda v: isinstance(v, (int, float)) and v > 0,
                       help="[low, high] random scale factors"),
        "rotate": Field((int, float), 5.0, minimum=0, maximum=180, help="random rotation, degrees"),
        "samples": Field((int,), 4, minimum=1, help="differently transformed copies of the image D sees per step; "
                         "the objective is their mean (D costs little beside G at 224)"),
    },
    "objective": {
        "targets": Field((list,), None, nullable=True, item=lambda v: isinstance(v, (str, int)),
                         help="class index/wnid/name, 'a+b' compounds, channel:LAYER:C, neuron:LAYER:C:Y:X"),
        "channels": Field((list,), None, nullable=True, item=lambda v: isinstance(v, str) and v.strip(),
                          help="a layer atlas for generate-all (when no --classes / --channels is given): LAYER "
                               "(every channel), LAYER:A:B, LAYER:C or LAYER:1,5,9"),
        "activation": Field((str,), "logsoftmax", choices=("relu", "logit", "logsoftmax"),
                            help="target term: relu of the logit (paper), raw logit, or log-probability"),
        "others": Field((int, float), 0.0, minimum=0,
                        help="lambda: weight of the sum of the other classes' ReLU activations"),
    },
    "regularizers": {
        "image_gamma_l1": Field((int, float), 0.01, minimum=0, help="L1 on the gammas of the last BN"),
        "alpha_l2": Field((int, float), 0.0, minimum=0, help="L2 on alpha"),
    },
    "optimizer": {
        "name": Field((str,), "adam", choices=("adamax", "adam", "sgd")),
        "learning_rate": Field((int, float), None, nullable=True, minimum=0,
                               help="step size (null: 0.002 at 224x224, up to 0.01 for smaller images)"),
        "beta_1": Field((int, float), 0.9, minimum=0, maximum=1),
        "beta_2": Field((int, float), 0.999, minimum=0, maximum=1),
        "epsilon": Field((int, float), 1e-8, minimum=0),
        "momentum": Field((int, float), 0.0, minimum=0, maximum=1),
        "nesterov": Field((bool,), False),
    },
    "steps": Field((int,), 300, minimum=1),
    "precision": Field((str,), "float32", choices=("float32", "mixed_bfloat16"),
                       help="compute dtype of G and D while generating (weights, D's outputs and the "
                            "sidecar's evaluation stay float32); mixed_bfloat16 for GPUs and bfloat16 CPUs"),
    "final": {
        "mode": Field((str,), "last", choices=("last", "median"),
                      help="last state, or per-pixel median of the last `snapshots` images"),
        "snapshots": Field((int,), 10, minimum=1),
    },
    "dae": {
        "data": Field((str, list), None, nullable=True, path=True, item=lambda v: isinstance(v, str) and bool(v),
                      help="image folder (ImageNet wnid/ layout or any), or a list of folders"),
        "wnids": Field((list,), None, nullable=True, item=lambda v: isinstance(v, str),
                       help="only these top-level folders"),
        "out": Field((str,), None, nullable=True, path=True, help="training folder (default runs/<name>)"),
        "epochs": Field((int,), 10, minimum=1),
        "batch_size": Field((int,), 24, minimum=1),
        "steps_per_epoch": Field((int,), None, nullable=True, minimum=1,
                                 help="batches per epoch (checkpoint interval); default one pass over the images"),
        "optimizer": Field((str,), "adam", choices=("adam", "adadelta")),
        "learning_rate": Field((int, float), 0.001, minimum=0),
        "warmup_steps": Field((int,), 0, minimum=0,
                              help="learning rate rises linearly over this many updates (for dae.init runs)"),
        "decay_steps": Field((int,), 0, minimum=0,
                             help="after the warm-up, the learning rate falls to 0 along a cosine over this "
                                  "many updates (0: constant)"),
        "schedule_start": Field((int,), 0, minimum=0,
                                help="updates of the decay_steps cosine made by earlier runs (dae.init, each "
                                     "with its own optimizer): this run goes on from there, warmed up"),
        "noise_stddev": Field((int, float), 0.1, minimum=0, help="Gaussian noise on the input, in D's input space"),
        "validation": Field((int, float), 0.1, minimum=0, maximum=0.9),
        "augment": Field((bool,), True),
        "encoder_filters": Field((list,), [32, 64, 128, 256, 512], item=lambda v: isinstance(v, int) and v > 0,
                                   empty=True, help="filters of each conv block (one pool each); [] for none"),
        "encoder_bottleneck": Field((int,), 0, minimum=0,
                                    help="channels of a linear 1x1 convolution between the last conv block and "
                                         "the dense layer: fewer numbers into it without another pool (0: none, "
                                         "the paper)"),
        "dense": Field((int,), 2048, minimum=1),
        "decoder_norm": Field((str,), "batch", choices=("image", "batch"),
                              help="decoder's hidden norms while training: per-image or batch statistics"),
        "output_norm": Field((str,), "batch", choices=("batch", "moving"),
                             help="the decoder's last norm (on the image) while training: batch statistics "
                                  "(the paper), or moving: its stored statistics, never updated (0 and 1), "
                                  "so a plain per-channel scale gamma and shift beta"),
        "output_activation": Field((str,), "relu", choices=("relu", "linear"),
                                   help="activation of the decoder's last conv while training (the paper: relu; "
                                        "generation uses linear)"),
        "perceptual_weight": Field((int, float), 0.0, minimum=0,
                                   help="weight of the feature distance under D's early layers (0: MSE only)"),
        "perceptual_layers": Field((list,), ["block2b_add", "block3b_add"], item=lambda v: isinstance(v, str),
                                   help="D's layers whose activations the perceptual term compares"),
        "precision": Field((str,), "float32", choices=("float32", "mixed_bfloat16"),
                           help="compute dtype while training (weights stay float32); mixed_bfloat16 measured "
                                "1.6x faster on an AVX-512-BF16 CPU"),
        "norm_photos": Field((int,), 512, minimum=0,
                             help="the saved weights' norm statistics: averaged over the batch statistics of "
                                  "this many training photos (PreciseBN), not the moving averages of the last "
                                  "updates; 0: the moving averages"),
        "freeze_norms": Field((bool,), False,
                              help="for dae.init runs: the norms normalize with the statistics the init's weights "
                                   "came with, fixed, instead of each batch's, as at inference; the encoder's norms "
                                   "do not train at all (norm_photos is then not used)"),
        "stages": Field((list,), None, nullable=True, item=lambda v: isinstance(v, dict) and bool(v),
                        help="train the decoder progressively (Karras et al. 2018) with the thumbnail encoder: a "
                             "list of stages {side, updates, batch_size, fade, learning_rate, warmup, decay, "
                             "window}, the decoder's block sides in order ending at its image; a checkpoint every "
                             "dae.steps_per_epoch updates (docs/autoencoder.md); null: the whole autoencoder at "
                             "once (the paper)"),
        "init": Field((str,), None, nullable=True, path=True,
                      help="start from these trained weights (a folder with encoder.weights.h5 and "
                           "decoder.weights.h5, e.g. an export) instead of random ones; fresh optimizer"),
    },
    "output": {
        "dir": Field((str,), None, nullable=True, help="default runs/<name>"),
        "display": Field((str,), "clip", choices=("clip", "authors"),
                         help="clip: undo preprocessing and clip to 0..255; authors: shift by min, sqrt, rescale"),
    },
    # Other image parameterizations (dgn/optvis/param/) and DeepDream (dgn/optvis/dream.py). A parameterization
    # registered outside dgn (dgn.param.register) is chosen by its kind and set by a section of that name.
    "parameterization": {
        "kind": Field((str,), "generator", choices=("generator", "pixel", "fourier", "maco"),
                      aliases=(("pixels", "pixel"),),
                      help="generator: G (the paper); pixel: the pixels themselves; fourier: lucid's "
                           "1/f-scaled, colour-decorrelated spectrum; maco: phase only, natural photos' magnitude"),
        "pad": Field((int,), 0, minimum=0,
                     help="while optimizing, pad the image with mid-grey by this many pixels before the random "
                          "transform and resize back to D's size (lucid's pad; any kind; 0: off)"),
    },
    "pixel": {
        "init": Field((str,), "noise", choices=("zeros", "noise"), help="start image: zeros of D's input "
                      "space (the mean / mid-grey) or small Gaussian noise"),
        "init_stddev": Field((int, float), 2.0, minimum=0, help="noise stddev in 0..255 pixel levels"),
        "l2": Field((int, float), 0.0, minimum=0, help="L2 decay: loss + l2/2 * sum(x^2), x in D's input space "
                    "(with SGD, each step shrinks x by learning_rate * l2)"),
        "tv": Field((int, float), 0.0, minimum=0, help="total variation weight: loss + tv * sum(|grad x|^tv_beta)"),
        "tv_beta": Field((int, float), 2.0, minimum=0.5, maximum=4),
        "blur_every": Field((int,), 0, minimum=0, help="Gaussian-blur the image every N steps (0: off)"),
        "blur_sigma": Field((int, float), 0.5, minimum=0, help="blur radius (stddev) in pixels"),
        "clip_value_percentile": Field((int, float), 0.0, minimum=0, maximum=100,
                                       help="each step, zero pixels whose norm is below this percentile (0: off)"),
        "clip_contribution_percentile": Field((int, float), 0.0, minimum=0, maximum=100,
                                              help="each step, zero pixels whose contribution |x . grad| is "
                                                   "below this percentile (0: off)"),
        "clip_range": Field((bool,), True, help="each step, clip the image to D's valid input range "
                                                "(what a PNG can hold)"),
        "octaves": Field((int,), 1, minimum=1, help="optimize at growing sizes, upscaling between (1: off)"),
        "octave_scale": Field((int, float), 1.4, minimum=1.0, help="size ratio between octaves"),
    },
    "fourier": {
        "init_stddev": Field((int, float), 0.01, minimum=0, help="stddev of the initial spectrum"),
        "decay_power": Field((int, float), 1.0, minimum=0, help="spectrum scaled by 1/f^decay_power"),
        "decorrelate": Field((bool,), True, help="ImageNet colour decorrelation (lucid's SVD square root)"),
    },
    "maco": {   # dgn/optvis/param/maco.py (Fel et al. 2023); null: by D's input size
        "crops": Field((int,), None, nullable=True, minimum=1, help="random crops D sees of each image per step"),
        "box": Field((list,), None, nullable=True, item=lambda v: isinstance(v, (int, float)) and 0.05 <= v <= 1,
                     help="[first step, last step]: crop side as a fraction of the image's, linear in between"),
        "noise": Field((int, float), None, nullable=True, minimum=0, help="noise stddev on the crops, 0..255 levels"),
        "init_stddev": Field((int, float), 1.0, minimum=0, help="stddev of the initial phase"),
        "decorrelate": Field((bool,), True, help="ImageNet colour recorrelation of the image"),
        "transparency": Field((bool,), True, help="save the transparency map (summed |gradient| at the image)"),
    },
    "dream": {
        "layers": Field((list,), None, nullable=True, item=lambda v: isinstance(v, str) and v.strip(),
                        help="layers whose activation L2 norm is maximized, 'NAME' or 'NAME:WEIGHT'"),
        "octaves": Field((int,), 3, minimum=1),
        "octave_scale": Field((int, float), 1.4, minimum=1.0),
        "steps": Field((int,), 20, minimum=1, help="gradient steps per octave"),
        "learning_rate": Field((int, float), 0.01, minimum=0,
                               help="step size of the normalized gradient (gradient / mean |gradient|)"),
        "border": Field((int,), 2, minimum=0, help="activation border left out of the norm (avoids edge artifacts)"),
        "max_size": Field((int,), 512, nullable=True, minimum=16,
                          help="dream at most this long side; the detail is upscaled onto the full-size "
                               "photo (null: full size)"),
        "zoom": Field((int, float), 1.05, minimum=1.0, help="zoom factor between frames of the zoom loop"),
        "zoom_frames": Field((int,), 0, minimum=0, help="frames of the zoom loop after the first (0: off)"),
        "zoom_steps": Field((int,), 10, minimum=1, help="gradient steps per octave for each zoom frame"),
        "zoom_octaves": Field((int,), 1, minimum=1, help="octaves for each zoom frame"),
        "gif": Field((bool,), False, help="also write the zoom frames as an animated GIF"),
        "frame_ms": Field((int,), 100, minimum=10, help="GIF frame duration in milliseconds"),
    },
}


def defaults(schema=SCHEMA):
    """The config that an empty YAML file means."""
    return {k: defaults(v) if isinstance(v, dict) else copy.deepcopy(v.default) for k, v in schema.items()
            if isinstance(v, dict) or not v.omit}


def _type_name(types):
    names = {str: "a string", int: "an integer", float: "a number", bool: "true/false",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(t, t.__name__) for t in types)


def _check_value(key, value, spec, base_dir, where):
    if value is None:
        if spec.nullable:
            return None
        raise ConfigError(f"{where}: '{key}' must not be empty; give {_type_name(spec.types)}")
    ok = isinstance(value, spec.types) and not (isinstance(value, bool) and bool not in spec.types)
    if not ok and float in spec.types and isinstance(value, str):
        try:  # YAML reads 1e-8 (no dot) as a string
            value, ok = float(value), True
        except ValueError:
            pass
    if not ok:
        raise ConfigError(f"{where}: '{key}' must be {_type_name(spec.types)}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where}: '{key}' must be finite, got {value!r}")
    if spec.aliases and isinstance(value, str):
        value = dict(spec.aliases).get(value, value)
    if spec.choices and value not in spec.choices:
        other = {choice: alias for alias, choice in spec.aliases}
        valid = [f"{c} (or {other[c]})" if c in other else str(c) for c in spec.choices]
        raise ConfigError(f"{where}: '{key}' is {value!r}; valid: {', '.join(valid)}")
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(f"{where}: '{key}' must be >= {spec.minimum}, got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise ConfigError(f"{where}: '{key}' must be <= {spec.maximum}, got {value!r}")
    if spec.item is not None and isinstance(value, list):
        bad = [v for v in value if not spec.item(v)]
        if bad or not (value or spec.empty):
            raise ConfigError(f"{where}: '{key}' has an invalid element {bad[0] if bad else '(empty list)'!r}; "
                              f"expected {spec.help or 'valid elements'}")
    if spec.path and isinstance(value, str) and value not in spec.keywords:
        value = os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
    elif spec.path and isinstance(value, list):
        value = [os.path.normpath(os.path.join(base_dir, os.path.expanduser(v))) for v in value]
    return value


def validate(raw, where="config", base_dir=".", schema=SCHEMA, prefix=""):
    """Merge ``raw`` over the defaults, checking every key, type and value; returns a new dict."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: '{prefix or 'top level'}' must be a mapping of keys, got {raw!r}")
    if not prefix:
        raw = _section_aliases(raw, where)
    extension = _extension_section(raw) if not prefix else None
    if extension:
        kind = schema["parameterization"]["kind"]
        schema = {**schema, "parameterization": {**schema["parameterization"],
                                                 "kind": replace(kind, choices=kind.choices + (extension,))}}
    out = {}
    for key in raw:
        if key == extension:
            continue
        if key not in schema:
            section = f"section '{prefix}'" if prefix else "the top level"
            raise ConfigError(f"{where}: unknown key '{prefix + '.' if prefix else ''}{key}' in {section}; "
                              f"valid keys: {', '.join(schema)}")
    for key, spec in schema.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(spec, dict):
            out[key] = validate(raw.get(key), where, base_dir, spec, full)
        elif key in raw:
            out[key] = _check_value(full, raw[key], spec, base_dir, where)
        elif not spec.omit:
            out[key] = copy.deepcopy(spec.default)
    if extension:
        out[extension] = copy.deepcopy(raw[extension])
    if not prefix:
        _check_whole(out, where)
    return out


def _section_aliases(raw, where):
    """``raw`` with a section named by another spelling of a kind (``pixels:``, as ``kind: pixels``) under
    the kind's own name (``pixel:``).

    Raises:
        ConfigError: both spellings given."""
    for alias, real in SCHEMA["parameterization"]["kind"].aliases:
        if isinstance(raw.get(alias), dict):
            if real in raw:
                raise ConfigError(f"{where}: both '{alias}:' and '{real}:' sections; keep one ('{real}:')")
            raw = {(real if key == alias else key): value for key, value in raw.items()}
    return raw


def _extension_section(raw):
    """The section of a parameterization registered outside dgn (:func:`dgn.param.register`): the
    config's ``parameterization.kind`` when it is not built in and the config has a section of that
    name (a mapping). Its keys are the parameterization's fields, checked when it is built
    (:func:`dgn.build.parameterization`), not here: this module loads no parameterization."""
    section = raw.get("parameterization")
    kind = section.get("kind") if isinstance(section, dict) else None
    if isinstance(kind, str) and kind not in SCHEMA and isinstance(raw.get(kind), dict):
        return kind
    return None


def _check_whole(cfg, where):
    size = cfg["classifier"]["input_size"]
    if size is not None and not (isinstance(size, int) and size >= 8 or isinstance(size, list) and len(size) == 2
                                 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 8 for v in size)):
        raise ConfigError(f"{where}: 'classifier.input_size' must be [height, width] (integers >= 8) or one "
                          f"integer, got {size!r}")
    gen = cfg["generator"]
    shape = gen["seed_shape"]
    if shape is not None and len(shape) != 3:
        raise ConfigError(f"{where}: 'generator.seed_shape' must be [height, width, channels], got {shape}")
    if gen["trainable"] == "alpha" and gen["head"] == "decoder" and not gen["decoder_weights"]:
        raise ConfigError(f"{where}: 'generator.trainable: alpha' trains only alpha, so it needs a trained "
                          f"decoder: set 'generator.decoder_weights' (train one with `dgn train-dae`)")
    kind = cfg.get("parameterization", {}).get("kind", "generator")
    if cfg["precision"] != "float32" and kind != "generator":
        raise ConfigError(f"{where}: 'precision: {cfg['precision']}' applies to the generator; "
                          f"'parameterization.kind: {kind}' runs in float32 (remove precision)")
    t = cfg["transform"]
    if len(t["scale"]) != 2 or t["scale"][0] > t["scale"][1]:
        raise ConfigError(f"{where}: 'transform.scale' must be [low, high] with low <= high, got {t['scale']}")
    if t["samples"] > 1 and not transforms_active(t["jitter"], t["scale"], t["rotate"]):
        raise ConfigError(f"{where}: 'transform.samples: {t['samples']}' makes differently transformed copies, "
                          f"but jitter, scale and rotate are off: set one of them, or samples: 1")
    if gen["code_stats"] and not gen["decoder_weights"]:
        raise ConfigError(f"{where}: 'generator.code_stats' describes a trained decoder's codes; set "
                          f"'generator.decoder_weights' to that decoder too")
    # a folder written by `dgn train-dae` / `dgn export-dae` stands for its file
    for key, name in (("decoder_weights", "decoder.weights.h5"), ("code_stats", "code_stats.npz")):
        value = cfg["generator"][key]
        if isinstance(value, str) and os.path.isdir(value):
            if not os.path.isfile(os.path.join(value, name)):
                raise ConfigError(f"{where}: 'generator.{key}' {value} is a folder without {name}; give a folder "
                                  f"written by `dgn train-dae` or `dgn export-dae`, or the file itself")
            cfg["generator"][key] = os.path.join(value, name)
    # recorded as G will build it, so the sidecar says which last norm drew
    gen = cfg["generator"]
    if gen["decoder_weights"] and gen["output_norm"] is None:
        gen["output_norm"] = trained_output_norm(gen["decoder_weights"])
    for section, key in (("classifier", "model"), ("classifier", "weights"), ("classifier", "class_index"),
                         ("generator", "decoder_weights"), ("generator", "code_stats")):
        value = cfg[section][key]
        spec = SCHEMA[section][key]
        if isinstance(value, str) and value not in spec.keywords and not os.path.isfile(value):
            hint = {"model": f"a built-in name ({', '.join(spec.keywords)}) or an existing .keras file",
                    "weights": "'imagenet', 'none' or an existing weights file",
                    "class_index": "'auto', 'none' or an existing class names file (one name per line, a JSON "
                                   "list or object, or Keras's imagenet_class_index.json)",
                    "decoder_weights": "a decoder weights file or folder written by `dgn train-dae` or "
                                       "`dgn export-dae`",
                    "code_stats": "a code_stats.npz written by `dgn code-stats` for the decoder"}[key]
            head, colon, tail = value.rpartition(":")
            if key == "model" and colon and os.path.isfile(head):   # MODEL:PREPROCESSING is for --classifier
                hint = f"the file alone, its input space as classifier.preprocessing: {tail}"
            raise ConfigError(f"{where}: '{section}.{key}' file not found: {value}; give {hint}")
    for code in cfg["classifier"]["custom_code"] or []:
        if not os.path.isfile(code):
            raise ConfigError(f"{where}: 'classifier.custom_code' file not found: {code}; give the .py files that "
                              f"define the model's custom classes")
    dae = cfg["dae"]
    if dae["schedule_start"] and dae["decay_steps"] <= dae["schedule_start"]:
        raise ConfigError(f"{where}: 'dae.schedule_start' {dae['schedule_start']} needs 'dae.decay_steps' above it "
                          f"(the cosine's length counted from its first update; 0, a constant rate, has no "
                          f"position), got {dae['decay_steps']}")
    init = cfg["dae"]["init"]
    if init is not None:
        if not os.path.isdir(init):
            what = "a file, not a folder" if os.path.exists(init) else "no such folder"
            raise ConfigError(f"{where}: 'dae.init' {init}: {what}; give a folder written by `dgn train-dae` "
                              f"or `dgn export-dae` (encoder.weights.h5, decoder.weights.h5, decoder.json)")
        for part in ("encoder", "decoder"):
            if not os.path.isfile(os.path.join(init, f"{part}.weights.h5")):
                raise ConfigError(f"{where}: 'dae.init' {init} has no {part}.weights.h5; give a folder written "
                                  f"by `dgn train-dae` or `dgn export-dae`")
        # the last conv's activation is part of the decoder the weights were trained as: the shipped
        # decoder's ReLU cuts rare large negative values (2.5 % of them, down to -356), which a linear
        # conv passes, so a linear run from it starts at loss 4.5 instead of 0.083 (docs/autoencoder.md)
        meta_path = os.path.join(init, "decoder.json")
        try:
            meta = decoder_metadata(os.path.join(init, "decoder.weights.h5"))
            trained = meta.get("output_activation") or "relu"
        except (DgnError, OSError, ValueError, AttributeError):
            raise ConfigError(f"{where}: 'dae.init' {init}: {meta_path} is missing or unreadable; give a folder "
                              f"written by `dgn train-dae` or `dgn export-dae`") from None
        # the encoder it was trained with: another one cannot load its weights
        recorded = recorded_encoder(meta)
        if recorded.pop("kind") != "paper":
            raise ConfigError(f"{where}: 'dae.init' {init} was trained with the progressive recipe's thumbnail "
                              f"encoder, which train-dae's encoder cannot load; give a folder trained by train-dae")
        recorded.pop("cell"), recorded.pop("mix")
        differ = [f"dae.{k}={json.dumps(v, separators=(',', ':'))}" for k, v in recorded.items()
                  if v is not None and v != dae[k]]
        if differ:
            raise ConfigError(f"{where}: 'dae.init' {init} was trained with another encoder than the config's; "
                              f"set {' '.join(differ)} or give weights of this encoder")
        valid = SCHEMA["dae"]["output_activation"].choices
        if trained not in valid:
            raise ConfigError(f"{where}: 'dae.init' {init}: {meta_path} records output_activation {trained!r}, "
                              f"not one of {', '.join(valid)}; give a folder written by `dgn train-dae`")
        if trained != dae["output_activation"]:
            raise ConfigError(f"{where}: 'dae.init' {init} was trained with a {trained} last conv, but "
                              f"'dae.output_activation' is {dae['output_activation']}: that is another decoder, "
                              f"whose loss starts far above the trained one's; set dae.output_activation={trained}")


def transforms_active(jitter, scale, rotate):
    """Whether a transform with these settings changes the image (:class:`dgn.optvis.transforms.RandomAffine`)."""
    return jitter > 0 or tuple(scale) != (1.0, 1.0) or rotate > 0


def config_identity(data, ignored):
    """A copy of config dict ``data`` without the keys in ``ignored`` (paths such as ``("output", "dir")``):
    what decides an image, for telling whether a finished one can be reused."""
    ident = copy.deepcopy(data)
    for path in ignored:
        node = ident
        for key in path[:-1]:
            node = node.get(key, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return ident


def parse_set(assignment):
    """``'optimizer.learning_rate=0.01'`` -> (['optimizer', 'learning_rate'], 0.01)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected KEY=VALUE, e.g. --set optimizer.learning_rate=0.01")
    key, text = assignment.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"--set {assignment!r}: malformed key {key!r}; use dotted keys like steps or final.mode")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"--set {assignment!r}: the value is not valid YAML") from None
    return path, value


def _apply_set(raw, assignment):
    path, value = parse_set(assignment)
    node, schema = raw, SCHEMA
    for i, part in enumerate(path):
        if not isinstance(schema, dict) or part not in schema:
            where = ".".join(path[:i]) or "the top level"
            valid = ", ".join(schema) if isinstance(schema, dict) else "(none: it is a value)"
            raise ConfigError(f"--set {assignment!r}: unknown key '{'.'.join(path[:i + 1])}' in {where}; "
                              f"valid keys: {valid}")
        schema = schema[part]
        if i == len(path) - 1:
            if isinstance(schema, dict):
                raise ConfigError(f"--set {assignment!r}: '{part}' is a section; set one of its keys: "
                                  f"{', '.join(schema)}")
            if schema.path and isinstance(value, str) and value not in schema.keywords:
                value = os.path.abspath(os.path.expanduser(value))  # --set paths are relative to the cwd
            elif schema.path and isinstance(value, list) and all(isinstance(v, str) for v in value):
                value = [os.path.abspath(os.path.expanduser(v)) for v in value]
            node[part] = value
        else:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]


@dataclass
class Config:
    """A validated config: ``data`` is the fully resolved dict (what the sidecar records)."""

    data: dict
    path: str = None
    overrides: list = field(default_factory=list)

    def __getitem__(self, key):
        return self.data[key]

    @property
    def name(self):
        return self.data["name"]


def load_config(path=None, overrides=(), text=None):
    """Read, merge with defaults, apply ``--set`` overrides, validate. Raises ConfigError."""
    if text is None:
        if path is None:
            raise ConfigError("no config given: pass a YAML file, e.g. configs/quickstart.yaml")
        if os.path.isdir(path):
            raise ConfigError(f"{path} is a folder; pass a YAML config file (see configs/)")
        if not os.path.isfile(path):
            raise ConfigError(f"config file not found: {path}; pass an existing YAML file (see configs/)")
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
    where = path or "config"
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{where}: unreadable YAML{at}: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: a config must be a mapping of keys (name:, classifier:, ...), got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    for assignment in overrides:
        _apply_set(raw, assignment)
    base_dir = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    data = validate(raw, where, base_dir)
    if not data["name"]:
        data["name"] = os.path.splitext(os.path.basename(path))[0] if path else "config"
    return Config(data=data, path=os.path.abspath(path) if path else None, overrides=list(overrides))
