import numpy as np
import pytest

from dgn import preprocessing


@pytest.mark.parametrize("space", preprocessing.SPACES)
def test_round_trip_and_valid_range(space):
    rgb = np.random.default_rng(0).integers(0, 256, (4, 5, 3)).astype("float32")
    np.testing.assert_allclose(preprocessing.to_rgb(preprocessing.from_rgb(rgb, space), space), rgb, atol=1e-3)
    assert (preprocessing.to_uint8(preprocessing.from_rgb(rgb, space), space) == rgb).all()
    low, high = preprocessing.valid_range(space)
    assert all(lo < hi for lo, hi in zip(low, high))


def test_caffe_is_bgr_minus_imagenet_mean():
    rgb = np.array([[[255.0, 0.0, 10.0]]], dtype="float32")
    np.testing.assert_allclose(preprocessing.from_rgb(rgb, "caffe")[0, 0], [10 - 103.939, 0 - 116.779, 255 - 123.68],
                               rtol=1e-6)


def test_authors_display_transform_shifts_by_min_sqrt_and_rescales():
    image = preprocessing.from_rgb(np.array([[[0, 0, 0], [100, 100, 100], [400, 400, 400]]], "float32"), "raw")
    out = preprocessing.to_uint8(image, "raw", display="authors")
    np.testing.assert_array_equal(out[0, :, 0], [0, round(255 * np.sqrt(100) / np.sqrt(400)), 255])
    clipped = preprocessing.to_uint8(image, "raw", display="clip")
    np.testing.assert_array_equal(clipped[0, :, 0], [0, 100, 255])
