"""EfficientNet-Lite port: shipped weights reproduce the PyTorch reference.

The reference logits in tests/data were computed with the PyTorch model
(efficientnet_lite_pytorch 0.1.0) by scripts/convert_efficientnet_lite.py;
no torch is needed here.
"""

import os
import re

import keras
import numpy as np
import pytest

from dgn.classifiers.efficientnet_lite import (
    DEFAULT_INPUT_SIZES,
    PREPROCESSING,
    build_efficientnet_lite,
    preprocess_input,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Measured on the PyTorch reference: sum(p.numel() for p in model.parameters())
# and the BatchNorm running mean/var buffers.
TORCH_PARAMS = {"lite0": 4_652_008, "lite2": 6_092_072}
TORCH_BN_BUFFERS = {"lite0": 42_016, "lite2": 58_096}


def _paths(variant):
    w = os.path.join(ROOT, "weights", f"efficientnet_{variant}_imagenet.weights.h5")
    r = os.path.join(ROOT, "tests", "data", f"efficientnet_{variant}_reference.npz")
    return w, r


def _logits(model, x):
    features = keras.Model(model.input, model.get_layer("top_dropout").output)
    kernel, bias = model.get_layer("predictions").get_weights()
    return np.asarray(features(x, training=False)) @ kernel + bias


@pytest.fixture(scope="module", params=["lite0", "lite2"])
def shipped(request):
    variant = request.param
    weights, ref = _paths(variant)
    if not os.path.exists(weights):
        pytest.skip(f"{weights} not present")
    model = build_efficientnet_lite(variant, weights=weights)
    return variant, model, np.load(ref)


def test_matches_pytorch_reference_logits(shipped):
    variant, model, ref = shipped
    images = ref["images"]
    assert images.shape[1:] == (DEFAULT_INPUT_SIZES[variant],) * 2 + (3,)
    x = preprocess_input(images)
    np.testing.assert_array_equal(x, images.astype(np.float32) / 127.5 - 1.0)
    got = _logits(model, x)
    want = ref["logits"]
    assert got.shape == want.shape == (4, 1000)
    assert np.abs(got - want).max() <= 1e-3
    # The softmax output is the softmax of those logits.
    probs = np.asarray(model(x, training=False))
    e = np.exp(want - want.max(1, keepdims=True))
    np.testing.assert_allclose(probs, e / e.sum(1, keepdims=True), atol=1e-5)


def test_parameter_count_equals_pytorch(shipped):
    variant, model, ref = shipped
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == TORCH_PARAMS[variant] == int(ref["torch_params"])
    assert model.count_params() == TORCH_PARAMS[variant] + TORCH_BN_BUFFERS[variant]


def test_dynamic_input_shape_model_matches(shipped):
    """(None, None, 3) model loads the same file and agrees at the default size."""
    variant, model, ref = shipped
    weights, _ = _paths(variant)
    dyn = build_efficientnet_lite(variant, input_shape=(None, None, 3), weights=weights)
    x = preprocess_input(ref["images"][:1])
    assert np.abs(_logits(dyn, x) - ref["logits"][:1]).max() <= 1e-3


@pytest.mark.parametrize("variant", ["lite0", "lite1", "lite2", "lite3", "lite4"])
def test_structure_and_layer_names(variant):
    model = build_efficientnet_lite(variant)
    last = model.layers[-1]
    assert isinstance(last, keras.layers.Dense)
    assert last.name == "predictions"
    assert last.get_config()["activation"] == "softmax"
    assert last.units == 1000
    names = [layer.name for layer in model.layers]
    assert len(names) == len(set(names))
    pattern = re.compile(
        r"^(input|stem_(pad|conv|bn|relu)|top_(conv|bn|relu|dropout)|avg_pool|predictions"
        r"|block[1-7][a-z]_(expand_(conv|bn|relu)|dwconv(_pad|_bn|_relu)?"
        r"|project_(conv|bn)|drop|add))$"
    )
    assert [n for n in names if not pattern.match(n)] == []
    for required in ("stem_conv", "stem_bn", "stem_relu", "block1a_dwconv",
                     "block1a_project_conv", "block2b_expand_conv", "top_conv",
                     "top_bn", "top_relu", "avg_pool"):
        assert required in names
    assert "block1a_expand_conv" not in names  # expand ratio 1
    size = DEFAULT_INPUT_SIZES[variant]
    assert model.input_shape == (None, size, size, 3)
    assert model.get_layer("top_conv").output.shape[-1] == 1280


def test_block_counts():
    def blocks(variant):
        names = [layer.name for layer in build_efficientnet_lite(variant).layers]
        return sorted({n.split("_")[0] for n in names if n.startswith("block")})

    b0 = blocks("lite0")
    assert len(b0) == 16 and b0[-1] == "block7a" and "block6d" in b0
    b2 = blocks("lite2")
    # lite2: depth 1.2 on stages 2-6 (first and last fixed): 1+3+3+4+4+5+1 = 21
    assert len(b2) == 21 and "block6e" in b2 and "block7b" not in b2


def test_num_classes_and_misc():
    m = build_efficientnet_lite("lite0", input_shape=(96, 128, 3), num_classes=7, name="tiny")
    assert m.name == "tiny" and m.output_shape == (None, 7)
    out = np.asarray(m(np.zeros((2, 96, 128, 3), np.float32)))
    np.testing.assert_allclose(out.sum(1), 1.0, atol=1e-5)
    assert PREPROCESSING == "tf"
    assert DEFAULT_INPUT_SIZES["lite0"] == 224 and DEFAULT_INPUT_SIZES["lite2"] == 260
    with pytest.raises(ValueError):
        build_efficientnet_lite("lite9")


def test_classify_paths(tmp_path):
    from PIL import Image

    from dgn.classify import classify_paths, top_k

    weights, ref = _paths("lite0")
    if not os.path.exists(weights):
        pytest.skip(f"{weights} not present")
    model = build_efficientnet_lite("lite0", weights=weights)
    images = np.load(ref)["images"]
    good = []
    for i in range(3):
        p = tmp_path / f"img{i}.png"
        Image.fromarray(images[i]).save(p)  # 224x224: eval crop is 256 -> 224
        good.append(str(p))
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"nope")
    names = [(f"n{i:08d}", f"class {i}") for i in range(1000)]
    res = classify_paths(model, preprocess_input, [good[0], str(bad), good[1], good[2]],
                         top=3, class_names=names, batch_size=2)
    assert [r["image"] for r in res] == [good[0], str(bad), good[1], good[2]]
    assert "error" in res[1] and "broken.jpg" in res[1]["error"] and "\n" not in res[1]["error"]
    for r in (res[0], res[2], res[3]):
        top = r["top"]
        assert len(top) == 3 and set(top[0]) == {"index", "wnid", "name", "prob"}
        assert top[0]["prob"] >= top[1]["prob"] >= top[2]["prob"]
        assert top[0]["wnid"] == names[top[0]["index"]][0]
    res = classify_paths(model, preprocess_input, good[:1], top=1)
    assert res[0]["top"][0]["wnid"] is None and res[0]["top"][0]["name"] is None
    assert [t["index"] for t in top_k(np.array([0.1, 0.5, 0.4]), 2)] == [1, 2]
