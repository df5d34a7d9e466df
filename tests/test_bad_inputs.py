"""Bad inputs and odd models for attribution (issue 35, the tester's second round), each on a small
untrained model built here."""

import json
import re

import keras
import numpy as np
import pytest
from PIL import Image

import dgn
from dgn.cli import main
from dgn.errors import DgnError
from test_attribution_methods import _photos, _plain


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


# ------------------------------------------------- 2: two targets never share files; 14: settings beyond D

def _shared():
    """A conv called twice (shared#0, shared#1) and another layer named shared_1."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    shared = keras.layers.Conv2D(4, 3, padding="same", name="shared")
    a = shared(inp)
    b = shared(keras.layers.Conv2D(3, 1, name="pre")(inp))
    c = keras.layers.Conv2D(4, 3, padding="same", name="shared_1")(a)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Concatenate()([b, c]))
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(x))


def test_a_second_call_and_a_layer_named_like_it_get_their_own_files(tmp_path, capfd):
    path = str(tmp_path / "shared.keras")
    _shared().save(path)
    config = tmp_path / "shared.yaml"
    config.write_text(f"classifier: {{model: {path}, preprocessing: tf}}\n")
    Image.fromarray(_photos(1)[0]).save(tmp_path / "a.png")
    out = tmp_path / "out"
    code = main(["explain", str(config), "--image", str(tmp_path / "a.png"), "--target", "channel:shared#1:0",
                 "--target", "channel:shared_1:0", "--method", "saliency", "--out", str(out), "--quiet"])
    assert code == 0, capfd.readouterr().err
    sides = sorted(p.name for p in (out / "a").glob("*.json"))
    assert len(sides) == 2, sides
    specs = {json.loads((out / "a" / s).read_text())["target_spec"] for s in sides}
    assert specs == {"channel:shared#1:0", "channel:shared_1:0"}


def test_scorecam_channels_and_occlusion_window_beyond_the_model_are_refused():
    clf = dgn.classifier(_plain(), "tf", name="plain")
    with pytest.raises(DgnError, match=r"layer 'conv2' has 4 channels; give 1..4") as err:
        dgn.explain(clf, _photos(), "0", "scorecam", channels=999)
    assert "\n" not in str(err.value)
    with pytest.raises(DgnError, match=r"occlusion window 1000: D's input is 16x16; give a window of 1..16"):
        dgn.explain(clf, _photos(), "0", "occlusion", window=1000)
    assert dgn.explain(clf, _photos(), "0", "scorecam", channels=4).shape == (2, 16, 16)


# ------------------------------------------------------------------ 6: dgn.explain checks its pixels

def test_explain_refuses_pixels_it_cannot_read_in_one_line():
    raw = dgn.classifier(_plain(), "raw", name="raw")
    good = _photos(2)
    for images, text in ((np.zeros((2, 16, 16, 5), "uint8"), "give (H, W, 3) RGB or (H, W, 1) grayscale"),
                         (good.astype("uint16") * 257, "dtype uint16: give uint8 pixels (0..255) or floats"),
                         (np.full((2, 16, 16, 3), 300.0, "float32"), "outside D's input range 0..255"),
                         (np.full((2, 16, 16, 3), np.nan, "float32"), "NaN or infinite"),
                         ([np.full((16, 16, 3), np.inf, "float32")], "NaN or infinite")):
        with pytest.raises(DgnError, match=re.escape(text)) as err:
            dgn.explain(raw, images, "0", "saliency")
        assert "\n" not in str(err.value)
    expected = dgn.explain(raw, good, "0", "saliency")
    assert np.allclose(dgn.explain(raw, good.astype("float32"), "0", "saliency"), expected, atol=1e-6)
    assert dgn.explain(raw, good[:, :, :, :1], "0", "saliency").shape == (2, 16, 16)   # grayscale pixels


# ------------------------------------------ 4, 5, 10, 11, 12: naming a model and its preprocessing

def test_a_wrong_preprocessing_is_named_as_such_everywhere(tmp_path, capfd):
    import pathlib
    from dgn.runs.judge import load_judge
    path = str(tmp_path / "plain.keras")
    _plain().save(path)
    Image.fromarray(_photos(1)[0]).save(tmp_path / "a.png")
    for bad, text in ((f"{path}:bogus", f"unknown preprocessing 'bogus' in '{path}:bogus'; valid: caffe, tf, unit, "
                                        f"raw"),
                      (f"{path}:RAW", "unknown preprocessing 'RAW'"),
                      (f"{path}:", "no preprocessing after ':'"),
                      (f"{path}:tf:raw", "two preprocessings")):
        assert main(["classify", str(tmp_path / "a.png"), "--classifier", bad, "--json"]) == 2
        lines = _lines(capfd)
        assert len(lines) == 1 and text in lines[0], (bad, lines)
        with pytest.raises(DgnError, match=re.escape(text)):
            dgn.load_classifier(bad)
        with pytest.raises(DgnError, match=re.escape(text)):
            load_judge(bad)
    with pytest.raises(DgnError, match=re.escape("unknown preprocessing 'bogus'; valid: caffe, tf, unit, raw")):
        dgn.load_classifier(path, preprocessing="bogus")
    with pytest.raises(DgnError, match="names preprocessing raw, but preprocessing='tf' was given too"):
        dgn.load_classifier(f"{path}:raw", preprocessing="tf")
    with pytest.raises(DgnError, match=re.escape("safe_mode 'false': give True or False (a bool)")):
        dgn.load_classifier(f"{path}:raw", safe_mode="false")
    assert dgn.load_classifier(pathlib.Path(path), preprocessing="unit", class_index="none").preprocessing == "unit"
    config = tmp_path / "colon.yaml"
    config.write_text(f"classifier: {{model: '{path}:raw'}}\n")
    assert main(["info", str(config)]) == 2
    lines = _lines(capfd)
    assert len(lines) == 1 and "classifier.preprocessing: raw" in lines[0], lines


def test_a_builtin_refuses_another_preprocessing_and_advice_fits_the_command(tmp_path, capfd):
    Image.fromarray(_photos(1, 32)[0]).save(tmp_path / "a.png")
    with pytest.raises(DgnError, match="mobilenet_v2 with its ImageNet weights reads unit input, not caffe"):
        dgn.load_classifier("mobilenet_v2:caffe")
    assert main(["classify", str(tmp_path / "a.png"), "--classifier", "tiny"]) == 2
    lines = _lines(capfd)
    assert len(lines) == 1 and "--set classifier.weights=none" in lines[0], lines


def test_the_lambda_message_says_how_to_trust_the_file_on_the_command(tmp_path, capfd):
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Lambda(lambda t: t * 1.0, name="scale")(inp)
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, name="conv")(x))
    path = str(tmp_path / "lambda.keras")
    keras.Model(inp, keras.layers.Dense(3)(x)).save(path)
    Image.fromarray(_photos(1)[0]).save(tmp_path / "a.png")
    assert main(["classify", str(tmp_path / "a.png"), "--classifier", f"{path}:raw"]) == 2
    lines = _lines(capfd)
    assert len(lines) == 1 and "--set classifier.safe_mode=false" in lines[0], lines
    assert main(["classify", str(tmp_path / "a.png"), "--classifier", f"{path}:raw", "--json",
                 "--set", "classifier.safe_mode=false", "--set", "classifier.class_index=none"]) == 0


# ------------------------------------------- 8: Grad-CAM without convolutions; 15: a method's wrong shape

def test_gradcam_without_a_convolution_refuses_the_rescaling_layer():
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255.0, name="scale")(inp)
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    clf = dgn.classifier(model, "raw", name="dense")
    with pytest.raises(DgnError, match="no convolutional layer with a spatial grid .*give --layer") as err:
        dgn.explain(clf, _photos(), "0", "gradcam")
    assert "\n" not in str(err.value)
    assert dgn.explain(clf, _photos(), "0", "gradcam", layer="scale").shape == (2, 16, 16)   # if asked for


class Flat(dgn.attribution.Method):
    name = "flat_test"
    pixel_level = True

    def maps(self, classifier, x, target, index, batch, settings, kind):
        return x.mean(axis=-1).reshape(len(x), -1)


def test_a_custom_method_of_the_wrong_shape_is_named():
    clf = dgn.classifier(_plain(), "tf", name="plain")
    with pytest.raises(DgnError, match=re.escape("method 'flat_test' returned maps of shape (2, 256); expected "
                                                 "(N, H, W) = (2, 16, 16)")):
        dgn.explain(clf, _photos(), "0", Flat)


# ----------------------------------------------------------- 16: examples counts the readable photos

def test_examples_counts_only_the_photos_it_could_read(tmp_path, capfd):
    (tmp_path / "mixed").mkdir()
    Image.fromarray(_photos(1, 40, seed=9)[0]).save(tmp_path / "mixed" / "first.png")
    Image.fromarray(_photos(1, 40, seed=3)[0]).save(tmp_path / "mixed" / "second.png")
    (tmp_path / "mixed" / "unreadable.png").write_bytes(b"no image")
    folder, config = tmp_path / "mixed", tmp_path / "own.yaml"
    config.write_text("classifier: {model: tiny, weights: none, class_index: none}\n")
    code = main(["examples", str(config), "--data", str(folder), "--channels", "conv2:0", "--top", "1",
                 "--out", str(tmp_path / "run"), "--quiet"])
    out = capfd.readouterr().out
    assert code == 2 and "top 1 of 2 readable photos" in out and "; 2 photos read" in out, out


def test_the_docs_recipe_reaches_the_command_line_from_import_dgn():
    import subprocess
    import sys
    code = "import dgn; print(callable(dgn.cli.main))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]


# --------------------------------------------------- 9: a CenterCrop's edge cells reach the crop border

def test_a_cam_after_a_center_crop_covers_every_pixel_the_model_sees():
    from dgn.attribution.methods.layers import to_input
    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48, 3))
    x = keras.layers.CenterCrop(24, 24, name="crop")(inp)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv")(x)
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    clf = dgn.classifier(keras.Model(inp, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))), "raw",
                         name="crop")
    grid = to_input(clf, "conv2", np.ones((1, 6, 6, 1), "float32"), (48, 48), "bilinear")[0, :, :, 0]
    rows = np.flatnonzero(grid[:, 24] > 0)
    assert rows.min() == 12 and rows.max() == 35, rows        # the crop keeps rows and columns 12..35
    assert np.allclose(grid[12:36, 12:36], 1.0) and grid[:12].max() == 0.0 and grid[36:].max() == 0.0
    maps = dgn.explain(clf, _photos(1, 48), "0", "gradcam", layer="conv2")
    assert maps.shape == (1, 48, 48) and maps[0, :12].max() == 0.0


# --------------------------------------------- 3: --out that cannot be a folder, before any work

def test_explain_and_examples_refuse_an_out_that_cannot_be_a_folder(tmp_path, capfd):
    config = tmp_path / "own.yaml"
    config.write_text("classifier: {model: tiny, weights: none, class_index: none}\n")
    Image.fromarray(_photos(1, 32)[0]).save(tmp_path / "a.png")
    (tmp_path / "afile").write_text("x")
    for out, text in ((tmp_path / "afile", "is a file"), (tmp_path / "afile" / "sub", "a file"),
                      ("/proc/nope", "cannot create")):
        for argv in (["explain", str(config), "--image", str(tmp_path / "a.png")],
                     ["examples", str(config), "--data", str(tmp_path), "--channels", "conv2:0"]):
            assert main([*argv, "--out", str(out), "--quiet"]) == 2, (argv, out)
            lines = _lines(capfd)
            assert len(lines) == 1 and text in lines[0] and str(out) in lines[0], (argv, lines)
    assert (tmp_path / "afile").read_text() == "x" and not any(p.name == "nope" for p in tmp_path.iterdir())
