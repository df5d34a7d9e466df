"""The progressive recipe (dgn.autoencoder.progressive) on a tiny decoder: stages, fade-in, the thumbnail encoder,
resume, and the folder that eval-dae and the pretrained generator read."""

import json
import os
from test_autoencoder import make_image_folder

import numpy as np
import pytest

from dgn import build
from dgn.autoencoder.encoders import build_thumbnail_encoder
from dgn.autoencoder.evaluate import eval_dae
from dgn.autoencoder.progressive import ProgressiveRecipe, Trainer, load_photos
from dgn.autoencoder.stages import build_stage
from dgn.cli import main
from dgn.config import load_config
from dgn.optvis.generator import build_decoder


# the tiny classifier reads 32 x 32; this decoder grows 5 -> 9 -> 17 -> 32
CONFIG = """
classifier: {{model: tiny, weights: none, class_index: none, input_size: 32}}
generator: {{seed_shape: [5, 5, 12], blocks: [[16, 2], [16, 2]], head: decoder}}
dae:
  data: {data}
  batch_size: 4
  validation: 0.25
  steps_per_epoch: 2
  noise_stddev: 0.05
  norm_photos: 8
  stages:
    - {{side: 9, updates: 4, batch_size: 4, learning_rate: 0.01}}
    - {{side: 17, updates: 4, batch_size: 4, fade: 2, learning_rate: 0.01}}
    - {{side: 32, updates: 6, batch_size: 4, fade: 2, warmup: 1, learning_rate: 0.01, decay: true, window: 9}}
"""


def write_config(tmp_path, data, text=CONFIG):
    path = tmp_path / "progressive.yaml"
    path.write_text(text.format(data=data))
    return str(path)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("progressive")
    images = make_image_folder(root / "images")
    config = write_config(root, images)
    assert main(["train-dae", config, "--out", str(root / "run")]) == 0
    return config, images, str(root / "run")


def test_every_stage_trains_and_the_last_writes_the_papers_decoder(trained):
    config, images, run = trained
    state = json.load(open(os.path.join(run, "checkpoint.json")))
    sides = [h["stage"] for h in state["history"]]
    assert sides == [9, 9, 17, 17, 32, 32, 32]
    assert all(np.isfinite(h["loss"]) for h in state["history"])
    meta = json.load(open(os.path.join(run, "decoder.json")))
    assert meta["encoder"] == {"kind": "thumbnail", "cell": 2, "mix": "global"}   # 3 * 2**2 = 12 numbers a cell
    assert meta["output_norm"] == "moving" and meta["output_activation"] == "linear"
    assert meta["history"][0]["updates"] == 14 and meta["history"][0]["norm_photos"] == 8
    # one checkpoint file, the one checkpoint.json names (each checkpoint writes a new file, then the json)
    assert [n for n in os.listdir(run) if n.endswith(".weights.h5") and n.startswith("checkpoint")] == \
        ["checkpoint-2-6.weights.h5"] == [state["weights"]]
    # the decoder is the paper's G with head 8b, as the pretrained generator builds it: it loads strictly
    decoder = build_decoder([5, 5, 12], [[16, 2], [16, 2]], head="decoder", norm="batch",
                            output_activation="linear", output_norm="moving")
    decoder.load_weights(os.path.join(run, "decoder.weights.h5"))
    # the last stage trained on windows: its head trained too (its fade reached the window model)
    assert np.abs(np.asarray(decoder.get_layer("head_bn2").gamma) - 1.0).max() > 1e-3
    summary, crops, recon = eval_dae(build.autoencoder(load_config(config).data),
                                     build.dae_training(load_config(config).data), str(images), run)
    assert summary["images"] == 22 and np.isfinite(summary["psnr"]) and recon.shape == crops.shape


def test_a_run_stopped_at_every_checkpoint_ends_with_the_same_weights(trained, tmp_path):
    config, images, run = trained
    out = str(tmp_path / "run")
    for call in range(1, 8):   # one checkpoint a call, also at the end of a stage: 7 checkpoints, 7 calls
        assert main(["train-dae", config, "--out", out, "--time-limit", "0.0001"]) == 0
        assert len(json.load(open(os.path.join(out, "checkpoint.json")))["history"]) == call
    import h5py

    def weights(folder):
        with h5py.File(os.path.join(folder, "decoder.weights.h5")) as f:
            found = []
            f.visititems(lambda name, obj: found.append((name, np.asarray(obj))) if hasattr(obj, "shape") else None)
            return found

    a, b = weights(run), weights(out)
    assert [n for n, _ in a] == [n for n, _ in b]
    for (name, x), (_, y) in zip(a, b):
        np.testing.assert_array_equal(x, y, err_msg=name)


def test_the_new_block_enters_as_the_previous_stage_upsampled():
    encoder = build_thumbnail_encoder(32, [5, 5, 12], cell=2)
    decoder = build_decoder([5, 5, 12], [[16, 2], [16, 2]], head="decoder", norm="batch",
                            output_activation="linear", output_norm="moving")
    core_in = encoder  # the stage models read the full-size photo here
    to_rgb = {}
    previous, _ = build_stage(core_in, decoder, 9, None, to_rgb)
    model, fade = build_stage(core_in, decoder, 17, 9, to_rgb)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    old = np.asarray(previous(x))
    import keras

    up = np.asarray(keras.ops.image.resize(old, (17, 17), interpolation="bilinear"))
    np.testing.assert_allclose(np.asarray(model(x)), up, atol=1e-5)     # t = 0: only the old path
    fade.t.assign(1.0)
    assert np.abs(np.asarray(model(x)) - up).max() > 1e-3                # t = 1: the new block alone


def test_the_thumbnail_encoder_starts_as_the_box_thumbnail_plus_one():
    encoder = build_thumbnail_encoder(60, [5, 5, 128])   # cell 6: reads a 60 px copy, 30 x 30 thumbnail
    value = np.full((1, 60, 60, 3), 0.25, "float32")
    value[..., 1] = -0.5
    code = np.asarray(encoder(value)).reshape(5, 5, 128)
    # each cell's first 108 channels: its 6 x 6 thumbnail pixels (row-major), RGB, plus 1
    np.testing.assert_allclose(code[..., :108].reshape(5, 5, 36, 3)[..., 0], 1.25, atol=1e-5)
    np.testing.assert_allclose(code[..., :108].reshape(5, 5, 36, 3)[..., 1], 0.5, atol=1e-5)


@pytest.mark.parametrize("stages, message", [
    ("[{side: 9, updates: 4, colour: red}]", "dae.stages[0]: unknown key colour; valid keys: side, updates"),
    ("[{side: 9}]", "dae.stages[0]: side and updates are needed"),
    ("[{side: 9, updates: -4}]", "dae.stages[0].updates: -4 is not valid; give a whole number of at least 0"),
    ("[{side: 9, updates: 4, decay: 1}]", "dae.stages[0].decay: 1 is not valid; give true or false"),
    ("[{side: 9, updates: 4.0}]", "dae.stages[0].updates: 4.0 is not valid; give a whole number"),
    ("[{side: 17, updates: 4}, {side: 9, updates: 4}]", "progressive stages [17, 9]: give the decoder's stage sides"),
    ("[{side: 32, updates: 3}]", "stage 32: updates 3 must be a positive multiple of checkpoint_updates 2"),
    ("[{side: 17, updates: 2, window: 4}, {side: 32, updates: 2}]", "stage 17: the first stage has no block"),
    ("[{side: 17, updates: 2}, {side: 32, updates: 2, fade: 4}]", "stage 32: fade 4 is longer than its 2 updates"),
    ("[{side: 17, updates: 2}, {side: 32, updates: 2, window: 18}]", "stage 32: window 18 must be between 2 and"),
])
def test_bad_stages_are_one_line(tmp_path, capfd, stages, message):
    images = make_image_folder(tmp_path / "images")
    text = CONFIG.split("  stages:")[0] + "  stages: " + stages.replace("{", "{{").replace("}", "}}") + "\n"
    assert main(["train-dae", write_config(tmp_path, images, text), "--out", str(tmp_path / "run")]) == 2
    err = capfd.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_a_code_too_small_for_the_thumbnail_encoder_is_one_line(tmp_path, capfd):
    images = make_image_folder(tmp_path / "images")
    text = CONFIG.replace("seed_shape: [5, 5, 12]", "seed_shape: [5, 5, 2]")
    assert main(["train-dae", write_config(tmp_path, images, text), "--out", str(tmp_path / "run")]) == 2
    err = capfd.readouterr().err.strip()
    assert "needs a square seed with at least 3 channels" in err and len(err.splitlines()) == 1


def test_a_folder_of_another_decoder_is_refused(trained, tmp_path, capfd):
    config, images, run = trained
    other = CONFIG.replace("seed_shape: [5, 5, 12]", "seed_shape: [5, 5, 15]")
    assert main(["train-dae", write_config(tmp_path, images, other), "--out", run]) == 2
    assert "holds a progressive run of other seed_shape;" in capfd.readouterr().err
    other = CONFIG.replace("validation: 0.25", "validation: 0.5")
    assert main(["train-dae", write_config(tmp_path, images, other), "--out", run]) == 2
    assert "holds a progressive run of other photos;" in capfd.readouterr().err
    assert main(["train-dae", config, "--out", run]) == 0
    assert "the recipe is already finished" in capfd.readouterr().out


def test_photos_are_split_as_train_dae_splits_them(tmp_path):
    images = make_image_folder(tmp_path / "images")
    train, val, names = load_photos(str(images), 32, validation=0.25)
    assert len(train) + len(val) == 22 and names == "images"
    assert Trainer(ProgressiveRecipe(stages=[{"side": 32, "updates": 250}]), [5, 5, 12], [[16, 2], [16, 2]],
                   "tf", 32, str(tmp_path / "x")).recipe.cell == 2


def test_a_packed_checkpoint_resumes_on_another_machine(trained, tmp_path, capsys):
    import h5py

    from dgn.autoencoder.progressive import CHECKPOINT, pack_checkpoint, unpack_checkpoint

    config, images, run = trained
    partial = str(tmp_path / "partial")
    assert main(["train-dae", config, "--out", partial, "--time-limit", "0.0001"]) == 0   # one checkpoint
    packed = pack_checkpoint(partial, str(tmp_path / "packed"))
    with h5py.File(os.path.join(packed, CHECKPOINT)) as fh:
        assert "optimizer" not in fh
        dtypes = set()
        fh.visititems(lambda name, obj: dtypes.add(obj.dtype) if isinstance(obj, h5py.Dataset) else None)
        assert dtypes == {np.dtype("float16")}
    moved = unpack_checkpoint(packed, str(tmp_path / "elsewhere"))
    capsys.readouterr()
    assert main(["train-dae", config, "--out", moved]) == 0
    out = capsys.readouterr().out
    assert "no optimizer state" in out and "trained decoder" in out
    with pytest.raises(Exception, match="already holds a checkpoint"):
        unpack_checkpoint(packed, moved)


def test_the_global_encoder_starts_as_the_local_one_and_is_rebuilt_from_decoder_json(trained):
    from dgn.autoencoder.files import load_trained

    x = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    local = build_thumbnail_encoder(64, [5, 5, 12], cell=2)
    dense = build_thumbnail_encoder(64, [5, 5, 12], cell=2, mix="global")
    np.testing.assert_allclose(np.asarray(local(x)), np.asarray(dense(x)), atol=1e-5)
    config, images, run = trained
    encoder, _, meta = load_trained(build.autoencoder(load_config(config).data), run)
    assert encoder.get_layer("enc_code").__class__.__name__ == "Dense" and meta["encoder"]["mix"] == "global"


def test_a_window_makes_the_whole_images_window_but_for_its_border():
    from dgn.autoencoder.stages import window_output

    encoder = build_thumbnail_encoder(32, [5, 5, 12], cell=2)
    decoder = build_decoder([5, 5, 12], [[16, 2], [16, 2]], head="decoder", norm="moving",
                            output_activation="linear", output_norm="moving")
    to_rgb = {}
    whole, whole_fade = build_stage(encoder, decoder, 32, 17, to_rgb)
    window, fade = build_stage(encoder, decoder, 32, 17, to_rgb, window=9)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    n = window_output(9, 3)
    for t in (0.0, 1.0):
        whole_fade.t.assign(t)
        fade.t.assign(t)
        full = np.asarray(whole(x))
        for row, col in [(0, 0), (3, 5), (8, 8)]:
            part = np.asarray(window([x, np.array([[row, col]] * 2, "int32")]))
            ref = full[:, 2 * row:2 * row + n, 2 * col:2 * col + n]
            np.testing.assert_allclose(part[:, 2:-2, 2:-2], ref[:, 2:-2, 2:-2], atol=1e-5)
