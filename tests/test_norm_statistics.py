"""PreciseBN for the autoencoder's saved weights: the norms' statistics averaged over many batches."""

import json
import os

import h5py
import keras
import numpy as np
import pytest

from dgn.autoencoder.model import AutoencoderSpec, build_autoencoder
from dgn.autoencoder.evaluate import _dataset_images
from dgn.autoencoder.norms import (freeze_norms, kept_norm_statistics, norm_batches, norm_layers,
                                   precise_norm_statistics)
from dgn.autoencoder.files import load_parts
from dgn.autoencoder.training import train_dae
from dgn.cli import main
from dgn.config import load_config
from test_autoencoder import make_image_folder, trains, write_config

SPEC = AutoencoderSpec(seed_shape=[5, 5, 8], blocks=[[16, 2], [16, 2]], encoder_filters=[8, 16], dense=32,
                       noise_stddev=0.0)


def tiny(size=32):
    _, encoder, decoder = build_autoencoder(SPEC, size)
    return encoder, decoder


def batches(count, size=32, batch=4, seed=0):
    rng = np.random.default_rng(seed)
    # offset and scale differ from batch to batch, so the batch statistics do
    return [(rng.normal(size=(batch, size, size, 3)) * (1 + k) + k).astype("float32") for k in range(count)]


def test_one_batch_makes_inference_equal_to_training_on_that_batch():
    encoder, decoder = tiny()
    [x] = batches(1)
    assert norm_layers(encoder, decoder)   # the encoder's BatchNormalization and the decoder's batch norms
    assert precise_norm_statistics(encoder, decoder, [x]) == 1
    trained = np.asarray(decoder(encoder(x, training=True), training=True))
    inferred = np.asarray(decoder(encoder(x, training=False), training=False))
    np.testing.assert_allclose(inferred, trained, rtol=1e-3, atol=1e-3)


def test_the_statistics_are_the_average_of_the_batch_statistics_and_momentum_comes_back():
    encoder, decoder = tiny()
    xs = batches(3)
    first = encoder.get_layer("enc1_bn1")
    before = [layer.momentum for layer in norm_layers(encoder, decoder)]
    precise_norm_statistics(encoder, decoder, xs)
    below = keras.Model(encoder.input, encoder.get_layer("enc1_conv1").output)   # what the first norm normalizes
    means = [np.asarray(below(x)).mean(axis=(0, 1, 2)) for x in xs]
    variances = [np.asarray(below(x)).var(axis=(0, 1, 2)) for x in xs]
    np.testing.assert_allclose(np.asarray(first.moving_mean), np.mean(means, 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.asarray(first.moving_variance), np.mean(variances, 0), rtol=1e-4, atol=1e-5)
    # not the moving average (momentum 0.9), which would weigh the last batch most
    ema = np.zeros_like(means[0])
    for m in means:
        ema = 0.9 * ema + 0.1 * m
    assert not np.allclose(np.asarray(first.moving_mean), ema, rtol=1e-2)
    assert [layer.momentum for layer in norm_layers(encoder, decoder)] == before


def test_kept_statistics_come_back_and_no_batch_changes_nothing():
    encoder, decoder = tiny()
    saved = [np.asarray(v) for layer in norm_layers(encoder, decoder) for v in (layer.moving_mean, layer.moving_variance)]
    with kept_norm_statistics(encoder, decoder):
        precise_norm_statistics(encoder, decoder, batches(2))
        changed = [np.asarray(v) for layer in norm_layers(encoder, decoder) for v in (layer.moving_mean, layer.moving_variance)]
        assert not all(np.array_equal(a, b) for a, b in zip(saved, changed))
    back = [np.asarray(v) for layer in norm_layers(encoder, decoder) for v in (layer.moving_mean, layer.moving_variance)]
    assert all(np.array_equal(a, b) for a, b in zip(saved, back))
    assert precise_norm_statistics(encoder, decoder, []) == 0


def test_norm_batches_are_whole_batches_of_centre_crops_drawn_with_the_seed():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (48, 50, 3), dtype="uint8") for _ in range(11)]
    out = norm_batches(images, 40, "tf", 4, 10)
    assert [b.shape for b in out] == [(4, 40, 40, 3)] * 2   # 10 photos: two whole batches, 2 left out
    assert out[0].min() >= -1 and out[0].max() <= 1
    again = norm_batches(images, 40, "tf", 4, 10)
    assert all(np.array_equal(a, b) for a, b in zip(out, again))
    assert not np.array_equal(norm_batches(images, 40, "tf", 4, 10, seed=1)[0], out[0])
    assert [b.shape[0] for b in norm_batches(images, 40, "tf", 8, 3)] == [3]   # fewer than a batch: one batch
    assert norm_batches(images, 40, "tf", 4, 0) == []


@pytest.mark.parametrize("photos", [0, 16])
def test_saved_parts_carry_the_averaged_statistics_and_the_checkpoint_the_moving_averages(tmp_path, photos):
    images = make_image_folder(tmp_path / "images")
    cfg = load_config(write_config(tmp_path, images), [f"dae.norm_photos={photos}"])
    out = train_dae(*trains(cfg), out_dir=str(tmp_path / "run"), epochs=1, verbose=0)
    # checkpoint (what training resumes from): the moving averages; encoder.weights.h5: the saved statistics
    meta = json.load(open(os.path.join(out, "decoder.json")))
    assert meta["history"][-1]["norm_photos"] == photos
    spec, training, _ = trains(cfg)
    _, encoder, decoder = build_autoencoder(spec, 32)
    encoder.load_weights(os.path.join(out, "encoder.weights.h5"))
    saved = np.asarray(encoder.get_layer("enc1_bn1").moving_mean)
    model, enc2, dec2 = build_autoencoder(spec, 32)
    model.compile(optimizer="adam", loss="mse")
    model.optimizer.build(model.trainable_variables)
    model.load_weights(os.path.join(out, "checkpoint.weights.h5"))
    moving = np.asarray(enc2.get_layer("enc1_bn1").moving_mean)
    if photos:
        assert not np.allclose(saved, moving)
        # the saved statistics are those of the photos' batches, through the saved weights
        train_images = _dataset_images(training, training.data, 32, warn=None)[0]
        precise_norm_statistics(enc2, dec2, norm_batches(train_images, 32, "tf", training.batch_size, photos))
        np.testing.assert_allclose(saved, np.asarray(enc2.get_layer("enc1_bn1").moving_mean), rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_array_equal(saved, moving)


def test_freeze_norms_trains_on_the_statistics_of_the_trained_weights(tmp_path, capsys):
    images = make_image_folder(tmp_path / "images")
    config = write_config(tmp_path, images)
    first = train_dae(*trains(load_config(config)), out_dir=str(tmp_path / "first"), epochs=1, verbose=0)
    sets = [f"dae.init={first}", "dae.freeze_norms=true", "dae.norm_photos=12"]
    cfg = load_config(config, sets)
    out = train_dae(*trains(cfg), out_dir=str(tmp_path / "frozen"), epochs=2, verbose=0)
    assert f"norms frozen on the statistics of {first}" in capsys.readouterr().out
    spec, training, _ = trains(cfg)
    _, enc0, dec0 = build_autoencoder(spec, 32)
    load_parts(first, enc0, dec0)
    _, enc1, dec1 = build_autoencoder(spec, 32)
    load_parts(out, enc1, dec1)
    for name in ("enc1_bn1", "enc2_bn2"):
        for attr in ("moving_mean", "moving_variance", "gamma", "beta"):   # the encoder's norms: not trained
            np.testing.assert_array_equal(np.asarray(getattr(enc1.get_layer(name), attr)),
                                          np.asarray(getattr(enc0.get_layer(name), attr)))
    bn, bn0 = dec1.get_layer("block1_bn1"), dec0.get_layer("block1_bn1")
    np.testing.assert_array_equal(np.asarray(bn.moving_variance), np.asarray(bn0.moving_variance))
    assert not np.allclose(np.asarray(bn.gamma), np.asarray(bn0.gamma))   # trained
    assert not np.allclose(np.asarray(enc1.get_layer("enc1_conv1").kernel), np.asarray(enc0.get_layer("enc1_conv1").kernel))
    # frozen, training normalizes as inference does
    assert freeze_norms(enc1, dec1) == len(norm_layers(enc0, dec0)) > 0
    x = batches(1)[0]
    np.testing.assert_allclose(np.asarray(dec1(enc1(x, training=True), training=True)),
                               np.asarray(dec1(enc1(x, training=False), training=False)), rtol=1e-5, atol=1e-5)
    # resumed from its checkpoint, still on the same statistics
    train_dae(*trains(load_config(config, sets)), out_dir=out, epochs=3, verbose=0)
    _, enc2, _ = build_autoencoder(spec, 32)
    enc2.load_weights(os.path.join(out, "encoder.weights.h5"))
    np.testing.assert_array_equal(np.asarray(enc2.get_layer("enc1_bn1").moving_mean),
                                  np.asarray(enc0.get_layer("enc1_bn1").moving_mean))


def test_freeze_norms_without_trained_weights_is_a_one_line_error(tmp_path, capfd):
    images = make_image_folder(tmp_path / "images")
    config = write_config(tmp_path, images)
    code = main(["train-dae", config, "--set", "dae.freeze_norms=true", "--out", str(tmp_path / "run")])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "dae.freeze_norms" in err[0] and "dae.init" in err[0]
    assert not os.path.exists(tmp_path / "run" / "checkpoint.json")


def test_averaging_for_the_saved_parts_leaves_training_as_it_was(tmp_path):
    """Two epochs with and without the averaged statistics: the same checkpoint (weights, moving
    averages, optimizer), so the statistics set for a save are put back before training goes on."""
    images = make_image_folder(tmp_path / "images")
    config = write_config(tmp_path, images)
    runs = {}
    for photos in (0, 16):
        cfg = load_config(config, [f"dae.norm_photos={photos}"])
        runs[photos] = train_dae(*trains(cfg), out_dir=str(tmp_path / f"run{photos}"), epochs=2, verbose=0)

    def arrays(path):
        found = {}
        with h5py.File(path) as fh:
            fh.visititems(lambda key, obj: found.__setitem__(key, np.asarray(obj)) if isinstance(obj, h5py.Dataset) else None)
        return found

    plain, averaged = (arrays(os.path.join(runs[p], "checkpoint.weights.h5")) for p in (0, 16))
    assert plain.keys() == averaged.keys() and len(plain) > 20
    for key in plain:
        np.testing.assert_allclose(averaged[key], plain[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # while the saved parts differ in their statistics only
    enc = [arrays(os.path.join(runs[p], "encoder.weights.h5")) for p in (0, 16)]
    differ = [k for k in enc[0] if not np.allclose(enc[0][k], enc[1][k], rtol=1e-5, atol=1e-6)]
    assert differ and all(k.split("/")[-1] in ("2", "3") for k in differ), differ   # moving mean, variance
