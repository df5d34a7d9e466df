"""A new image parameterization is one class: registered with :func:`dgn.param.register`, it runs
through ``dgn.render``, ``dgn generate`` and ``dgn generate-all`` (a config selects it by its kind and
sets it by a section of that name) with no other change to dgn."""

import json
import os
from dataclasses import dataclass

import keras
import numpy as np
import pytest

import dgn
from dgn.cli import main
from dgn.param import PARAMETERIZATIONS, Built, Parameterization, fixed_input_size, register


@dataclass
class Tiles(Parameterization):
    """Blocks of ``tile`` x ``tile`` pixels of one value each: one variable per block, channel and image
    (row k of f0 is one-hot, so each image has its own variables)."""

    kind = "tiles"
    tile: int = 4
    stddev: float = 0.1

    def build(self, classifier, rows=1, seed=0):
        height, width = fixed_input_size(classifier)
        grid = (height // self.tile, width // self.tile, classifier.channels)
        inputs = keras.Input((rows,), name="f0")
        x = keras.layers.Dense(int(np.prod(grid)), use_bias=False,
                               kernel_initializer=keras.initializers.RandomNormal(0.0, self.stddev, seed=seed))(inputs)
        image = keras.layers.UpSampling2D(self.tile)(keras.layers.Reshape(grid)(x))
        return Built(keras.Model(inputs, image, name=self.kind), np.eye(rows, dtype="float32"))


@pytest.fixture
def tiles():
    register(Tiles)
    yield Tiles
    PARAMETERIZATIONS.pop(Tiles.kind)


def test_render_takes_a_new_parameterization(tiles, tiny_config):
    from dgn import build
    from dgn.config import load_config

    classifier = build.classifier(load_config(tiny_config()).data)
    result = dgn.render(classifier, "3", parameterization=tiles(tile=8), steps=3, seed=0, transforms=[])
    assert result.images.shape == (1, 32, 32, 3)
    image = result.images[0]
    assert np.array_equal(image[:8, :8], np.broadcast_to(image[0, 0], (8, 8, 3)))   # one value per 8x8 block
    # B objectives: B copies of its single build in one step, row k the image objective k gets alone
    many = dgn.render(classifier, ["3", "4"], parameterization=tiles(tile=8), steps=3, seed=0, transforms=[])
    for k, target in enumerate(["3", "4"]):
        one = dgn.render(classifier, target, parameterization=tiles(tile=8), steps=3, seed=0, transforms=[])
        np.testing.assert_allclose(many.images[k], one.images[0], atol=1e-5)


def test_generate_and_generate_all_take_a_new_parameterization(tiles, tiny_config, tmp_path, capsys):
    cfg = tiny_config("parameterization:\n  kind: tiles\ntiles:\n  tile: 8\n")
    out = str(tmp_path / "one")
    assert main(["generate", cfg, "--steps", "3", "--target", "3", "--out", out, "--quiet"]) == 0
    side = json.load(open(os.path.join(out, next(n for n in os.listdir(out) if n.endswith(".json")))))
    assert side["config"]["tiles"] == {"tile": 8} and side["config"]["parameterization"]["kind"] == "tiles"
    run = str(tmp_path / "all")
    assert main(["generate-all", cfg, "--steps", "3", "--classes", "0:3", "--batch", "2", "--out", run, "--quiet"]) == 0
    assert sum(n.endswith(".png") for n in os.listdir(run)) == 3
    capsys.readouterr()
    bad = tiny_config("parameterization:\n  kind: tiles\ntiles:\n  size: 8\n")
    assert main(["generate", bad, "--steps", "2", "--out", str(tmp_path / "bad"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "tiles" in err and "size" in err and len(err.splitlines()) == 1
