"""The library, driven directly with small objects (as lucid's ``assert_gradient_ascent``): every
parameterization climbs its objective, the same seed gives the same image, ``dgn.render`` with its
defaults makes exactly the PNG ``dgn generate`` makes from a minimal config, callbacks see and steer
the loop, and bad arguments end in one line."""

import dataclasses
import os
import re

import keras
import numpy as np
import pytest
from PIL import Image

import dgn
from dgn import build
from dgn.optvis.callbacks import Callback, EarlyStopping, LambdaCallback
from dgn.config import defaults, load_config
from dgn.errors import DgnError
from dgn.optvis.render import generate
from dgn.optvis.param import PARAMETERIZATIONS, Fourier, Generator, Pixels
from dgn.optvis.transforms import Jitter, Pad, Rotate, Scale, compose

SMALL_G = dict(seed_shape=[5, 5, 8], blocks=[[16, 2], [16, 2]])


@pytest.fixture(scope="module")
def tiny():
    return dgn.load_classifier("tiny", weights="none", class_index="none")


@pytest.mark.parametrize("parameterization", [Generator(**SMALL_G), Pixels(), Fourier()],
                         ids=["generator", "pixels", "fourier"])
def test_every_parameterization_climbs_its_objective(tiny, parameterization):
    result = dgn.render(tiny, "3", parameterization=parameterization, transforms=[], optimizer="adam",
                        steps=12, seed=0)
    assert result.values[-1][0] > result.values[0][0]
    assert result.images.shape == (1, 32, 32, 3) and result.rgb.shape == (1, 32, 32, 3)
    assert result.rgb.dtype == np.uint8 and result.rgb.std() > 0
    assert result.sidecars[0]["parameterization"] == parameterization.kind
    assert result.evaluation[0]["rank"] >= 1


def test_same_seed_same_image_other_seed_other_image(tiny):
    a = dgn.render(tiny, 3, parameterization=Generator(**SMALL_G), steps=4, seed=1)
    b = dgn.render(tiny, 3, parameterization=Generator(**SMALL_G), steps=4, seed=1)
    c = dgn.render(tiny, 3, parameterization=Generator(**SMALL_G), steps=4, seed=2)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert not np.array_equal(a.rgb, c.rgb)


def test_render_defaults_make_the_png_of_a_minimal_config(tmp_path, tiny):
    """The library's defaults are the config's: a config naming only the classifier gives the same PNG."""
    cfg = load_config(text="classifier: {model: tiny, weights: none, class_index: none}\nsteps: 3\n")
    (png, side), = generate(cfg, targets=["3"], out_dir=str(tmp_path / "cli"), progress=False)
    result = dgn.render(tiny, "3", steps=3)
    np.testing.assert_array_equal(np.asarray(Image.open(png)), result.rgb[0])
    assert result.sidecars[0]["prob"] == pytest.approx(side["prob"])
    path = result.save(str(tmp_path / "lib" / "three"))
    assert os.path.isfile(path) and os.path.isfile(str(tmp_path / "lib" / "three.json"))


def test_parameterization_defaults_are_the_config_defaults():
    data = defaults()
    for kind, cls in PARAMETERIZATIONS.items():
        built = build.parameterization({**data, "parameterization": {"kind": kind, "pad": 0}})
        assert built == cls(), kind
        section = {"generator": "generator", "pixel": "pixel", "fourier": "fourier", "maco": "maco"}[kind]
        assert set(data[section]) <= {f.name for f in dataclasses.fields(cls)}, kind


def test_callbacks_see_every_step_and_can_stop_or_steer_the_run(tiny):
    seen = []
    result = dgn.render(tiny, "3", parameterization=Pixels(), transforms=[], steps=30,
                        callbacks=[LambdaCallback(on_step_end=lambda step, logs, stepper: seen.append(step)),
                                   EarlyStopping(patience=1, min_delta=1e9)])
    assert seen == [0, 1] and len(result.losses) == 2 and result.sidecars[0]["steps"] == 2

    class Freeze(Callback):  # writes the variables: the pixels go back to zero after every step
        def on_step_end(self, step, logs, stepper):
            stepper.set_values([np.zeros_like(v) for v in stepper.get_values()])

    frozen = dgn.render(tiny, "3", parameterization=Pixels(init="zeros", clip_range=False), transforms=[],
                        steps=3, callbacks=[Freeze()])
    np.testing.assert_array_equal(frozen.images, np.zeros_like(frozen.images))


def test_transforms_compose_and_reach_d(tiny):
    t = compose([Pad(4), Jitter(8), Scale(0.9, 1.1), Rotate(5)], samples=2)
    assert t.describe() == {"jitter": 8, "scale": [0.9, 1.1], "rotate": 5.0, "pad": 4, "samples": 2}
    result = dgn.render(tiny, "3", parameterization=Pixels(), transforms=t, steps=2)
    assert result.sidecars[0]["config"]["transform"]["pad"] == 4
    model = result.model
    assert model.get_layer("transform").__class__.__name__ == "PadTransform"
    for bad, words in (([Scale(1.2, 0.8)], "low <= high"), ([Jitter(2), Jitter(3)], "once"),
                       (["jitter"], "Jitter, Scale")):
        with pytest.raises(DgnError, match=re.escape(words)):
            dgn.render(tiny, "3", transforms=bad, steps=1)


def test_a_keras_model_in_memory(tmp_path):
    inputs = keras.Input((24, 24, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="head")(x))
    with pytest.raises(DgnError, match="dgn.classifier"):
        dgn.render(model, 0, steps=1)
    clf = dgn.classifier(model, preprocessing="unit", class_names=["a", "b", "c"])
    result = dgn.render(clf, "b", parameterization="pixel", steps=3)
    assert result.rgb.shape == (1, 24, 24, 1) and result.sidecars[0]["target"]["name"] == "b"
    channel = dgn.render(clf, "channel:conv:2", parameterization=Fourier(), steps=3)
    assert channel.sidecars[0]["target"] == {"kind": "channel", "layer": "conv", "channel": 2}
    with pytest.raises(DgnError, match="3 classes"):
        dgn.classifier(model, preprocessing="unit", class_names=["a"])


@pytest.mark.parametrize("kwargs, words", [
    (dict(steps=0), "steps"), (dict(snapshots=5, steps=2), "snapshots"), (dict(display="x"), "display"),
    (dict(parameterization="voxels"), "valid: generator, pixel, fourier"), (dict(optimizer="nope"), "optimizer"),
    (dict(objective="channel:nolayer:0"), "nolayer")])
def test_bad_arguments_are_one_line(tiny, kwargs, words):
    kwargs = {"objective": "3", **kwargs}
    with pytest.raises(DgnError) as info:
        dgn.render(tiny, **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_generate_all_runs_pixel_and_fourier_images_resumably(tmp_path, capsys):
    from dgn.cli import main

    for kind in ("pixel", "fourier"):
        path = tmp_path / f"{kind}.yaml"
        path.write_text("classifier: {model: tiny, weights: none, class_index: none}\n"
                        f"parameterization: {{kind: {kind}}}\nsteps: 3\n")
        out = tmp_path / kind
        assert main(["generate-all", str(path), "--classes", "0:3", "--out", str(out), "--quiet"]) == 0
        assert sorted(p for p in os.listdir(out) if p.endswith(".png")) == ["0000.png", "0001.png", "0002.png"]
        assert main(["generate-all", str(path), "--classes", "0:3", "--out", str(out), "--quiet"]) == 0
        assert "0 classes generated, 3 already there" in capsys.readouterr().out
        # the batch's image of a class is the one dgn generate makes (batch 1 on the CPU)
        (png, _), = generate(load_config(str(path)), targets=["1"], out_dir=str(tmp_path / f"{kind}-one"),
                             progress=False)
        np.testing.assert_array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(out / "0001.png")))


def test_generate_refuses_another_configs_generate_all_folder(tmp_path, capsys, tiny_config):
    from dgn.cli import main

    config = tiny_config()
    out = str(tmp_path / "run")
    assert main(["generate-all", config, "--classes", "0:1", "--steps", "2", "--out", out, "--quiet"]) == 0
    assert main(["generate", config, "--target", "1", "--steps", "2", "--out", out, "--quiet"]) == 0
    capsys.readouterr()
    assert main(["generate", config, "--target", "1", "--steps", "3", "--out", out, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "another config" in err and "--force" in err
    assert main(["generate", config, "--target", "1", "--steps", "3", "--out", out, "--quiet", "--force"]) == 0


def test_a_users_callback_gets_the_gradients_it_asks_for(tiny):
    seen = []

    class Grads(Callback):
        needs_grads = True

        def on_step_end(self, step, logs, stepper):
            grads, values = stepper.gradients(), stepper.get_values()
            assert [g.shape for g in grads] == [v.shape for v in values]
            seen.append(step)

    for parameterization in (Generator(**SMALL_G), Pixels(), Fourier()):
        seen.clear()
        dgn.render(tiny, "3", parameterization=parameterization, steps=2, callbacks=Grads())   # one, not a list
        assert seen == [0, 1]


@pytest.mark.parametrize("kwargs, words", [
    (dict(seed=-1), "seed"), (dict(seed=1.5), "seed"), (dict(seed="a"), "seed"), (dict(callbacks=[1]), "callback"),
    (dict(callbacks="x"), "callbacks"), (dict(transforms="jitter"), "list of dgn.transforms"),
    (dict(callbacks=[LambdaCallback(on_step_end=lambda s, l, st: st.set_values([np.zeros((1, 2))]))]),
     "set_values"),
    (dict(callbacks=[LambdaCallback(on_step_end=lambda s, l, st: st.set_values(
        [np.full(v.shape, np.nan, "float32") for v in st.get_values()]))], parameterization="pixels"), "NaN")])
def test_more_bad_arguments_are_one_line(tiny, kwargs, words):
    with pytest.raises(DgnError) as info:
        dgn.render(tiny, "3", steps=1, transforms=kwargs.pop("transforms", []), **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_save_takes_a_stem(tiny, tmp_path):
    result = dgn.render(tiny, "3", parameterization="pixel", steps=1)
    assert result.save(str(tmp_path / "a.png")) == str(tmp_path / "a.png")
    assert os.path.isfile(tmp_path / "a.json") and not os.path.exists(tmp_path / "a.png.png")
    for bad in ("", str(tmp_path)):
        with pytest.raises(DgnError, match="file stem"):
            result.save(bad)


# One process with one intra-op thread (see tests/test_batch.py): every kernel sums in one order, so a
# row of a batch must equal its image alone exactly.
ROWS_ALONE = r"""
import sys
import numpy as np
import dgn
from dgn.param import Fourier, Generator, Pixels
from dgn.transforms import Jitter, Rotate, Scale, compose

tiny = dgn.load_classifier("tiny", weights="none", class_index="none")
moves = compose([Jitter(2), Scale(0.9, 1.1), Rotate(5)], samples=2)
targets = ["3", "channel:conv2:1", "2+5"]
for param in (Generator(seed_shape=[5, 5, 8], blocks=[[16, 2], [16, 2]]), Pixels(blur_every=2, octaves=2), Fourier()):
    many = dgn.render(tiny, targets, parameterization=param, transforms=moves, steps=4, seed=1)
    assert many.images.shape == (3, 32, 32, 3) and len(many.sidecars) == 3
    for k, target in enumerate(targets):
        one = dgn.render(tiny, target, parameterization=param, transforms=moves, steps=4, seed=1)
        assert np.array_equal(many.images[k], one.images[0]), (param.kind, target)
        assert np.array_equal(many.rgb[k], one.rgb[0]), (param.kind, target)
        assert many.sidecars[k]["target"] == one.sidecars[0]["target"]
print("ok")
"""


def test_a_list_of_objectives_gives_each_row_its_image_alone():
    """dgn.render with B objectives optimizes B images per step; row k is objective k's image alone
    (same seed), for the generator, pixels (with octaves and blur) and Fourier, with transformed copies."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "PYTHONPATH": root}
    done = subprocess.run([sys.executable, "-c", ROWS_ALONE], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-3000:]


def test_an_empty_list_of_objectives_is_one_line(tiny):
    with pytest.raises(DgnError) as info:
        dgn.render(tiny, [], steps=1)
    assert "list" in str(info.value) and "\n" not in str(info.value)


def test_transforms_compose_any_function_of_the_images(tiny):
    """As lucid's compose: a function of the images runs after the built-in warp, while optimizing only,
    and D sees its output (a function that blanks the image leaves D no gradient: the pixels stay)."""
    calls = []

    def blank(images):
        calls.append(tuple(images.shape[1:]))
        return images * 0.0

    moves = compose([Jitter(2), blank])
    assert moves.describe()["functions"] == ["blank"] and moves.describe()["jitter"] == 2
    one = dgn.render(tiny, "3", parameterization=Pixels(clip_range=False), transforms=moves, steps=1, seed=0)
    three = dgn.render(tiny, "3", parameterization=Pixels(clip_range=False), transforms=moves, steps=3, seed=0)
    assert calls and calls[0] == (32, 32, 3)
    np.testing.assert_array_equal(one.images, three.images)   # no gradient reached the pixels
    moved = dgn.render(tiny, "3", parameterization=Pixels(clip_range=False), transforms=[Jitter(2)], steps=3, seed=0)
    assert not np.array_equal(moved.images, three.images)     # without the function they move
    flipped = dgn.render(tiny, ["3", "4"], parameterization=Generator(**SMALL_G), steps=2, seed=0,
                         transforms=[lambda images: images[:, :, ::-1, :]])
    alone = dgn.render(tiny, "4", parameterization=Generator(**SMALL_G), steps=2, seed=0,
                       transforms=[lambda images: images[:, :, ::-1, :]])
    np.testing.assert_allclose(flipped.images[1], alone.images[0], atol=1e-4)
    with pytest.raises(DgnError, match="functions of the images"):
        dgn.render(tiny, "3", transforms=[Jitter(2), 3], steps=1)
