"""The frozen classifier D: loading, its input space, its logits and the layers objectives read."""

import os
from dataclasses import dataclass

import keras
import numpy as np

from dgn import imagenet
from dgn.errors import DgnError
from dgn.precision import dtype_policy, float32_output
from dgn.weights import load_weights_strict

WEIGHTS_DIR_ENV = "DGN_WEIGHTS_DIR"
BUILTIN = ("efficientnet_lite0", "efficientnet_lite2", "vgg16", "tiny")


def weights_dir():
    """Where shipped and user weights live: $DGN_WEIGHTS_DIR, else the project's weights/ folder."""
    env = os.environ.get(WEIGHTS_DIR_ENV)
    if env:
        return env
    return os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "weights")


@dataclass
class Classifier:
    """A frozen classifier with a softmax top, its input space and class names."""

    model: keras.Model
    name: str
    preprocessing: str
    class_names: list = None

    def __post_init__(self):
        self.model.trainable = False
        self.logits_model = _logits_model(self.model, self.name)
        self._features = {}
        self.optimizing = self   # the copy objectives are optimized through (bfloat16 under a mixed precision)

    @property
    def input_shape(self):
        return tuple(self.model.input_shape[1:])

    @property
    def num_classes(self):
        return int(self.logits_model.output_shape[-1])

    def layer(self, name):
        """A layer by name; a clear error listing valid layers otherwise."""
        try:
            return self.model.get_layer(name)
        except ValueError:
            raise DgnError(f"classifier {self.name} has no layer {name!r}; run `dgn info CONFIG` to list "
                           f"its layers (e.g. {', '.join(l['name'] for l in self.layers()[:3])})") from None

    def layer_channels(self, name):
        shape = self.layer(name).output.shape
        return int(shape[-1])

    def layers(self):
        """Name, output shape and channels of each layer (what filter targets can name)."""
        rows = []
        for layer in self.model.layers:
            if isinstance(layer, keras.layers.InputLayer):
                continue
            shape = tuple(layer.output.shape[1:])
            rows.append({"name": layer.name, "type": type(layer).__name__,
                         "shape": [None if s is None else int(s) for s in shape],
                         "channels": int(shape[-1]) if shape and shape[-1] is not None else None})
        return rows

    def features(self, layer_names=()):
        """A model mapping D's input to {"logits": z, <layer>: activation, ...}."""
        key = tuple(sorted(set(layer_names)))
        if key not in self._features:
            outputs = {"logits": float32_output(self.logits_model.output, "logits_float32")}
            for name in key:
                outputs[name] = float32_output(self.layer(name).output, f"{name}_float32")
            model = keras.Model(self.model.input, outputs, name=f"{self.name}_features")
            model.trainable = False
            self._features[key] = model
        return self._features[key]

    def predict_logits(self, images, batch_size=16):
        """Logits of a batch of images in D's input space (numpy in, numpy out)."""
        images = np.asarray(images, dtype="float32")
        out = [np.asarray(self.logits_model(images[i:i + batch_size], training=False))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out, axis=0)


def _logits_model(model, name):
    """The same network with its final softmax removed: the logits of the last Dense layer."""
    last = model.layers[-1]
    if isinstance(last, keras.layers.Dense):
        if keras.activations.serialize(last.activation) not in ("softmax", "linear", None) and \
                getattr(last.activation, "__name__", "") not in ("softmax", "linear"):
            raise DgnError(f"classifier {name}: the last layer {last.name!r} is a Dense with activation "
                           f"{last.activation.__name__}; dgn needs a softmax (or linear) Dense classifier top")
        logits_layer = keras.layers.Dense(last.units, activation=None, name="logits")
        logits = logits_layer(last.input)
        logits_layer.set_weights(last.get_weights())
        logits_layer.trainable = False
        return keras.Model(model.input, logits, name=f"{name}_logits")
    if isinstance(last, keras.layers.Softmax) or (
            isinstance(last, keras.layers.Activation) and getattr(last.activation, "__name__", "") == "softmax"):
        return keras.Model(model.input, last.input, name=f"{name}_logits")
    raise DgnError(f"classifier {name}: the last layer {last.name!r} ({type(last).__name__}) is not a softmax "
                   f"Dense; dgn needs a classifier whose top is Dense(softmax) or Dense + Softmax")


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
                              name=classifier.name, preprocessing=classifier.preprocessing)
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


def _load_classifier(cfg):
    model_name, weights = cfg["model"], cfg["weights"]
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
        from dgn.classifiers import efficientnet_lite
        variant = model_name.split("_", 1)[1]
        if weights == "imagenet":
            weights = os.path.join(weights_dir(), f"efficientnet_{variant}_imagenet.weights.h5")
            if not os.path.isfile(weights):
                raise DgnError(f"the shipped {model_name} weights are missing: {weights}; set "
                               f"{WEIGHTS_DIR_ENV} to the project's weights/ folder or give classifier.weights")
        model = efficientnet_lite.build_efficientnet_lite(variant)
        _load_weights(model, weights, model_name)
        preprocessing = efficientnet_lite.PREPROCESSING
    elif model_name == "tiny":
        from dgn.classifiers.tiny import build_tiny_classifier
        model = build_tiny_classifier(cfg["input_size"], cfg["num_classes"])
        if weights == "imagenet":
            raise DgnError("classifier tiny has no ImageNet weights; set classifier.weights: none or a file")
        _load_weights(model, weights, model_name)
        preprocessing = "tf"
    else:
        if not model_name.endswith(".keras"):
            raise DgnError(f"classifier.model {model_name!r}: give one of {', '.join(BUILTIN)} or a .keras file")
        try:
            model = keras.saving.load_model(model_name, compile=False)
        except Exception as exc:
            raise DgnError(f"cannot load classifier {model_name}: {str(exc).splitlines()[0]}") from None
        if weights not in (None, "none", "imagenet"):
            _load_weights(model, weights, model_name)
        if not cfg.get("preprocessing"):
            raise DgnError(f"classifier {model_name}: set classifier.preprocessing (caffe, tf, unit or raw) "
                           f"to the input space the model was trained on")
        preprocessing = cfg["preprocessing"]
        model_name = os.path.splitext(os.path.basename(model_name))[0]
    if cfg.get("preprocessing"):
        preprocessing = cfg["preprocessing"]
    classifier = Classifier(model=model, name=model_name, preprocessing=preprocessing)
    classifier.class_names = imagenet.load_class_index(cfg.get("class_index", "auto"), classifier.num_classes)
    return classifier
