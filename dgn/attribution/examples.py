"""Dataset examples: the real photos that excite a unit most, and the patch of each that the unit sees
(Zeiler and Fergus 2014's "maximally activating patches"; lucid and OpenAI Microscope's dataset
examples), beside the images dgn generates for the same units.

One pass over a folder of photos runs D in batches (photos decoded on a second thread while D runs) and
keeps, per photo, for every channel of each layer asked for its largest activation over positions and
that position, and for classes the logits. Those numbers are cached on disk in chunks of photos
(``RUN_DIR/examples/cache/``), written atomically, so a rerun, another ``--top`` or another channel range
of a layer already seen costs no second pass, and a killed pass resumes at the first missing chunk.

The patch of a channel's example is the receptive field (:mod:`dgn.attribution.receptive_field`) of its strongest
position, cut from the photo as D saw it (fitted to D's input size). Class examples are the whole photos
with the largest logits.
"""

import concurrent.futures
import hashlib
import json
import os
import time

import numpy as np

from dgn import imagenet
from dgn.attribution.maps import explain
from dgn.attribution.photos import heat_rgb, overlay
from dgn.attribution.receptive_field import geometry
from dgn.classify import fit_mode
from dgn.data import list_images
from dgn.errors import DgnError
from dgn.images import ImageLoadError, fit_to_input, load_image
from dgn.optvis.objectives import ChannelObjective, ClassObjective
from dgn.progress import Progress
from dgn.runs.outputs import json_bytes, png_bytes, write_atomic


CHUNK = 256          # photos per cache file
CACHE_VERSION = 2


def parse_channels(spec, classifier, where="--channels"):
    """``LAYER`` (all channels), ``LAYER:C``, ``LAYER:A:B`` (A..B-1) or ``LAYER:1,5,9`` -> (layer, [channels]).

    Raises:
        DgnError: an unknown layer (listing close names), a layer without channels, or channels out of
            range (one line)."""
    text = str(spec).strip()
    layer, _, rest = text.partition(":")
    if not layer:
        raise DgnError(f"{where} {text!r}: give LAYER, LAYER:C, LAYER:A:B or LAYER:1,5,9 (dgn info lists layers)")
    shape = classifier.layer_output(layer).shape
    count = int(shape[-1])
    rest = rest.strip()
    try:
        if not rest:
            channels = list(range(count))
        elif "," in rest:
            channels = sorted({int(p) for p in rest.split(",") if p.strip()})
        elif ":" in rest:
            a, b = rest.split(":", 1)
            start, stop = int(a) if a.strip() else 0, int(b) if b.strip() else count
            if not 0 <= start < stop <= count:
                raise DgnError(f"{where} {text!r}: layer {layer} has channels 0..{count - 1}; a range A:B "
                               f"includes A, excludes B")
            channels = list(range(start, stop))
        else:
            channels = [int(rest)]
    except ValueError:
        raise DgnError(f"{where} {text!r}: channels must be integers (LAYER:A:B, LAYER:C or LAYER:1,5,9)") from None
    bad = [c for c in channels if not 0 <= c < count]
    if bad or not channels:
        raise DgnError(f"{where} {text!r}: layer {layer} has channels 0..{count - 1}")
    return layer, channels


def _photo_list(folder):
    if not folder or not os.path.isdir(folder):
        raise DgnError(f"--data {folder}: folder not found; give a folder of photos (searched recursively)")
    try:
        return list_images(folder)
    except DgnError:
        raise DgnError(f"--data {folder}: no photos found (.jpg, .png, ... searched recursively)") from None


def _cache_key(classifier, folder, paths, fit, layer):
    stats = [(os.path.relpath(p, folder), os.path.getsize(p), int(os.path.getmtime(p))) for p in paths]
    ident = {"version": CACHE_VERSION, "classifier": classifier.name, "input": list(classifier.input_shape),
             "preprocessing": classifier.preprocessing, "weights": getattr(classifier, "files", {}),
             "num_classes": classifier.num_classes, "fit": fit, "layer": layer, "photos": stats}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def _reducer(classifier, layers):
    """A function: D's input batch -> {layer: (max over positions (B, C), argmax position (B, C) flat)} and
    {"logits": (B, K)}, computed in one compiled call."""
    import keras
    from keras import ops

    features = classifier.features([name for name in layers if name != "logits"])
    inputs = keras.Input(classifier.input_shape, name="photos")
    outs = features(inputs, training=False)
    reduced = {}
    for name in layers:
        act = outs[name]
        if len(act.shape) == 4:
            flat = ops.reshape(act, (-1, act.shape[1] * act.shape[2], act.shape[3]))
            reduced[name + "/max"] = ops.max(flat, axis=1)
            reduced[name + "/argmax"] = ops.cast(ops.argmax(flat, axis=1), "int32")
        else:
            reduced[name + "/max"] = act
    model = keras.Model(inputs, reduced, name="examples_reducer")
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        call = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    else:
        import jax

        call = jax.jit(lambda x: model(x, training=False))
    return lambda x: {k: np.asarray(v) for k, v in call(x).items()}


class Pass:
    """The cached pass of D over a folder for a set of layers (``"logits"`` for classes)."""

    def __init__(self, classifier, folder, layers, cache_root, fit="auto", batch=32):
        self.classifier, self.folder, self.batch = classifier, os.path.abspath(folder), int(batch)
        self.fit = fit_mode(classifier, fit)
        self.paths = _photo_list(self.folder)
        self.layers = list(dict.fromkeys(layers))
        self.dirs = {name: os.path.join(cache_root, _cache_key(classifier, self.folder, self.paths, self.fit, name))
                     for name in self.layers}
        self.chunks = (len(self.paths) + CHUNK - 1) // CHUNK

    def _chunk_path(self, name, k):
        return os.path.join(self.dirs[name], f"chunk_{k:05d}.npz")

    def missing(self):
        return [k for k in range(self.chunks) if not all(os.path.isfile(self._chunk_path(n, k)) for n in self.layers)]

    def _load(self, path):
        try:
            return fit_to_input(load_image(path), self.classifier.input_shape[:2], self.fit), None
        except (ImageLoadError, ValueError, OSError, MemoryError) as exc:
            return None, " ".join(str(exc).split())[:200]

    def run(self, progress=True):
        """Computes every missing chunk (decoding on a second thread while D runs); returns the number
        of photos D read in this call (the unreadable ones not counted)."""
        todo = self.missing()
        if not todo:
            return 0
        reduce = _reducer(self.classifier, self.layers)
        for name in self.layers:
            os.makedirs(self.dirs[name], exist_ok=True)
        total = sum(min(CHUNK, len(self.paths) - k * CHUNK) for k in todo)
        bar = Progress(total, "photo", f"examples: one pass of D over {len(self.paths)} photos "
                                       f"({total} to read)", enabled=progress)
        done = bad = 0
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            for k in todo:
                paths = self.paths[k * CHUNK:(k + 1) * CHUNK]
                batches = [paths[i:i + self.batch] for i in range(0, len(paths), self.batch)]
                parts, errors = [], {}
                future = pool.submit(lambda b: [self._load(p) for p in b], batches[0])
                for b, batch_paths in enumerate(batches):
                    loaded = future.result()
                    if b + 1 < len(batches):
                        future = pool.submit(lambda b: [self._load(p) for p in b], batches[b + 1])
                    good = [i for i, (img, _) in enumerate(loaded) if img is not None]
                    for i, (_, err) in enumerate(loaded):
                        if err is not None:
                            errors[os.path.relpath(batch_paths[i], self.folder)] = err
                    out = {}
                    if good:
                        x = self.classifier.from_pixels(np.stack([loaded[i][0] for i in good]))
                        if len(good) < self.batch:  # one compiled shape
                            x = np.concatenate([x, np.zeros((self.batch - len(good),) + x.shape[1:], x.dtype)])
                        out = {key: value[:len(good)] for key, value in reduce(x).items()}
                    parts.append((len(batch_paths), good, out))
                    done += len(batch_paths)
                    bar.update(done)
                self._write_chunk(k, parts, errors)
                bad += len(errors)
        return total - bad

    def _write_chunk(self, k, parts, errors):
        """One cache file per layer for chunk ``k``: ``max`` (photos, C) with -inf for unreadable photos,
        ``argmax`` (photos, C) flat positions (-1 there), and the unreadable photos' errors."""
        import io

        count = sum(n for n, _, _ in parts)
        for name in self.layers:
            shapes = self._widths(name)
            arrays = {}
            for key, shape in shapes.items():
                argmax = key.endswith("/argmax")
                full = np.full((count,) + tuple(shape), -1 if argmax else -np.inf, "int32" if argmax else "float32")
                offset = 0
                for n, good, out in parts:
                    if key in out:
                        full[[offset + i for i in good]] = out[key]
                    offset += n
                arrays[key.split("/")[-1]] = full
            buffer = io.BytesIO()
            np.savez(buffer, errors=np.asarray(json.dumps(errors)), **arrays)
            write_atomic(self._chunk_path(name, k), buffer.getvalue())

    def _widths(self, name):
        """The cached arrays' shapes per photo: ``max`` (C,) and, for a layer with positions, ``argmax`` (C,)."""
        if name == "logits":
            return {name + "/max": (self.classifier.num_classes,)}
        shape = self.classifier.layer_output(name).shape
        keys = {name + "/max": (int(shape[-1]),)}
        if len(shape) == 4:
            keys[name + "/argmax"] = (int(shape[-1]),)
        return keys

    def values(self, name):
        """(max (N, C) float32, argmax (N, C) int32 or None, {photo: error}) over every photo, from the cache."""
        maxes, argmaxes, errors = [], [], {}
        for k in range(self.chunks):
            with np.load(self._chunk_path(name, k)) as npz:
                maxes.append(npz["max"])
                if "argmax" in npz:
                    argmaxes.append(npz["argmax"])
                errors.update(json.loads(str(npz["errors"])))
        return np.concatenate(maxes), (np.concatenate(argmaxes) if argmaxes else None), errors


def unreadable_lines(errors):
    """One line per unreadable photo of a pass (``{photo: error}``), as every command prints them."""
    return [str(e) if str(e).startswith("cannot read") else f"cannot read image {p!r}: {e}" for p, e in errors.items()]


def top_photos(values, k):
    """Indices of the ``k`` largest values (N,), largest first, ties by index; unreadable photos
    (-inf) never chosen."""
    order = np.argsort(-values, kind="stable")
    return [int(i) for i in order[:k] if np.isfinite(values[i])]


def write_examples(run_dir, classifier, data, units, top=9, fit="auto", batch=32, progress=True, maps=None):
    """Dataset examples for ``units`` (a list of ("channel", layer, c) or ("class", index)) from the photos
    in ``data``, into ``run_dir``: ``examples/<stem>/NN.png`` (patch or photo) and ``examples/<stem>.json``;
    a unit's image sidecar in ``run_dir`` (``<stem>.json``) gets an ``examples`` field. ``maps``: an
    attribution method (:mod:`dgn.attribution`, e.g. "gradcam"): each example photo also gets the map of
    the same unit, laid over the photo as D saw it (``examples/<stem>/NN_map.png``). Returns a summary.

    A few lines over 60: the pass over the photos, then per unit its patches (:func:`_patches`), maps and
    records, kept together so that the order in which the files are written (the record last) reads in one
    place.

    Raises:
        DgnError: a missing or empty folder, top < 1 (one line); unreadable photos are skipped and counted."""
    if top < 1:
        raise DgnError(f"--top {top}: give at least 1")
    layers = sorted({u[1] for u in units if u[0] == "channel"}) + (["logits"] if any(u[0] == "class" for u in units)
                                                                  else [])
    started = time.time()
    cached = Pass(classifier, data, layers, os.path.join(run_dir, "examples", "cache"), fit, batch)
    read = cached.run(progress=progress)
    seconds = time.time() - started
    height, width = classifier.input_shape[:2]
    written, errors = [], {}
    fitted = {}

    def photo(i):
        if i not in fitted:
            fitted[i] = fit_to_input(load_image(cached.paths[i]), (height, width), cached.fit)
        return fitted[i]

    values_of = {name: cached.values(name) for name in layers}
    unreadable = values_of[layers[0]][2]
    if len(unreadable) == len(cached.paths):
        first = next(iter(unreadable.items()))
        raise DgnError(f"--data {cached.folder}: none of its {len(cached.paths)} image files could be read (e.g. "
                       f"{first[0]}: {first[1]})")
    for unit in units:
        c, objective, (maxes, argmaxes, errs), geom, cols = _unit(classifier, unit, values_of)
        errors.update(errs)
        stem = objective.stem(str(c))
        folder = os.path.join(run_dir, "examples", stem)
        if os.path.isdir(folder):   # a rerun with a smaller --top: no stale patches of the last one
            for old in os.listdir(folder):
                if old.endswith(".png") and old[:-4].isdigit() and int(old[:-4]) > top:
                    os.remove(os.path.join(folder, old))
        rows = _patches(cached, photo, maxes[:, c], None if argmaxes is None else argmaxes[:, c], geom, cols, top,
                        folder, stem)
        if maps and rows:
            _add_maps(run_dir, classifier, objective, [photo(cached.paths.index(os.path.join(cached.folder, r["photo"])))
                                                       for r in rows], rows, folder, maps, stem)
        record = {"unit": objective.describe(), "photos": len(cached.paths), "data": cached.folder, "fit": cached.fit,
                  "maps": maps,
                  "receptive_field": None if geom is None else {"jump": list(geom.jump), "size": list(geom.size),
                                                                "start": list(geom.start), "whole": geom.whole},
                  "examples": rows}
        if unit[0] == "class":
            record["unit"] = {**record["unit"], **imagenet.class_info(c, classifier.class_names)}
        write_atomic(os.path.join(run_dir, "examples", stem + ".json"), json_bytes(record))
        _attach(run_dir, stem, rows)
        written.append(stem)
    if errors:
        write_atomic(os.path.join(run_dir, "examples", "unreadable.json"), json_bytes(errors))
    return {"units": len(written), "photos": len(cached.paths), "readable": len(cached.paths) - len(unreadable),
            "read": read, "unreadable": len(errors),
            "unreadable_first": next(iter(errors.items()), None),
            "unreadable_errors": unreadable_lines(errors),
            "seconds": round(seconds, 2), "photos_per_second": round(read / seconds, 2) if read else None,
            "stems": written}


def _unit(classifier, unit, values_of):
    """(c, objective, (maxes, argmaxes, errors) of its layer, geometry or None, the layer's columns)."""
    if unit[0] == "channel":
        _, layer, c = unit
        shape = classifier.layer_output(layer).shape
        return c, ChannelObjective(layer, c), values_of[layer], geometry(classifier, layer), \
            int(shape[2]) if len(shape) == 4 else 1
    _, c = unit
    return c, ClassObjective([(c, 1.0)], "logit", 0.0, names=classifier.class_names), values_of["logits"], None, 1


def _patches(cached, photo, maxes, argmaxes, geom, cols, top, folder, stem):
    """The ``top`` photos of one unit (its ``maxes`` (photos,) and flat ``argmaxes``): each photo's patch
    (the receptive field of its strongest position; the whole photo without a geometry) written as
    ``folder/NN.png``; their rows for the unit's record."""
    height, width = cached.classifier.input_shape[:2]
    rows = []
    for rank, i in enumerate(top_photos(maxes, top), start=1):
        image = photo(i)
        entry = {"rank": rank, "photo": os.path.relpath(cached.paths[i], cached.folder),
                 "activation": float(maxes[i])}
        if geom is not None and argmaxes is not None:
            y, x = divmod(int(argmaxes[i]), cols)
            top_, left, bottom, right = geom.box(y, x, height, width)
            entry.update(position=[y, x], box=[top_, left, bottom, right])
            crop = image[top_:bottom, left:right]
        else:
            crop = image
        name = f"{rank:02d}.png"
        write_atomic(os.path.join(folder, name), png_bytes(_enlarge(crop)))
        entry["file"] = os.path.join("examples", stem, name)
        rows.append(entry)
    return rows


def _add_maps(run_dir, classifier, objective, photos, rows, folder, method, stem):
    """The attribution map of ``objective`` on each example photo (as D saw it), as an overlay PNG."""
    values = explain(classifier, np.stack(photos), objective, method)
    for row, image, value in zip(rows, photos, values):
        heat, _ = heat_rgb(value, method)
        name = f"{row['rank']:02d}_map.png"
        write_atomic(os.path.join(folder, name), png_bytes(overlay(image, heat)[0]))
        row["map"] = os.path.join("examples", stem, name)


def _enlarge(crop, minimum=96):
    """Small patches enlarged (nearest) so they show in a sheet; grayscale as RGB."""
    from PIL import Image

    crop = np.asarray(crop, dtype="uint8")
    side = max(crop.shape[:2])
    if side >= minimum:
        return crop
    factor = int(np.ceil(minimum / max(side, 1)))
    img = Image.fromarray(crop).resize((crop.shape[1] * factor, crop.shape[0] * factor), Image.Resampling.NEAREST)
    return np.asarray(img, dtype="uint8")


def _attach(run_dir, stem, rows):
    """Adds the examples to the unit's generated image sidecar, if there is one."""
    path = os.path.join(run_dir, stem + ".json")
    try:
        with open(path, encoding="utf-8") as fh:
            side = json.load(fh)
    except (OSError, ValueError):
        return
    if not isinstance(side, dict):
        return
    side["examples"] = [{k: r[k] for k in ("file", "photo", "activation", "map") if k in r} for r in rows]
    write_atomic(path, json_bytes(side))
