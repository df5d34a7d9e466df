"""DeepDream on the tiny classifier: it raises the chosen layers' norm, keeps the photo's size for any
photo mode, writes zoom frames and a GIF, and refuses bad inputs with one line."""

import json

import keras
import numpy as np
import pytest
from PIL import Image

import dgn
from dgn.cli import main
from dgn.config import load_config
from dgn.optvis.dream import (LayerNormObjective, NormalizedGradient, default_layers, dream_features, parse_layers,
                              run_dream, zoom_in)
from dgn.errors import DgnError

TINY = """
classifier: {model: tiny, weights: none, class_index: none}
dream: {layers: ["conv2:1.0", "conv1:0.5"], octaves: 2, steps: 4}
"""


def _photo(path, size=(45, 61), mode="RGB", **save):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size + (3,), dtype=np.uint8)
    img = Image.fromarray(rgb)
    if mode == "I;16":
        img = Image.fromarray((rng.integers(0, 65536, size)).astype(np.uint16))
    elif mode != "RGB":
        img = img.convert(mode)
    img.save(path, **save)
    return str(path)


@pytest.fixture
def tiny_dream(tmp_path):
    path = tmp_path / "dream.yaml"
    path.write_text(TINY)
    return str(path)


def test_dream_raises_the_layer_norm_and_keeps_the_size(tmp_path):
    photo = _photo(tmp_path / "p.png", (45, 61))
    png, meta = run_dream(load_config(text=TINY), photo, out_dir=str(tmp_path / "out"), progress=False)
    assert Image.open(png).size == (61, 45)
    assert meta["size"] == [45, 61]
    assert meta["layer_norm"]["dream"] > 1.2 * meta["layer_norm"]["photo"]
    assert meta["activation_during"]["last"] > meta["activation_during"]["first"]
    assert meta["steps"] == 8 and meta["target"]["kind"] == "dream"
    assert {"image", "target", "activation", "top5", "steps", "seed", "config", "wall_seconds",
            "backend", "versions", "loss"} <= set(meta)
    assert json.loads((tmp_path / "out" / "p_dream.json").read_text())["image"] == "p_dream.png"


@pytest.mark.parametrize("kind", ["L", "RGBA", "CMYK", "I;16", "exif", "1x1"])
def test_any_photo_mode_keeps_its_displayed_size(tmp_path, kind):
    if kind == "CMYK":
        photo, want = _photo(tmp_path / "p.jpg", (30, 41), "CMYK"), (41, 30)
    elif kind == "exif":
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees for display: width and height swap
        photo, want = _photo(tmp_path / "p.jpg", (30, 41), exif=exif), (30, 41)
    elif kind == "1x1":
        photo, want = _photo(tmp_path / "p.png", (1, 1)), (1, 1)
    else:
        photo, want = _photo(tmp_path / "p.png", (30, 41), kind), (41, 30)
    cfg = load_config(text=TINY, overrides=["dream.steps=1"])
    png, meta = run_dream(cfg, photo, out_dir=str(tmp_path), progress=False)
    out = Image.open(png)
    assert out.size == want and out.mode == "RGB"


def test_large_photo_is_dreamt_small_and_keeps_full_size(tmp_path):
    photo = _photo(tmp_path / "big.png", (80, 50))
    cfg = load_config(text=TINY, overrides=["dream.max_size=32", "dream.octaves=1"])
    png, meta = run_dream(cfg, photo, out_dir=str(tmp_path), progress=False)
    assert Image.open(png).size == (50, 80)
    assert max(meta["dream_size"]) == 32 and meta["dream_size"] == [32, 20]
    assert "detail upscaled" in meta["final_image"]


def test_zoom_loop_writes_frames_and_a_gif(tmp_path, tiny_dream, capsys):
    photo = _photo(tmp_path / "p.png", (40, 40))
    out = tmp_path / "out"
    assert main(["dream", tiny_dream, "--image", photo, "--zoom-frames", "2", "--gif", "--octaves", "1",
                 "--steps", "2", "--out", str(out), "--quiet"]) == 0
    frames = sorted(p.name for p in (out / "p_frames").iterdir())
    assert frames == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    gif = Image.open(out / "p_zoom.gif")
    assert gif.n_frames == 3 and gif.size == (40, 40)
    meta = json.loads((out / "p_dream.json").read_text())
    assert meta["frames"] == {"folder": "p_frames", "count": 3, "zoom": 1.05, "gif": "p_zoom.gif"}
    assert "p_dream.png" in capsys.readouterr().out


def test_layers_from_the_command_line_override_the_config(tmp_path, tiny_dream):
    photo = _photo(tmp_path / "p.png", (20, 20))
    assert main(["dream", tiny_dream, "--image", photo, "--layers", "relu2:2", "--octaves", "1", "--steps", "1",
                 "--out", str(tmp_path), "--quiet"]) == 0
    meta = json.loads((tmp_path / "p_dream.json").read_text())
    assert meta["target"]["layers"] == [{"layer": "relu2", "weight": 2.0}]


def test_without_layers_the_deepest_grid_of_ones_own_model_is_dreamt(tmp_path, tiny_dream, capsys):
    """No dream.layers and no --layers (one's own model): the deepest layer with a spatial grid at least
    1/16 of the input, said in the output and recorded in the sidecar."""
    photo = _photo(tmp_path / "p.png", (20, 20))
    assert main(["dream", tiny_dream, "--image", photo, "--set", "dream.layers=null", "--octaves", "1", "--steps",
                 "1", "--out", str(tmp_path)]) == 0
    assert "dream layer: relu2 (the deepest layer" in capsys.readouterr().out
    meta = json.loads((tmp_path / "p_dream.json").read_text())
    assert meta["target"]["layers"] == [{"layer": "relu2", "weight": 1.0}]
    dense = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    with pytest.raises(DgnError, match="no layer with a spatial grid"):
        default_layers(dgn.classifier(dense, preprocessing="unit"))


@pytest.mark.parametrize("args, word", [
    (["--image", "MISSING.png"], "file not found"),
    (["--image", "TEXT"], "not a recognised image format"),
    (["--image", "TRUNC"], "cannot read image"),
    (["--image", "PHOTO", "--layers", "nope"], "has no layer 'nope'"),
    (["--image", "PHOTO", "--layers", "conv1:x"], "numeric weight"),
    (["--image", "PHOTO", "--octaves", "0"], "--octaves must be >= 1"),
    (["--image", "PHOTO", "--layers", ","], "no dream layers"),
    (["--image", "PHOTO", "--set", "dream.max_size=4"], "must be >= 16"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, tiny_dream, capsys, args, word):
    photo = _photo(tmp_path / "p.png", (20, 20))
    text = tmp_path / "t.png"
    text.write_text("not an image")
    trunc = tmp_path / "trunc.jpg"
    _photo(trunc, (64, 64))
    trunc.write_bytes(trunc.read_bytes()[:200])
    swap = {"MISSING.png": str(tmp_path / "missing.png"), "TEXT": str(text), "TRUNC": str(trunc), "PHOTO": photo}
    argv = ["dream", tiny_dream] + [swap.get(a, a) for a in args] + ["--out", str(tmp_path / "o"), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert word in err and len(err.splitlines()) == 1


def test_layers_after_a_fixed_size_top_are_refused():
    import keras

    from dgn.classifiers import Classifier
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, name="conv")(inputs)
    x = keras.layers.Flatten(name="flat")(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="dense")(x))
    classifier = Classifier(model=model, name="flat", preprocessing="tf")
    assert dream_features(classifier, ["conv"])(np.zeros((1, 20, 30, 3), "float32"))["conv"].shape == (1, 18, 28, 2)
    with pytest.raises(DgnError, match="any size"):
        dream_features(classifier, ["dense"])


def test_objective_optimizer_and_helpers():
    assert parse_layers(["a:2,b", "c:0.5"]) == [("a", 2.0), ("b", 1.0), ("c", 0.5)]
    act = np.ones((1, 8, 8, 2), "float32")
    act[:, 0] = 10.0  # the border row is left out
    obj = LayerNormObjective([("x", 2.0)], border=2)
    assert float(np.asarray(obj.value({"x": act}))[0]) == pytest.approx(2.0 * (4 * 4 * 2) / (8 * 8 * 2))
    assert float(np.asarray(LayerNormObjective([("x", 1.0)], border=0).value({"x": np.ones((1, 3), "float32")}))[0]) \
        == pytest.approx(1.0)
    import keras
    var = keras.Variable(np.zeros(4, "float32"))
    opt = NormalizedGradient(0.1)
    opt.apply([np.asarray([1.0, -1.0, 2.0, 0.0], "float32")], [var])
    np.testing.assert_allclose(np.asarray(var), [-0.1, 0.1, -0.2, 0.0], atol=1e-6)
    img = np.arange(100, dtype="float32").reshape(10, 10, 1) * np.ones(3, "float32")
    assert zoom_in(img, 2.0).shape == img.shape


def test_efficientnet_runs_size_agnostic_on_an_odd_photo(tmp_path):
    photo = _photo(tmp_path / "odd.png", (37, 53))
    cfg = load_config(text="classifier: {model: efficientnet_lite0, weights: none, class_index: none}\n"
                           "dream: {layers: [block2b_add], octaves: 2, steps: 1}\n")
    png, meta = run_dream(cfg, photo, out_dir=str(tmp_path), progress=False)
    assert Image.open(png).size == (53, 37)
    assert meta["layer_norm"]["dream"] > meta["layer_norm"]["photo"]
