"""MobileNetV2 port: the shipped weights reproduce torchvision, and the built-in name works as D and judge.

The reference logits in tests/data were computed with torchvision's own mobilenet_v2 by
scripts/convert_mobilenet_v2.py; no torch is needed here.
"""

import os
import re

import keras
import numpy as np
import pytest

from dgn.classifiers.mobilenet_v2 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_SIZE,
    PREPROCESSING,
    build_mobilenet_v2,
    preprocess_input,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS = os.path.join(ROOT, "weights", "mobilenet_v2_imagenet.weights.h5")
REFERENCE = os.path.join(ROOT, "tests", "data", "mobilenet_v2_reference.npz")

# Measured on torchvision's model: sum(p.numel() for p in model.parameters()) and the BatchNorm
# running mean/var buffers.
TORCH_PARAMS = 3_504_872
TORCH_BN_BUFFERS = 34_112


def _logits(model, x):
    features = keras.Model(model.input, model.get_layer("top_dropout").output)
    kernel, bias = model.get_layer("predictions").get_weights()
    return np.asarray(features(x, training=False)) @ kernel + bias


@pytest.fixture(scope="module")
def shipped():
    if not os.path.exists(WEIGHTS):
        pytest.skip(f"{WEIGHTS} not present")
    return build_mobilenet_v2(weights=WEIGHTS), np.load(REFERENCE)


def test_matches_torchvision_reference_logits(shipped):
    model, ref = shipped
    images = ref["images"]
    assert images.shape == (4, INPUT_SIZE, INPUT_SIZE, 3)
    x = preprocess_input(images)
    np.testing.assert_array_equal(x, images.astype(np.float32) / 255.0)
    got = _logits(model, x)
    want = ref["logits"]
    assert got.shape == want.shape == (4, 1000)
    assert np.abs(got - want).max() <= 1e-3
    probs = np.asarray(model(x, training=False))
    e = np.exp(want - want.max(1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(1, keepdims=True), atol=1e-5)


def test_parameter_count_equals_torchvision(shipped):
    model, ref = shipped
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == TORCH_PARAMS == int(ref["torch_params"])
    assert int(ref["torch_buffers"]) == TORCH_BN_BUFFERS
    assert model.count_params() == TORCH_PARAMS + TORCH_BN_BUFFERS


def test_normalize_layer_is_torchvision_mean_std():
    model = build_mobilenet_v2(input_shape=(2, 2, 3))
    norm = keras.Model(model.input, model.get_layer("normalize").output)
    x = np.random.default_rng(0).uniform(0, 1, (1, 2, 2, 3)).astype("float32")
    want = (x - np.asarray(IMAGENET_MEAN, "float32")) / np.asarray(IMAGENET_STD, "float32")
    np.testing.assert_allclose(np.asarray(norm(x)), want, atol=1e-5)


def test_dynamic_input_shape_model_matches(shipped):
    _, ref = shipped
    dyn = build_mobilenet_v2(input_shape=(None, None, 3), weights=WEIGHTS)
    x = preprocess_input(ref["images"][:1])
    assert np.abs(_logits(dyn, x) - ref["logits"][:1]).max() <= 1e-3


def test_structure_and_layer_names():
    model = build_mobilenet_v2()
    last = model.layers[-1]
    assert isinstance(last, keras.layers.Dense) and last.name == "predictions"
    assert last.get_config()["activation"] == "softmax" and last.units == 1000
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    pattern = re.compile(r"^(input|normalize|stem_(pad|conv|bn|relu)|top_(conv|bn|relu|dropout)|avg_pool"
                         r"|predictions|block([0-9]|1[0-6])_(expand_(conv|bn|relu)|dwconv(_pad|_bn|_relu)?"
                         r"|project_(conv|bn)|add))$")
    assert [n for n in names if not pattern.match(n)] == []
    assert "block0_expand_conv" not in names and "block16_project_bn" in names
    assert len([n for n in names if n.endswith("_add")]) == 10
    assert model.input_shape == (None, INPUT_SIZE, INPUT_SIZE, 3)
    assert model.get_layer("top_conv").output.shape[-1] == 1280


def test_builtin_name_as_classifier_and_judge(shipped):
    from dgn.classifiers import BUILTIN, load_classifier_named
    from dgn.runs.judge import judge_image, load_judge

    assert "mobilenet_v2" in BUILTIN
    _, ref = shipped
    clf = load_classifier_named("mobilenet_v2")
    assert clf.preprocessing == PREPROCESSING == "unit"
    assert clf.input_shape == (INPUT_SIZE, INPUT_SIZE, 3) and clf.num_classes == 1000
    assert clf.class_names[1][1] == "goldfish"
    logits = clf.predict_logits(clf.from_pixels(ref["images"]))
    assert np.abs(logits - ref["logits"]).max() <= 1e-3
    judge = load_judge("mobilenet_v2")
    view = judge_image(judge, ref["images"][2], [int(ref["logits"][2].argmax())])
    assert view["classifier"] == "mobilenet_v2" and view["rank"] == 1


def test_missing_weights_is_one_line_error(tmp_path, monkeypatch):
    from dgn.classifiers import load_classifier_named
    from dgn.errors import DgnError

    monkeypatch.setenv("DGN_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(DgnError, match=r"shipped mobilenet_v2 weights are missing") as info:
        load_classifier_named("mobilenet_v2")
    assert "\n" not in str(info.value)
