import numpy as np

from dgn.config import PAPER_BLOCKS
from dgn.generator import build_decoder, build_generator, count_trainable, output_size
from dgn.layers import Alpha, FeatureNoise, GeneratorNorm


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
