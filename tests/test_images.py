import os

import numpy as np
import pytest
from PIL import Image

from dgn.images import (
    ImageLoadError,
    center_crop,
    eval_crop,
    eval_short_side,
    load_image,
    resize_short_side,
    save_png_atomic,
)


def _check(arr, h, w):
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.uint8
    assert arr.shape == (h, w, 3)


def test_rgb_jpeg_and_png(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 2] = 40
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    np.testing.assert_array_equal(load_image(tmp_path / "a.png"), rgb)
    got = load_image(str(tmp_path / "a.jpg"))
    _check(got, 20, 30)
    assert np.abs(got.astype(int) - rgb).max() <= 3


def test_grayscale_and_bilevel(tmp_path):
    g = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (7, 1))
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    got = load_image(tmp_path / "g.png")
    _check(got, 7, 25)
    for c in range(3):
        np.testing.assert_array_equal(got[..., c], g)
    Image.new("1", (9, 5), 1).save(tmp_path / "b.png")
    got = load_image(tmp_path / "b.png")
    _check(got, 5, 9)
    assert (got == 255).all()


def test_palette(tmp_path):
    img = Image.new("P", (6, 4))
    img.putpalette([255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    img.putpixel((0, 0), 1)
    img.save(tmp_path / "p.png")
    got = load_image(tmp_path / "p.png")
    _check(got, 4, 6)
    assert tuple(got[0, 0]) == (0, 255, 0)
    assert tuple(got[1, 1]) == (255, 0, 0)


def test_palette_with_transparency_composites_on_white(tmp_path):
    img = Image.new("P", (4, 4))
    img.putpalette([10, 20, 30, 255, 0, 0] + [0] * (256 * 3 - 6))
    img.putpixel((1, 1), 1)
    img.info["transparency"] = 0
    img.save(tmp_path / "pt.png", transparency=0)
    got = load_image(tmp_path / "pt.png")
    assert tuple(got[0, 0]) == (255, 255, 255)
    assert tuple(got[1, 1]) == (255, 0, 0)


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((3, 4, 4), np.uint8)
    a[..., :3] = (0, 0, 200)
    a[0, :, 3] = 0  # fully transparent -> white
    a[1, :, 3] = 255  # opaque -> colour
    a[2, :, 3] = 128  # half -> blend
    Image.fromarray(a, "RGBA").save(tmp_path / "rgba.png")
    got = load_image(tmp_path / "rgba.png")
    _check(got, 3, 4)
    assert (got[0] == 255).all()
    assert (got[1] == (0, 0, 200)).all()
    assert np.allclose(got[2], (127, 127, 227), atol=2)


def test_la(tmp_path):
    a = np.zeros((2, 3, 2), np.uint8)
    a[..., 0] = 50
    a[0, :, 1] = 255
    a[1, :, 1] = 0
    Image.fromarray(a, "LA").save(tmp_path / "la.png")
    got = load_image(tmp_path / "la.png")
    _check(got, 2, 3)
    assert (got[0] == 50).all() and (got[1] == 255).all()


def test_cmyk(tmp_path):
    img = Image.new("CMYK", (5, 4), (0, 255, 255, 0))  # pure red
    img.save(tmp_path / "c.jpg", quality=100)
    img.save(tmp_path / "c.tif")
    for name in ("c.jpg", "c.tif"):
        got = load_image(tmp_path / name)
        _check(got, 4, 5)
        assert got[..., 0].min() > 240 and got[..., 1:].max() < 15, name


def test_16bit_png(tmp_path):
    g = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    got = load_image(tmp_path / "g16.png")
    _check(got, 1, 4)
    np.testing.assert_array_equal(got[0, :, 0], [0, 1, 128, 255])
    np.testing.assert_array_equal(got[..., 0], got[..., 2])


def test_exif_orientation(tmp_path):
    # 2 rows x 3 columns: left column red, rest blue.
    a = np.zeros((2, 3, 3), np.uint8)
    a[:, 0] = (255, 0, 0)
    a[:, 1:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display
    Image.fromarray(a).save(tmp_path / "o.png", exif=exif)
    got = load_image(tmp_path / "o.png")
    _check(got, 3, 2)  # rotated: width and height swap
    np.testing.assert_array_equal(got, np.rot90(a, k=-1))
    assert (got[0] == (255, 0, 0)).all()  # left column became top row


def test_exif_orientation_jpeg(tmp_path):
    a = np.zeros((16, 32, 3), np.uint8)
    a[:, :16] = 255
    exif = Image.Exif()
    exif[0x0112] = 8  # rotate 90 CCW to display
    Image.fromarray(a).save(tmp_path / "o.jpg", exif=exif, quality=100)
    got = load_image(tmp_path / "o.jpg")
    _check(got, 32, 16)
    assert got[-8:].mean() > 240 and got[:8].mean() < 15


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageLoadError, match="bad.jpg"):
        load_image(bad)
    # truncated JPEG
    Image.fromarray(np.full((64, 64, 3), 90, np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="trunc.jpg") as info:
        load_image(tmp_path / "trunc.jpg")
    assert "\n" not in str(info.value)
    with pytest.raises(ImageLoadError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    with pytest.raises(ImageLoadError):
        load_image(tmp_path)  # a directory
    assert issubclass(ImageLoadError, ValueError)


def test_resize_short_side_and_crops():
    img = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    r = resize_short_side(img, 256)
    assert r.shape == (256, 341, 3) and r.dtype == np.uint8
    r = resize_short_side(img.transpose(1, 0, 2), 256)
    assert r.shape == (341, 256, 3)
    c = center_crop(img, 224)
    assert c.shape == (224, 224, 3)
    np.testing.assert_array_equal(c, img[38:262, 88:312])
    assert center_crop(img, (100, 50)).shape == (100, 50, 3)
    with pytest.raises(ValueError):
        center_crop(img, 301)
    e = eval_crop(img)
    assert e.shape == (224, 224, 3)
    assert eval_crop(img, crop=260).shape == (260, 260, 3)
    assert eval_crop(img, crop=224, resize=256).shape == (224, 224, 3)
    small = img[:50, :80]
    assert eval_crop(small, crop=224).shape == (224, 224, 3)  # upsampled
    with pytest.raises(ValueError):
        eval_crop(img, crop=224, resize=200)
    # a (height, width) crop: the short side to 256/224 of the longer side, then the central window
    assert eval_short_side(224) == 256 and eval_short_side(260) == 297 and eval_short_side((112, 224)) == 256
    rect = eval_crop(img, crop=(112, 224))
    np.testing.assert_array_equal(rect, center_crop(resize_short_side(img, 256), (112, 224)))
    assert rect.shape == (112, 224, 3)


def test_save_png_atomic(tmp_path):
    img = np.random.default_rng(1).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    out = tmp_path / "out.png"
    out.write_bytes(b"old")
    save_png_atomic(out, img)
    np.testing.assert_array_equal(load_image(out), img)
    assert sorted(os.listdir(tmp_path)) == ["out.png"]  # no temp files left
    with pytest.raises(ValueError):
        save_png_atomic(tmp_path / "x.png", img.astype(np.float32))
    assert sorted(os.listdir(tmp_path)) == ["out.png"]
