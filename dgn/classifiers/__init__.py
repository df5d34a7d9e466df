"""The frozen classifier D: loading, its input space, its logits and the layers objectives read."""

import os
import re
import sys
import zipfile
from dataclasses import dataclass

import keras
import numpy as np

from dgn import imagenet, preprocessing
from dgn.classifiers import efficientnet_lite, mobilenet_v2
from dgn.classifiers.analysis import analyse
from dgn.classifiers.tiny import build_tiny_classifier
from dgn.errors import DgnError
from dgn.precision import dtype_policy, float32_output
from dgn.preprocessing import SPACES
from dgn.weights import load_weights_strict


WEIGHTS_DIR_ENV = "DGN_WEIGHTS_DIR"
BUILTIN = ("efficientnet_lite0", "efficientnet_lite2", "mobilenet_v2", "vgg16", "tiny")


def weights_dir():
    """Where shipped and user weights live: $DGN_WEIGHTS_DIR, else the project's weights/ folder."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "weights")


@dataclass
class Classifier:
    """A frozen classifier: the model, its input space, its logits and class names.

    The model is analysed once here (:func:`dgn.classifiers.analysis.analyse`); everything else
    reads that analysis: ``input_shape`` (H, W, C), ``num_classes``, ``layers()`` (by path,
    ``base/conv2`` inside a nested model), ``features()`` (logits and layer activations) and
    ``probabilities()`` (softmax, or sigmoid for a one-unit binary classifier).

    Raises:
        DgnError: a model dgn cannot read (see :func:`~dgn.classifiers.analysis.analyse`).
    """

    model: keras.Model
    name: str
    preprocessing: str
    class_names: list = None
    output: str = None         # the head, for a model with several outputs
    input_size: tuple = None   # (H, W) for a model with a dynamic input size

    def __post_init__(self):
        self.model.trainable = False
        self.analysis = analyse(self.model, self.name, self.output, self.input_size)
        if self.channels == 1 and self.preprocessing == "caffe":
            raise DgnError(f"classifier {self.name}: preprocessing caffe is for 3-channel BGR models; this one "
                           f"reads 1 channel: give tf, unit or raw")
        self.logits_model = keras.Model(self.analysis.inputs, self.analysis.logits, name=f"{self.name}_logits")
        self.logits_model.trainable = False
        self._features = {}
        self.optimizing = self   # the copy objectives are optimized through (bfloat16 under a mixed precision)

    @property
    def input_shape(self):
        """(H, W, C) of D's input."""
        return tuple(self.analysis.input_shape)

    @property
    def channels(self):
        """1 (grayscale) or 3 (RGB)."""
        return self.analysis.channels

    @property
    def num_classes(self):
        return int(self.analysis.head.num_classes)

    @property
    def head(self):
        return self.analysis.head

    def probabilities(self, logits):
        """Class probabilities (numpy float64, (..., classes)) of logits: the one place they are computed."""
        return self.analysis.probabilities(logits)

    def layer_output(self, name):
        """The output tensor of a layer by path, in the flat graph; a layer called several times by
        ``path#k`` (its k-th call, in the graph's order). DgnError (one line) for an unknown layer, listing
        valid ones, or for a layer called several times named without ``#k``."""
        tensor = self.analysis.tensors.get(name)
        calls = self.analysis.repeated.get(name)
        if calls:
            raise DgnError(f"layer {name!r} of classifier {self.name} is called {calls} times (one layer, shared "
                           f"weights, on several branches); name the call: "
                           f"{', '.join(f'{name}#{k}' for k in range(calls))} (in the graph's order)")
        if tensor is None:
            names = list(self.analysis.tensors)
            close = [n for n in names if n.split("/")[-1] == name.split("/")[-1]]
            hint = f"did you mean {', '.join(close[:3])}?" if close else \
                f"e.g. {', '.join(names[:3])}" if names else "this model's layers cannot be reached (subclassed)"
            raise DgnError(f"classifier {self.name} has no layer {name!r}; run `dgn info CONFIG` to list its "
                           f"layers ({hint})")
        return tensor

    def layer(self, name):
        """The Keras layer at a path (``base/conv2`` inside a nested model); DgnError listing layers otherwise."""
        self.layer_output(name)
        node = self.model
        for part in name.split("#")[0].split("/"):
            node = node.get_layer(part)
        return node

    def layer_channels(self, name):
        return int(self.layer_output(name).shape[-1])

    def layers(self):
        """Path, type, output shape and channels of each layer (what filter targets can name)."""
        return self.analysis.layer_rows()

    def features(self, layer_names=()):
        """A model mapping D's input to {"logits": z, <layer>: activation, ...}."""
        key = tuple(sorted(set(layer_names)))
        if key not in self._features:
            outputs = {"logits": float32_output(self.analysis.logits, "logits_float32")}
            for name in key:
                outputs[name] = float32_output(self.layer_output(name), f"{name.replace('/', '__')}_float32")
            model = keras.Model(self.analysis.inputs, outputs, name=f"{self.name}_features")
            model.trainable = False
            self._features[key] = model
        return self._features[key]

    def from_pixels(self, pixels):
        """8-bit images (N, H, W, 3 or 1; uint8 or float 0..255) -> D's input space, float32; RGB becomes
        grayscale (ITU-R 601 luma, as Pillow's convert("L")) for a 1-channel model and grayscale RGB for a
        3-channel one."""
        x = preprocessing.to_channels(pixels, self.channels)
        return np.asarray(preprocessing.from_rgb(x, self.preprocessing), dtype="float32")

    def predict_logits(self, images, batch_size=16):
        """Logits of a batch of images in D's input space (numpy in, numpy out)."""
        images = np.asarray(images, dtype="float32")
        out = [np.asarray(self.logits_model(images[i:i + batch_size], training=False))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out, axis=0)


def _load_weights(model, weights, name):
    if weights not in (None, "none"):
        load_weights_strict(model, weights, f"classifier {name}")


def load_classifier(cfg, precision="float32"):
    """Builds D from a config's ``classifier:`` section (a dict). With ``precision``
    "mixed_bfloat16", ``classifier.optimizing`` is a second copy computing in bfloat16 (same
    weights, float32 outputs); the classifier itself, which evaluates the images, stays float32."""
    classifier = _load_classifier(cfg)
    if precision != "float32":
        if cfg["model"].endswith(".keras"):
            # a saved model keeps the dtype policy it was saved with: clone it layer by layer in `precision`
            twin = Classifier(model=_clone_in_precision(classifier.model, precision, cfg["model"]),
                              name=classifier.name, preprocessing=classifier.preprocessing,
                              output=classifier.output, input_size=classifier.input_size)
        else:
            with dtype_policy(precision):
                twin = _load_classifier(cfg)
        twin.class_names = classifier.class_names
        classifier.optimizing = twin
    return classifier


def _clone_in_precision(model, precision, path):
    """The same network and weights with every layer computing in ``precision``."""
    def layer_in_precision(layer):
        config = layer.get_config()
        config["dtype"] = precision
        return layer.__class__.from_config(config)

    try:
        twin = keras.models.clone_model(model, clone_function=layer_in_precision)
    except ValueError:
        raise DgnError(f"classifier {path}: precision {precision} needs a Functional or Sequential model (this "
                       f"one is a subclassed {type(model).__name__}); set precision: float32") from None
    twin.set_weights(model.get_weights())
    return twin


def _import_custom_code(paths):
    """Imports the Python files that define a saved model's custom classes (their decorators register them)."""
    import importlib.util
    for path in paths:
        name = "dgn_custom_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001 - the user's file: one line saying what failed
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise DgnError(f"classifier.custom_code {path}: importing it failed ({type(exc).__name__}: "
                           f"{first})") from None


def _input_size(cfg):
    """classifier.input_size as (H, W), or None."""
    size = cfg.get("input_size")
    if size is None:
        return None
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _load_classifier(cfg):
    model_name, weights = cfg["model"], cfg["weights"]
    own = {"vgg16": "caffe", "mobilenet_v2": mobilenet_v2.PREPROCESSING}.get(
        model_name, efficientnet_lite.PREPROCESSING if model_name.startswith("efficientnet_lite") else None)
    if own and weights == "imagenet" and cfg.get("preprocessing") not in (None, own):
        raise DgnError(f"classifier {model_name} with its ImageNet weights reads {own} input, not "
                       f"{cfg['preprocessing']}: leave the preprocessing out (or give {own})")
    keras.config.set_image_data_format("channels_last")
    if model_name == "vgg16":
        if weights == "imagenet":
            try:
                model = keras.applications.VGG16(weights="imagenet", classifier_activation="softmax")
            except Exception as exc:
                raise DgnError(f"cannot download VGG-16 ImageNet weights ({type(exc).__name__}); offline, give "
                               f"classifier.weights: a local vgg16_weights_tf_dim_ordering_tf_kernels.h5") from None
        else:
            model = keras.applications.VGG16(weights=None, classifier_activation="softmax")
            _load_weights(model, weights, model_name)
        preprocessing = "caffe"
    elif model_name.startswith("efficientnet_lite"):
        variant = model_name.split("_", 1)[1]
        if weights == "imagenet":
            weights = os.path.join(weights_dir(), f"efficientnet_{variant}_imagenet.weights.h5")
            if not os.path.isfile(weights):
                raise DgnError(f"the shipped {model_name} weights are missing: {weights}; set "
                               f"{WEIGHTS_DIR_ENV} to the project's weights/ folder or give classifier.weights")
        model = efficientnet_lite.build_efficientnet_lite(variant)
        _load_weights(model, weights, model_name)
        preprocessing = efficientnet_lite.PREPROCESSING
    elif model_name == "mobilenet_v2":
        if weights == "imagenet":
            weights = os.path.join(weights_dir(), "mobilenet_v2_imagenet.weights.h5")
            if not os.path.isfile(weights):
                raise DgnError(f"the shipped {model_name} weights are missing: {weights}; set "
                               f"{WEIGHTS_DIR_ENV} to the project's weights/ folder or give classifier.weights")
        model = mobilenet_v2.build_mobilenet_v2()
        _load_weights(model, weights, model_name)
        preprocessing = mobilenet_v2.PREPROCESSING
    elif model_name == "tiny":
        size = _input_size(cfg) or (32, 32)
        if size[0] != size[1]:
            raise DgnError(f"classifier tiny is square: give classifier.input_size as one number, got {list(size)}")
        model = build_tiny_classifier(size[0], cfg["num_classes"])
        if weights == "imagenet":
            raise DgnError("classifier tiny has no ImageNet weights; set classifier.weights: none or a file (on the "
                           "command line: --set classifier.weights=none)")
        _load_weights(model, weights, model_name)
        preprocessing = "tf"
    else:
        model, preprocessing = _load_keras_file(cfg)
        model_name = os.path.splitext(os.path.basename(model_name))[0]
    if cfg.get("preprocessing"):
        preprocessing = cfg["preprocessing"]
    dynamic = model_name not in BUILTIN
    classifier = Classifier(model=model, name=model_name, preprocessing=preprocessing, output=cfg.get("output"),
                            input_size=_input_size(cfg) if dynamic else None)
    classifier.class_names = imagenet.load_class_index(cfg.get("class_index", "auto"), classifier.num_classes)
    return classifier


def _load_keras_file(cfg):
    """(model, preprocessing) of a ``.keras`` file named by a config's ``classifier:`` section; DgnError in one
    line (the whole reason) for a file Keras cannot load, naming the key that fixes it where there is one."""
    path, weights = cfg["model"], cfg["weights"]
    if not path.endswith(".keras"):
        raise DgnError(f"classifier.model {path!r}: give one of {', '.join(BUILTIN)} or a .keras file")
    if not zipfile.is_zipfile(path):
        raise DgnError(f"classifier {path} is not a .keras file (not a zip archive: corrupt or another "
                       f"format); save the model with model.save('NAME.keras')")
    _import_custom_code(cfg.get("custom_code") or [])
    safe_mode = cfg.get("safe_mode", True)
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=safe_mode)
    except Exception as exc:
        text = " ".join(str(exc).split())
        missing = re.search(r"Could not locate (?:class|function) '([^']+)'", text)
        if missing:
            raise DgnError(f"cannot load classifier {path}: it uses the custom class or function "
                           f"{missing.group(1)!r}, which is not defined; set classifier.custom_code: [FILE.py] "
                           f"to the file that defines it (decorated with "
                           f"@keras.saving.register_keras_serializable)") from None
        if safe_mode and "safe_mode" in text:
            raise DgnError(f"cannot load classifier {path}: it holds Python code (a Lambda layer), which Keras's "
                           f"safe mode refuses to run; if you trust the file, set classifier.safe_mode: false "
                           f"(on the command line: --set classifier.safe_mode=false; Python: "
                           f"dgn.load_classifier(..., safe_mode=False))") from None
        raise DgnError(f"cannot load classifier {path}: {text}") from None
    if weights not in (None, "none", "imagenet"):
        _load_weights(model, weights, path)
    if not cfg.get("preprocessing"):
        raise DgnError(f"classifier {path}: say what input space the model was trained on: {path}:PREPROCESSING "
                       f"on the command line or in Python (one of caffe, tf, unit, raw; e.g. {path}:tf), or "
                       f"classifier.preprocessing in a config")
    return model, cfg["preprocessing"]


def split_model(name):
    """(model, preprocessing) of the one syntax that names a model with its input space everywhere
    (``--classifier``, ``--judge``, :func:`dgn.load_classifier`): ``MODEL[:PREPROCESSING]``, e.g.
    ``mine.keras:tf``; preprocessing None where it is not given (a built-in model knows its own). A
    file whose own name holds ':' is taken whole.

    Raises:
        DgnError: an unknown or empty preprocessing after the model's name, or two of them (one line)."""
    text = os.fspath(name) if isinstance(name, os.PathLike) else str(name)
    path, sep, space = text.rpartition(":")
    if not sep or os.path.isfile(text) or text in BUILTIN:
        return text, None
    valid = ", ".join(preprocessing.SPACES)
    if space in preprocessing.SPACES:
        first = path.rpartition(":")
        if first[1] and first[2] in preprocessing.SPACES and not os.path.isfile(path):
            raise DgnError(f"two preprocessings in {text!r}: give one, MODEL:PREPROCESSING with one of {valid}")
        return path, space
    if path.endswith(".keras") or path in BUILTIN or os.path.isfile(path):
        what = f"unknown preprocessing {space!r}" if space else "no preprocessing after ':'"
        raise DgnError(f"{what} in {text!r}; valid: {valid}")
    return text, None


def load_classifier_named(model, weights="imagenet", preprocessing=None, class_index="auto", input_size=None,
                          output=None, custom_code=None, num_classes=10, precision="float32", safe_mode=True):
    """D from a built-in name (efficientnet_lite0, efficientnet_lite2, mobilenet_v2, vgg16, tiny) or a ``.keras`` path
    (``MODEL:PREPROCESSING`` names its input space too, as ``--classifier`` and ``--judge``: :func:`split_model`),
    with the meanings of the config's ``classifier:`` keys (``weights``: imagenet, none or a file;
    ``preprocessing``: caffe, tf, unit or raw, required for a .keras file; ``class_index``: auto, none or a
    class names file; ``input_size``: (H, W) or one number for a model whose input size is dynamic;
    ``safe_mode``: False to trust a ``.keras`` file that holds Python code, a ``Lambda`` layer, as Keras's
    ``load_model(safe_mode=False)``: only for a file from a source you trust).

    Raises:
        DgnError: an unknown name, a missing or unreadable file, a model dgn cannot read (one line)."""
    if isinstance(model, os.PathLike):
        model = os.fspath(model)
    if preprocessing is not None and preprocessing not in SPACES:
        raise DgnError(f"unknown preprocessing {preprocessing!r}; valid: {', '.join(SPACES)}")
    if isinstance(model, str):
        model, space = split_model(model)
        if space and preprocessing and space != preprocessing:
            raise DgnError(f"{model}:{space} names preprocessing {space}, but preprocessing={preprocessing!r} was "
                           f"given too: give one of them")
        preprocessing = preprocessing or space
    if not isinstance(safe_mode, bool):
        raise DgnError(f"safe_mode {safe_mode!r}: give True or False (a bool)")
    if not isinstance(model, str) or not (model in BUILTIN or model.endswith(".keras")):
        raise DgnError(f"classifier {model!r}: give one of {', '.join(BUILTIN)} or a .keras file")
    if model.endswith(".keras") and not os.path.isfile(model):
        raise DgnError(f"classifier file not found: {model}")
    section = {"model": model, "weights": weights or "none", "preprocessing": preprocessing,
               "class_index": class_index or "none", "input_size": list(input_size) if isinstance(input_size, tuple)
               else input_size, "output": output, "custom_code": custom_code, "num_classes": num_classes,
               "safe_mode": bool(safe_mode)}
    return load_classifier(section, precision)


def classifier(model, preprocessing, class_names=None, name=None, output=None, input_size=None):
    """A :class:`Classifier` for a ``keras.Model`` in memory. ``preprocessing``: the input space it was
    trained on: ``tf`` (-1..1), ``caffe`` (BGR minus the ImageNet mean), ``unit`` (0..1), ``raw`` (0..255).
    ``class_names``: a list of names (index order), or None. ``output``: the head's output name for a
    model with several outputs; ``input_size``: (H, W) for a model with a dynamic input size.

    Raises:
        DgnError: an unknown preprocessing, class names that do not match the classes, a model dgn
            cannot read (see :func:`~dgn.classifiers.analysis.analyse`)."""
    if not isinstance(model, keras.Model):
        raise DgnError(f"dgn.classifier({model!r}): give a keras.Model (or dgn.load_classifier for a name or a "
                       f".keras file)")
    if preprocessing not in ("caffe", "tf", "unit", "raw"):
        raise DgnError(f"preprocessing {preprocessing!r}: give caffe, tf, unit or raw")
    if isinstance(input_size, int):
        input_size = (input_size, input_size)
    clf = Classifier(model=model, name=name or model.name, preprocessing=preprocessing, output=output,
                     input_size=tuple(input_size) if input_size else None)
    if class_names is not None:
        names = [str(n) for n in class_names]
        if len(names) != clf.num_classes:
            raise DgnError(f"class_names has {len(names)} names but the model has {clf.num_classes} classes")
        clf.class_names = [(None, n) for n in names]
    return clf
