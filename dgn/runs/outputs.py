"""Writing results: PNGs and JSON sidecars, always through a temporary name and an atomic rename."""

import hashlib
import io
import json
import os
import re
import tempfile
import unicodedata

import numpy as np
from PIL import Image

from dgn.errors import DgnError


def write_atomic(path, data, prefix=".tmp-"):
    """Writes bytes to ``path`` so that a reader (or a kill) never sees a half-written file: a
    temporary file ``<prefix>...`` in the same folder, fsynced, then renamed."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix="-" + os.path.basename(path), dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_out_dir(path, option="--out"):
    """Refuses a folder path that names an existing file, or one that cannot be made (before any work: the
    folders missing are made and, still empty, removed again, so that nothing is left where the command then
    fails; several processes may probe at once, ``--shard auto``: the command makes its folder again when it
    claims it).

    Raises:
        DgnError: ``path`` is a file, a file stands where one of its parent folders would, or the folder
            cannot be made (no permission, a read-only or virtual file system such as /proc)."""
    path = os.fspath(path)
    probe = path
    while probe and not os.path.exists(probe):
        parent = os.path.dirname(probe)
        probe = parent if parent != probe else ""
    if probe and not os.path.isdir(probe):
        where = "is a file" if probe == path else f"is inside {probe}, a file"
        raise DgnError(f"{option} {path} {where}; give a folder (a new one, or one of this config's runs)")
    if probe != path:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise DgnError(f"{option} {path}: cannot create this folder ({exc.strerror}); give a folder you can "
                           f"write") from None
        made = path
        while made and made != probe:
            try:
                os.rmdir(made)        # only an empty folder: another process's files stay
            except OSError:
                break
            made = os.path.dirname(made)


def png_bytes(pixels_uint8):
    """PNG bytes of (H, W, 3) RGB or (H, W, 1) / (H, W) grayscale uint8 pixels."""
    pixels = np.asarray(pixels_uint8, dtype="uint8")
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def write_png(path, rgb_uint8):
    write_atomic(path, png_bytes(rgb_uint8))


def npy_bytes(array):
    """The bytes of ``np.save(array)``."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array))
    return buffer.getvalue()


def map_pixels(values, percentile=99.5):
    """A (H, W) map of non-negative values as uint8 grey: 255 at the ``percentile``-th value and above
    (so a few extreme pixels do not leave the rest black), 0 at zero."""
    values = np.asarray(values, dtype="float32")
    top = float(np.percentile(values, percentile)) if values.size else 0.0
    if not np.isfinite(top) or top <= 0:
        return np.zeros(values.shape, dtype="uint8")
    return np.round(np.clip(values / top, 0.0, 1.0) * 255.0).astype("uint8")


def write_maps(stem, maps, k):
    """For each map of a run (``Result.extras``: name -> (rows, H, W) float32, e.g. MACO's
    "transparency"), writes row ``k`` beside the image as ``<stem>.<name>.npy`` (float32, the values)
    and ``<stem>.<name>.png`` (:func:`map_pixels`); returns what the sidecar records:
    {name: {"png": file, "npy": file}} (file names, no folder)."""
    out = {}
    for name, values in (maps or {}).items():
        row = np.asarray(values[k], dtype="float32")
        write_atomic(f"{stem}.{name}.npy", npy_bytes(row))
        write_atomic(f"{stem}.{name}.png", png_bytes(map_pixels(row)))
        base = os.path.basename(stem)
        out[name] = {"png": f"{base}.{name}.png", "npy": f"{base}.{name}.npy"}
    return out


def json_bytes(obj, indent=2):
    """JSON text of ``obj`` (numpy scalars and arrays allowed) ending in a newline, as bytes."""
    return (json.dumps(obj, indent=indent, default=jsonable) + "\n").encode("utf-8")


def read_json(path):
    """The JSON object in ``path``, or None where it is missing, unreadable or not JSON (a sidecar
    half-written by a killed run, or never written)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def write_json(path, obj):
    write_atomic(path, json_bytes(obj))


def jsonable(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def slug(text, limit=80, unique=False):
    """A file-name-safe stem: letters (any script), digits, '_', '-', '+' and '.'. ``unique``: where that
    changes the text (punctuation, spaces, length), a short hash of the text is appended, so that two
    different texts never give the same stem ('a b.png' and 'a_b.png', 'x!' and 'x?')."""
    text = unicodedata.normalize("NFC", str(text))
    out = re.sub(r"[^\w.+-]+", "_", text).strip("_")[:limit] or "target"
    if unique and out != text:
        out += "-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    return out
