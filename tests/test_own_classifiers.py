"""A researcher's own classifier, of every kind Keras makes, through every command (tests/zoo.py builds
and trains each one in a second or two): it reaches rank 1 under D with an image that is not flat, or it is
refused in one line."""

import json
import os

import numpy as np
import pytest
from PIL import Image

import zoo
from dgn.cli import main

# kind: (builder, preprocessing, target class, channel layer, extra classifier keys); the kinds that differ
# only in their head (HEADS) skip generate-all and dream, whose input side the others cover
HEADS = ("stacked_softmax", "binary", "two_heads")
KINDS = {
    "functional": (zoo.functional, "tf", 0, "conv2", ""),
    "sequential_raw": (zoo.sequential_raw, "raw", 0, "conv2", ""),
    "grayscale_unit": (zoo.sequential_grayscale, "unit", 1, "conv2", ""),
    "nested": (zoo.nested, "tf", 0, "base/conv2", ""),
    "dynamic_nonsquare": (zoo.dynamic, "tf", 1, "conv2", "input_size: [32, 48], "),
    "stacked_softmax": (zoo.stacked_softmax, "tf", 0, "conv2", ""),
    "binary": (zoo.binary, "tf", 0, "conv2", ""),
    "two_heads": (zoo.two_heads, "tf", 0, "conv2", "output: classes, "),
    "subclassed": (zoo.subclassed, "tf", 0, None, ""),
}
FAST = "steps: 20\n"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    return {kind: zoo.save(build(), folder, kind) for kind, (build, *_rest) in KINDS.items()}


def _config(tmp_path, path, space, extra_classifier="", body=""):
    cfg = tmp_path / "own.yaml"
    cfg.write_text(f"classifier: {{model: {path}, {extra_classifier}preprocessing: {space}}}\n" + FAST + body)
    return str(cfg)


def _run(capfd, *argv):
    code = main(list(argv))
    out, err = capfd.readouterr()
    return code, out, err


def _live_channel(cfg, layer):
    """The channel of ``layer`` most active on the training shapes (some filters of a small net are dead),
    found through dgn's own classifier API."""
    from dgn.classifiers import load_classifier
    from dgn.config import load_config
    classifier = load_classifier(load_config(cfg)["classifier"])
    images = zoo.shapes(12, *classifier.input_shape)[0]
    act = np.asarray(classifier.features([layer])(classifier.from_pixels(images))[layer])
    return int(act.reshape(-1, act.shape[-1]).mean(0).argmax())


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_through_every_command(kind, models, tmp_path, capfd, monkeypatch):
    build, space, target, layer, extra = KINDS[kind]
    cfg = _config(tmp_path, models[kind], space, extra)
    monkeypatch.chdir(tmp_path)   # every command without --out: runs/<config name>/

    code, out, err = _run(capfd, "info", cfg)
    assert code == 0, err
    assert "input 32x" in out and "classes" in out and "generator G: makes 32x" in out

    channel = _live_channel(cfg, layer) if layer else None
    targets = ["--target", str(target)] + (["--target", f"channel:{layer}:{channel}"] if layer else [])
    code, out, err = _run(capfd, "generate", cfg, *targets, "--quiet")
    assert code == 0, err
    run = tmp_path / "runs" / "own"
    side = json.loads((run / f"{target:04d}.json").read_text())
    assert side["rank"] == 1, (kind, side["prob"], side["top5"])
    pixels = np.asarray(Image.open(run / f"{target:04d}.png"), dtype="float64")
    assert pixels.std() > 10.0                       # not a flat (or black) image
    assert pixels.ndim == (2 if kind == "grayscale_unit" else 3)
    if layer:
        chan = json.loads((run / f"channel_{layer.replace('/', '_')}_{channel}.json").read_text())
        assert chan["target"]["layer"] == layer and chan["dead_unit"] is None
        assert chan["activation"] > chan["activation_during"]["first"] > 0.0

    code, out, err = _run(capfd, "classify", "--config", cfg, "--json", str(run / f"{target:04d}.png"))
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["top"][0]["index"] == target and result["fit"] == "center"
    assert result["top"][0]["prob"] == pytest.approx(side["prob"], abs=1e-4)  # the sidecar's view of the PNG

    if kind in HEADS:
        return
    code, out, err = _run(capfd, "generate-all", cfg, "--classes", f"{target}", "--quiet")
    assert code == 0, err
    assert (run / "manifest.jsonl").is_file()

    if layer:
        photo = tmp_path / "photo.png"
        Image.fromarray(zoo.shapes(3, 40, 52, 3, seed=3)[0][2]).save(photo)
        code, out, err = _run(capfd, "dream", cfg, "--image", str(photo), "--layers", layer, "--octaves", "1",
                              "--steps", "3", "--quiet")
        assert code == 0, err
        dreamt = Image.open(run / "photo_dream.png")
        assert dreamt.size == (52, 40) and dreamt.mode == ("L" if kind == "grayscale_unit" else "RGB")
        assert 5.0 < np.asarray(dreamt, dtype="float64").std() and np.asarray(dreamt).mean() < 250  # not white


def test_refused_in_one_line(models, tmp_path, capfd):
    cases = [
        (zoo.save(zoo.channels_first(), tmp_path, "first"), ["channels_first", "channels_last"]),
        (models["two_heads"], ["2 outputs", "classes", "size", "classifier.output"]),
        (models["dynamic_nonsquare"], ["any size", "classifier.input_size"]),
    ]
    for path, words in cases:
        cfg = _config(tmp_path, path, "tf")
        code, out, err = _run(capfd, "info", cfg)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("dgn: error: "), lines
        for word in words:
            assert word in lines[0], lines[0]


def test_same_model_in_two_input_ranges_gives_the_same_kind_of_image(models, tmp_path, capfd):
    """A model reading -1..1 and the same model with a Rescaling inside reading 0..255: the parameter-
    izations work in one space, so the two runs are the same optimization (up to float rounding)."""
    import keras
    unit = keras.saving.load_model(models["functional"])
    inputs = keras.Input((32, 32, 3))
    raw = keras.Model(inputs, unit(keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)))
    paths = {"tf": models["functional"], "raw": zoo.save(raw, tmp_path, "raw")}
    sides, images = {}, {}
    for space, path in paths.items():
        cfg = _config(tmp_path, path, space)
        assert main(["generate", cfg, "--target", "0", "--out", str(tmp_path / space), "--quiet"]) == 0
        sides[space] = json.loads((tmp_path / space / "0000.json").read_text())
        images[space] = np.asarray(Image.open(tmp_path / space / "0000.png"), dtype="float64")
    assert sides["tf"]["rank"] == sides["raw"]["rank"] == 1
    assert images["tf"].std() > 10.0 and images["raw"].std() > 10.0   # not a black (or flat) image
    # the same optimization: equal at its first step (rounding differs later, and grows, as with any change)
    assert sides["raw"]["activation_during"]["first"] == pytest.approx(sides["tf"]["activation_during"]["first"],
                                                                       rel=1e-4)


def test_class_names_in_every_format(models, tmp_path, capfd):
    from dgn.imagenet import read_class_names, resolve_class
    from dgn.errors import DgnError
    files = {
        "names.txt": "# shapes\nhorizontal stripes\nvertical stripes\n\ndisc\n",
        "list.json": json.dumps(["horizontal stripes", "vertical stripes", "disc"]),
        "object.json": json.dumps({"0": "horizontal stripes", "2": "disc", "1": "vertical stripes"}),
        "keras.json": json.dumps({str(i): [f"s{i}", n] for i, n in
                                  enumerate(["horizontal stripes", "vertical stripes", "disc"])}),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        names = read_class_names(str(tmp_path / name))
        assert [n for _, n in names] == ["horizontal stripes", "vertical stripes", "disc"], name
        assert resolve_class("Disc", names, 3) == 2 and resolve_class("vertical_stripes", names, 3) == 1
    with pytest.raises(DgnError, match="did you mean disc"):
        resolve_class("dsic", read_class_names(str(tmp_path / "names.txt")), 3)
    (tmp_path / "gap.json").write_text(json.dumps({"0": "a", "2": "b"}))
    with pytest.raises(DgnError, match="none missing"):
        read_class_names(str(tmp_path / "gap.json"))

    path = models["functional"]
    cfg = tmp_path / "named.yaml"
    cfg.write_text(f"classifier: {{model: {path}, preprocessing: tf, class_index: object.json}}\n"
                   f"objective: {{targets: [disc]}}\nsteps: 1\n")
    code, out, err = _run(capfd, "info", str(cfg))
    assert code == 0 and "0 horizontal stripes, 1 vertical stripes, 2 disc" in out
    Image.fromarray(zoo.shapes(3)[0][2]).save(tmp_path / "disc.png")
    code, out, err = _run(capfd, "classify", "--config", str(cfg), str(tmp_path / "disc.png"))
    assert code == 0 and "disc" in out and "None" not in out   # names without wnids: no "None" column
    (tmp_path / "short.txt").write_text("a\nb\n")
    code, out, err = _run(capfd, "info", str(cfg), "--set", f"classifier.class_index={tmp_path / 'short.txt'}")
    assert code == 2 and "2 classes but the classifier has 3" in err


def test_dead_channel_is_detected(tmp_path, capfd):
    import keras
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="dead", bias_initializer=
                            keras.initializers.Constant(-100.0))(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))
    cfg = _config(tmp_path, zoo.save(model, tmp_path, "deadnet"), "tf")
    code, out, err = _run(capfd, "generate", cfg, "--target", "channel:dead:1", "--steps", "3", "--out",
                          str(tmp_path / "o"), "--quiet")
    assert code == 0 and "dead unit" in out
    side = json.loads((tmp_path / "o" / "channel_dead_1.json").read_text())
    assert side["dead_unit"]["dead_steps"] == 3 and side["dead_unit"]["final_activation"] == 0.0


def test_outputs_of_similar_names_do_not_collide():
    from dgn.runs.outputs import slug
    stems = {slug(n, unique=True) for n in ["a b", "a_b", "a!b", "café", "cafe", "写真", "x.y"]}
    assert len(stems) == 7 and "café" in stems and "a_b" in stems


@pytest.mark.parametrize("kind", ["sequential_raw", "grayscale_unit"])
def test_pixel_and_fourier_images_in_any_range_and_channels(kind, models, tmp_path, capfd, monkeypatch):
    """The baselines on a 0..255 model and a grayscale 0..1 model, through `dgn compare` without --out:
    one row per method, images of the model's channels, in its valid range."""
    build, space, target, layer, extra = KINDS[kind]
    cfg = _config(tmp_path, models[kind], space, extra)
    configs = []
    for method in ("pixel", "fourier"):
        path = tmp_path / f"{method}.yaml"
        path.write_text(open(cfg).read() + f"parameterization: {{kind: {method}}}\n")
        configs.append(str(path))
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(capfd, "compare", *configs, "--target", str(target), "--steps", "15", "--quiet")
    assert code == 0, err
    for method in ("pixel", "fourier"):
        png = next((tmp_path / "runs" / "compare").rglob(f"*{method}*/*.png"))
        pixels = np.asarray(Image.open(png), dtype="float64")
        assert pixels.ndim == (2 if kind == "grayscale_unit" else 3) and pixels.std() > 2.0, (method, png)


CUSTOM_CODE = '''
import keras


@keras.saving.register_keras_serializable(package="dgn_user")
class Net(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(4, 3, padding="same", activation="relu")
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.dense(self.gap(self.conv(x)))
'''


def test_custom_classes_come_from_the_users_code(tmp_path, capfd):
    import importlib.util

    import keras
    code = tmp_path / "my_net.py"
    code.write_text(CUSTOM_CODE)
    spec = importlib.util.spec_from_file_location("my_net_for_saving", code)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.Net()
    model(np.zeros((1, 32, 32, 3), "float32"))
    path = zoo.save(model, tmp_path, "custom")
    keras.saving.get_custom_objects().pop("dgn_user>Net")   # as in a fresh process: dgn does not know Net
    cfg = _config(tmp_path, path, "tf")
    code_, out, err = _run(capfd, "info", cfg)
    lines = [line for line in err.splitlines() if not line[:5] in ("E0000", "W0000", "I0000")]  # TF's start-up
    assert code_ == 2 and len(lines) == 1 and "'Net'" in lines[0] and "custom_code" in lines[0], err
    code_, out, err = _run(capfd, "info", cfg, "--set", f"classifier.custom_code=[{code}]")
    assert code_ == 0 and "3 classes" in out, err
    (tmp_path / "broken.py").write_text("import nonexistent_module_xyz\n")
    code_, out, err = _run(capfd, "info", cfg, "--set", f"classifier.custom_code=[{tmp_path / 'broken.py'}]")
    assert code_ == 2 and "importing it failed" in err and "nonexistent_module_xyz" in err, err


def test_new_user_findings_end_in_one_line(models, tmp_path, capfd):
    cfg = _config(tmp_path, models["functional"], "tf")
    cases = [
        (["generate", cfg], "no targets"),                                   # no objective.targets
        (["generate", cfg, "--target", "0+0"], "twice"),                     # a compound naming a class twice
        (["generate", cfg, "--target", "0*1"], "positive number"),          # a zero weight
        (["generate", cfg, "--target", "1", "--set", "transform.scale=[1.2,0.9]"], "low <= high"),
        (["classify", "--config", cfg, "--top", "0", cfg], "--top 0"),
        (["generate", cfg, "--target", "cat"], "index 0..2, or name its 3 classes"),   # a name, no names
    ]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "corrupt.keras").write_text("garbage")
    cases.append((["info", _config(tmp_path / "bad", tmp_path / "bad" / "corrupt.keras", "tf")], "not a zip archive"))
    for argv, words in cases:
        code, out, err = _run(capfd, *argv)
        lines = [line for line in err.splitlines() if line[:5] not in ("E0000", "W0000", "I0000")]
        assert code == 2 and len(lines) == 1 and words in lines[0], (argv, err)


def test_a_channel_of_the_softmax_layer_is_its_logit(models):
    from dgn.classifiers import load_classifier
    from dgn.config import load_config
    classifier = load_classifier(load_config(_config_text(models["functional"]))["classifier"])
    images = classifier.from_pixels(zoo.shapes(3)[0])
    out = classifier.features(["predictions"])(images)
    np.testing.assert_allclose(np.asarray(out["predictions"]), np.asarray(out["logits"]), rtol=1e-5, atol=1e-5)


def _config_text(path):
    return None if path is None else _write(f"classifier: {{model: {path}, preprocessing: tf}}\n")


def _write(text):
    import tempfile
    fd, name = tempfile.mkstemp(suffix=".yaml")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return name
