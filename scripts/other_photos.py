"""Writes a folder of photos that are not dogs, for checking the decoder on what it did not train on:
the natural photos that scikit-image and scikit-learn ship inside their packages (no download).

    python3 -m venv /tmp/skenv && /tmp/skenv/bin/pip install scikit-image scikit-learn pillow
    /tmp/skenv/bin/python scripts/other_photos.py runs/other-photos

15 photos: in colour astronaut, chelsea (a cat), coffee, a motorcycle, rocket, hubble_deep_field
(scikit-image) and china, flower (scikit-learn); in grey (written as RGB) camera, moon, brick, grass,
gravel, coins, clock_motion. PNG, as shipped (short side 225 to 512 px). Photos keep their owners'
licences (scikit-image's data/README.txt); they are not for the repository.
"""

import os
import sys

import numpy as np
from PIL import Image

SKIMAGE = ("astronaut", "chelsea", "coffee", "stereo_motorcycle", "rocket", "hubble_deep_field",
           "camera", "moon", "brick", "grass", "gravel", "coins", "clock")
SKLEARN = ("china.jpg", "flower.jpg")


def main(out):
    import skimage.data
    from sklearn.datasets import load_sample_image

    os.makedirs(out, exist_ok=True)
    photos = []
    for name in SKIMAGE:
        img = getattr(skimage.data, name)()
        photos.append((name, img[0] if isinstance(img, tuple) else img))   # the stereo pair's left view
    photos += [(name.split(".")[0], load_sample_image(name)) for name in SKLEARN]
    for name, img in photos:
        img = np.asarray(img)
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        if img.dtype != np.uint8:
            img = (255 * (img - img.min()) / max(img.max() - img.min(), 1e-9)).astype("uint8")
        Image.fromarray(img[..., :3]).save(os.path.join(out, f"{name}.png"))
    print(f"{len(photos)} photos in {out}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/other_photos.py OUT_FOLDER")
    main(sys.argv[1])
