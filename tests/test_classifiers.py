"""Loading D: VGG-16 from a weights file, any .keras classifier, logits from the softmax top."""

import json

import keras
import numpy as np
import pytest

from dgn.classifiers import load_classifier
from dgn.cli import main
from dgn.errors import DgnError


def tiny_softmax_model():
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.5)(x)
    return keras.Model(inputs, keras.layers.Dense(5, activation="softmax", name="predictions")(x))


def test_keras_file_classifier_logits_match_softmax(tmp_path):
    model = tiny_softmax_model()
    path = tmp_path / "clf.keras"
    model.save(path)
    clf = load_classifier({"model": str(path), "weights": None, "preprocessing": "unit", "class_index": "none"})
    x = np.random.default_rng(0).random((3, 16, 16, 3)).astype("float32")
    logits = clf.predict_logits(x)
    probs = np.asarray(model(x, training=False))
    softmax = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    np.testing.assert_allclose(softmax, probs, atol=1e-5)
    assert clf.num_classes == 5 and clf.preprocessing == "unit"
    assert not clf.model.trainable


def test_keras_file_needs_preprocessing(tmp_path):
    path = tmp_path / "clf.keras"
    tiny_softmax_model().save(path)
    with pytest.raises(DgnError, match="preprocessing"):
        load_classifier({"model": str(path), "weights": None, "preprocessing": None, "class_index": "none"})


def test_vgg16_loads_weights_from_a_file(tmp_path):
    keras.utils.set_random_seed(1)
    source = keras.applications.VGG16(weights=None)
    path = tmp_path / "vgg16.weights.h5"
    source.save_weights(path)
    clf = load_classifier({"model": "vgg16", "weights": str(path), "preprocessing": None, "class_index": "none"})
    assert clf.preprocessing == "caffe" and clf.num_classes == 1000
    np.testing.assert_array_equal(clf.model.get_layer("block5_conv1").get_weights()[0],
                                  source.get_layer("block5_conv1").get_weights()[0])
    assert clf.layer_channels("block2_conv2") == 128 and clf.layer_channels("block5_conv1") == 512


def test_wrong_weights_file_is_one_clear_error(tmp_path, capfd):
    path = tmp_path / "other.weights.h5"
    tiny_softmax_model().save_weights(path)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"classifier: {{model: tiny, weights: {path}, class_index: none}}\n"
                   "generator: {seed_shape: [5, 5, 8], blocks: [[16, 2], [16, 2]]}\n")
    capfd.readouterr()   # TensorFlow's own start-up lines (CUDA probing) when the test built the first model
    assert main(["generate", str(cfg)]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot load weights" in err[0]


def test_info_lists_layers(tiny_config, capsys):
    assert main(["info", tiny_config()]) == 0
    out = capsys.readouterr().out
    assert "10 classes" in out and "conv2" in out and "16x16x16" in out


def test_classify_cli_json_and_failures(tmp_path, capfd):
    from PIL import Image
    good = tmp_path / "good.png"
    Image.fromarray(np.full((40, 50, 3), 90, "uint8")).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    code = main(["classify", str(good), str(bad), "--classifier", "tiny", "--set", "classifier.weights=none",
                 "--set", "classifier.class_index=none", "--top", "3", "--json"])
    captured = capfd.readouterr()
    assert code == 2   # the one rule for unreadable photos (dgn.cli.common.report_unreadable): skipped, counted, 2
    assert "1 of 2 photos could not be read and were skipped" in captured.err
    lines = [json.loads(line) for line in captured.out.strip().splitlines()]
    assert lines[0]["image"] == str(good) and len(lines[0]["top"]) == 3
    assert set(lines[0]["top"][0]) == {"index", "wnid", "name", "prob"}
    assert "error" in lines[1] and "bad.jpg" in captured.err


def test_embedded_classifier_recognises_a_real_imagenet_photo(shared_data, capfd):
    import glob
    import os

    photo = sorted(glob.glob(os.path.join(shared_data, "imagenet-dogs", "n02099601", "*")))[0]
    index = os.path.join(shared_data, "imagenet_class_index.json")
    assert main(["classify", photo, "--set", f"classifier.class_index={index}", "--json", "--top", "1"]) == 0
    top = json.loads(capfd.readouterr().out.strip().splitlines()[-1])["top"][0]
    assert (top["index"], top["wnid"], top["name"]) == (207, "n02099601", "golden_retriever")
    assert top["prob"] > 0.5
