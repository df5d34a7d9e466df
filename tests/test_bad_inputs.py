"""Bad inputs and odd models for attribution (issue 35, the tester's second round), each on a small
untrained model built here."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

import dgn
from dgn.cli import main
from dgn.errors import DgnError


def _plain(size=16, seed=0):
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(x))


def _photos(n=2, size=16, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (n, size, size, 3)).astype("uint8")


def _sure():
    """A model whose class 0 has a probability near 1e-270 (underflows float32)."""
    model = _plain(seed=7)
    dense = model.get_layer("logits")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 50.0, np.array([0.0, 620.0, 620.0], "float32")])
    return model


def _lines(capfd):
    return [line for line in capfd.readouterr().err.splitlines() if line.startswith("dgn:")]


# ------------------------------------------- 1, 7: an underflowing probability (Score-CAM; the sidecar)

def test_scorecam_of_a_class_whose_probability_underflows_is_the_map_up_to_scale():
    clf = dgn.classifier(_sure(), "tf", name="sure")
    x = clf.from_pixels(_photos(1, 16, seed=8))
    result = dgn.attribute(clf, x, "0", "scorecam")
    assert 0.0 < result.values[0] < 1e-200
    assert result.maps.max() > 0.0
    assert result.scores == ["relative_probability"] and result.settings["score"] == "relative_probability"
    assert len(result.notes) == 1 and "log-probabilities" in result.notes[0] and "\n" not in result.notes[0]
    plain = dgn.attribute(clf, x, "1", "scorecam")                 # a class that does not underflow: as before
    assert plain.scores == ["probability"] and not plain.notes


def test_the_sidecar_says_log_probability_where_occlusion_fell_back(tmp_path, capfd):
    model = _sure()
    path = str(tmp_path / "sure.keras")
    model.save(path)
    config = tmp_path / "sure.yaml"
    config.write_text(f"classifier: {{model: {path}, preprocessing: tf}}\n")
    Image.fromarray(_photos(1, 16, seed=8)[0]).save(tmp_path / "a.png")
    out = tmp_path / "out"
    code = main(["explain", str(config), "--image", str(tmp_path / "a.png"), "--target", "0",
                 "--method", "occlusion,scorecam", "--window", "4", "--out", str(out), "--quiet"])
    assert code == 0, capfd.readouterr().err
    side = json.loads((out / "a" / "0000_occlusion.json").read_text())
    assert side["settings"]["score"] == "log_probability" and "log-probability" in side["explains"]
    assert side["notes"] and "log-probability" in side["notes"][0]
    side = json.loads((out / "a" / "0000_scorecam.json").read_text())
    assert side["settings"]["score"] == "relative_probability" and "relative" in side["explains"]
    assert side["notes"] and np.load(out / "a" / "0000_scorecam.npy").max() > 0.0
