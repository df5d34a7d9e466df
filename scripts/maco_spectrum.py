"""Estimates the mean magnitude spectrum of natural photos that MACO keeps fixed (Fel et al., NeurIPS 2023,
"Unlocking Feature Visualization for Deeper Networks with MAgnitude Constrained Optimization", section 3)
and writes it as dgn's package data ``dgn/optvis/param/maco_spectrum.npy``.

    python scripts/maco_spectrum.py DOGS WOOF [--size 224] [--limit 4000] [--out dgn/optvis/param/maco_spectrum.npy]

DOGS, WOOF: folders of ImageNet photos (any layout; the shipped array was made from the 1,468 photos of
an ImageNet dog folder and the 9,025 of Imagewoof's training split). Each photo: short side to ``size``
(bicubic), the central ``size`` x ``size`` crop, RGB 0..1, colour-decorrelated (multiplied by the
inverse of lucid's colour correlation, :data:`dgn.optvis.param.fourier.COLOR_CORRELATION`, so that MACO's
recorrelation gives back a photo's colours), its per-channel mean removed; then ``|rfft2|`` per channel.
The array is the mean of those magnitudes over the photos, (3, size, size // 2 + 1), divided by its
largest value and stored as float16 (MACO normalizes its image after the inverse transform, so only
the spectrum's shape matters). The photos themselves are never written.

Every bad input ends in one line (exit code 2).
"""

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from dgn.data import list_images  # noqa: E402
from dgn.errors import DgnError  # noqa: E402
from dgn.images import ImageLoadError, eval_crop, load_image  # noqa: E402
from dgn.optvis.param.fourier import COLOR_CORRELATION  # noqa: E402

DEFAULT_OUT = os.path.join(ROOT, "dgn", "optvis", "param", "maco_spectrum.npy")


def photo_spectrum(img, size):
    """|rfft2| of one uint8 photo (H, W, 3), cropped to ``size``, decorrelated: (3, size, size // 2 + 1)."""
    x = eval_crop(img, size, size).astype("float64") / 255.0
    x = x @ np.linalg.inv(COLOR_CORRELATION.T.astype("float64"))
    x = x - x.mean(axis=(0, 1))
    return np.abs(np.fft.rfft2(np.moveaxis(x, -1, 0), axes=(1, 2)))


def mean_spectrum(folders, size=224, limit=None):
    """(mean magnitude (3, size, size // 2 + 1) float64, photos used, photos skipped)."""
    paths = []
    for folder in folders:
        paths += list_images(folder)
    if limit:
        paths = paths[:: max(1, len(paths) // limit)][:limit]
    total, used, skipped = None, 0, 0
    for path in paths:
        try:
            spec = photo_spectrum(load_image(path), size)
        except ImageLoadError:
            skipped += 1
            continue
        total = spec if total is None else total + spec
        used += 1
    if not used:
        raise DgnError(f"no readable photos in {', '.join(folders)}; give folders of .jpg/.png photos")
    return total / used, used, skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", help="folders of natural photos")
    parser.add_argument("--size", type=int, default=224, help="crop side in pixels (default 224)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos, evenly spaced")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    try:
        if args.size < 8:
            raise DgnError(f"--size {args.size}: give at least 8 pixels")
        spectrum, used, skipped = mean_spectrum(args.folders, args.size, args.limit)
    except DgnError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    spectrum = (spectrum / spectrum.max()).astype("float16")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.save(args.out, spectrum)
    print(f"{args.out}: mean |rfft2| of {used} photos ({skipped} unreadable skipped), shape {spectrum.shape}, "
          f"{os.path.getsize(args.out):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
