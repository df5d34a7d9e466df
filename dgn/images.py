"""Image loading, evaluation crops and atomic PNG writing.

Every loader returns ``uint8`` arrays of shape (H, W, 3) in RGB order.

Mode handling in :func:`load_image`:

* EXIF orientation is applied first (``PIL.ImageOps.exif_transpose``), so
  the array is upright the way viewers show the photo.
* Transparency (RGBA, LA, PA, premultiplied RGBa/La, palette or L/RGB images
  with a ``transparency`` entry) is alpha-composited **on white**.  Dropping
  alpha would expose whatever colour happens to sit under fully transparent
  pixels (often black or garbage); white matches how such images are
  usually viewed.
* 16-bit greyscale (``I;16``, ``I;16B``, ``I;16L``) and 32-bit integer
  ``I`` images are treated as 16-bit samples and scaled by 255/65535
  (rounded); ``F`` (float) images are clipped to 0..255.
* Greyscale, bilevel, palette, CMYK, YCbCr, LAB, HSV are converted with
  Pillow's ``convert("RGB")``.
* Multi-frame files (GIF, TIFF, ...) use their first frame.

Any failure (missing file, unknown format, truncated data, decompression
bomb) raises :class:`ImageLoadError` with a one-line message naming the file.

Resampling: :func:`resize_short_side` uses PIL **bicubic** (the resampling
EfficientNet's reference evaluation uses); :func:`center_crop` does no
resampling.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

from dgn.runs.outputs import write_png


__all__ = [
    "ImageLoadError",
    "load_image",
    "resize_short_side",
    "center_crop",
    "eval_crop",
    "fit_to_input",
    "eval_short_side",
    "save_png_atomic",
]

_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageLoadError(ValueError):
    """An image file could not be read or decoded."""


def _one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text


def _composite_on_white(img):
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _to_rgb(img):
    mode = img.mode
    if mode in _ALPHA_MODES or (
        mode in ("P", "L", "RGB") and "transparency" in img.info
    ):
        return _composite_on_white(img)
    if mode in _SIXTEEN_BIT_MODES:
        a = np.asarray(img).astype(np.float64)
        a = np.clip(a, 0, 65535) * (255.0 / 65535.0)
        grey = np.round(a).astype(np.uint8)
        return Image.fromarray(np.stack([grey] * 3, axis=-1))
    if mode == "F":
        grey = np.clip(np.round(np.asarray(img, dtype=np.float64)), 0, 255)
        return Image.fromarray(np.stack([grey.astype(np.uint8)] * 3, axis=-1))
    if mode == "RGB":
        return img
    return img.convert("RGB")


def load_image(path):
    """Load an image file as a ``uint8`` (H, W, 3) RGB array.

    Raises:
        ImageLoadError: the file is missing, unreadable or not a valid image.
    """
    name = os.fspath(path)
    try:
        with Image.open(name) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
            arr = np.asarray(rgb, dtype=np.uint8)
    except ImageLoadError:
        raise
    except FileNotFoundError:
        raise ImageLoadError(f"cannot read image {name!r}: file not found") from None
    except IsADirectoryError:
        raise ImageLoadError(f"cannot read image {name!r}: is a directory") from None
    except Image.UnidentifiedImageError:
        raise ImageLoadError(
            f"cannot read image {name!r}: not a recognised image format"
        ) from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError,
            Image.DecompressionBombError, MemoryError) as exc:
        raise ImageLoadError(f"cannot read image {name!r}: {_one_line(exc)}") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageLoadError(f"cannot read image {name!r}: unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


def _check_rgb(img):
    img = np.asarray(img)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(
            f"expected a uint8 (H, W, 3) RGB array, got {img.dtype} {img.shape}"
        )
    return img


def resize_short_side(img, size):
    """Resize so the shorter side is ``size`` pixels (PIL bicubic), keeping
    the aspect ratio (long side rounded to the nearest pixel)."""
    img = _check_rgb(img)
    h, w = img.shape[:2]
    size = int(size)
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if h <= w:
        new_h, new_w = size, max(1, int(round(w * size / h)))
    else:
        new_h, new_w = max(1, int(round(h * size / w))), size
    if (new_h, new_w) == (h, w):
        return img.copy()
    out = Image.fromarray(img).resize((new_w, new_h), Image.Resampling.BICUBIC)
    return np.asarray(out, dtype=np.uint8)


def center_crop(img, size):
    """Crop the central ``size`` x ``size`` (or (height, width)) window.

    Offsets are ``(H - h) // 2`` and ``(W - w) // 2``.  Raises ValueError if
    the image is smaller than the crop."""
    img = _check_rgb(img)
    ch, cw = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    h, w = img.shape[:2]
    if ch > h or cw > w:
        raise ValueError(f"cannot crop {ch}x{cw} from a {h}x{w} image")
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(img[top:top + ch, left:left + cw])


def fit_to_input(img, size, mode="center"):
    """An RGB uint8 image (H, W, 3) at a classifier's input ``size`` (height, width). An image already at
    that size is returned as is. ``center``: scale (bicubic) until it covers the size, then the central
    window (the whole image when the aspect ratios agree); ``imagenet``: the standard evaluation crop
    (:func:`eval_crop`: short side to 256/224 of the crop, then the centre); ``stretch``: resize to the size."""
    img = _check_rgb(img)
    h, w = int(size[0]), int(size[1])
    if img.shape[:2] == (h, w):
        return img
    if mode == "imagenet":
        return eval_crop(img, crop=(h, w))
    if mode == "stretch":
        return np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BICUBIC), dtype=np.uint8)
    if mode != "center":
        raise ValueError(f"unknown fit mode {mode!r}; valid: center, imagenet, stretch")
    scale = max(h / img.shape[0], w / img.shape[1])
    new_h, new_w = max(h, int(round(img.shape[0] * scale))), max(w, int(round(img.shape[1] * scale)))
    out = np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.Resampling.BICUBIC), dtype=np.uint8)
    return center_crop(out, (h, w))


def eval_short_side(crop):
    """The standard evaluation resize for a ``crop`` (an int, or (height, width)): the short side to
    ``round(side * 256 / 224)`` of the crop's longer side (256 for 224, 297 for 260), the usual
    0.875 crop fraction."""
    side = int(crop) if np.isscalar(crop) else max(int(crop[0]), int(crop[1]))
    return max(side, int(round(side * 256 / 224)))


def eval_crop(img, crop=224, resize=None):
    """Standard ImageNet evaluation crop: short side to ``resize`` (bicubic; default
    :func:`eval_short_side`), then the central ``crop`` (an int for a square, or (height, width))."""
    if resize is None:
        resize = eval_short_side(crop)
    side = int(crop) if np.isscalar(crop) else max(int(crop[0]), int(crop[1]))
    if resize < side:
        raise ValueError(f"resize ({resize}) must be >= crop ({side})")
    return center_crop(resize_short_side(img, resize), crop)


def save_png_atomic(path, rgb_uint8):
    """Write a uint8 (H, W, 3) RGB array as PNG, atomically (dgn.runs.outputs.write_png): readers never
    see a half-written file and an existing file is only replaced by a complete one."""
    path = os.fspath(path)
    write_png(path, _check_rgb(rgb_uint8))
    return path
