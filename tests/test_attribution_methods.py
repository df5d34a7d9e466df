"""Attribution methods as classes on one base and registry (issue 34), and attribution on odd models and odd
calls (issue 35, items 4, 7, 11-16), each on a small untrained model built here."""

import json
import threading

import keras
import numpy as np
import pytest
from PIL import Image

import dgn
from dgn import attribution
from dgn.cli import main
from dgn.errors import DgnError


def _save(model, folder, name):
    path = str(folder / f"{name}.keras")
    model.save(path)
    return path


def _plain(size=16, seed=0):
    keras.utils.set_random_seed(seed)
    x = inp = keras.Input((size, size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(x))


def _photos(n=2, size=16, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (n, size, size, 3)).astype("uint8")


# --------------------------------------------------------------------------- a method is one class (issue 34)

class Brightness(attribution.Method):
    """Each pixel's mean over channels in D's input space, times ``scale``: a method defined only here."""

    name = "brightness_test"
    reference = "this test"
    defaults = {"scale": 1.0}
    pixel_level = True

    def validate(self, settings):
        if not isinstance(settings["scale"], (int, float)):
            raise DgnError(f"brightness_test scale {settings['scale']!r}: give a number")

    def maps(self, classifier, x, target, index, batch, settings, kind):
        return x.mean(axis=-1) * settings["scale"]


@pytest.fixture
def brightness():
    attribution.register(Brightness)
    yield Brightness
    attribution.unregister(Brightness.name)


def test_a_method_defined_in_a_test_runs_through_the_api_and_the_command(brightness, tmp_path, capfd):
    clf = dgn.classifier(_plain(), "tf", name="plain")
    images = _photos()
    maps = dgn.explain(clf, images, None, "brightness_test", scale=2.0)
    assert np.allclose(maps, 2.0 * clf.from_pixels(images).mean(-1))
    assert "brightness_test" in attribution.METHODS and attribution.REFERENCES["brightness_test"] == "this test"
    with pytest.raises(DgnError, match="brightness_test has no setting 'window'"):
        dgn.explain(clf, images, None, "brightness_test", window=3)

    path = _save(clf.model, tmp_path, "plain")
    config = tmp_path / "own.yaml"
    config.write_text(f"classifier: {{model: {path}, preprocessing: tf}}\n")
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    out = tmp_path / "out"
    code = main(["explain", str(config), "--image", str(tmp_path / "a.png"), "--method", "brightness_test",
                 "--setting", "scale=3", "--out", str(out), "--quiet"])
    assert code == 0, capfd.readouterr().err
    side = json.loads((out / "a" / "top1_brightness_test.json").read_text())
    assert side["settings"] == {"scale": 3} and side["reference"] == "this test"
    raw = np.load(out / "a" / "top1_brightness_test.npy")
    assert np.allclose(raw, 3.0 * clf.from_pixels(images[:1]).mean(-1)[0])
    for bad, text in ((["--setting", "scael=3"], "no attribution method has a setting 'scael'"),
                      (["--setting", "scale"], "--setting 'scale': give KEY=VALUE"),
                      (["--setting", "scale=dim"], "brightness_test scale 'dim': give a number")):
        code = main(["explain", str(config), "--image", str(tmp_path / "a.png"), "--method", "brightness_test",
                     *bad, "--out", str(out), "--quiet"])
        lines = [line for line in capfd.readouterr().err.splitlines() if line.startswith("dgn:")]
        assert code == 2 and len(lines) == 1 and text in lines[0], (bad, lines)


def test_the_registry_refuses_a_taken_name_and_a_non_method():
    class Again(attribution.Method):
        name = "gradcam"
    with pytest.raises(DgnError, match="already taken"):
        attribution.register(Again)
    with pytest.raises(DgnError, match="subclass of dgn.attribution.Method"):
        attribution.register(object)


# ------------------------------------------------------------------------------ a layer called twice (11)

def _shared():
    keras.utils.set_random_seed(1)
    inp = keras.Input((16, 16, 3))
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="left")(inp)
    b = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="right")(inp)
    shared = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="shared")
    x = keras.layers.Add(name="add")([shared(a), shared(b)])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(x))


def test_a_layer_called_twice_is_named_by_its_call_or_refused_in_one_line():
    model = _shared()
    clf = dgn.classifier(model, "tf", name="shared")
    images = _photos()
    x = clf.from_pixels(images)
    for method in ("gradcam", "scorecam"):
        with pytest.raises(DgnError, match=r"layer 'shared' of classifier shared is called 2 times.*shared#0, "
                                           r"shared#1") as err:
            dgn.explain(clf, images, "0", method, layer="shared")
        assert "\n" not in str(err.value)
    with pytest.raises(DgnError, match="called 2 times"):
        dgn.explain(clf, images, "channel:shared:1", "saliency")
    # each call is its own tensor: the first call is the shared layer on 'left', the second on 'right'
    shared = model.get_layer("shared")
    for k, branch in enumerate(("left", "right")):
        expected = shared(keras.Model(model.input, model.get_layer(branch).output)(x))
        got = keras.Model(clf.analysis.inputs, clf.layer_output(f"shared#{k}"))(x)
        assert np.allclose(got, expected, atol=1e-6)
    first = dgn.explain(clf, images, "0", "scorecam", layer="shared#0")
    second = dgn.explain(clf, images, "0", "scorecam", layer="shared#1")
    assert first.shape == second.shape == (2, 16, 16) and not np.allclose(first, second)
    # Grad-CAM at one call: the gradient at that call's output only, as written here by hand
    import tensorflow as tf
    layers = {n: model.get_layer(n) for n in ("left", "right", "shared", "add", "logits")}
    gap = model.layers[-2]
    for k in (0, 1):
        with tf.GradientTape() as tape:
            calls = [layers["shared"](layers["left"](x)), layers["shared"](layers["right"](x))]
            tape.watch(calls[k])
            z = layers["logits"](gap(layers["add"](calls)))[:, 0]
        grads = tape.gradient(z, calls[k]).numpy().astype("float64")
        a = calls[k].numpy().astype("float64")
        expected = np.maximum((grads.mean(axis=(1, 2), keepdims=True) * a).sum(-1), 0.0)
        got = dgn.explain(clf, images, "0", "gradcam", layer=f"shared#{k}")
        assert np.allclose(got, expected, rtol=1e-4, atol=1e-6), k
        assert expected.max() > 0
    assert dgn.explain(clf, images, "channel:shared#1:1", "saliency").shape == (2, 16, 16)
    assert "shared#0" in [r["name"] for r in clf.layers()]


# ----------------------------------------------------------------------------- Lambda and safe_mode (12)

def test_a_lambda_model_is_refused_in_one_line_until_trusted(tmp_path):
    keras.utils.set_random_seed(2)
    inp = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inp)
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    path = _save(keras.Model(inp, keras.layers.Dense(2)(x)), tmp_path, "lam")
    with pytest.raises(DgnError) as err:
        dgn.load_classifier(path, preprocessing="tf", class_index="none")
    text = str(err.value)
    assert "\n" not in text and "classifier.safe_mode: false" in text and text.endswith(")")
    clf = dgn.load_classifier(path, preprocessing="tf", class_index="none", safe_mode=False)
    assert clf.num_classes == 2
    from dgn import build
    from dgn.config import load_config
    cfg = load_config(text=f"classifier: {{model: {path}, preprocessing: tf, class_index: none, safe_mode: false}}\n")
    assert build.classifier(cfg.data).num_classes == 2
    assert "safe_mode" not in load_config(text="").data["classifier"]   # not part of other configs' identity


# ----------------------------------------------------------------- a crop inside the model (13)

def test_a_center_crop_inside_the_model_puts_the_cam_on_the_pixels_it_sees():
    keras.utils.set_random_seed(3)
    conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")
    dense = keras.layers.Dense(3, name="logits")
    inp = keras.Input((32, 32, 3))
    x = keras.layers.CenterCrop(16, 16, name="crop")(inp)
    cropped = keras.Model(inp, dense(keras.layers.GlobalAveragePooling2D()(conv(x))))
    small_in = keras.Input((16, 16, 3))
    small = keras.Model(small_in, dense(keras.layers.GlobalAveragePooling2D()(conv(small_in))))
    big, little = dgn.classifier(cropped, "tf", name="cropped"), dgn.classifier(small, "tf", name="small")
    x = big.from_pixels(_photos(2, 32, seed=4))
    centre = x[:, 8:24, 8:24]
    for method in ("gradcam", "scorecam"):
        peak = 0.0
        for target in ("0", "1", "2"):
            maps = dgn.explain(big, x, target, method)
            reference = dgn.explain(little, centre, target, method)
            outside = maps.copy()
            outside[:, 8:24, 8:24] = 0.0
            assert np.all(outside == 0.0), method                 # nothing on pixels the model never sees
            assert np.allclose(maps[:, 8:24, 8:24], reference, rtol=1e-4, atol=1e-6), method
            peak = max(peak, float(reference.max()))
        assert peak > 0, method


def test_a_resizing_layer_maps_each_cell_back_to_the_pixels_it_came_from():
    """Resizing(16) of a 32-pixel input: cell i's centre is input pixel 2i + 1/2 (half-pixel centres), the
    same place as a bilinear resize of the grid over the whole input; a crop after it shifts the grid."""
    from dgn.attribution.inputs import resize_maps
    from dgn.attribution.methods import to_input

    keras.utils.set_random_seed(4)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.Resizing(16, 16, name="resize")(inp)
    a = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(x)
    b = keras.layers.Cropping2D(((4, 4), (2, 6)), name="crop")(a)
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(b))
    clf = dgn.classifier(keras.Model(inp, out), "tf", name="resized")
    grid = np.random.RandomState(0).rand(1, 16, 16, 1).astype("float32")
    assert np.allclose(to_input(clf, "conv", grid, (32, 32), "bilinear"), resize_maps(grid, (32, 32)), atol=1e-6)
    cropped = to_input(clf, "crop", grid[:, :8, :8], (32, 32), "bilinear")[0, ..., 0]
    # crop rows 4..11 and columns 2..9 of the 16-cell grid: input rows 8..23 and columns 4..19
    assert np.all(cropped[:8] == 0) and np.all(cropped[24:] == 0)
    assert np.all(cropped[:, :4] == 0) and np.all(cropped[:, 20:] == 0)
    assert cropped[8, 4] == pytest.approx(grid[0, 0, 0, 0]) and cropped[23, 19] == pytest.approx(grid[0, 7, 7, 0])


# ------------------------------------------------------------------------------------- two threads (14)

def test_two_threads_explaining_with_one_classifier_get_their_own_maps():
    images = _photos(2, 16, seed=5)
    reference = dgn.classifier(_plain(seed=6), "tf", name="plain")
    expected = {m: dgn.explain(reference, images, "0", m) for m in ("saliency", "guided")}
    assert not np.allclose(expected["saliency"], expected["guided"])
    for _ in range(2):
        clf = dgn.classifier(_plain(seed=6), "tf", name="plain")   # fresh: both traces happen in the threads
        results, barrier = {}, threading.Barrier(2)

        def run(method):
            barrier.wait()
            results[method] = [dgn.explain(clf, images, "0", method) for _ in range(3)]

        threads = [threading.Thread(target=run, args=(m,)) for m in ("saliency", "guided")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for method, maps in results.items():
            assert all(np.allclose(m, expected[method], atol=1e-6) for m in maps), method
        assert np.allclose(dgn.explain(clf, images, "0", "saliency"), expected["saliency"], atol=1e-6)


# ------------------------------------------------------------------------------------------ occlusion (15, 16)

def test_occlusion_refuses_a_stride_larger_than_the_window(tmp_path):
    clf = dgn.classifier(_plain(), "tf", name="plain")
    with pytest.raises(DgnError, match="occlusion stride 6 is larger than the window 4") as err:
        dgn.explain(clf, _photos(), "0", "occlusion", window=4, stride=6)
    assert "\n" not in str(err.value)
    assert dgn.explain(clf, _photos(), "0", "occlusion", window=4, stride=4).shape == (2, 16, 16)


def test_occlusion_of_a_class_at_probability_1e_270_is_not_all_zeros():
    model = _plain(seed=7)
    dense = model.get_layer("logits")
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel * 50.0, np.array([0.0, 620.0, 620.0], "float32")])
    clf = dgn.classifier(model, "tf", name="sure")
    x = clf.from_pixels(_photos(1, 16, seed=8))
    result = dgn.attribute(clf, x, "0", "occlusion", window=4)
    assert 0.0 < result.values[0] < 1e-200
    assert np.abs(result.maps).max() > 0.0
    assert len(result.notes) == 1 and "log-probability" in result.notes[0]
    logp = dgn.parse_target("0", clf, "logsoftmax")        # the same map, by hand: the drop of log p
    expected = dgn.explain(clf, x, logp, "occlusion", window=4, score="value")
    assert np.allclose(result.maps, expected, rtol=1e-3, atol=1e-3 * np.abs(expected).max())


# ------------------------------------------------------------------------------ MODEL:PREPROCESSING (4)

def test_one_syntax_names_a_model_with_its_preprocessing(tmp_path, capfd):
    path = _save(_plain(), tmp_path, "plain")
    Image.fromarray(_photos(1)[0]).save(tmp_path / "a.png")
    assert main(["classify", str(tmp_path / "a.png"), "--classifier", path, "--json"]) == 2
    err = capfd.readouterr().err
    line = [x for x in err.splitlines() if x.startswith("dgn:")]
    assert len(line) == 1 and f"{path}:PREPROCESSING" in line[0] and "on the command line" in line[0]
    assert main(["classify", str(tmp_path / "a.png"), "--classifier", f"{path}:tf", "--json",
                 "--set", "classifier.class_index=none"]) == 0
    assert len(json.loads(capfd.readouterr().out.strip())["top"]) == 3
    assert dgn.load_classifier(f"{path}:tf", class_index="none").preprocessing == "tf"
    from dgn.runs.judge import load_judge
    assert load_judge(f"{path}:unit").preprocessing == "unit"


# ------------------------------------------------------------------- unreadable photos: one rule (7)

def test_every_command_that_reads_photos_skips_counts_and_exits_2(tmp_path, capfd):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(_photos(2, 40, seed=9)):
        Image.fromarray(image).save(folder / f"p{i}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    config = tmp_path / "tiny.yaml"
    config.write_text("classifier: {model: tiny, weights: none, class_index: none}\nparameterization: {kind: pixel}\n"
                      "optimizer: {name: sgd, learning_rate: 0.5}\nobjective: {targets: ['3']}\nsteps: 2\n")
    paths = sorted(str(p) for p in folder.iterdir())
    commands = {
        "classify": ["classify", *paths, "--config", str(config)],
        "explain": ["explain", str(config), "--data", str(folder), "--out", str(tmp_path / "explain"), "--quiet"],
        "compare": ["compare", str(config), "--target", "3", "--photos", str(folder), "--out", str(tmp_path / "cmp"),
                    "--quiet"],
        "examples": ["examples", str(config), "--data", str(folder), "--channels", "conv2:0", "--top", "1",
                     "--out", str(tmp_path / "run"), "--quiet"],
    }
    for name, argv in commands.items():
        code = main(argv)
        err = capfd.readouterr().err
        named = [line for line in err.splitlines() if line.startswith("dgn: error: cannot read image")]
        assert code == 2, (name, err)
        assert len(named) == 1 and "broken.png" in named[0], (name, err)
        assert "dgn: warning: 1 of 3 photos could not be read and were skipped" in err, (name, err)
