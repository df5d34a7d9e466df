"""The autoencoder on a handful of generated images: training, resume, bad images, PSNR."""

import csv
import json
import math
import os
import shutil

import keras
import numpy as np
import pytest
from PIL import Image

from dgn import build
from dgn.autoencoder.model import DaeTraining
from dgn.autoencoder.evaluate import eval_dae, psnr
from dgn.autoencoder.training import train_dae
from dgn.cli import main
from dgn.config import load_config
from dgn.errors import ConfigError, DgnError

DAE = """
classifier: {{model: tiny, weights: none, class_index: none}}
generator: {{seed_shape: [5, 5, 8], blocks: [[16, 2], [16, 2]], head: decoder}}
dae: {{data: {data}, encoder_filters: [8, 16], dense: 32, batch_size: 4, epochs: 3, validation: 0.25,
      learning_rate: 0.01, noise_stddev: 0.05}}
"""


def smooth_image(rng, size=40):
    y, x = np.mgrid[0:size, 0:size] / size
    channels = [np.sin(2 * np.pi * (rng.random() * x + rng.random() * y) + rng.random() * 6) for _ in range(3)]
    return (np.stack(channels, -1) * 100 + 128).clip(0, 255).astype("uint8")


def make_image_folder(root):
    rng = np.random.default_rng(0)
    for i in range(16):
        folder = root / f"n{i % 2:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth_image(rng)).save(folder / f"{i}.png")
    # every awkward kind: grayscale, palette, RGBA, CMYK, 16-bit, tiny (upscaled), corrupt, empty
    Image.fromarray(smooth_image(rng)).convert("L").save(root / "n00000000" / "gray.png")
    Image.fromarray(smooth_image(rng)).convert("P").save(root / "n00000000" / "palette.png")
    Image.fromarray(smooth_image(rng)).convert("RGBA").save(root / "n00000000" / "rgba.png")
    Image.fromarray(smooth_image(rng)).convert("CMYK").save(root / "n00000001" / "cmyk.jpg")
    Image.fromarray((np.asarray(smooth_image(rng))[..., 0].astype("uint16") * 257)).save(root / "n00000001" / "deep.png")
    Image.fromarray(smooth_image(rng, 12)).save(root / "n00000001" / "small.png")
    (root / "n00000001" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (root / "n00000001" / "empty.png").write_bytes(b"")
    return root


@pytest.fixture
def image_folder(tmp_path):
    return make_image_folder(tmp_path / "images")


@pytest.fixture(scope="module")
def trained_once(tmp_path_factory):
    """(config path, image folder, run folder) of one 1-epoch run of the default config, shared by the
    tests that only read it (a test that changes a file copies the run first: :func:`copy_run`)."""
    root = tmp_path_factory.mktemp("trained_once")
    images = make_image_folder(root / "images")
    config = write_config(root, images)
    out = train_dae(*trains(load_config(config)), out_dir=str(root / "run"), epochs=1, verbose=0)
    return config, images, out


def copy_run(run, tmp_path):
    """A copy of a shared run folder that a test may change."""
    return shutil.copytree(run, str(tmp_path / "run"))


def write_config(tmp_path, data):
    path = tmp_path / "dae.yaml"
    path.write_text(DAE.format(data=data))
    return str(path)


def dae_objects(cfg):
    """(AutoencoderSpec, DaeTraining) of a config, made by dgn.build as the commands make them."""
    return build.autoencoder(cfg.data), build.dae_training(cfg.data)


def trains(cfg):
    """train_dae's objects of a config: dae_objects and D, made by dgn.build as `dgn train-dae` makes them."""
    return dae_objects(cfg) + (build.dae_classifier(cfg.data),)


def test_loss_goes_down_and_bad_images_are_handled(tmp_path, image_folder, capsys):
    cfg = load_config(write_config(tmp_path, image_folder))
    out = train_dae(*trains(cfg), out_dir=str(tmp_path / "run"), epochs=3, verbose=0)
    printed = capsys.readouterr().out
    assert "24 images" in printed and "2 unreadable skipped" in printed
    assert printed.count("skipped: cannot read image") == 2
    rows = list(csv.DictReader(open(os.path.join(out, "log.csv"))))
    assert len(rows) == 3
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    meta = json.load(open(os.path.join(out, "decoder.json")))
    assert meta["preprocessing"] == "tf" and meta["epochs"] == 3
    assert meta["data"] == "images" and sum(meta["images"].values()) == 22  # readable images; no machine path


def test_resume_continues_from_the_checkpoint(tmp_path, image_folder):
    cfg = load_config(write_config(tmp_path, image_folder))
    straight = train_dae(*trains(cfg), out_dir=str(tmp_path / "straight"), epochs=2, verbose=0)
    resumed = str(tmp_path / "resumed")
    train_dae(*trains(cfg), out_dir=resumed, epochs=1, verbose=0)  # "killed" after epoch 1
    train_dae(*trains(cfg), out_dir=resumed, epochs=2, verbose=0)
    rows = list(csv.DictReader(open(os.path.join(resumed, "log.csv"))))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    # the wall time goes on from the checkpoint's: one run of 2 epochs in the history
    history = json.load(open(os.path.join(resumed, "decoder.json")))["history"]
    assert len(history) == 1 and history[0]["epochs"] == 2
    assert history[0]["wall_seconds"] > json.load(open(os.path.join(straight, "decoder.json")))["history"][0][
        "wall_seconds"] / 2
    import h5py

    # The optimizer went on from the checkpoint: its step counter covers both epochs (5 batches each),
    # and the result is that of an uninterrupted run up to the order of the data.
    with h5py.File(os.path.join(resumed, "checkpoint.weights.h5")) as fh:
        assert int(fh["optimizer/vars/0"][()]) == 10
    straight_rows = list(csv.DictReader(open(os.path.join(straight, "log.csv"))))
    assert float(rows[-1]["loss"]) == pytest.approx(float(straight_rows[-1]["loss"]), rel=0.25)


def test_other_configuration_in_the_same_folder_is_refused(tmp_path, image_folder, capfd):
    cfg = load_config(write_config(tmp_path, image_folder))
    train_dae(*trains(cfg), out_dir=str(tmp_path / "run"), epochs=1, verbose=0)
    other = load_config(write_config(tmp_path, image_folder), ["dae.dense=16"])
    with pytest.raises(DgnError, match=r"another configuration \(differs in dae.dense\)"):
        train_dae(*trains(other), out_dir=str(tmp_path / "run"), epochs=1, verbose=0)
    # a run that failed before its first checkpoint (no photos there) holds nothing: the corrected
    # command, with other settings too, starts in that folder
    config = write_config(tmp_path, image_folder)
    fresh = str(tmp_path / "fresh")
    assert main(["train-dae", config, "--data", str(tmp_path / "typo"), "--out", fresh, "--quiet"]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["train-dae", config, "--data", str(tmp_path / "empty"), "--out", fresh, "--quiet"]) == 2
    assert main(["train-dae", config, "--out", fresh, "--epochs", "1", "--quiet", "--set", "dae.dense=16"]) == 0
    capfd.readouterr()
    for bad in ("0", "-2", "x"):
        with pytest.raises(SystemExit) as stop:
            main(["train-dae", config, "--out", fresh, "--epochs", bad])
        assert stop.value.code == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--epochs" in err[0] and "at least 1" in err[0], err


def test_a_kill_while_an_epoch_is_saved_resumes_from_the_last_complete_one(tmp_path, image_folder, monkeypatch):
    """checkpoint.json is written last: killed after epoch 2's checkpoint, log row and decoder but
    before its encoder, the run is at epoch 1, and the rerun trains epoch 2 again into one whole set."""
    import dgn.autoencoder.training as training
    from dgn.autoencoder.model import build_autoencoder

    # the moving averages in the saved parts too (norm_photos 0), so that they reconstruct exactly as
    # the checkpoint does (precise statistics: tests/test_norm_statistics.py)
    cfg = load_config(write_config(tmp_path, image_folder), ["dae.norm_photos=0"])
    out = str(tmp_path / "run")
    real = training.save_parts
    calls = []

    def killed_in_epoch_2(folder, encoder, decoder, metadata):
        calls.append(metadata["epochs"])
        if metadata["epochs"] == 2:
            decoder.save_weights(os.path.join(folder, "decoder.weights.h5"))
            raise KeyboardInterrupt("killed")
        real(folder, encoder, decoder, metadata)

    monkeypatch.setattr(training, "save_parts", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train_dae(*trains(cfg), out_dir=out, epochs=2, verbose=0)
    assert json.load(open(os.path.join(out, "checkpoint.json")))["epoch"] == 1
    assert len(list(csv.DictReader(open(os.path.join(out, "log.csv"))))) == 2   # epoch 2's row was written
    monkeypatch.setattr(training, "save_parts", real)
    train_dae(*trains(cfg), out_dir=out, epochs=2, verbose=0)
    assert json.load(open(os.path.join(out, "checkpoint.json")))["epoch"] == 2
    assert [r["epoch"] for r in csv.DictReader(open(os.path.join(out, "log.csv")))] == ["0", "1"]
    assert json.load(open(os.path.join(out, "decoder.json")))["epochs"] == 2
    # the decoder and the encoder belong together: the export reconstructs as the checkpoint does
    from dgn.autoencoder.files import load_trained

    model, _, _ = build_autoencoder(build.autoencoder(cfg.data), 32)
    model.load_weights(os.path.join(out, "checkpoint.weights.h5"))
    encoder, decoder, _ = load_trained(build.autoencoder(cfg.data), out)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(decoder(encoder(x, training=False), training=False)),
                               np.asarray(model.get_layer("decoder")(model.get_layer("encoder")(x, training=False),
                                                                     training=False)), atol=1e-5)


def test_empty_or_missing_folder_is_a_clear_error(tmp_path, capfd):
    (tmp_path / "empty").mkdir()
    for data in (tmp_path / "empty", tmp_path / "missing"):
        code = main(["train-dae", write_config(tmp_path, data), "--out", str(tmp_path / "run")])
        err = capfd.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert "no images found" in err[0] or "image folder not found" in err[0]


def test_eval_psnr_matches_hand_computation(trained_once, capsys):
    config, image_folder, out = trained_once
    cfg = load_config(config)
    summary, crops, recon = eval_dae(*dae_objects(cfg), str(image_folder), folder=out, limit=5)
    mse = np.mean((crops.astype("float64") - recon.astype("float64")) ** 2)
    assert summary["images"] == 5 and crops.shape == (5, 32, 32, 3)
    assert summary["mse"] == pytest.approx(mse, abs=1e-3)
    assert summary["psnr"] == pytest.approx(10 * np.log10(255 ** 2 / mse), abs=1e-3)
    assert psnr(crops, crops)[0] == float("inf")
    r, g = crops[..., 0].ravel().astype("float64"), crops[..., 1].ravel().astype("float64")
    assert summary["channel_correlation"]["photos"][0] == pytest.approx(np.corrcoef(r, g)[0, 1], abs=1e-4)
    assert main(["eval-dae", config, "--data", str(image_folder), "--weights", out, "--limit", "5"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last)["images"] == 5


def test_pretrained_configuration_trains_only_alpha_through_the_trained_decoder(tmp_path, trained_once):
    from dgn.optvis.render import generate

    out = copy_run(trained_once[2], tmp_path)
    decoder = os.path.join(out, "decoder.weights.h5")
    gen_cfg = tmp_path / "pretrained.yaml"
    gen_cfg.write_text(
        "classifier: {model: tiny, weights: none, class_index: none}\n"
        f"generator: {{seed_shape: [5, 5, 8], blocks: [[16, 2], [16, 2]], head: decoder, decoder_weights: {decoder},\n"
        "  trainable: alpha, noise: multiplicative, noise_stddev: 0.2294, alpha_init: ones, alpha_activation: relu}\n"
        "regularizers: {image_gamma_l1: 0.0, alpha_l2: 0.1}\n"
        "optimizer: {name: sgd, learning_rate: 0.01, momentum: 0.1, nesterov: true}\n"
        "objective: {targets: ['3'], activation: logit}\n"
        "steps: 12\nfinal: {mode: median, snapshots: 10}\n")
    (_, meta), = generate(load_config(str(gen_cfg)), out_dir=str(tmp_path / "gen"), progress=False)
    assert meta["trainable_weights"] == 5 * 5 * 8
    assert "median of the last 10" in meta["final_image"]
    # a decoder trained for another input space is refused
    meta_path = os.path.join(out, "decoder.json")
    info = json.load(open(meta_path))
    info["preprocessing"] = "caffe"
    json.dump(info, open(meta_path, "w"))
    with pytest.raises(DgnError, match="trained for 'caffe' inputs"):
        generate(load_config(str(gen_cfg)), out_dir=str(tmp_path / "gen2"), progress=False)


def test_perceptual_term_adds_the_feature_distance_under_d(tmp_path, image_folder):
    import keras

    from dgn.autoencoder.schedule import perceptual_features, pixel_mse, reconstruction_loss
    from dgn.classifiers import load_classifier

    classifier = load_classifier({"model": "tiny", "weights": "none", "class_index": "none", "input_size": 32,
                                  "num_classes": 10})
    features = perceptual_features(classifier, ["conv1", "relu2"])
    rng = np.random.default_rng(1)
    a = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    b = rng.uniform(-1, 1, (2, 32, 32, 3)).astype("float32")
    conv1 = keras.Model(classifier.model.input, classifier.layer("conv1").output)
    relu2 = keras.Model(classifier.model.input, classifier.layer("relu2").output)
    by_hand = np.mean((a - b) ** 2, axis=(1, 2, 3)) + 0.5 * 0.5 * (
        np.mean((np.asarray(conv1(a)) - np.asarray(conv1(b))) ** 2, axis=(1, 2, 3))
        + np.mean((np.asarray(relu2(a)) - np.asarray(relu2(b))) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(np.asarray(reconstruction_loss(features, 0.5)(a, b)), by_hand, rtol=1e-5)
    assert reconstruction_loss(None, 0.0) is pixel_mse
    with pytest.raises(DgnError, match="has no layer 'block2b_add'"):
        perceptual_features(classifier, ["block2b_add"])
    # through train-dae: the CSV logs the pixel MSE beside the combined loss
    cfg = load_config(write_config(tmp_path, image_folder),
                      ["dae.perceptual_weight=0.1", "dae.perceptual_layers=[conv1]"])
    out = train_dae(*trains(cfg), out_dir=str(tmp_path / "run"), epochs=1, verbose=0)
    row = next(csv.DictReader(open(os.path.join(out, "log.csv"))))
    assert float(row["loss"]) > float(row["pixel_mse"]) > 0 and "val_pixel_mse" in row


def test_time_limit_stops_after_a_complete_epoch_and_resumes(tmp_path, image_folder, capsys):
    cfg = load_config(write_config(tmp_path, image_folder))
    out = str(tmp_path / "run")
    train_dae(*trains(cfg), out_dir=out, epochs=3, verbose=0, time_limit=1e-6)
    assert "time limit" in capsys.readouterr().out
    assert json.load(open(os.path.join(out, "checkpoint.json")))["epoch"] == 1
    train_dae(*trains(cfg), out_dir=out, epochs=3, verbose=0)
    rows = list(csv.DictReader(open(os.path.join(out, "log.csv"))))
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]


def test_eval_on_the_validation_split_only(trained_once):
    from dgn.data import list_images, split

    config, image_folder, out = trained_once
    cfg = load_config(config)
    train, val = split(list_images(str(image_folder)), str(image_folder), 0.25)
    readable = [p for p in val if not p.endswith(("corrupt.jpg", "empty.png"))]
    summary, _, _ = eval_dae(*dae_objects(cfg), str(image_folder), folder=out, split="val")
    assert summary["images"] == len(readable) and 0 < len(readable) < 10
    summary, _, _ = eval_dae(*dae_objects(cfg), str(image_folder), folder=out, split="train")
    assert summary["images"] + summary["skipped"] == len(train)


@pytest.mark.parametrize("hidden", ["batch", "image"])
def test_decoder_norms_follow_the_config_and_the_last_uses_batch_statistics(tmp_path, image_folder, hidden):
    from dgn.autoencoder.files import load_trained
    from dgn.optvis.generator import IMAGE_LAYER

    cfg = load_config(write_config(tmp_path, image_folder), [f"dae.decoder_norm={hidden}"])
    out = train_dae(*trains(cfg), out_dir=str(tmp_path / "run"), epochs=1, verbose=0)
    _, decoder, meta = load_trained(build.autoencoder(cfg.data), out)
    assert meta["norm"] == hidden and meta["output_norm"] == "batch"
    last = decoder.get_layer(IMAGE_LAYER)
    assert last.mode == "batch" and {layer.mode for layer in decoder.layers[:-1] if hasattr(layer, "mode")} == {hidden}
    # the averages of the batch statistics were kept (the initial values are 0 and 1)
    assert not np.allclose(np.asarray(last.moving_mean), 0.0)


def test_export_keeps_the_decoder_exact_and_halves_the_encoder(tmp_path, trained_once, capsys):
    import h5py

    config, image_folder, run = trained_once
    cfg = load_config(config)
    out = copy_run(run, tmp_path)
    dest = str(tmp_path / "weights" / "dae")
    # a decoder.json from before: the data folder as this machine's path, wall_hours in the history
    meta_path = os.path.join(out, "decoder.json")
    meta = json.load(open(meta_path))
    meta["data"] = "/home/someone/data/imagenet-dogs"
    meta["history"][0]["wall_hours"] = 0.1
    json.dump(meta, open(meta_path, "w"))
    assert main(["export-dae", out, dest]) == 0
    assert "encoder.weights.h5" in capsys.readouterr().out
    exported = json.load(open(os.path.join(dest, "decoder.json")))
    assert exported["data"] == "imagenet-dogs" and "wall_hours" not in exported["history"][0]
    assert open(os.path.join(dest, "decoder.weights.h5"), "rb").read() == \
        open(os.path.join(out, "decoder.weights.h5"), "rb").read()
    with h5py.File(os.path.join(dest, "encoder.weights.h5")) as fh:
        dtypes = set()
        fh.visititems(lambda name, obj: dtypes.add(obj.dtype) if isinstance(obj, h5py.Dataset) else None)
    assert dtypes == {np.dtype("float16")}
    assert json.load(open(os.path.join(dest, "decoder.json")))["encoder_dtype"] == "float16"
    original, _, _ = eval_dae(*dae_objects(cfg), str(image_folder), folder=out, limit=6)
    exported, _, _ = eval_dae(*dae_objects(cfg), str(image_folder), folder=dest, limit=6)
    assert exported["psnr"] == pytest.approx(original["psnr"], abs=0.05)
    assert main(["export-dae", str(tmp_path / "nothing"), dest]) == 2


def test_mixed_bfloat16_trains_in_bfloat16_keeps_float32_weights_and_restores_the_policy(tmp_path, image_folder):
    import keras

    from dgn.autoencoder.model import build_autoencoder
    from dgn.autoencoder.files import load_trained

    cfg = load_config(write_config(tmp_path, image_folder), ["dae.precision=mixed_bfloat16"])
    model, encoder, decoder = build_autoencoder(build.autoencoder(cfg.data), 32, "mixed_bfloat16")
    assert keras.config.dtype_policy().name == "float32"
    assert {layer.compute_dtype for layer in decoder.layers if layer.weights} == {"bfloat16"}
    assert {w.dtype for w in model.weights} == {"float32"}
    out = train_dae(*trains(cfg), out_dir=str(tmp_path / "run"), epochs=3, verbose=0)
    rows = list(csv.DictReader(open(os.path.join(out, "log.csv"))))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    # the float32 models of eval-dae and of generation load what bfloat16 training saved
    _, trained_decoder, _ = load_trained(build.autoencoder(cfg.data), out)
    assert trained_decoder.layers[-1].compute_dtype == "float32"
    summary, _, _ = eval_dae(*dae_objects(cfg), str(image_folder), folder=out, limit=4)
    assert np.isfinite(summary["psnr"])
    # a run may change precision and resume (same weights, other arithmetic)
    train_dae(*trains(load_config(write_config(tmp_path, image_folder))), out_dir=out, epochs=4, verbose=0)
    assert len(list(csv.DictReader(open(os.path.join(out, "log.csv"))))) == 4


def test_init_starts_a_new_run_from_exported_weights(tmp_path, image_folder, capfd):
    from dgn.autoencoder.files import load_trained

    path = write_config(tmp_path, image_folder)
    cfg = load_config(path)
    first = train_dae(*trains(cfg), out_dir=str(tmp_path / "first"), epochs=3, verbose=0)
    dest = str(tmp_path / "export")
    assert main(["export-dae", first, dest, "--encoder-dtype", "float32"]) == 0
    # 0 epochs are impossible, so compare the exported model with the new run's starting point: a
    # run of 1 epoch at learning rate 0 keeps the exported weights exactly (moving statistics aside)
    frozen = load_config(path, [f"dae.init={dest}", "dae.learning_rate=0"])
    second = train_dae(*trains(frozen), out_dir=str(tmp_path / "second"), epochs=1, verbose=0)
    assert "starting from the trained weights" in capfd.readouterr().out
    encoder_a, decoder_a, _ = load_trained(build.autoencoder(cfg.data), first)
    encoder_b, decoder_b, _ = load_trained(build.autoencoder(cfg.data), second)
    for a, b in zip(encoder_a.trainable_weights + decoder_a.trainable_weights,
                    encoder_b.trainable_weights + decoder_b.trainable_weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the decoder's history lists both runs: the exported one (3 epochs) and this one
    history = json.load(open(os.path.join(second, "decoder.json")))["history"]
    assert [run["epochs"] for run in history] == [3, 1] and history[1]["init"] == "export"  # folder name
    assert history[0]["images_seen"] == 3 * 5 * 4 and history[0]["wall_seconds"] > 0
    # resumed, it keeps the earlier runs its own decoder.json recorded, though the init folder changed since
    meta_path = os.path.join(dest, "decoder.json")
    kept = open(meta_path).read()
    changed = json.loads(kept)
    changed["history"].append({"epochs": 99})
    with open(meta_path, "w") as fh:
        json.dump(changed, fh)
    train_dae(*trains(frozen), out_dir=second, epochs=2, verbose=0)
    assert [run["epochs"] for run in json.load(open(os.path.join(second, "decoder.json")))["history"]] == [3, 2]
    with open(meta_path, "w") as fh:
        fh.write(kept)
    # weights trained with the paper's last norm (batch statistics) start a run whose last norm is
    # affine (configs/dae-dogs.yaml, the GPU procedure): the same layers and weights
    switched = load_config(path, [f"dae.init={dest}", "dae.learning_rate=0", "dae.output_norm=moving"])
    third = train_dae(*trains(switched), out_dir=str(tmp_path / "third"), epochs=1, verbose=0)
    encoder_c, decoder_c, meta_c = load_trained(build.autoencoder(switched.data), third)
    assert (meta_c["output_norm"], meta_c["output_activation"]) == ("moving", "relu")
    # but not a linear last conv: another decoder (the ReLU cut values a linear conv passes), refused
    with pytest.raises(ConfigError, match="trained with a relu last conv, but 'dae.output_activation' is linear"):
        load_config(path, [f"dae.init={dest}", "dae.output_activation=linear"])
    assert main(["train-dae", path, "--set", f"dae.init={dest}", "--set", "dae.output_activation=linear",
                 "--out", str(tmp_path / "y")]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dae.output_activation=relu" in err[0]
    # an unreadable decoder.json there is one line too, before any photo loads
    broken = str(tmp_path / "broken")
    shutil.copytree(dest, broken)
    for text in ("{", "[]", '{"output_activation": "tanh"}'):
        with open(os.path.join(broken, "decoder.json"), "w") as fh:
            fh.write(text)
        with pytest.raises(ConfigError, match="missing or unreadable|records output_activation 'tanh'"):
            load_config(path, [f"dae.init={broken}"])
    for a, c in zip(encoder_a.trainable_weights + decoder_a.trainable_weights,
                    encoder_c.trainable_weights + decoder_c.trainable_weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    fresh = train_dae(*trains(cfg), out_dir=str(tmp_path / "fresh"), epochs=1, verbose=0)
    assert float(list(csv.DictReader(open(os.path.join(second, "log.csv"))))[0]["loss"]) < \
        float(list(csv.DictReader(open(os.path.join(fresh, "log.csv"))))[0]["loss"])
    # a folder without the weights is one line at load time
    assert main(["train-dae", path, "--set", f"dae.init={tmp_path}", "--out", str(tmp_path / "x")]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "dae.init" in err[0] and "encoder.weights.h5" in err[0]
    # and a folder that is not there says so
    assert main(["train-dae", path, "--set", f"dae.init={tmp_path / 'gone'}", "--out", str(tmp_path / "x")]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gone: no such folder" in err[0]


def test_moving_averages_keep_float32_precision_under_mixed_bfloat16():
    import keras

    from dgn.optvis.layers import GeneratorNorm

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        norm = GeneratorNorm("batch", momentum=0.99)
        x = np.full((2, 4, 4, 3), 3.0, dtype="float32") + np.random.default_rng(0).normal(0, 1, (2, 4, 4, 3))
        for _ in range(50):
            norm(x, training=True)
        assert norm.compute_dtype == "bfloat16" and norm.moving_mean.dtype == "float32"
        mean = x.mean(axis=(0, 1, 2))
        # 1 - 0.99^50 of the way from 0 to the batch mean, to float32 precision (bfloat16
        # arithmetic on the averages rounds x * 0.99 to x and stalls them far from this)
        np.testing.assert_allclose(np.asarray(norm.moving_mean), (1 - 0.99 ** 50) * mean, rtol=2e-3)
        assert norm(x, training=False).dtype == "bfloat16"
    finally:
        keras.config.set_dtype_policy(previous)


def test_shipped_decoder_fits_the_pretrained_configuration():
    """weights/dae-dogs-efficientnet_lite0 (committed) loads into configs/pretrained-efficientnet-lite0.yaml:
    EfficientNet-Lite0's input space, 3,200 trainable weights, a 224x224 image in D's input range."""
    from dgn.autoencoder.files import load_trained
    from dgn.classifiers import load_classifier
    from dgn.build import build_generator_for

    root = os.path.join(os.path.dirname(__file__), "..")
    cfg = load_config(os.path.join(root, "configs", "pretrained-efficientnet-lite0.yaml"))
    classifier = load_classifier(cfg["classifier"])
    model, f0 = build_generator_for(cfg.data, classifier)
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 3200
    image = np.asarray(model(f0, training=False))
    assert image.shape == (1, 224, 224, 3) and np.isfinite(image).all()
    # the exported encoder (float16 on disk) and decoder reconstruct a smooth image better than its mean
    dae = load_config(os.path.join(root, "configs", "dae-dogs.yaml"))
    encoder, decoder, meta = load_trained(build.autoencoder(dae.data), os.path.join(root, "weights", "dae-dogs-efficientnet_lite0"))
    assert meta["preprocessing"] == classifier.preprocessing and meta["history"][0]["passes"] >= 12
    photo = smooth_image(np.random.default_rng(1), 224).astype("float32") / 127.5 - 1
    recon = np.asarray(decoder(encoder(photo[None], training=False), training=False))[0]
    assert np.mean((recon - photo) ** 2) < np.mean((photo.mean((0, 1)) - photo) ** 2)


def test_code_stats_and_the_decoder_prior_generator(tmp_path, trained_once, capsys):
    """dgn code-stats: per-unit mean / std of the encoder's codes of the training photos and their
    mirror images; generator.code_stats then optimizes z in f = mean + std * z (z = 0: the mean code)."""
    from dgn.autoencoder.files import load_trained
    from dgn.classifiers import load_classifier
    from dgn.data import list_images, load_images, split
    from dgn.build import build_generator_for
    from dgn.optvis.render import generate
    from dgn.optvis.generator import build_decoder
    from dgn.images import center_crop

    config, image_folder, run = trained_once
    cfg = load_config(config)
    out = copy_run(run, tmp_path)
    assert main(["code-stats", config, "--weights", out, "--limit", "6"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert summary["photos"] == 6 and summary["codes"] == 12 and summary["units"] == 200
    # six photos are too few for a unit's spread: said once, on stderr and in the summary
    assert "6 photo(s) only" in summary["warning"] and captured.err.count("warning: statistics of 6") == 1
    stats = np.load(os.path.join(out, "code_stats.npz"))
    # by hand: the same six training photos, center-cropped, and mirrored
    encoder, _, _ = load_trained(build.autoencoder(cfg.data), out)
    train, _ = split(list_images(str(image_folder)), str(image_folder), 0.25)
    images, _, _ = load_images(train[:6], 37)
    crops = np.stack([center_crop(img, 32) for img in images]).astype("float32")
    batch = np.concatenate([crops, crops[:, :, ::-1]]) / 127.5 - 1
    codes = np.asarray(encoder(batch, training=False), "float64")
    np.testing.assert_allclose(stats["mean"], codes.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stats["std"], np.maximum(codes.std(0), 1e-6), rtol=1e-3, atol=1e-4)

    dest = str(tmp_path / "exported")
    assert main(["export-dae", out, dest]) == 0
    assert os.path.isfile(os.path.join(dest, "code_stats.npz"))
    gen_cfg = tmp_path / "prior.yaml"
    gen_cfg.write_text(
        "classifier: {model: tiny, weights: none, class_index: none}\n"
        f"generator: {{seed_shape: [5, 5, 8], blocks: [[16, 2], [16, 2]], head: decoder,\n"
        f"  decoder_weights: {dest}/decoder.weights.h5, code_stats: {dest}/code_stats.npz, norm: moving,\n"
        "  trainable: alpha, noise: none, alpha_init: zeros, alpha_activation: linear, squash: false}\n"
        "regularizers: {image_gamma_l1: 0.0, alpha_l2: 0.01}\n"
        "optimizer: {name: adam, learning_rate: 0.1}\n"
        "objective: {targets: ['3'], activation: logit, others: 0.0}\nsteps: 15\n"
        "transform: {jitter: 0, scale: [1.0, 1.0], rotate: 0, samples: 1}\n")
    prior = load_config(str(gen_cfg))
    # the exported folder stands for its files; a folder without them is one clear line
    by_folder = load_config(str(gen_cfg), [f"generator.decoder_weights={dest}", f"generator.code_stats={dest}"])
    assert by_folder["generator"]["decoder_weights"] == prior["generator"]["decoder_weights"]
    assert by_folder["generator"]["code_stats"] == prior["generator"]["code_stats"]
    with pytest.raises(ConfigError, match="is a folder without decoder.weights.h5"):
        load_config(str(gen_cfg), [f"generator.decoder_weights={tmp_path}"])
    model, f0 = build_generator_for(prior.data, load_classifier(prior["classifier"]))
    start = np.asarray(model(f0, training=True))  # z = 0: the decoder's image of the mean code
    alone = build_decoder([5, 5, 8], [[16, 2], [16, 2]], head="decoder", norm="moving")
    alone.load_weights(os.path.join(dest, "decoder.weights.h5"))
    np.testing.assert_allclose(start, np.asarray(alone(stats["mean"][None], training=True)), atol=1e-4)
    (_, meta), = generate(prior, out_dir=str(tmp_path / "gen"), progress=False)
    assert meta["trainable_weights"] == 200
    assert meta["activation_during"]["last"] > meta["activation_during"]["first"]
    # code statistics of another code size, or without their decoder, are one clear line (exit 2)
    np.savez(str(tmp_path / "small.npz"), mean=np.zeros(10, "float32"), std=np.ones(10, "float32"))
    assert main(["generate", str(gen_cfg), "--set", f"generator.code_stats={tmp_path}/small.npz", "--quiet",
                 "--out", str(tmp_path / "gen3")]) == 2
    assert "10-unit codes" in capsys.readouterr().err
    assert main(["generate", str(gen_cfg), "--set", "generator.decoder_weights=null", "--quiet"]) == 2
    assert "code_stats" in capsys.readouterr().err
    assert main(["code-stats", config, "--weights", str(tmp_path / "nowhere")]) == 2
    assert "no trained autoencoder" in capsys.readouterr().err


def test_shipped_code_stats_fit_the_decoder_prior_configuration():
    """configs/decoder-prior-efficientnet-lite0.yaml builds with the committed code_stats.npz: 3,200
    trainable weights, and at z = 0 it draws the decoder's image of the mean code."""
    from dgn.classifiers import load_classifier
    from dgn.build import build_generator_for

    root = os.path.join(os.path.dirname(__file__), "..")
    cfg = load_config(os.path.join(root, "configs", "decoder-prior-efficientnet-lite0.yaml"))
    model, f0 = build_generator_for(cfg.data, load_classifier(cfg["classifier"]))
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == 3200
    image = np.asarray(model(f0, training=False))
    assert image.shape == (1, 224, 224, 3) and np.isfinite(image).all() and image.std() > 0


def test_warmup_raises_the_learning_rate_linearly_and_survives_resume(tmp_path, image_folder):
    from dgn.autoencoder.schedule import learning_rate_schedule, make_dae_optimizer

    schedule = learning_rate_schedule(0.01, 4)
    assert [round(float(schedule(s)), 6) for s in range(6)] == [0.0025, 0.005, 0.0075, 0.01, 0.01, 0.01]
    optimizer = make_dae_optimizer(DaeTraining(optimizer="adam", learning_rate=0.01, warmup_steps=4))
    assert float(optimizer.learning_rate) == pytest.approx(0.0025)  # at its first update
    # a run with warm-up checkpoints and resumes like any other; the history records it
    cfg = load_config(write_config(tmp_path, image_folder), ["dae.warmup_steps=7"])
    out = train_dae(*trains(cfg), out_dir=str(tmp_path / "run"), epochs=1, verbose=0)
    out = train_dae(*trains(cfg), out_dir=out, epochs=2, verbose=0)
    rows = list(csv.DictReader(open(os.path.join(out, "log.csv"))))
    assert len(rows) == 2
    assert json.load(open(os.path.join(out, "decoder.json")))["history"][-1]["warmup_steps"] == 7


def test_cosine_decay_after_the_warm_up_reaches_zero_and_is_part_of_the_run(tmp_path, image_folder):
    from dgn.autoencoder.schedule import learning_rate_schedule, make_dae_optimizer

    # 2 warm-up updates (the second at the full rate), then half a cosine over 4 (Keras's CosineDecay):
    # 0.01 * (1 + cos(pi * k / 4)) / 2 for k = 0..4, then 0
    schedule = learning_rate_schedule(0.01, 2, 4)
    expected = [0.005] + [0.01 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(5)] + [0.0, 0.0]
    assert [float(schedule(s)) for s in range(8)] == pytest.approx(expected, abs=1e-7)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    no_warmup = make_dae_optimizer(DaeTraining(optimizer="adam", learning_rate=0.01, warmup_steps=0,
                                               decay_steps=10))
    assert float(no_warmup.learning_rate) == pytest.approx(0.01)  # the first update at the full rate
    cfg = load_config(write_config(tmp_path, image_folder), ["dae.decay_steps=3"])
    out = train_dae(*trains(cfg), out_dir=str(tmp_path / "run"), epochs=1, verbose=0)
    assert json.load(open(os.path.join(out, "decoder.json")))["history"][-1]["decay_steps"] == 3
    # resuming with another schedule would change the run: refused
    other = load_config(write_config(tmp_path, image_folder), ["dae.decay_steps=30"])
    with pytest.raises(DgnError, match="another configuration"):
        train_dae(*trains(other), out_dir=out, epochs=2, verbose=0)
    # a run without decay keeps the identity it had before dae.decay_steps existed
    from dgn.autoencoder.training import _training_identity
    assert "decay_steps" not in _training_identity(*dae_objects(load_config(write_config(tmp_path, image_folder))))["dae"]


def test_a_run_can_go_on_along_the_cosine_an_earlier_run_began(tmp_path, image_folder):
    from dgn.autoencoder.training import _training_identity
    from dgn.autoencoder.schedule import learning_rate_schedule
    from dgn.autoencoder.files import run_record

    # the cosine is 10 updates long, 6 made before; a 2-update warm-up scales it; 0 from update 10 on
    schedule = learning_rate_schedule(0.01, 2, 10, 6)
    cosine = [0.01 * (1 + math.cos(math.pi * min(6 + s, 10) / 10)) / 2 for s in range(6)]
    expected = [c * min(1.0, (s + 1) / 2) for s, c in enumerate(cosine)]
    assert [float(schedule(s)) for s in range(6)] == pytest.approx(expected, abs=1e-7)
    assert float(schedule(4)) == 0.0
    # without warm-up the run takes up the cosine where it was
    assert float(learning_rate_schedule(0.01, 0, 10, 5)(0)) == pytest.approx(0.005)
    with pytest.raises(DgnError, match="schedule_start 10 must be below dae.decay_steps 10"):
        learning_rate_schedule(0.01, 0, 10, 10)
    with pytest.raises(ConfigError, match="'dae.schedule_start' 30 needs 'dae.decay_steps' above it .*got 20"):
        load_config(write_config(tmp_path, image_folder), ["dae.decay_steps=20", "dae.schedule_start=30"])
    cfg = load_config(write_config(tmp_path, image_folder), ["dae.decay_steps=20", "dae.schedule_start=8"])
    assert _training_identity(*dae_objects(cfg))["dae"]["schedule_start"] == 8
    # the decoder's history records it, so the next run knows where the cosine stands
    assert run_record(dae_objects(cfg)[1], 1, 1.0, 20)["schedule_start"] == 8
    # a run that starts the cosine keeps the identity it had before dae.schedule_start existed
    plain = load_config(write_config(tmp_path, image_folder), ["dae.decay_steps=20"])
    assert "schedule_start" not in _training_identity(*dae_objects(plain))["dae"]


def test_thumbnail_of_a_constant_image_is_exact_and_a_full_size_one_is_the_image():
    from dgn.autoencoder.evaluate import code_thumbnail_side, thumbnail

    flat = np.full((2, 12, 12, 3), (10, 200, 77), dtype="uint8")
    assert np.array_equal(thumbnail(flat, 3), flat)
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, (1, 12, 12, 3), dtype="uint8")
    assert np.array_equal(thumbnail(noise, 12), noise)
    # the box filter keeps each cell's mean: a 1x1 thumbnail is the image's mean colour
    assert np.abs(thumbnail(noise, 1)[0].astype(float) - noise[0].mean(axis=(0, 1))).max() <= 0.5
    small = thumbnail(noise, 4)
    assert small.shape == noise.shape and small.dtype == np.uint8
    assert psnr(noise, thumbnail(noise, 6))[0] > psnr(noise, thumbnail(noise, 2))[0]
    assert [code_thumbnail_side(n) for n in (3200, 800, 200, 1)] == [33, 16, 8, 1]


def test_eval_reports_code_sized_and_16px_thumbnails_of_the_same_photos(trained_once, capsys):
    from dgn.autoencoder.evaluate import thumbnail

    config, image_folder, out = trained_once
    cfg = load_config(config)
    summary, crops, _ = eval_dae(*dae_objects(cfg), str(image_folder), folder=out, limit=5)
    thumbs = summary["thumbnails"]
    assert summary["code_size"] == 200 and thumbs["code"]["side"] == 8 and thumbs["code"]["numbers"] == 192
    assert thumbs["16x16"]["side"] == 16
    for t in thumbs.values():
        assert t["psnr"] == pytest.approx(psnr(crops, thumbnail(crops, t["side"]))[0], abs=1e-3)
    assert thumbs["16x16"]["psnr"] > thumbs["code"]["psnr"]
    assert main(["eval-dae", config, "--data", str(image_folder), "--weights", out, "--limit", "5"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["thumbnails"] == thumbs
    assert "8x8 thumbnail (192 numbers, code-sized)" in captured.err and "16x16 thumbnail" in captured.err


def test_output_norm_and_activation_are_config_fields_that_keep_old_identities(tmp_path, image_folder):
    from dgn.autoencoder.training import _training_identity
    from dgn.autoencoder.files import load_trained
    from dgn.optvis.generator import IMAGE_LAYER

    path = write_config(tmp_path, image_folder)
    default = _training_identity(*dae_objects(load_config(path)))["dae"]
    assert "output_norm" not in default and "output_activation" not in default
    sets = ["dae.output_norm=moving", "dae.output_activation=linear"]
    cfg = load_config(path, sets)
    assert _training_identity(*dae_objects(cfg))["dae"]["output_norm"] == "moving"
    out = train_dae(*trains(cfg), out_dir=str(tmp_path / "run"), epochs=1, verbose=0)
    _, decoder, meta = load_trained(build.autoencoder(cfg.data), out)
    assert meta["output_norm"] == "moving" and meta["output_activation"] == "linear"
    last = decoder.get_layer(IMAGE_LAYER)
    # moving: the stored statistics are never updated, so the last norm is gamma * x + beta
    assert last.mode == "moving" and np.allclose(np.asarray(last.moving_mean), 0.0)
    assert decoder.get_layer("head_conv3").activation.__name__ == "linear"
    summary, _, _ = eval_dae(*dae_objects(cfg), str(image_folder), folder=out, limit=4)
    assert np.isfinite(summary["psnr"])
    with pytest.raises(DgnError, match="another configuration"):
        train_dae(*trains(load_config(path)), out_dir=out, epochs=2, verbose=0)


def second_folder(tmp_path, n=6):
    rng = np.random.default_rng(1)
    root = tmp_path / "more" / "photos"
    root.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(smooth_image(rng)).save(root / f"x{i}.jpg")
    return root


def test_data_may_be_a_list_of_folders_relative_to_the_config_and_split_each_alone(tmp_path, image_folder, capsys,
                                                                                   monkeypatch):
    from dgn.autoencoder.evaluate import center_crops
    from dgn.data import list_and_split, list_images, split

    more = second_folder(tmp_path)
    path = tmp_path / "dae.yaml"
    path.write_text(DAE.format(data="[images, more/photos]"))
    cfg = load_config(str(path))
    assert cfg["dae"]["data"] == [str(image_folder), str(more)]
    paths, train, val = list_and_split(cfg["dae"]["data"], None, 0.25)
    # the first folder's split is what it is alone
    alone = split(list_images(str(image_folder)), str(image_folder), 0.25)
    assert [p for p in val if p.startswith(str(image_folder))] == alone[1]
    assert len(paths) == len(train) + len(val) == len(list_images(str(image_folder))) + 6
    out = train_dae(*trains(cfg), out_dir=str(tmp_path / "run"), epochs=1, verbose=0)
    assert f"in {image_folder} + {more}" in capsys.readouterr().out
    meta = json.load(open(os.path.join(out, "decoder.json")))
    assert meta["data"] == ["images", "photos"]
    crops, _ = center_crops(build.dae_training(cfg.data), cfg["dae"]["data"], 32, "val")
    assert len(crops) == len([p for p in val if not p.endswith(("corrupt.jpg", "empty.png"))])
    # --set gives a list of folders relative to the current folder
    monkeypatch.chdir(tmp_path)
    assert load_config(str(path), ["dae.data=[images, more/photos]"])["dae"]["data"] == cfg["dae"]["data"]


def test_a_missing_or_empty_folder_in_the_list_is_a_one_line_error(tmp_path, image_folder, capfd):
    (tmp_path / "empty").mkdir()
    for other in ("empty", "missing"):
        path = tmp_path / "dae.yaml"
        path.write_text(DAE.format(data=f"[images, {other}]"))
        code = main(["train-dae", str(path), "--out", str(tmp_path / "run")])
        err = capfd.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and str(tmp_path / other) in err[0]
    path.write_text(DAE.format(data="[]"))
    assert main(["train-dae", str(path)]) == 2
    assert len(capfd.readouterr().err.strip().splitlines()) == 1


def test_an_encoder_without_conv_blocks_is_valid_and_other_empty_lists_are_not(tmp_path, image_folder):
    from dgn.autoencoder.model import build_autoencoder
    from dgn.config import ConfigError

    path = write_config(tmp_path, image_folder)
    spec = build.autoencoder(load_config(path, ["dae.encoder_filters=[]"]).data)
    _, encoder, _ = build_autoencoder(spec, 32)
    assert not [layer for layer in encoder.layers if isinstance(layer, keras.layers.Conv2D)]
    assert encoder.get_layer("fc").kernel.shape == (32 * 32 * 3, 32)
    with pytest.raises(ConfigError, match="perceptual_layers' has an invalid element '\\(empty list\\)'"):
        load_config(path, ["dae.perceptual_layers=[]"])


def test_an_encoder_bottleneck_is_recorded_and_rebuilt_from_decoder_json(tmp_path, image_folder, capfd):
    from dgn.autoencoder.training import _training_identity
    from dgn.autoencoder.model import build_autoencoder
    from dgn.autoencoder.files import load_parts, load_trained

    config = write_config(tmp_path, image_folder)
    # runs made before the key existed keep their identity (and resume)
    assert "encoder_bottleneck" not in _training_identity(*dae_objects(load_config(config)))["dae"]
    with pytest.raises(ConfigError, match="encoder_bottleneck"):
        load_config(config, ["dae.encoder_bottleneck=-1"])
    run, dest = str(tmp_path / "run"), str(tmp_path / "export")
    assert main(["train-dae", config, "--out", run, "--epochs", "1", "--quiet",
                 "--set", "dae.encoder_bottleneck=4"]) == 0
    assert json.load(open(os.path.join(run, "decoder.json")))["encoder_bottleneck"] == 4
    # 32 px -> two blocks -> 5x5x16 -> 1x1 conv -> 5x5x4 = 100 numbers into the dense layer (32 units)
    encoder, _, _ = load_trained(build.autoencoder(load_config(config).data), run)
    assert encoder.get_layer("enc_bottleneck").kernel.shape == (1, 1, 16, 4)
    assert encoder.get_layer("fc").kernel.shape == (100, 32)
    # eval-dae and export-dae need no --set: decoder.json says how the encoder was built
    capfd.readouterr()
    assert main(["eval-dae", config, "--data", str(image_folder), "--weights", run, "--limit", "4"]) == 0
    assert np.isfinite(json.loads(capfd.readouterr().out.strip().splitlines()[-1])["psnr"])
    assert main(["export-dae", run, dest]) == 0
    assert load_trained(build.autoencoder(load_config(config).data), dest)[0].get_layer("enc_bottleneck")
    # a run from them must have their encoder: one line before any photo loads
    with pytest.raises(ConfigError, match="another encoder than the config's; set dae.encoder_bottleneck=4"):
        load_config(config, [f"dae.init={dest}"])
    assert load_config(config, [f"dae.init={dest}", "dae.encoder_bottleneck=4"])["dae"]["init"] == dest
    with pytest.raises(ConfigError, match="a file, not a folder"):
        load_config(config, [f"dae.init={os.path.join(dest, 'decoder.json')}"])
    # a decoder.json from before the key (it records the filters, not the bottleneck) had none
    old = str(tmp_path / "old")
    shutil.copytree(run, old)
    meta = json.load(open(os.path.join(old, "decoder.json")))
    del meta["encoder_bottleneck"]
    with open(os.path.join(old, "decoder.json"), "w") as fh:
        json.dump(meta, fh)
    with pytest.raises(DgnError, match="dae.encoder_bottleneck=0"):   # built as it was: without the layer
        load_trained(build.autoencoder(load_config(config, ["dae.encoder_bottleneck=4"]).data), old)
    # an encoder built without it does not load the weights, and the message says what it was built with
    _, plain, decoder = build_autoencoder(build.autoencoder(load_config(config).data), 32)
    with pytest.raises(DgnError, match="dae.encoder_bottleneck=0"):
        load_parts(run, plain, decoder)


def test_export_and_eval_refuse_bad_folders_in_one_line(tmp_path, image_folder, capfd):
    config = write_config(tmp_path, image_folder)
    run = str(tmp_path / "run")
    # trained with other encoder layers than the config's: decoder.json records them, eval needs no --set
    assert main(["train-dae", config, "--out", run, "--epochs", "1", "--quiet",
                 "--set", "dae.encoder_filters=[8]", "--set", "dae.dense=16"]) == 0
    assert json.load(open(os.path.join(run, "decoder.json")))["encoder_filters"] == [8]
    capfd.readouterr()
    assert main(["eval-dae", config, "--data", str(image_folder), "--weights", run, "--limit", "4"]) == 0
    assert json.loads(capfd.readouterr().out.strip().splitlines()[-1])["images"] == 4

    def one_line(argv, *words):
        try:
            code = main(argv)
        except SystemExit as stop:   # argparse's refusals
            code = stop.code
        assert code == 2
        err = capfd.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("dgn: error: "), err
        for word in words:
            assert word in err[0], err[0]

    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "a.png").write_text("not a photo")
    one_line(["eval-dae", config, "--data", str(tmp_path / "text"), "--weights", run], "no readable photo")
    one_line(["eval-dae", config, "--data", str(image_folder), "--weights", run, "--limit", "-1"], "at least 1")
    one_line(["eval-dae", config, "--data", str(image_folder), "--weights", run, "--sheet", "s.jpg"], ".png")
    one_line(["export-dae", run, run], "training folder itself")
    (tmp_path / "file").write_text("x")
    one_line(["export-dae", run, str(tmp_path / "file" / "below")], "cannot make the folder")
    # an export over a folder with another decoder's code statistics removes them
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "code_stats.npz").write_bytes(b"stale")
    assert main(["export-dae", run, str(dest)]) == 0
    assert not (dest / "code_stats.npz").exists() and "removed" in capfd.readouterr().out


def test_generator_draws_with_the_last_norm_the_decoder_trained(tmp_path, image_folder):
    """A decoder whose last norm trained as an affine map (dae.output_norm: moving) generates with that
    map unless generator.output_norm says otherwise; one trained on batch statistics follows
    generator.norm, as in the paper."""
    from dgn.classifiers import load_classifier
    from dgn.build import build_generator_for
    from dgn.optvis.generator import IMAGE_LAYER

    def last_norm_mode(model):
        found = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
                 if layer.name == IMAGE_LAYER]
        assert len(found) == 1, found
        return found[0].mode

    def generator_config(decoder_dir, extra=""):
        path = tmp_path / "gen.yaml"
        path.write_text(
            "classifier: {model: tiny, weights: none, class_index: none}\n"
            f"generator: {{seed_shape: [5, 5, 8], blocks: [[16, 2], [16, 2]], head: decoder, norm: image,\n"
            f"  decoder_weights: {decoder_dir}/decoder.weights.h5, trainable: alpha{extra}}}\n")
        cfg = load_config(str(path))
        # the config records the last norm as it is built (so does each image's sidecar)
        expected = extra.split(": ")[1] if extra else ("moving" if decoder_dir.endswith("moving") else None)
        assert cfg["generator"]["output_norm"] == expected
        return build_generator_for(cfg.data, load_classifier(cfg["classifier"]))[0]

    config = write_config(tmp_path, image_folder)
    modes = {}
    for norm, activation in (("moving", "linear"), ("batch", "relu")):
        cfg = load_config(config, [f"dae.output_norm={norm}", f"dae.output_activation={activation}"])
        out = train_dae(*trains(cfg), out_dir=str(tmp_path / norm), epochs=1, verbose=0)
        assert json.load(open(os.path.join(out, "decoder.json")))["output_norm"] == norm
        modes[norm] = last_norm_mode(generator_config(out))
    assert modes == {"moving": "moving", "batch": "image"}
    assert last_norm_mode(generator_config(str(tmp_path / "moving"), ", output_norm: image")) == "image"


def test_a_shuffled_pass_has_only_whole_batches_and_sees_every_photo_over_passes():
    """ImageDataset: 10 photos at batch 4 make passes of 2 whole batches (a batch of 2 would compile
    the step again); across passes every photo is drawn; validation keeps its short last batch."""
    from dgn.data import ImageDataset

    photos = [np.full((8, 8, 3), i, "uint8") for i in range(10)]
    train = ImageDataset(photos, 8, "raw", batch_size=4, augment=False, seed=0, steps_per_epoch=6)
    seen = set()
    for index in range(len(train)):
        x, _ = train[index]
        assert x.shape == (4, 8, 8, 3)
        seen |= {int(v) for v in x[:, 0, 0, 0]}
    assert seen == set(range(10))  # 6 batches = 3 passes of 8 photos, each pass in another order
    val = ImageDataset(photos, 8, "raw", batch_size=4, augment=False, shuffle=False)
    assert len(val) == 3 and val[2][0].shape == (2, 8, 8, 3)
