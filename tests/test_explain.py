"""Attribution maps (dgn.attribution, ``dgn explain``) on small trained classifiers (tests/zoo.py):

- the same maps as a reference implementation: tf-keras-vis (saliency, SmoothGrad with the same noise,
  Grad-CAM, Grad-CAM++, Score-CAM; skipped where it is not installed) and, always, references written
  here by hand in plain TensorFlow / NumPy (saliency, Grad-CAM, Score-CAM, guided backpropagation,
  occlusion one window at a time, the completeness of integrated gradients);
- sanity checks (Adebayo et al. 2018): every method's maps change when D's top layers are re-initialized
  at random and when D was trained on permuted labels;
- channel, neuron and compound targets, batches, both backends, and the command with its one-line errors.
"""

import argparse
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import zoo
from dgn import attribution
from dgn.errors import DgnError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def correlations(a, b):
    return [float(np.corrcoef(np.ravel(p), np.ravel(q))[0, 1]) for p, q in zip(a, b)]


def spearman(a, b):
    ra = np.argsort(np.argsort(np.ravel(a), kind="stable"), kind="stable")
    rb = np.argsort(np.argsort(np.ravel(b), kind="stable"), kind="stable")
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(classifier, keras model, .keras path) of tests/zoo.py's Functional classifier (conv1, pool1, conv2, gap,
    predictions; preprocessing tf)."""
    import dgn

    folder = tmp_path_factory.mktemp("explain")
    model = zoo.functional()
    path = zoo.save(model, folder, "functional")
    return dgn.classifier(model, "tf", class_names=zoo.CLASSES, name="functional"), model, path


@pytest.fixture(scope="module")
def photos():
    """12 shapes (4 of each class) and their labels."""
    return zoo.shapes(12, seed=11)


def _upsample_like_dgn(cams, size):
    return np.asarray(keras.ops.image.resize(np.asarray(cams, "float32")[..., None], size,
                                             interpolation="bilinear"))[..., 0]


# ------------------------------------------------------------------------------------- reference maps

@pytest.mark.parametrize("method", ["saliency", "smoothgrad", "gradcam", "gradcam++", "scorecam"])
def test_the_maps_are_tf_keras_vis_maps(method, trained, photos):
    """Correlation >= 0.99 per map with tf-keras-vis 0.8 on the same model, photos and class. tf-keras-vis
    upsamples CAMs with corners aligned (scipy.ndimage.zoom): with upsample="corners" the maps agree at
    D's input size; dgn's default (half-pixel centres) agrees with its maps at the layer's size resized the
    same way."""
    vis = pytest.importorskip("tf_keras_vis")
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    classifier, model, _ = trained
    images, labels = photos
    x = classifier.from_pixels(images)
    targets = [int(t) for t in labels]
    score = CategoricalScore(targets)
    if method in ("saliency", "smoothgrad"):
        from tf_keras_vis.saliency import Saliency

        if method == "saliency":
            ref = Saliency(model, model_modifier=ReplaceToLinear())(score, x)
        else:   # tf-keras-vis draws its noise from numpy's global generator: seeded per image, as dgn's
            ref = []
            for k in range(len(x)):
                np.random.seed(3)
                ref.append(Saliency(model, model_modifier=ReplaceToLinear())(
                    CategoricalScore([targets[k]]), x[k:k + 1], smooth_samples=10, smooth_noise=0.2)[0])
        mine = attribution.explain(classifier, images, [str(t) for t in targets], method,
                                   **({"samples": 10, "seed": 3} if method == "smoothgrad" else {}))
        assert min(correlations(mine, ref)) >= 0.99
        return
    from tf_keras_vis.gradcam import Gradcam, GradcamPlusPlus
    from tf_keras_vis.scorecam import Scorecam

    cls = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "scorecam": Scorecam}[method]
    kwargs = {"batch_size": 16} if method == "scorecam" else {}
    kwargs["seek_penultimate_conv_layer"] = False
    ref = cls(model, model_modifier=ReplaceToLinear())(score, x, penultimate_layer="conv2", **kwargs)
    corners = attribution.explain(classifier, images, [str(t) for t in targets], method, upsample="corners")
    assert min(correlations(corners, ref)) >= 0.99, (vis.__name__, correlations(corners, ref))
    at_layer = cls(model, model_modifier=ReplaceToLinear())(score, x, penultimate_layer="conv2", expand_cam=False,
                                                            **kwargs)
    mine = attribution.explain(classifier, images, [str(t) for t in targets], method)
    assert min(correlations(mine, _upsample_like_dgn(at_layer, (32, 32)))) >= 0.99


def test_saliency_gradcam_and_scorecam_match_references_written_here(trained, photos):
    """Plain TensorFlow, independent of dgn's code: the gradient of the class logit (saliency); the
    gradient-weighted conv2 activation (Grad-CAM); each conv2 channel as a 0..1 mask of the input, weighted
    by the softmax probability of the class (Score-CAM)."""
    import tensorflow as tf

    classifier, model, _ = trained
    images, labels = photos
    x = tf.constant(images.astype("float32") / 127.5 - 1.0)
    head = model.get_layer("predictions")
    split = keras.Model(model.inputs, [model.get_layer("conv2").output, model.get_layer("gap").output])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        conv, pooled = split(x)
        logits = tf.matmul(pooled, head.kernel) + head.bias
        chosen = tf.reduce_sum(logits * tf.one_hot(labels, 3), axis=-1)
    saliency = np.max(np.abs(tape.gradient(chosen, x).numpy()), axis=-1)
    grads = tape.gradient(chosen, conv).numpy()
    conv = conv.numpy()
    cams = np.maximum((conv * grads.mean(axis=(1, 2), keepdims=True)).sum(-1), 0)
    targets = [str(int(t)) for t in labels]
    assert min(correlations(attribution.explain(classifier, images, targets, "saliency"), saliency)) > 0.9999
    assert min(correlations(attribution.explain(classifier, images, targets, "gradcam"),
                            _upsample_like_dgn(cams, (32, 32)))) > 0.9999
    score_cams = []
    for k in range(3):   # Score-CAM by hand on three photos
        masks = _upsample_like_dgn(np.moveaxis(conv[k], -1, 0), (32, 32))
        low, high = masks.min(axis=(1, 2), keepdims=True), masks.max(axis=(1, 2), keepdims=True)
        masks = (masks - low) / (high - low + 1e-7)
        probs = model.predict(x.numpy()[k][None] * masks[..., None], verbose=0)[:, labels[k]]
        score_cams.append(np.maximum((conv[k] * probs).sum(-1), 0))
    mine = attribution.explain(classifier, images[:3], targets[:3], "scorecam")
    assert min(correlations(mine, _upsample_like_dgn(np.stack(score_cams), (32, 32)))) > 0.999


@pytest.mark.parametrize("relu", ["activation", "relu_layer6", "activation_layer6"])
def test_guided_backpropagation_matches_a_hand_written_one(relu):
    """One convolution, its ReLU (as an activation argument, a ReLU(max_value=6) layer or Activation("relu6")),
    pooling and a Dense: the guided gradient is the convolution's gradient of the pre-activation weighted by
    the upstream gradient where both it and the pre-activation pass (below 6 for ReLU6)."""
    import tensorflow as tf

    import dgn

    keras.utils.set_random_seed(4)
    inputs = keras.Input((12, 12, 3))
    conv = keras.layers.Conv2D(6, 3, padding="same", activation="relu" if relu == "activation" else None,
                               kernel_initializer=keras.initializers.RandomNormal(stddev=2.0), name="conv")
    x = conv(inputs)
    if relu == "relu_layer6":
        x = keras.layers.ReLU(max_value=6.0, name="relu6")(x)
    elif relu == "activation_layer6":
        x = keras.layers.Activation("relu6", name="relu6")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(3, name="head")(x))
    classifier = dgn.classifier(model, "tf")
    images = np.random.default_rng(0).integers(0, 256, (4, 12, 12, 3)).astype("uint8")
    xs = tf.constant(classifier.from_pixels(images))
    weights = model.get_layer("head").kernel.numpy()[:, 1] / 144.0            # d logit_1 / d post-ReLU
    with tf.GradientTape() as tape:
        tape.watch(xs)
        pre = tf.nn.conv2d(xs, conv.kernel, 1, "SAME") + conv.bias
        up = np.broadcast_to(weights, pre.shape)
        gate = (pre.numpy() > 0) & (up > 0)
        if relu != "activation":
            gate &= pre.numpy() < 6.0
        total = tf.reduce_sum(pre * tf.constant(np.where(gate, up, 0.0).astype("float32")))
    expected = np.max(np.abs(tape.gradient(total, xs).numpy()), axis=-1)
    assert (pre.numpy() > 6).any() or relu == "activation"     # the cap is exercised
    got = attribution.explain(classifier, images, "1", "guided")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)
    plain = attribution.explain(classifier, images, "1", "saliency")   # and the ReLUs are restored after
    assert not np.allclose(plain, got)


def test_guided_backpropagation_refuses_other_activations():
    import dgn

    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, activation="swish", name="swishy")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    classifier = dgn.classifier(keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)), "tf")
    with pytest.raises(DgnError) as err:
        attribution.explain(classifier, np.zeros((1, 16, 16, 3), "uint8"), "0", "guided")
    assert "handles ReLU and ReLU6" in str(err.value) and "swishy" in str(err.value)
    assert "\n" not in str(err.value)


def test_integrated_gradients_add_up_to_the_change_of_the_value(trained, photos):
    """Completeness (Sundararajan et al.): the map sums to value(x) - value(baseline), up to the Riemann sum's
    error; and a compound target's map is the sum of its classes' maps (IG is linear in the function)."""
    classifier, _, _ = trained
    images, labels = photos
    result = attribution.attribute(classifier, images[:4], "2", "integrated_gradients", steps=300)
    base = attribution.attribute(classifier, np.zeros((4, 32, 32, 3), "uint8"), "2", "saliency")
    change = result.values - base.values
    np.testing.assert_allclose(result.maps.sum(axis=(1, 2)), change, rtol=0.03, atol=0.05)
    both = attribution.explain(classifier, images[:4], "0+2", "integrated_gradients", steps=20)
    parts = sum(attribution.explain(classifier, images[:4], c, "integrated_gradients", steps=20) for c in "02")
    np.testing.assert_allclose(both, parts, rtol=1e-4, atol=1e-5)


def test_occlusion_is_one_window_at_a_time_batched(trained, photos):
    """The batched map equals the map computed window by window with D's probability of the class."""
    classifier, model, _ = trained
    images, labels = photos
    result = attribution.attribute(classifier, images[:2], ["0", "1"], "occlusion", window=8, stride=6,
                                   batch_size=5)
    assert result.settings["windows"] == 25 and result.settings["score"] == "probability"
    x = classifier.from_pixels(images[:2])
    grey = 127.5 / 127.5 - 1.0
    starts = [0, 6, 12, 18, 24]
    for k, target in enumerate([0, 1]):
        p0 = model.predict(x[k:k + 1], verbose=0)[0, target]
        total, count = np.zeros((32, 32)), np.zeros((32, 32))
        for y in starts:
            for xx in starts:
                occluded = x[k].copy()
                occluded[y:y + 8, xx:xx + 8] = grey
                drop = p0 - model.predict(occluded[None], verbose=0)[0, target]
                total[y:y + 8, xx:xx + 8] += drop
                count[y:y + 8, xx:xx + 8] += 1
        np.testing.assert_allclose(result.maps[k], total / count, atol=2e-6)


# ------------------------------------------------------------------------------------- targets and batches

def test_channel_and_neuron_targets(trained, photos):
    """Grad-CAM of a channel target at its own layer is that channel's activation; a neuron's gradient map is
    zero outside its receptive field (conv1: 3x3)."""
    classifier, _, _ = trained
    images, _ = photos
    conv2 = np.asarray(classifier.features(["conv2"])(classifier.from_pixels(images))["conv2"])
    channel = int(conv2.reshape(-1, 16).mean(0).argmax())
    cams = attribution.explain(classifier, images, f"channel:conv2:{channel}", "gradcam", layer="conv2")
    assert min(correlations(cams, _upsample_like_dgn(conv2[..., channel], (32, 32)))) > 0.9999
    for method in ("saliency", "guided", "integrated_gradients", "smoothgrad"):
        maps = attribution.explain(classifier, images[:3], "neuron:conv1:2:10:12", method, samples=4) \
            if method == "smoothgrad" else attribution.explain(classifier, images[:3], "neuron:conv1:2:10:12", method)
        outside = np.ones((32, 32), bool)
        outside[9:12, 11:14] = False
        assert np.all(maps[:, outside] == 0.0), method
    result = attribution.attribute(classifier, images[:2], "0+channel:conv2:3", "saliency")
    assert result.targets[0]["kind"] == "sum"


def test_a_batch_gives_each_photo_its_own_map(trained, photos):
    """Photos explained together (each its own top-1 class) get the maps they get alone, for every method."""
    classifier, _, _ = trained
    images, labels = photos
    subset = images[[0, 1, 2, 5]]
    for method in attribution.METHODS:
        settings = {"samples": 4} if method == "smoothgrad" else {"steps": 8} if method == "integrated_gradients" \
            else {}
        together = attribution.attribute(classifier, subset, None, method, batch_size=7, **settings)
        assert [t["index"] for t in together.targets] == [int(labels[i]) for i in (0, 1, 2, 5)]
        for k in range(len(subset)):
            alone = attribution.explain(classifier, subset[k], None, method, **settings)[0]
            np.testing.assert_allclose(together.maps[k], alone, rtol=1e-4, atol=1e-6, err_msg=method)


def test_photos_of_any_size_and_mode_and_other_kinds_of_classifier(tmp_path):
    """Photos are fitted to D's input as dgn classify does; grayscale, raw-input, nested and binary
    classifiers all give maps in their input resolution."""
    import dgn

    photos = [zoo.shapes(1, 50, 70, seed=1)[0][0], zoo.shapes(1, 20, 20, seed=2)[0][0][..., 0],
              zoo.shapes(1, 32, 32, seed=3)[0][0]]
    for build, space in ((zoo.sequential_grayscale, "unit"), (zoo.sequential_raw, "raw"), (zoo.nested, "tf"),
                         (zoo.binary, "tf")):
        classifier = dgn.load_classifier(zoo.save(build(), tmp_path, build.__name__), preprocessing=space,
                                         class_index="none")
        for method in ("saliency", "gradcam", "scorecam", "occlusion", "guided"):
            result = attribution.attribute(classifier, photos, None, method)
            assert result.maps.shape == (3, 32, 32) and result.maps.dtype == np.float32
            assert np.isfinite(result.maps).all() and np.abs(result.maps).max() > 0, (build.__name__, method)
        if build is zoo.nested:
            assert attribution.auto_layer(classifier) == "base/conv2"


def test_a_subclassed_classifier_gets_the_methods_that_need_no_layer():
    import dgn

    classifier = dgn.classifier(zoo.subclassed(), "tf")
    images, _ = zoo.shapes(3)
    for method in ("saliency", "smoothgrad", "integrated_gradients", "occlusion"):
        assert np.abs(attribution.explain(classifier, images, None, method, samples=3)
                      if method == "smoothgrad" else attribution.explain(classifier, images, None, method)).max() > 0
    for method in ("guided", "gradcam", "gradcam++", "scorecam"):
        with pytest.raises(DgnError) as err:
            attribution.explain(classifier, images, None, method)
        assert "cannot be reached" in str(err.value) or "no reachable layers" in str(err.value)


def test_bad_arguments_are_one_line(trained, photos):
    classifier, _, _ = trained
    images, _ = photos
    cases = [
        (dict(objective="7"), "out of range"),
        (dict(objective="channel:conv2:99"), "channels 0..15"),
        (dict(method="gradcam", layer="gap"), "without spatial dimensions"),
        (dict(method="gradcam", layer="nope"), "has no layer"),
        (dict(method="lime"), "unknown attribution method"),
        (dict(method="occlusion", window=0), "positive integer"),
        (dict(method="saliency", samples=3), "has no setting"),
        (dict(method="scorecam", objective="channel:conv2:3", score="probability"), "for class targets"),
    ]
    for kwargs, text in cases:
        kwargs = dict(kwargs)
        objective, method = kwargs.pop("objective", None), kwargs.pop("method", "gradcam")
        with pytest.raises(DgnError) as err:
            attribution.explain(classifier, images[:1], objective, method, **kwargs)
        assert text in str(err.value) and "\n" not in str(err.value), (kwargs, str(err.value))


# ------------------------------------------------------------------------------------- sanity checks

@pytest.fixture(scope="module")
def sanity_models(trained):
    """D with its top layers (predictions, then conv2) re-initialized at random, and D trained the same way
    on permuted labels (Adebayo et al. 2018)."""
    import dgn

    _, model, _ = trained
    randomized = keras.models.clone_model(model)
    randomized.set_weights(model.get_weights())
    keras.utils.set_random_seed(123)
    for name in ("predictions", "conv2"):
        layer = randomized.get_layer(name)
        layer.set_weights([np.asarray(layer.kernel_initializer(tuple(w.shape))) if w.ndim > 1 else np.zeros(w.shape)
                           for w in layer.get_weights()])
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(zoo._convs(inputs))
    permuted = keras.Model(inputs, keras.layers.Dense(3, activation="softmax", name="predictions")(x))
    images, labels = zoo.shapes(360, seed=0)
    permuted.compile(keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy")
    permuted.fit(images / 127.5 - 1.0, np.random.default_rng(1).permutation(labels), epochs=6, batch_size=32,
                 verbose=0)
    return {"randomized top layers": dgn.classifier(randomized, "tf"),
            "permuted labels": dgn.classifier(permuted, "tf")}


SANITY = {"saliency": {}, "smoothgrad": {"samples": 8}, "guided": {}, "integrated_gradients": {"steps": 16},
          "gradcam": {}, "gradcam++": {}, "scorecam": {}, "occlusion": {}}


@pytest.mark.parametrize("method", list(SANITY))
def test_maps_change_when_the_model_is_randomized_or_trained_on_permuted_labels(method, trained, photos,
                                                                                sanity_models):
    """The maps of the same photos and classes under the trained D and under D with random top layers / D
    trained on permuted labels, on average over 12 photos: Spearman rank correlation of |map| (Adebayo et
    al.'s measure) and Pearson correlation of the maps below 0.7; below 0.9 for guided backpropagation and
    integrated gradients, the two Adebayo et al. found least sensitive (measured over 4 trainings, whose
    nondeterministic sums change the numbers: docs/attribution.md). An explanation that survived either
    would not be explaining what D learned."""
    classifier, _, _ = trained
    images, labels = photos
    targets = [str(int(t)) for t in labels]
    limit = 0.9 if method in ("guided", "integrated_gradients") else 0.7
    base = attribution.explain(classifier, images, targets, method, **SANITY[method])
    for name, other in sanity_models.items():
        maps = attribution.explain(other, images, targets, method, **SANITY[method])
        ranks = [spearman(np.abs(a), np.abs(b)) for a, b in zip(base, maps)]
        pearson = np.nan_to_num(correlations(base, maps), nan=0.0)
        assert np.mean(ranks) < limit, (name, np.round(ranks, 2))
        assert np.mean(pearson) < limit, (name, np.round(pearson, 2))


# ------------------------------------------------------------------------------------- backends

def test_jax_gives_the_maps_tensorflow_gives(trained, photos, tmp_path):
    """Every method on the JAX backend (jax.value_and_grad in jax.jit) against TensorFlow's maps."""
    pytest.importorskip("jax")
    classifier, _, path = trained
    images, _ = photos
    # occlusion by the logit: D's probability of these photos' class is 1 - 1e-8, whose changes are float noise
    settings = {"smoothgrad": {"samples": 4}, "integrated_gradients": {"steps": 8}, "occlusion": {"score": "value"}}
    expected = {m: attribution.explain(classifier, images[:3], None, m, **settings.get(m, {}))
                for m in attribution.METHODS}
    expected["gradcam_channel"] = attribution.explain(classifier, images[:3], "channel:conv2:3", "gradcam")
    np.save(tmp_path / "images.npy", images[:3])
    script = f"""
import json, numpy as np, dgn
from dgn import attribution
clf = dgn.load_classifier({path!r}, preprocessing="tf", class_index="none")
images = np.load({str(tmp_path / 'images.npy')!r})
settings = {settings!r}
out = {{m: attribution.explain(clf, images, None, m, **settings.get(m, {{}})) for m in attribution.METHODS}}
out["gradcam_channel"] = attribution.explain(clf, images, "channel:conv2:3", "gradcam")
np.savez({str(tmp_path / 'jax.npz')!r}, **out)
"""
    env = dict(os.environ, KERAS_BACKEND="jax", TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    got = np.load(tmp_path / "jax.npz")
    for name, maps in expected.items():
        scale = max(float(np.abs(maps).max()), 1e-12)
        np.testing.assert_allclose(got[name] / scale, maps / scale, atol=1e-4, err_msg=name)


# ------------------------------------------------------------------------------------- the command

def _main(monkeypatch, argv):
    """dgn's main, with ``explain`` registered (dgn.cli registers it; until then the test adds it)."""
    import dgn.cli as cli
    from dgn.cli import explain as cli_explain

    build = cli.build_parser

    def with_explain():
        parser = build()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        if "explain" not in sub.choices:
            cli_explain.add_commands(sub)
        return parser

    monkeypatch.setattr(cli, "build_parser", with_explain)
    return cli.main(argv)


@pytest.fixture
def folder(tmp_path):
    """Photos of several sizes and modes (RGB 50x70, grayscale, RGBA, 16-bit grayscale, palette), one of them
    in a subfolder, and a file that is not an image."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    images, _ = zoo.shapes(5, 50, 70, seed=3)
    Image.fromarray(images[0]).save(root / "rgb.png")
    Image.fromarray(images[1][..., 0]).save(root / "sub" / "gray.png")
    rgba = np.concatenate([images[2], np.full((50, 70, 1), 180, "uint8")], axis=-1)
    Image.fromarray(rgba, "RGBA").save(root / "sub" / "rgba.png")
    Image.fromarray(images[3][..., 0].astype("uint16") * 257).save(root / "deep.png")
    Image.fromarray(images[4]).convert("P").save(root / "palette.gif")
    (root / "notes.txt").write_text("not a photo")
    return root


@pytest.fixture
def config(tmp_path, trained):
    path = tmp_path / "own.yaml"
    path.write_text(f"classifier: {{model: {trained[2]}, preprocessing: tf}}\n")
    return str(path)


def test_the_command_writes_maps_and_resumes(monkeypatch, capfd, tmp_path, folder, config):
    out = tmp_path / "out"
    argv = ["explain", config, "--data", str(folder), "--method", "gradcam,occlusion", "--target", "0",
            "--target", "channel:conv2:3", "--out", str(out), "--quiet"]
    assert _main(monkeypatch, argv) == 0, capfd.readouterr().err
    first = capfd.readouterr().out
    assert "20 maps written for 5 photos" in first
    stems = sorted(p.name for p in out.iterdir())
    assert stems == ["deep", "palette", "rgb", "sub__gray", "sub__rgba"]
    side = json.loads((out / "rgb" / "0000_gradcam.json").read_text())     # no class names: the index
    assert side["method"] == "gradcam" and side["settings"]["layer"] == "conv2"
    assert side["target"]["index"] == 0 and 0.0 <= side["prob"] <= 1.0 and side["source_size"] == [50, 70]
    assert side["fit"] == "center" and side["input_size"] == [32, 32] and side["seconds"] >= 0
    raw = np.load(out / "rgb" / side["map"])
    assert raw.shape == (32, 32) and raw.dtype == np.float32
    assert np.asarray(Image.open(out / "rgb" / side["image"])).shape == (224, 224, 3)
    assert np.asarray(Image.open(out / "rgb" / "input.png")).shape == (32, 32, 3)
    occlusion = json.loads((out / "sub__gray" / "channel_conv2_3_occlusion.json").read_text())
    assert occlusion["settings"]["window"] == 4 and occlusion["target"]["kind"] == "channel"
    assert occlusion["settings"]["score"] == "value" and occlusion["prob"] is None

    assert _main(monkeypatch, argv) == 0
    assert "0 maps written for 5 photos, 5 photos already there" in capfd.readouterr().out
    assert _main(monkeypatch, argv + ["--window", "8"]) == 0          # only occlusion's maps are redone
    assert "10 maps written" in capfd.readouterr().out
    assert json.loads((out / "rgb" / "channel_conv2_3_occlusion.json").read_text())["settings"]["window"] == 8


def test_the_command_defaults_to_each_photos_top1_class(monkeypatch, capfd, tmp_path, folder, config):
    out = tmp_path / "out"
    assert _main(monkeypatch, ["explain", config, "--image", str(folder / "rgb.png"), "--method", "all",
                               "--samples", "4", "--ig-steps", "8", "--out", str(out), "--quiet"]) == 0
    assert "8 maps written for 1 photos" in capfd.readouterr().out
    for method in attribution.METHODS:
        side = json.loads((out / "rgb" / f"top1_{method}.json").read_text())
        assert side["target_spec"] == "top1" and side["rank"] == 1
        assert side["reference"] == attribution.REFERENCES[method]


def test_an_unreadable_photo_is_one_line_and_the_others_are_done(monkeypatch, capfd, tmp_path, folder, config):
    (folder / "broken.png").write_bytes(b"not a png at all")
    code = _main(monkeypatch, ["explain", config, "--data", str(folder), "--image", str(tmp_path / "missing.png"),
                               "--out", str(tmp_path / "out"), "--quiet"])
    out, err = capfd.readouterr()
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("dgn: error:")]
    assert len(lines) == 2 and all(line.startswith("dgn: error: cannot read image") for line in lines)
    assert "5 maps written for 7 photos" in out and "2 could not be read" in out
    assert "dgn: warning: 2 of 7 photos could not be read and were skipped" in err   # the count, as every command


@pytest.mark.parametrize("extra, text", [
    (["--data", "EMPTY"], "no photos in"),
    (["--image", "PHOTO", "--layer", "gap"], "without spatial dimensions"),
    (["--image", "PHOTO", "--target", "7"], "class index 7 is out of range"),
    (["--image", "PHOTO", "--layer", "conv9"], "has no layer 'conv9'"),
    (["--image", "PHOTO", "--method", "lime"], "unknown attribution method"),
    (["--image", "PHOTO", "--window", "4"], "--window is a setting of occlusion"),
    (["--image", "PHOTO", "--method", "ig", "--baseline", "purple"], "baseline 'purple'"),
])
def test_the_command_refuses_in_one_line(monkeypatch, capfd, tmp_path, folder, config, extra, text):
    (tmp_path / "empty").mkdir()
    extra = [str(tmp_path / "empty") if a == "EMPTY" else str(folder / "rgb.png") if a == "PHOTO" else a
             for a in extra]
    code = _main(monkeypatch, ["explain", config, *extra, "--out", str(tmp_path / "out"), "--quiet"])
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("dgn:")]
    assert code == 2 and len(lines) == 1 and text in lines[0], err


def test_dgn_explain_is_the_function_even_after_the_command_ran():
    """The command's module is dgn.attribution.photos: a submodule named explain would replace the function
    dgn.explain on the package once imported."""
    import dgn
    import dgn.attribution.photos

    assert not os.path.exists(os.path.join(ROOT, "dgn", "explain.py"))
    if "explain" in getattr(dgn, "_EXPORTS", {}):
        assert dgn.explain is attribution.explain
