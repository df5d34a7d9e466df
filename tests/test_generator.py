import keras
import numpy as np
import pytest

from dgn.optvis.generator import PAPER_BLOCKS, build_decoder, build_generator, count_trainable, output_size
from dgn.optvis.layers import Alpha, Conv2D, FeatureNoise, GeneratorNorm


def test_paper_generator_without_pretraining_has_table1_parameter_count():
    g = build_generator([5, 5, 128], PAPER_BLOCKS, head="image")
    assert g.output_shape == (None, 224, 224, 3)
    assert count_trainable(g) == 5_240_841


def test_output_size_and_small_variant():
    assert output_size([5, 5, 128], PAPER_BLOCKS) == 224
    g = build_generator([5, 5, 8], [[16, 2], [16, 2]])
    assert g.output_shape == (None, 32, 32, 3)


def test_alpha_only_configuration_trains_exactly_m_weights():
    decoder = build_decoder([5, 5, 8], [[16, 2], [16, 2]], head="decoder")
    decoder.trainable = False
    g = build_generator([5, 5, 8], [[16, 2], [16, 2]], head="decoder", decoder=decoder,
                        noise="multiplicative", noise_stddev=0.05, alpha_init="ones", alpha_activation="relu")
    assert count_trainable(g) == 5 * 5 * 8
    assert [v.name for v in g.trainable_variables] == ["alpha"]


def test_feature_noise_is_seeded_and_only_in_training():
    x = np.ones((2, 50), "float32")
    a = FeatureNoise("additive", 2.0, seed=7)
    b = FeatureNoise("additive", 2.0, seed=7)
    np.testing.assert_array_equal(np.asarray(a(x, training=True)), np.asarray(b(x, training=True)))
    np.testing.assert_array_equal(np.asarray(a(x, training=False)), x)
    noisy = np.asarray(FeatureNoise("additive", 2.0, seed=1)(np.zeros((1, 20000), "float32"), training=True))
    assert abs(noisy.std() - 2.0) < 0.05  # sigma 2, which keras.layers.GaussianNoise refuses
    mult = np.asarray(FeatureNoise("multiplicative", 0.05, seed=1)(np.full((1, 20000), 3.0, "float32"), training=True))
    assert abs(mult.mean() - 3.0) < 0.01 and abs(mult.std() - 0.15) < 0.01


def test_alpha_scales_each_row_separately():
    layer = Alpha(rows=2, initializer="ones", activation="relu")
    x = np.ones((2, 4), "float32")
    layer.build(x.shape)
    layer.alpha.assign(np.array([[1, -1, 2, 0], [3, 3, 3, 3]], "float32"))
    np.testing.assert_array_equal(np.asarray(layer(x)), [[1, 0, 2, 0], [3, 3, 3, 3]])


def test_image_norm_keeps_batch_elements_independent():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 6, 4)).astype("float32")
    norm = GeneratorNorm("image")
    together = np.asarray(norm(x, training=True))
    alone = np.asarray(norm(x[1:2], training=True))
    np.testing.assert_allclose(together[1:2], alone, atol=1e-5)
    np.testing.assert_allclose(together[1].mean(axis=(0, 1)), 0, atol=1e-5)
    batch = GeneratorNorm("batch", momentum=0.5)
    batch(x, training=True)
    assert np.all(np.asarray(batch.moving_mean) != 0)  # moving statistics updated


def _loss_and_grads(fn, x, kernel, weights):
    """sum(fn(x, kernel) * weights) and its gradients with respect to x and kernel, on this backend."""
    if keras.backend.backend() == "jax":
        import jax
        loss = lambda x, k: (fn(x, k) * weights).sum()
        return loss(x, kernel), *jax.grad(loss, argnums=(0, 1))(x, kernel)
    import tensorflow as tf
    x, kernel = tf.Variable(x), tf.Variable(kernel)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fn(x, kernel) * weights)
    return (loss, *tape.gradient(loss, [x, kernel]))


@pytest.mark.parametrize("kernel,size", [(2, 5), (3, 6), (3, 7), (4, 6), (4, 9)])
def test_upsampling_conv_is_upsampling_then_valid_conv(kernel, size):
    """Conv2D(upsample=2), G's one-layer UpSampling2D(2) + valid convolution, against the two Keras
    layers with the same weights: outputs and gradients (input and kernel) agree to float rounding."""
    rng = np.random.default_rng(kernel * 10 + size)
    x = rng.normal(size=(2, size, size, 5)).astype("float32")
    fused = Conv2D(7, kernel, padding="valid", activation="relu", upsample=2)
    plain = keras.layers.Conv2D(7, kernel, padding="valid", activation="relu")
    up = keras.layers.UpSampling2D(2)
    expected = plain(up(x))
    fused.build(x.shape)
    fused.set_weights(plain.get_weights())
    got = fused(x)
    assert tuple(got.shape) == tuple(expected.shape) == (2, 2 * size - kernel + 1, 2 * size - kernel + 1, 7)
    assert tuple(fused.compute_output_shape(x.shape)) == tuple(expected.shape)
    np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-5, atol=1e-5)
    weights = rng.normal(size=expected.shape).astype("float32")
    bias = plain.get_weights()[1]
    as_plain = lambda v, k: keras.ops.relu(keras.ops.conv(up(v), k) + bias)
    as_fused = lambda v, k: fused.stateless_call([k, bias], [], v)[0]
    for a, b in zip(_loss_and_grads(as_plain, x, plain.get_weights()[0], weights),
                    _loss_and_grads(as_fused, x, plain.get_weights()[0], weights)):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-4, atol=1e-4)


def test_upsampling_conv_keeps_keras_weights_layout_and_config():
    """Same variables as Keras's Conv2D (weights files key it as ``conv2d``), a config round trip,
    bfloat16 compute, and the cases it cannot fold refused."""
    layer = Conv2D(4, 3, padding="valid", upsample=2, name="c")
    layer.build((1, 5, 5, 2))
    assert [tuple(v.shape) for v in layer.weights] == [(3, 3, 2, 4), (4,)]
    assert type(layer).__name__ == "Conv2D"  # Keras keys a layer in weights files by its class name
    again = Conv2D.from_config(layer.get_config())
    assert again.upsample == 2 and again.kernel_size == (3, 3)
    half = Conv2D(4, 3, padding="valid", upsample=2, dtype="mixed_bfloat16")
    assert keras.backend.standardize_dtype(half(np.ones((1, 5, 5, 2), "float32")).dtype) == "bfloat16"
    for bad in ({"padding": "same"}, {"strides": 2}, {"upsample": 3}):
        with pytest.raises(ValueError):
            Conv2D(4, 3, **{"padding": "valid", "upsample": 2, **bad})


def test_g_is_sized_to_any_input_and_the_paper_g_at_224():
    from dgn.optvis.generator import architecture, output_hw, sized_architecture
    assert sized_architecture(224, 224) == ([5, 5, 128], PAPER_BLOCKS, (224, 224))
    for height, width in [(32, 32), (32, 48), (58, 58), (64, 64), (28, 28), (299, 299), (40, 48), (8, 8), (512, 384)]:
        seed, blocks, out = sized_architecture(height, width)
        assert output_hw(seed, blocks) == out and out[0] >= height and out[1] >= width
        assert blocks == PAPER_BLOCKS[-len(blocks):]
        _, _, crop = architecture(None, None, height, width)
        assert crop == (None if out == (height, width) else (height, width))
    with pytest.raises(ValueError, match="remove generator.seed_shape"):
        architecture([5, 5, 128], None, 64, 64)
    g = build_decoder(*sized_architecture(40, 48)[:2], channels=1, space="raw", size=(40, 48), squash=True)
    image = np.asarray(g(np.random.default_rng(0).normal(size=(2, g.input_shape[-1])).astype("float32")))
    assert image.shape == (2, 40, 48, 1) and image.min() >= 0.0 and image.max() <= 255.0


def test_defaults_scale_with_the_image_size():
    from dgn.optvis.optimize import auto_learning_rate
    from dgn.optvis.transforms import scaled_pixels
    assert auto_learning_rate((224, 224)) == 0.002 and auto_learning_rate((32, 48)) == 0.01
    assert auto_learning_rate((112, 300)) == pytest.approx(0.004)
    assert scaled_pixels(8, 224, 224) == 8 and scaled_pixels(8, 32, 32) == 1 and scaled_pixels(0, 32, 32) == 0
    assert scaled_pixels(8, 448, 512) == 16
