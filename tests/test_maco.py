"""MACO (dgn/optvis/param/maco.py): phase only under a fixed magnitude, reproducible, batched row k = alone,
every objective, the transparency map beside each image and in the gallery, its spectrum script."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import dgn
from dgn.cli import main
from dgn.optvis.param.fourier import COLOR_CORRELATION
from dgn.optvis.param.maco import Maco, MacoImage, load_spectrum, magnitude

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MACO = ("classifier: {model: tiny, weights: none, class_index: none}\nparameterization: {kind: maco}\n"
        "transform: {jitter: 0, scale: [1.0, 1.0], rotate: 0, samples: 1}\nmaco: {crops: 2}\n"
        "objective: {activation: logit}\nsteps: 4\n")


@pytest.fixture
def tiny():
    from dgn import build
    from dgn.config import load_config

    return build.classifier(load_config(text="classifier: {model: tiny, weights: none, class_index: none}\n").data)


def test_the_shipped_spectrum_is_natural_and_resamples_to_any_size():
    spectrum = load_spectrum()
    assert spectrum.shape == (3, 224, 113) and spectrum.max() == 1.0 and spectrum[:, 0, 0].max() < 1e-3  # mean removed
    # natural photos: energy falls with frequency (about 1/f)
    assert spectrum[0, 1, 1] > 5 * spectrum[0, 20, 20] > 5 * spectrum[0, 100, 100]
    small = magnitude(32, 48)
    assert small.shape == (3, 32, 25) and np.all(np.isfinite(small))
    np.testing.assert_allclose(magnitude(224, 224), spectrum, atol=1e-6)   # its own size: itself
    assert magnitude(16, 16, channels=1).shape == (1, 16, 9)


def test_only_the_phase_changes_the_magnitude_stays_that_of_photos():
    layer = MacoImage(2, 32, 32, space="unit", decorrelate=True, seed=3)
    layer.build((2, 1))
    layer.phase.assign(np.random.default_rng(0).normal(size=layer.phase.shape).astype("float32"))
    image = np.asarray(layer(np.ones((2, 1), "float32")))                     # 0..1 ('unit' space)
    assert image.shape == (2, 32, 32, 3) and 0 <= image.min() and image.max() <= 1
    z = np.log(image / (1 - image)) @ np.linalg.inv(COLOR_CORRELATION.T)      # undo sigmoid and recorrelation
    for row in z:
        spec = np.abs(np.fft.rfft2(np.moveaxis(row, -1, 0), axes=(1, 2)))[:, :, 1:-1]   # DC / Nyquist columns: real
        ratio = spec / magnitude(32, 32)[:, :, 1:-1]
        assert ratio.std() / ratio.mean() < 1e-2                                # one scale for every coefficient


def test_same_seed_same_image_and_a_batch_row_is_that_class_alone(tiny, tmp_path):
    one = dgn.render(tiny, "3", parameterization=Maco(crops=2), steps=4, seed=5)
    again = dgn.render(tiny, "3", parameterization=Maco(crops=2), steps=4, seed=5)
    np.testing.assert_array_equal(one.rgb, again.rgb)
    other = dgn.render(tiny, "3", parameterization=Maco(crops=2), steps=4, seed=6)
    assert np.abs(other.images - one.images).max() > 0.01
    config = tmp_path / "maco.yaml"
    config.write_text(MACO)
    for batch in (3, 1):
        assert main(["generate-all", str(config), "--classes", "0:3", "--batch", str(batch), "--out",
                     str(tmp_path / f"b{batch}"), "--quiet"]) == 0
    for c in range(3):
        a, b = (np.asarray(Image.open(tmp_path / f"b{n}" / f"{c:04d}.png")).astype(int) for n in (3, 1))
        assert np.abs(a - b).max() <= 1, c
        ta, tb = (np.load(tmp_path / f"b{n}" / f"{c:04d}.transparency.npy") for n in (3, 1))
        np.testing.assert_allclose(ta, tb, rtol=1e-3, atol=1e-6)


def test_transparency_beside_each_image_in_the_sidecar_and_the_gallery(tiny, tmp_path, capsys):
    config = tmp_path / "maco.yaml"
    config.write_text(MACO)
    out = tmp_path / "run"
    assert main(["generate-all", str(config), "--classes", "0:2", "--out", str(out), "--quiet"]) == 0
    side = json.loads((out / "0001.json").read_text())
    assert side["transparency"] == {"png": "0001.transparency.png", "npy": "0001.transparency.npy"}
    values = np.load(out / "0001.transparency.npy")
    assert values.shape == (32, 32) and values.dtype == np.float32 and values.min() >= 0 and values.max() > 0
    png = np.asarray(Image.open(out / "0001.transparency.png"))
    assert png.shape == (32, 32) and png.max() == 255
    page = (out / "index.html").read_text()
    assert "0001.transparency.png" in page and "item.side.transparency" in page
    # rerun: nothing to do (the maps do not make a class unfinished)
    assert main(["generate-all", str(config), "--classes", "0:2", "--out", str(out), "--quiet"]) == 0
    assert "0 classes generated, 2 already there" in capsys.readouterr().out
    # dgn generate and Rendering.save write them too
    assert main(["generate", str(config), "--target", "1", "--out", str(tmp_path / "one"), "--quiet"]) == 0
    assert (tmp_path / "one" / "0001.transparency.npy").is_file()
    result = dgn.render(tiny, "2", parameterization="maco", steps=2)
    assert result.maps["transparency"].shape == (1, 32, 32)
    result.save(str(tmp_path / "r" / "two"))
    assert (tmp_path / "r" / "two.transparency.png").is_file()
    assert not dgn.render(tiny, "2", parameterization=Maco(transparency=False), steps=1).maps


@pytest.mark.parametrize("target", ["2+5", "channel:conv2:1", "neuron:conv2:1:3:3"])
def test_channel_neuron_and_compound_objectives(tiny, target):
    layers = [layer.name for layer in tiny.model.layers]
    if "conv2" not in layers and target.startswith(("channel", "neuron")):
        target = target.replace("conv2", next(n for n in layers if "conv" in n))
    result = dgn.render(tiny, target, parameterization=Maco(crops=2), steps=3)
    assert result.images.shape == (1, 32, 32, 3) and np.isfinite(result.values).all()
    assert result.maps["transparency"].max() > 0


def test_generate_all_runs_channels_batched(tmp_path, tiny):
    config = tmp_path / "maco.yaml"
    config.write_text(MACO)
    layer = next(layer.name for layer in tiny.model.layers if "conv" in layer.name)
    out = tmp_path / "atlas"
    assert main(["generate-all", str(config), "--channels", f"{layer}:0:3", "--batch", "3", "--out", str(out),
                 "--quiet"]) == 0
    assert len([n for n in os.listdir(out) if n.endswith(".transparency.npy")]) == 3


@pytest.mark.parametrize("setting, words", [("maco.crops=0", "maco.crops"), ("maco.box=[1.0]", "maco.box"),
                                            ("maco.box=[1.0,2.0]", "maco.box"), ("maco.noise=-1", "maco.noise"),
                                            ("maco.nope=1", "nope")])
def test_bad_settings_are_one_line(tmp_path, capsys, setting, words):
    config = tmp_path / "maco.yaml"
    config.write_text(MACO)
    assert main(["generate", str(config), "--target", "1", "--out", str(tmp_path / "x"), "--set", setting,
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


def test_defaults_follow_the_input_size():
    from dgn.optvis.optimize import auto_learning_rate

    assert Maco().settings(224, 224)[1] != Maco().settings(32, 32)[1]
    assert Maco(crops=3, box=[0.9, 0.5], noise=0).settings(32, 32) == (3, (0.9, 0.5), 0.0)
    assert auto_learning_rate((224, 224), "maco") > auto_learning_rate((224, 224), "generator")
    assert auto_learning_rate((224, 224), "fourier") == 0.05


def test_spectrum_script_on_a_folder_of_photos(tmp_path):
    folder = tmp_path / "photos" / "n0"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"{k}.png")
    out = tmp_path / "spec.npy"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "maco_spectrum.py"), str(tmp_path / "photos"),
                           "--size", "16", "--out", str(out)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    spectrum = np.load(out)
    assert spectrum.shape == (3, 16, 9) and spectrum.dtype == np.float16 and spectrum.max() == 1
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "maco_spectrum.py"), str(tmp_path / "none")],
                          capture_output=True, text=True, timeout=120, env=env)
    ours = [line for line in done.stderr.splitlines() if not re.match(r"(WARNING: All log|I0000 )", line)]
    assert done.returncode == 2 and len(ours) == 1 and ours[0].startswith("error: image folder not found")


JAX_RUN = r"""
import dgn, numpy as np
from dgn import build
from dgn.config import load_config
from dgn.optvis.param.maco import Maco
clf = build.classifier(load_config(text="classifier: {model: tiny, weights: none, class_index: none}\n").data)
a = dgn.render(clf, "3", parameterization=Maco(crops=2), steps=3, seed=1)
b = dgn.render(clf, "3", parameterization=Maco(crops=2), steps=3, seed=1)
assert np.array_equal(a.rgb, b.rgb) and a.maps["transparency"].max() > 0
print("ok", a.losses[0] != a.losses[-1])
"""


def test_runs_on_jax(tmp_path):
    pytest.importorskip("jax")
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", JAX_RUN], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"ok True", done.stdout)
