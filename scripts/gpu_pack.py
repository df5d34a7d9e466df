"""Packing the autoencoder's training photos and starting weights small enough for one GPU call.

Photos: the training split of ``dae.data`` (dgn.data's split by path, so no validation photo ever
travels), in a fixed order (by a hash of folder name and path), taken from an offset until the
byte budget is spent; the next call starts where this one stopped. Each is stored as WebP at its
size for training: short side ``min(short side, 256)`` (what train-dae's loader makes of it for
224 px crops, never enlarged here), so the loader on the GPU machine sees the same geometry as here.

Weights: a trained autoencoder folder (``dgn export-dae``) with every floating-point array stored as
float16 (the shipped encoder is float16 already; the decoder's float32 weights are rounded) in
HDF5 with the shuffle and gzip filters, which Keras reads as it reads any ``.weights.h5``.
"""

import hashlib
import io
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from dgn.errors import DgnError

SHORT_SIDE = 256            # train-dae's loader: eval_short_side(224)
FLOAT16_MAX = 65504.0


def training_photos(data, wnids=None, validation=0.1):
    """[(root, relative path)] of the training split of ``data`` (one folder or a list), in the
    fixed travel order: sorted by md5 of '<folder name>/<relative path>'."""
    from dgn.data import folders, list_and_split

    items = []
    for root in folders(data):
        _, train, _ = list_and_split(root, wnids, validation)
        items += [(root, os.path.relpath(p, root)) for p in train]

    def key(item):
        name = os.path.basename(os.path.normpath(item[0]))
        return hashlib.md5(f"{name}/{item[1]}".replace(os.sep, "/").encode("utf-8")).hexdigest()

    return sorted(items, key=key)


def window(items, offset, limit=None):
    """``items`` from ``offset`` on, wrapping around once (each at most once)."""
    n = len(items)
    if not n:
        return []
    offset %= n
    out = items[offset:] + items[:offset]
    return out[:limit] if limit else out


def encode_photo(path, quality, short_side=SHORT_SIDE):
    """WebP bytes of the photo at ``path``, short side reduced to ``short_side`` (never enlarged)."""
    from PIL import Image

    from dgn.images import ImageLoadError, load_image, resize_short_side

    try:
        img = load_image(path)
    except ImageLoadError:
        return None
    if min(img.shape[:2]) > short_side:
        img = resize_short_side(img, short_side)
    buffer = io.BytesIO()
    Image.fromarray(img).save(buffer, "WEBP", quality=int(quality), method=6)
    return buffer.getvalue()


def _encode(job):
    return encode_photo(*job)


def pack_photos(items, dest, budget, quality=40, workers=None, chunk=64):
    """Writes photos of ``items`` (in order) to ``dest/<folder name>/<relative path>.webp`` until the
    next would pass ``budget`` bytes; returns {"photos", "bytes", "skipped", "folders": {name: n}}."""
    if os.path.exists(dest) and os.listdir(dest):
        raise DgnError(f"{dest} is not empty; photos are packed into a fresh folder")
    used, count, skipped, folders = 0, 0, 0, {}
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as pool:
        for start in range(0, len(items), chunk):
            part = items[start:start + chunk]
            jobs = [(os.path.join(root, rel), quality) for root, rel in part]
            for (root, rel), data in zip(part, pool.map(_encode, jobs)):
                if data is None:
                    skipped += 1
                    continue
                if used + len(data) > budget:
                    return {"photos": count, "bytes": used, "skipped": skipped, "folders": folders, "full": True}
                name = os.path.basename(os.path.normpath(root))
                path = os.path.join(dest, name, os.path.splitext(rel)[0] + ".webp")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "wb") as fh:
                    fh.write(data)
                used += len(data)
                count += 1
                folders[name] = folders.get(name, 0) + 1
    return {"photos": count, "bytes": used, "skipped": skipped, "folders": folders, "full": False}


def photos_digest(folder):
    """(sha256 over every file's relative path and bytes, file count) of a packed photo folder."""
    digest, n = hashlib.sha256(), 0
    for base, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            digest.update(os.path.relpath(path, folder).replace(os.sep, "/").encode("utf-8") + b"\0")
            with open(path, "rb") as fh:
                digest.update(fh.read())
            n += 1
    return digest.hexdigest(), n


def compact_weights(src, dest):
    """Copies a Keras ``.weights.h5`` file with each floating-point array as float16 (kept as it is
    where a value would not fit float16) and arrays compressed (shuffle + gzip); returns the
    largest absolute rounding error."""
    import h5py

    worst = 0.0
    tmp = dest + ".part"
    with h5py.File(src, "r") as fin, h5py.File(tmp, "w") as fout:
        fout.attrs.update(dict(fin.attrs))

        def copy(name, obj):
            nonlocal worst
            if isinstance(obj, h5py.Group):
                fout.require_group(name).attrs.update(dict(obj.attrs))
                return
            data = obj[()]
            if isinstance(data, np.ndarray) and np.issubdtype(data.dtype, np.floating) and data.dtype != np.float16:
                if data.size == 0 or float(np.max(np.abs(data))) < FLOAT16_MAX:
                    half = data.astype(np.float16)
                    if data.size:
                        worst = max(worst, float(np.max(np.abs(half.astype(data.dtype) - data))))
                    data = half
            options = {"compression": "gzip", "compression_opts": 4, "shuffle": True} \
                if isinstance(data, np.ndarray) and data.ndim and data.size >= 64 else {}
            fout.create_dataset(name, data=data, **options).attrs.update(dict(obj.attrs))

        fin.visititems(copy)
    os.replace(tmp, dest)
    return worst


def pack_weights(src, dest):
    """A trained autoencoder folder (``decoder.weights.h5``, ``encoder.weights.h5``, ``decoder.json``)
    copied to ``dest`` for travel (:func:`compact_weights`); returns {file: bytes}."""
    import shutil

    for name in ("decoder.weights.h5", "encoder.weights.h5", "decoder.json"):
        if not os.path.isfile(os.path.join(src, name)):
            raise DgnError(f"{src} has no {name}; give a folder written by `dgn export-dae`")
    os.makedirs(dest, exist_ok=True)
    for part in ("decoder", "encoder"):
        compact_weights(os.path.join(src, f"{part}.weights.h5"), os.path.join(dest, f"{part}.weights.h5"))
    shutil.copyfile(os.path.join(src, "decoder.json"), os.path.join(dest, "decoder.json"))
    return {n: os.path.getsize(os.path.join(dest, n)) for n in sorted(os.listdir(dest))}
