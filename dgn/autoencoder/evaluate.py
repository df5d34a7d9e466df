"""How good an autoencoder is: reconstructions, PSNR against thumbnails, colour fidelity, code statistics.
"""


import math
import os
import sys

import numpy as np

from dgn import preprocessing
from dgn.autoencoder.files import load_trained
from dgn.autoencoder.model import CODE_STATS, MIN_CODE_STATS_PHOTOS
from dgn.data import list_and_split, load_images
from dgn.errors import DgnError
from dgn.images import center_crop, eval_short_side
from dgn.runs.outputs import write_atomic


def psnr(a_uint8, b_uint8):
    mse = float(np.mean((a_uint8.astype("float64") - b_uint8.astype("float64")) ** 2))
    return (float("inf") if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)), mse


def thumbnail(images_uint8, side):
    """Each image shrunk to ``side`` x ``side`` with a box filter (the mean of each cell) and enlarged
    back to its size with a bicubic filter (PIL, rounded and clipped to 8 bits): the reconstruction
    of a code of ``3 * side**2`` numbers that needs no training, a floor an autoencoder should beat."""
    from PIL import Image

    out = []
    for img in np.asarray(images_uint8, dtype="uint8"):
        h, w = img.shape[:2]
        small = Image.fromarray(img).resize((side, side), Image.Resampling.BOX)
        out.append(np.asarray(small.resize((w, h), Image.Resampling.BICUBIC)))
    return np.stack(out) if out else np.zeros_like(images_uint8, dtype="uint8")


def code_thumbnail_side(code_size):
    """The side of the RGB thumbnail with about as many numbers as a code of ``code_size``."""
    return max(1, int(round(math.sqrt(code_size / 3.0))))


def thumbnail_baselines(crops, code_size, sides=(16,)):
    """PSNR (as eval-dae computes it) of thumbnails of ``crops``: one with as many numbers as the
    code (side ``code_thumbnail_side``) and one of each of ``sides``."""
    result = {}
    for key, side in [("code", code_thumbnail_side(code_size))] + [(f"{s}x{s}", s) for s in sides]:
        value, mse = psnr(crops, thumbnail(crops, side))
        result[key] = {"side": side, "numbers": 3 * side * side, "psnr": round(value, 4), "mse": round(mse, 4)}
    return result


def channel_correlation(images_uint8):
    """Correlations of the R-G, R-B and G-B values over all pixels: reconstructions that have lost
    colour correlate near 1 where photos are around 0.9 (a decoder's colour fidelity in 3 numbers)."""
    pixels = np.asarray(images_uint8, dtype="float64").reshape(-1, 3).T
    if pixels.shape[1] < 2 or np.any(pixels.std(axis=1) == 0):
        return None
    c = np.corrcoef(pixels)
    return [round(float(c[0, 1]), 4), round(float(c[0, 2]), 4), round(float(c[1, 2]), 4)]


def _dataset_images(training, data_dir, crop, warn=print):
    paths, train, val = list_and_split(data_dir, training.wnids, training.validation)
    short = eval_short_side(crop)
    train_images, _, skipped_t = load_images(train, short, warn)
    val_images, _, skipped_v = load_images(val, short, warn)
    return train_images, val_images, len(skipped_t) + len(skipped_v), len(paths)


def reconstruct(encoder, decoder, images_uint8, space, batch_size=8):
    """Clean reconstructions (no noise, moving statistics) of uint8 crops, as uint8."""
    out = []
    for i in range(0, len(images_uint8), batch_size):
        x = preprocessing.from_rgb(np.asarray(images_uint8[i:i + batch_size], dtype="float32"), space)
        y = decoder(encoder(x, training=False), training=False)
        out.append(preprocessing.to_uint8_batch(np.asarray(y), space))
    return np.concatenate(out)


def center_crops(training, data_dir, size, split="all", limit=None):
    """(uint8 centre crops (n, size, size, 3), unreadable paths) of ``data_dir``'s images: all, or
    train-dae's ``train`` / ``val`` split of them (``training``: the :class:`DaeTraining` whose
    ``wnids`` and ``validation`` split them); the first ``limit`` only if given."""
    paths, train, val = list_and_split(data_dir, training.wnids, training.validation)
    if split != "all":
        paths = val if split == "val" else train
    if limit:
        paths = paths[:limit]
    images, _, skipped = load_images(paths, eval_short_side(size))
    if not images:
        part = {"val": "validation split of", "train": "training split of"}.get(split, "")
        why = f"{len(skipped)} unreadable" if skipped else "none"
        raise DgnError(f"no readable photo in the {part + ' ' if part else ''}{data_dir} ({why}); give a folder "
                       f"of JPEG/PNG photos" + (" with more photos (the split holds out a share of each folder)"
                                                if part else ""))
    return np.stack([center_crop(img, size) for img in images]), skipped


def eval_dae(spec, training, data_dir, folder=None, limit=None, split="all"):
    """PSNR (dB, from the mean squared error over all 8-bit RGB pixels) of clean reconstructions
    of the images of ``data_dir`` (``split`` val / train: train-dae's held-out / training part),
    next to the PSNR of thumbnails of the same crops (:func:`thumbnail_baselines`): a code-sized one
    and a 16x16 one. The autoencoder of ``spec`` (:class:`AutoencoderSpec`) trained in ``folder``
    (default ``training.out``)."""
    folder = folder or training.out
    encoder, decoder, meta = load_trained(spec, folder)
    size, space = meta["input_size"], meta["preprocessing"]
    crops, skipped = center_crops(training, data_dir, size, split, limit)
    recon = reconstruct(encoder, decoder, crops, space)
    value, mse = psnr(crops, recon)
    code_size = int(encoder.output_shape[-1])
    summary = {"images": len(crops), "skipped": len(skipped), "psnr": round(value, 4), "mse": round(mse, 4),
               "code_size": code_size, "thumbnails": thumbnail_baselines(crops, code_size),
               "channel_correlation": {"photos": channel_correlation(crops),
                                       "reconstructions": channel_correlation(recon)}}
    return summary, crops, recon


def code_statistics(spec, training, folder, data_dir=None, limit=None, batch_size=16):
    """Per-unit mean and standard deviation of the encoder's codes of the training photos (center
    crops and their mirror images, no noise), written to ``folder/code_stats.npz`` for
    ``generator.code_stats``: the distribution a decoder-prior generator keeps its code in. The
    autoencoder of ``spec`` trained in ``folder``; the photos: ``data_dir`` (default ``training.data``),
    ``training``'s training split of them."""
    import io

    data_dir = data_dir or training.data
    if not data_dir:
        raise DgnError("no image folder: give --data DIR or set dae.data")
    encoder, _, meta = load_trained(spec, folder)
    size, space = meta["input_size"], meta["preprocessing"]
    crops, skipped = center_crops(training, data_dir, size, "train", limit)
    total = np.zeros(encoder.output_shape[-1], "float64")
    squares = np.zeros_like(total)
    count = 0
    for i in range(0, len(crops), batch_size):
        chunk = crops[i:i + batch_size].astype("float32")
        for batch in (chunk, chunk[:, :, ::-1]):
            codes = np.asarray(encoder(preprocessing.from_rgb(batch, space), training=False), "float64")
            total += codes.sum(axis=0)
            squares += np.square(codes).sum(axis=0)
            count += len(codes)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
    std = np.maximum(std, 1e-6)
    buffer = io.BytesIO()
    np.savez(buffer, mean=mean.astype("float32"), std=std.astype("float32"), images=count)
    write_atomic(os.path.join(folder, CODE_STATS), buffer.getvalue())
    summary = {"codes": count, "photos": len(crops), "skipped": len(skipped), "units": int(mean.size),
               "mean_abs": round(float(np.abs(mean).mean()), 4), "std_mean": round(float(std.mean()), 4),
               "file": os.path.join(folder, CODE_STATS)}
    if len(crops) < MIN_CODE_STATS_PHOTOS:
        # a unit's standard deviation from n codes is off by about 1 / sqrt(2 (n - 1)) of itself; from
        # one photo and its mirror image it is near 0, and the generator could not leave that code
        summary["warning"] = (f"statistics of {len(crops)} photo(s) only: each unit's spread is a rough "
                              f"guess (use at least {MIN_CODE_STATS_PHOTOS}: more photos in --data or a "
                              f"larger --limit)")
        print(f"warning: {summary['warning']}", file=sys.stderr, flush=True)
    return summary
