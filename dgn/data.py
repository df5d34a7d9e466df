"""Image folders for training and evaluation: listing, a deterministic split, and a Keras dataset.

An ImageNet-style folder (``wnid/`` subfolders) or any folder of images, searched recursively.
Images are decoded once (grayscale, CMYK, palette and RGBA converted by :func:`dgn.images.load_image`;
unreadable files skipped and counted), resized so the short side is ``crop * 256 / 224`` (small
images are upscaled), and kept in memory as uint8.
"""

import hashlib
import os

import keras
import numpy as np

from dgn import preprocessing
from dgn.errors import DgnError
from dgn.images import ImageLoadError, center_crop, load_image, resize_short_side


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


def list_images(root, wnids=None):
    """Sorted image paths below ``root``; with ``wnids``, only files in those top-level folders."""
    if not root or not os.path.isdir(root):
        raise DgnError(f"image folder not found: {root}; give a folder that holds .jpg/.png photos (in subfolders or not)")
    keep = set(wnids) if wnids else None
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = os.path.relpath(folder, root)
        top = rel.split(os.sep)[0]
        if keep is not None and top not in keep:
            continue
        paths.extend(os.path.join(folder, f) for f in sorted(files)
                     if f.lower().endswith(IMAGE_EXTENSIONS) and not f.startswith("."))
    if not paths:
        which = f" in folders {', '.join(sorted(keep))}" if keep else ""
        raise DgnError(f"no images found in {root}{which}; expected .jpg/.png files (recursively)")
    return paths


def split(paths, root, validation=0.1):
    """Deterministic train/validation split by a hash of each file's path relative to ``root``."""
    train, val = [], []
    for path in paths:
        key = os.path.relpath(path, root).replace(os.sep, "/").encode("utf-8")
        bucket = int(hashlib.md5(key).hexdigest()[:8], 16) / 0xFFFFFFFF
        (val if bucket < validation else train).append(path)
    if validation > 0 and not val and len(train) > 1:
        val.append(train.pop())
    return train, val


def folders(data):
    """``dae.data`` as a list of folders: one folder (a string) or a list of them."""
    roots = [data] if isinstance(data, str) else list(data or [])
    if not roots:
        raise DgnError("no image folder given; give a folder of images or a list of folders")
    return roots


def list_and_split(data, wnids=None, validation=0.1):
    """(all paths, train paths, validation paths) of one folder or a list of them. Each folder is
    split as :func:`split` splits it alone (by the path relative to that folder), so adding a folder
    leaves the split of the others as it was; a missing or empty folder is an error."""
    paths, train, val = [], [], []
    for root in folders(data):
        found = list_images(root, wnids)
        t, v = split(found, root, validation)
        paths += found
        train += t
        val += v
    return paths, train, val


def load_images(paths, short_side, warn=print):
    """Decodes and resizes every readable image; returns (list of uint8 arrays, kept paths, skipped)."""
    images, kept, skipped = [], [], []
    for path in paths:
        try:
            images.append(resize_short_side(load_image(path), short_side))
            kept.append(path)
        except ImageLoadError as exc:
            skipped.append(path)
            if warn:
                warn(f"skipped: {exc}")
    return images, kept, skipped


class ImageDataset(keras.utils.PyDataset):
    """Batches of (image, image) in D's input space: random crops and flips if ``augment``,
    else centre crops.

    Batches are numbered globally across epochs, so ``steps_per_epoch`` (shorter epochs, hence more
    frequent checkpoints) still walks through every image: global batch g belongs to pass
    ``g // batches_per_pass``, whose order and crops are drawn from ``seed`` and the pass number.
    Resuming at epoch e continues exactly where an uninterrupted run would be. A shuffled pass has
    ``len(images) // batch_size`` batches, all of ``batch_size`` (the remainder waits for another
    pass's order); an unshuffled one (validation) ends with a short batch if need be."""

    def __init__(self, images, crop, space, batch_size=24, augment=True, seed=0, shuffle=True,
                 steps_per_epoch=None, **kwargs):
        super().__init__(**kwargs)
        if not images:
            raise DgnError("no readable images to train on")
        self.images, self.crop, self.space = images, int(crop), space
        self.batch_size, self.augment, self.seed, self.shuffle = int(batch_size), augment, seed, shuffle
        # a shuffled pass drops its last, short batch (its photos come back in the next pass's order):
        # a batch of another size makes JAX and tf.function compile the step again, and a batch of one
        # photo is one noisy update on batch statistics
        whole = shuffle and len(images) >= self.batch_size
        self.batches_per_pass = len(images) // self.batch_size if whole else int(np.ceil(len(images) / self.batch_size))
        self.steps_per_epoch = int(steps_per_epoch or self.batches_per_pass)
        self.epoch = 0

    def __len__(self):
        return self.steps_per_epoch

    def _order(self, pass_index):
        if not self.shuffle:
            return np.arange(len(self.images))
        return np.random.default_rng([self.seed, pass_index]).permutation(len(self.images))

    def _crop(self, img, rng):
        if not self.augment:
            return center_crop(img, self.crop)
        h, w = img.shape[:2]
        top = int(rng.integers(0, h - self.crop + 1))
        left = int(rng.integers(0, w - self.crop + 1))
        out = img[top:top + self.crop, left:left + self.crop]
        return out[:, ::-1] if rng.random() < 0.5 else out

    def __getitem__(self, index):
        pass_index, batch = divmod(self.epoch * self.steps_per_epoch + index, self.batches_per_pass)
        rng = np.random.default_rng([self.seed, pass_index, batch])
        idx = self._order(pass_index)[batch * self.batch_size:(batch + 1) * self.batch_size]
        crops = np.stack([self._crop(self.images[i], rng) for i in idx]).astype("float32")
        x = preprocessing.from_rgb(crops, self.space).astype("float32")
        return x, x

    def on_epoch_end(self):
        self.epoch += 1
