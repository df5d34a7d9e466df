"""Generation in mixed_bfloat16: G and an optimizing copy of D compute in bfloat16, the images,
D's outputs and the sidecar's evaluation stay float32, and nothing leaks into later models."""

import json
import os

import keras
import numpy as np
import pytest
from PIL import Image

from dgn.classifiers import load_classifier
from dgn.cli import main
from dgn.config import load_config
from dgn.build import build_generator_for
from dgn.optvis.render import generate
from dgn.optvis.objectives import parse_target

TRANSFORMS = "transform: {jitter: 2, scale: [0.9, 1.1], rotate: 5}\n"


def compute_dtypes(model):
    out = set()
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if layer.weights or isinstance(layer, keras.layers.Conv2D):
            out.add(layer.compute_dtype)
    return out


def test_mixed_bfloat16_generator_and_optimizing_classifier(tiny_config, tmp_path):
    cfg = load_config(tiny_config(TRANSFORMS + "precision: mixed_bfloat16\n"))
    classifier = load_classifier(cfg["classifier"], cfg["precision"])
    assert classifier.optimizing is not classifier
    assert compute_dtypes(classifier.model) == {"float32"}
    assert "bfloat16" in compute_dtypes(classifier.optimizing.model)
    # the two copies hold the same weights; D's outputs are float32 either way
    for a, b in zip(classifier.model.weights, classifier.optimizing.model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    features = classifier.optimizing.features(["conv2"])
    generator, f0 = build_generator_for(cfg.data, classifier)
    assert "bfloat16" in compute_dtypes(generator)
    assert all(v.dtype == "float32" for v in generator.trainable_variables)
    image = generator(f0, training=True)
    assert keras.backend.standardize_dtype(image.dtype) == "float32"
    out = features(image)
    assert set(out) == {"logits", "conv2"}
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in out.values())
    # bfloat16 logits are close to float32 ones (3 significant digits), not equal
    exact = np.asarray(classifier.logits_model(image))
    np.testing.assert_allclose(np.asarray(out["logits"]), exact, rtol=0.05, atol=0.05)
    # nothing leaks: models built afterwards are float32
    assert keras.config.dtype_policy().name == "float32"
    assert compute_dtypes(load_classifier(cfg["classifier"]).model) == {"float32"}


def test_mixed_bfloat16_run_writes_a_float32_evaluated_sidecar(tiny_config, tmp_path):
    path = tiny_config(TRANSFORMS + "precision: mixed_bfloat16\n")
    (png, side), = generate(load_config(path), out_dir=str(tmp_path / "bf16"), progress=False)
    assert side["config"]["precision"] == "mixed_bfloat16"
    assert side["activation_during"]["last"] > side["activation_during"]["first"]
    # the sidecar's numbers are the float32 D's on the PNG as saved
    cfg = load_config(path)
    classifier = load_classifier(cfg["classifier"])
    rgb = np.asarray(Image.open(png).convert("RGB"), dtype="float32")
    logits = classifier.predict_logits((rgb / 127.5 - 1)[None])[0]
    objective = parse_target("3", classifier, "logit", 0.01)
    assert side["activation"] == pytest.approx(float(logits[3]), abs=1e-4)
    assert objective.describe()["index"] == 3
    # same seed, same image
    (png2, _), = generate(load_config(path), out_dir=str(tmp_path / "again"), progress=False)
    assert open(png, "rb").read() == open(png2, "rb").read()


@pytest.mark.parametrize("extra", ["", "generator: {seed_shape: [5, 5, 8], blocks: [[16, 2], [16, 2]], "
                                       "noise: multiplicative, noise_stddev: 0.2}\n"])
def test_generate_all_in_mixed_bfloat16(tiny_config, tmp_path, extra):
    """Batched (B independent generators, or B alpha rows through one decoder) in bfloat16."""
    path = tiny_config(TRANSFORMS + extra + "precision: mixed_bfloat16\nsteps: 5\n")
    assert main(["generate-all", path, "--classes", "0:3", "--batch", "3", "--out", str(tmp_path / "all"),
                 "--quiet"]) == 0
    sides = [json.load(open(os.path.join(tmp_path, "all", f))) for f in sorted(os.listdir(tmp_path / "all"))
             if f.endswith(".json") and f[0].isdigit()]
    assert len(sides) == 3 and all(np.isfinite(s["activation"]) for s in sides)


def test_precision_is_for_the_generator_only(tiny_config, capsys):
    path = tiny_config("parameterization: {kind: pixel}\nprecision: mixed_bfloat16\n")
    assert main(["generate", path, "--quiet"]) == 2
    assert "precision" in capsys.readouterr().err


def test_mixed_bfloat16_on_jax(tiny_config, tmp_path):
    """The GPU machine runs JAX: the same config generates there too (here on JAX's CPU)."""
    import subprocess
    import sys

    path = tiny_config(TRANSFORMS + "precision: mixed_bfloat16\nsteps: 5\n")
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "dgn", "generate", path, "--out", str(tmp_path / "jax"), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    side = json.load(open(tmp_path / "jax" / "0003.json"))
    assert side["backend"] == "jax" and np.isfinite(side["activation"])


def test_saved_keras_classifier_gets_a_bfloat16_twin(tmp_path):
    """A .keras file keeps the dtypes it was saved with; under mixed_bfloat16 it is cloned layer by layer."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="predictions")(x))
    path = str(tmp_path / "clf.keras")
    model.save(path)
    cfg = {"model": path, "weights": None, "preprocessing": "unit", "class_index": "none"}
    classifier = load_classifier(cfg, "mixed_bfloat16")
    assert compute_dtypes(classifier.model) == {"float32"}
    assert compute_dtypes(classifier.optimizing.model) == {"bfloat16"}
    for a, b in zip(classifier.model.weights, classifier.optimizing.model.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype("float32")
    out = classifier.optimizing.features(["conv"])(x)
    assert all(keras.backend.standardize_dtype(v.dtype) == "float32" for v in out.values())
    np.testing.assert_allclose(np.asarray(out["logits"]), classifier.predict_logits(x), rtol=0.05, atol=0.05)
    assert not np.array_equal(np.asarray(out["logits"]), classifier.predict_logits(x))


def test_subclassed_classifier_cannot_be_made_bfloat16():
    from dgn.classifiers import _clone_in_precision
    from dgn.errors import DgnError

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3, activation="softmax")

        def call(self, x):
            return self.dense(x)

    with pytest.raises(DgnError, match="Functional or Sequential.*precision: float32"):
        _clone_in_precision(Subclassed(), "mixed_bfloat16", "sub.keras")


def test_dtype_policy_is_per_thread():
    """A bfloat16 build in one thread leaves another thread's models float32."""
    import threading

    from dgn.precision import dtype_policy
    inside, release, seen = threading.Event(), threading.Event(), {}

    def build_in_bfloat16():
        with dtype_policy("mixed_bfloat16"):
            seen["thread"] = keras.layers.Dense(2).compute_dtype
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=build_in_bfloat16)
    thread.start()
    assert inside.wait(10)
    seen["main"] = keras.layers.Dense(2).compute_dtype
    release.set()
    thread.join()
    assert seen == {"thread": "bfloat16", "main": "float32"}
