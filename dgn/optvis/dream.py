"""``dgn dream``: DeepDream (Mordvintsev et al. 2015, after the Keras example) on the core loop.

The image is a pixel parameterization (:class:`dgn.optvis.param.pixels.PixelImage`) started from a
photo; the objective is the weighted L2 norm of one or more layers' activations
(:class:`LayerNormObjective`); the optimizer takes normalized gradient steps
(:class:`NormalizedGradient`: x += lr * g / mean|g|). Octaves are successive
:func:`dgn.optvis.optimize.optimize` calls at growing sizes; between them the detail the dream added is
upscaled onto the photo at the next size, so the photo's own fine detail is re-injected (Google's
original formulation). D runs size-agnostic (EfficientNet-Lite rebuilt with input (None, None, 3),
other classifiers re-wired from a new input), so photos keep their size and aspect ratio.

Photos larger than ``dream.max_size`` are dreamt at that long side and the dream's detail is
upscaled onto the full-resolution photo: the output always has the input's size.
An optional zoom loop writes frames (zoom in a little, dream again) and an animated GIF.
"""

import io
import os
import time
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops
from PIL import Image

from dgn import build, preprocessing
from dgn.build import parse_layers  # noqa: F401 - dgn.optvis.dream.parse_layers, as before
from dgn.classifiers.analysis import trace_any_size
from dgn.classifiers.efficientnet_lite import VARIANT_PARAMS, build_efficientnet_lite
from dgn.classify import fit_mode
from dgn.errors import DgnError
from dgn.images import ImageLoadError, fit_to_input, load_image
from dgn.optvis.layers import InputSpace
from dgn.optvis.engine import Engine
from dgn.optvis.objectives import Objective
from dgn.optvis.param.base import Built, Parameterization
from dgn.optvis.param.pixels import PixelImage, pixel_values, resize_images
from dgn.optvis.transforms import NONE as NO_TRANSFORMS
from dgn.runs.folder import RunFolder
from dgn.runs.outputs import slug, write_atomic, write_png
from dgn.runs.records import RunInfo, evaluate, sidecar_fields


class LayerNormObjective(Objective):
    """DeepDream's objective: maximize ``sum_l w_l * sum(a_l^2) / size(a_l)``, each layer's activation
    without a ``border`` of positions (the Keras example's guard against edge artifacts)."""

    def __init__(self, layers, border=2):
        self.weights = [(str(name), float(w)) for name, w in layers]
        self.border = int(border)
        self.layers = tuple(sorted({name for name, _ in self.weights}))

    def _norm(self, act):
        shape = act.shape
        count = float(np.prod([int(s) for s in shape[1:]])) if all(s is not None for s in shape[1:]) else None
        if count is None:
            count = ops.cast(ops.prod(ops.shape(act)[1:]), act.dtype)
        b = self.border
        if len(shape) == 4 and b and shape[1] is not None and shape[1] > 2 * b and shape[2] > 2 * b:
            act = act[:, b:-b, b:-b, :]
        axes = list(range(1, len(shape)))
        return ops.sum(ops.square(act), axis=axes) / count

    def value(self, outputs):
        return sum(w * self._norm(outputs[name]) for name, w in self.weights)

    def loss(self, outputs):
        return -self.value(outputs)

    def describe(self):
        return {"kind": "dream", "layers": [{"layer": n, "weight": w} for n, w in self.weights],
                "border": self.border}


@keras.saving.register_keras_serializable(package="dgn")
class NormalizedGradient(keras.optimizers.Optimizer):
    """Gradient descent on the loss with the gradient divided by its mean absolute value:
    ``x <- x - lr * g / max(mean|g|, 1e-6)`` (the Keras DeepDream example's step)."""

    def __init__(self, learning_rate=0.01, name="normalized_gradient", **kwargs):
        super().__init__(learning_rate=float(learning_rate), name=name, **kwargs)

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        scale = ops.maximum(ops.mean(ops.abs(gradient)), 1e-6)
        self.assign_sub(variable, gradient * (lr / scale))


def dream_features(classifier, layer_names):
    """A model from an image of any size (None, None, 3) to {layer: activation} with D's weights."""
    for name in layer_names:
        classifier.layer_output(name)  # a clear error for unknown layers
    model = None
    if classifier.name.startswith("efficientnet_lite"):
        variant = classifier.name.split("_", 1)[1]
        if variant in VARIANT_PARAMS:
            try:
                model = build_efficientnet_lite(variant, input_shape=(None, None, 3),
                                                num_classes=classifier.num_classes)
                for layer in model.layers:
                    if layer.weights:
                        layer.set_weights(classifier.model.get_layer(layer.name).get_weights())
            except (ValueError, KeyError):
                model = None
    if model is None:
        feats = trace_any_size(classifier.model, layer_names, classifier.channels)
    else:
        feats = keras.Model(model.input, {n: model.get_layer(n).output for n in layer_names},
                            name=f"{classifier.name}_dream")
    feats.trainable = False
    return feats


def _octave_sizes(height, width, octaves, scale, smallest=8):
    sizes = []
    for k in range(octaves - 1, -1, -1):
        h, w = int(round(height / scale ** k)), int(round(width / scale ** k))
        if k and min(h, w) < min(smallest, height, width):
            continue  # too small to carry anything: fewer octaves for tiny photos
        sizes.append((max(1, h), max(1, w)))
    return sizes


@dataclass
class Dreamer:
    """How a photo is dreamt: the classifier D (its input space: the pixels live in its parameter space,
    :func:`dgn.preprocessing.parameter_space`), the octaves' size ratio ``octave_scale``, the normalized
    gradient's step ``learning_rate``, the longest side dreamt at (``max_size``, None: full size), the
    random ``seed`` and the ``transforms`` between the image and D (:class:`dgn.optvis.transforms.Transforms`)."""

    classifier: object
    octave_scale: float = 1.4
    learning_rate: float = 0.01
    max_size: int = 512
    seed: int = 0
    transforms: object = NO_TRANSFORMS

    @property
    def space(self):
        return self.classifier.preprocessing


@dataclass
class PhotoPixels(Parameterization):
    """One octave of a dream: the pixels themselves, started at ``init`` (1, h, w, C) in the parameter space
    of D's input space (the photo at that size plus the detail dreamt so far), at their own size (D runs
    size-agnostic). Not registered: ``dgn dream`` builds it per octave."""

    kind = "dream"
    init: np.ndarray = None

    def build(self, classifier, rows=1, seed=0):
        space = classifier.preprocessing
        _, height, width, channels = self.init.shape
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((1,), name="f0")
        image = PixelImage(1, height, width, init=self.init, channels=channels, name="pixels")(inputs)
        if InputSpace.needed(space):
            image = InputSpace(space, name="input_space")(image)
        return Built(keras.Model(inputs, image, name="dream"), np.ones((1, 1), "float32"))


def dream_array(base, dreamer, objective, features, octaves, steps, progress=True, label="dream"):
    """Dreams one image ``base`` (H, W, C) in the parameter space of D's input space at its own size
    (``dreamer``: a :class:`Dreamer`): every octave one run of :class:`dgn.optvis.engine.Engine` with
    :class:`PhotoPixels`, :class:`NormalizedGradient` and D's size-agnostic ``features``; returns (image in
    that space, values per step, losses per step, seconds)."""
    height, width, channels = base.shape
    sizes = _octave_sizes(height, width, octaves, dreamer.octave_scale)
    detail = np.zeros((1,) + sizes[0] + (channels,), dtype="float32")
    values, losses, seconds, src = [], [], 0.0, None
    for k, size in enumerate(sizes):
        octave_base = resize_images(base[None], size)
        detail = resize_images(detail, size)
        src = octave_base + detail
        engine = Engine(dreamer.classifier, PhotoPixels(init=src), dreamer.transforms,
                        lambda: NormalizedGradient(dreamer.learning_rate), steps, seed=dreamer.seed, features=features)
        batch = engine.run(objective, progress=progress,
                           label=f"{label}, octave {k + 1}/{len(sizes)} at {size[0]}x{size[1]}")
        values += [v[0] for v in batch.result.values]
        losses += batch.result.losses
        seconds += batch.result.seconds
        src = pixel_values(batch.model)   # the pixels in the parameter space (the render is in D's space)
        detail = src - octave_base
    return src[0], values, losses, seconds


def dream_photo(photo_d, dreamer, objective, features, octaves, steps, progress=True, label="dream"):
    """Dreams a photo in D's space at most ``dreamer.max_size`` on its long side; a smaller working
    copy's detail is upscaled onto the full photo. Returns (image at the photo's size, info)."""
    height, width = photo_d.shape[:2]
    limit = dreamer.max_size
    work = photo_d
    if limit and max(height, width) > limit:
        f = limit / max(height, width)
        work = resize_images(photo_d[None], (max(1, round(height * f)), max(1, round(width * f))))[0]
    dreamt, values, losses, seconds = dream_array(work, dreamer, objective, features, octaves, steps, progress, label)
    if work.shape != photo_d.shape:
        out = photo_d + resize_images((dreamt - work)[None], (height, width))[0]
    else:
        out = dreamt
    space = dreamer.space
    norm = lambda x: float(np.asarray(objective.value(features(  # noqa: E731
        preprocessing.to_input_space(x[None], space), training=False)))[0])
    info = {"values": values, "losses": losses, "seconds": seconds,
            "work_size": [int(work.shape[0]), int(work.shape[1])],
            "layer_norm": {"photo": norm(work), "dream": norm(dreamt)}}
    return out, info


def zoom_in(image, factor):
    """Crops the central 1/factor of an image (H, W, 3) and resizes it back to (H, W)."""
    height, width = image.shape[:2]
    h, w = max(1, int(round(height / factor))), max(1, int(round(width / factor)))
    top, left = (height - h) // 2, (width - w) // 2
    return resize_images(image[None, top:top + h, left:left + w], (height, width))[0]


def _read_photo(path):
    try:
        return load_image(path)
    except ImageLoadError as exc:
        raise DgnError(str(exc)) from None


def _evaluate(classifier, objective, image):
    """What D says of an image of any size in its parameter space: brought to D's input size as
    ``dgn classify`` does (:func:`dgn.classify.fit_mode`)."""
    pixels = preprocessing.to_uint8(image, preprocessing.parameter_space(classifier.preprocessing))
    rgb = pixels if pixels.shape[-1] == 3 else np.repeat(pixels, 3, axis=-1)
    rgb = fit_to_input(rgb, classifier.input_shape[:2], fit_mode(classifier))
    return evaluate(classifier, objective, classifier.from_pixels(rgb[None]))[0]


def run_dream(cfg, image_path, layers=None, octaves=None, steps=None, zoom_frames=None, gif=None, out_dir=None,
              progress=True):
    """Dreams a photo; writes ``<stem>_dream.png`` and ``.json`` (the fields of ``dgn generate``), and
    with zoom frames ``<stem>_frames/frame_NNNN.png`` (+ ``<stem>_zoom.gif``). Returns (png, sidecar)."""
    settings = build.dream(cfg.data, layers, octaves, steps, zoom_frames, gif)
    folder = RunFolder(out_dir or build.default_out_dir(cfg.data), cfg.data)   # an --out that is a file fails at once
    photo = _read_photo(image_path)  # before loading D: a bad photo fails at once
    classifier = build.float32_classifier(cfg.data)
    objective = LayerNormObjective(settings.layers, settings.border)
    features = dream_features(classifier, objective.layers)
    space = classifier.preprocessing
    param = preprocessing.parameter_space(space)  # the dream's steps are the same whatever D's range
    dreamer = Dreamer(classifier, settings.octave_scale, settings.learning_rate, settings.max_size, settings.seed,
                      settings.transforms)
    out_dir = folder.path
    stem = slug(os.path.splitext(os.path.basename(image_path))[0], unique=True) + "_dream"
    started = time.time()
    pixels = preprocessing.to_channels(photo, classifier.channels)  # a grayscale model dreams a grayscale photo
    photo_d = preprocessing.from_rgb(pixels, param)
    try:
        image, info = dream_photo(photo_d, dreamer, objective, features, settings.octaves, settings.steps,
                                  progress, label=stem)
    except (ValueError, RuntimeError) as exc:   # D's layers cannot run at this size (e.g. pooled away)
        if "Negative dimension" not in str(exc) and "negative" not in str(exc).lower():
            raise
        raise DgnError(f"{image_path} ({photo.shape[1]}x{photo.shape[0]}) is too small for layers "
                       f"{', '.join(objective.layers)} at {settings.octaves} octave(s); use a larger photo, "
                       f"fewer --octaves or earlier layers") from None
    rgb = preprocessing.to_uint8(image, param)
    saved = preprocessing.from_rgb(rgb.astype("float32"), param)
    on_png, on_raw = _evaluate(classifier, objective, saved), _evaluate(classifier, objective, image)
    on_photo = _evaluate(classifier, objective, photo_d)
    total_steps = len(info["values"])
    png_path = os.path.join(out_dir, stem + ".png")
    octaves_run = len(_octave_sizes(*info["work_size"], settings.octaves, settings.octave_scale))
    final_image = (f"DeepDream of {os.path.basename(image_path)}: {octaves_run} octave(s) x {settings.steps} steps at "
                   f"up to {info['work_size'][0]}x{info['work_size'][1]}"
                   + (", detail upscaled onto the full photo" if info["work_size"] != list(photo.shape[:2]) else "")
                   + "; the PNG is D's input space undone, clipped; D's numbers are of its evaluation crop")
    run = RunInfo(steps=total_steps, seed=settings.seed, kind="dream", config=settings.config, config_file=cfg.path)
    sidecar = sidecar_fields(run, objective, "dream:" + ",".join(settings.config["dream"]["layers"]), on_png, on_raw,
                             steps=total_steps, trainable=int(np.prod(info["work_size"])) * 3,
                             losses=info["losses"], activations=info["values"],
                             final_image=final_image, seconds=None,
                             seconds_per_step=info["seconds"] / max(1, total_steps))
    sidecar.update({
        "image": os.path.basename(png_path),
        "source_image": os.path.abspath(image_path),
        "size": [int(photo.shape[0]), int(photo.shape[1])],
        "dream_size": info["work_size"],
        "layer_norm": info["layer_norm"],
        "photo_under_d": {k: on_photo[k] for k in ("activation", "top5")},
    })
    if settings.zoom_frames:
        sidecar["frames"] = zoom_loop(rgb, image, dreamer, objective, features, settings, folder.path, stem, progress)
    sidecar["wall_seconds"] = round(time.time() - started, 3)
    return folder.write_image(stem, rgb, sidecar), sidecar


def zoom_loop(rgb, image, dreamer, objective, features, settings, out_dir, stem, progress=True):
    """The zoom loop after a dream (``rgb``: its PNG pixels, ``image``: it in the parameter space of D's
    input space): ``settings.zoom_frames`` times, zoom in by ``settings.zoom`` and dream again; writes
    ``<stem>_frames/frame_NNNN.png`` and, with ``settings.gif``, ``<stem>_zoom.gif``; returns the
    sidecar's ``frames`` entry."""
    param = preprocessing.parameter_space(dreamer.space)
    base = stem.replace("_dream", "")
    frames_dir = os.path.join(out_dir, base + "_frames")
    frames, frame = [rgb], image
    write_png(os.path.join(frames_dir, "frame_0000.png"), rgb)
    for n in range(1, settings.zoom_frames + 1):
        zoomed = zoom_in(np.clip(frame, *_range(param, dreamer.classifier.channels)), settings.zoom)
        frame, _ = dream_photo(zoomed, dreamer, objective, features, settings.zoom_octaves, settings.zoom_steps,
                               progress, label=f"{stem} frame {n}/{settings.zoom_frames}")
        frames.append(preprocessing.to_uint8(frame, param))
        write_png(os.path.join(frames_dir, f"frame_{n:04d}.png"), frames[-1])
    entry = {"folder": os.path.basename(frames_dir), "count": len(frames), "zoom": settings.zoom}
    if settings.gif:
        gif_path = os.path.join(out_dir, base + "_zoom.gif")
        write_gif(gif_path, frames, settings.frame_ms)
        entry["gif"] = os.path.basename(gif_path)
    return entry


def _range(space, channels=3):
    low, high = preprocessing.valid_range(space, channels)
    return np.asarray(low, dtype="float32"), np.asarray(high, dtype="float32")


def write_gif(path, frames, frame_ms=100):
    """An animated, looping GIF of uint8 RGB frames, written atomically."""
    images = [Image.fromarray(np.asarray(f, dtype="uint8").squeeze(-1) if np.shape(f)[-1] == 1
                              else np.asarray(f, dtype="uint8")) for f in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=int(frame_ms), loop=0)
    write_atomic(path, buffer.getvalue())

