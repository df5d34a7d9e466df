"""Progressive growing of the paper's decoder (Karras et al. 2018, "Progressive Growing of GANs"),
the CPU recipe for the pretrained generator's decoder (issue 33).

The decoder that ships is the paper's G with head 8b, layer for layer (:func:`dgn.optvis.generator.build_decoder`):
only the way it is trained changes. Its blocks already grow the image 5 -> 9 -> 16 -> 30 -> 58 -> 113
-> 224 px, so it trains stage by stage:

- stage ``s`` runs the first blocks up to side ``s`` (30, 58, 113) and a temporary 1x1 convolution to RGB
  (``to_rgb_<s>``), trained to reconstruct the photo shrunk to ``s`` x ``s`` (MSE in D's input space);
- the next stage adds one block (the last one: head 8b at 224) and fades it in over ``fade`` updates,
  ``(1 - t) * up(rgb_old) + t * rgb_new`` (:class:`FadeIn`), with ``t`` going linearly from 0 to 1;
- the last stage is the whole decoder at 224 (its own last conv and norm, no temporary layer).

With ``window`` a stage trains its new block on random windows of the previous stage's features (the
patch training of super-resolution networks), which makes the 224 px stage 1.6x cheaper.

The encoder is only the means of training the decoder, and it need not read the 224 px photo: the
thumbnail encoder (:func:`dgn.autoencoder.encoders.build_thumbnail_encoder`) reads a 60 px copy and starts as its
box thumbnail laid onto the code's 5 x 5 grid; it costs nothing beside the decoder. Measurements:
docs/autoencoder.md, "The progressive recipe".
"""


import json
import math
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass

import h5py
import keras
import numpy as np
from keras import ops

from dgn.autoencoder.encoders import THUMBNAIL, build_thumbnail_encoder, thumbnail_encoder_input
from dgn.autoencoder.files import folder_names, save_parts
from dgn.autoencoder.norms import kept_norm_statistics, norm_batches, precise_norm_statistics
from dgn.autoencoder.schedule import learning_rate_schedule
from dgn.autoencoder.stages import build_paper_decoder, build_stage, shrunk_mse, stage_sides
from dgn.data import ImageDataset, list_and_split, load_images
from dgn.errors import DgnError
from dgn.images import eval_short_side
from dgn.optvis.generator import PAPER_BLOCKS
from dgn.precision import dtype_policy
from dgn.runs.outputs import write_json


# ---------------------------------------------------------------------------------------------------
# Training


@dataclass
class Stage:
    """One stage: the decoder up to ``side`` px trained for ``updates`` batches of ``batch_size``, the
    new block faded in over the first ``fade`` of them (none for the first stage), Adam at
    ``learning_rate`` warmed up over ``warmup`` updates and, with ``decay``, down to 0 along half a
    cosine over the stage (the last stage's); ``window`` > 0: the new block trains on random windows of
    that many of the previous stage's features (:func:`build_stage`), validation on the whole image."""

    side: int
    updates: int
    batch_size: int = 16
    fade: int = 0
    learning_rate: float = 1e-3
    warmup: int = 0
    decay: bool = False
    window: int = 0


@dataclass
class ProgressiveRecipe:
    """The whole recipe: ``stages`` in order (:class:`Stage`, the last one the decoder's own side),
    a checkpoint every ``checkpoint_updates`` updates, the encoder's ``cell`` (thumbnail pixels per code
    cell side; None: the most whose 3 * cell**2 numbers fit a code cell's channels, 6 for the paper's 128),
    ``encoder_mix`` ("global": the encoder may move what it codes anywhere in the code; "local": each code
    cell codes its own part of the photo, :func:`dgn.autoencoder.encoders.build_thumbnail_encoder`),
    the input noise (D's input space), the compute ``precision``, the ``seed`` of weights,
    noise and photo order, ``validation_photos`` held-out photos for each checkpoint's loss, and
    ``norm_photos`` training photos whose batch statistics the saved norms carry (PreciseBN)."""

    stages: list
    checkpoint_updates: int = 250
    cell: int = None
    encoder_mix: str = "global"
    noise_stddev: float = 0.1
    precision: str = "mixed_bfloat16"
    seed: int = 0
    validation_photos: int = 256
    norm_photos: int = 512

    def __post_init__(self):
        self.stages = [s if isinstance(s, Stage) else Stage(**s) for s in self.stages]


class StageBatches(ImageDataset):
    """Batch ``g`` (``batches[g]``, g = 0, 1, ... over all passes) of (the encoder's small copy of the photo
    with the input noise, the photo shrunk to the stage's side), both in D's input space, from the random
    crops (and flips) of :class:`dgn.data.ImageDataset` with its ``epoch`` left at 0: a function of the
    seed and g alone."""

    def __init__(self, images, crop, space, small, side, noise_stddev=0.0, window=None, **kwargs):
        super().__init__(images, crop, space, **kwargs)
        self.small, self.side, self.noise_stddev = int(small), int(side), float(noise_stddev)
        self.window = window    # (window, previous side, image side of a window) of a window stage

    def __len__(self):
        return self.batches_per_pass

    def __getitem__(self, g):
        x, _ = super().__getitem__(g)
        small = shrink(x, self.small)
        if self.noise_stddev:   # the denoising autoencoder's input noise, drawn from the batch's own seed
            rng = np.random.default_rng([self.seed, g, 1])
            small = small + rng.normal(0.0, self.noise_stddev, small.shape).astype("float32")
        target = shrink(x, self.side)
        if not self.window:
            return small, target
        window, previous, out = self.window   # one window a batch, at a random place (build_stage)
        row, col = np.random.default_rng([self.seed, g, 2]).integers(0, previous - window + 1, 2)
        offsets = np.tile(np.array([[row, col]], "int32"), (len(small), 1))
        return (small, offsets), target[:, 2 * row:2 * row + out, 2 * col:2 * col + out]


def shrink(x, side):
    """(n, H, W, 3) float32 images to side x side, antialiased bilinear (the encoder's own resize)."""
    if x.shape[1] == side:
        return x
    return np.asarray(ops.image.resize(x, (side, side), interpolation="bilinear", antialias=True), "float32")


class Progress:
    """One line per checkpoint: stage, updates, losses and the stage's validation PSNR, the whole
    recipe's share done and its estimated time left: what remains in :func:`stage_cost` units times this
    run's seconds per unit so far (so the stages' relative costs come from the measured table and the
    machine's speed from the run)."""

    def __init__(self, recipe, out=print):
        self.recipe, self.out = recipe, out
        self.costs = [stage_cost(s) for s in recipe.stages]
        self.total = sum(c * s.updates for c, s in zip(self.costs, recipe.stages))
        self.start, self.spent = time.monotonic(), 0.0

    def done(self, index, updates):
        """Cost units of the recipe done at stage ``index`` after ``updates`` of its updates."""
        stages = self.recipe.stages
        return sum(c * s.updates for c, s in zip(self.costs[:index], stages[:index])) + self.costs[index] * updates

    def ran(self, index, updates):
        """Count ``updates`` updates of stage ``index`` made by this run."""
        self.spent += self.costs[index] * updates

    def report(self, index, updates, loss, val_loss):
        stages = self.recipe.stages
        finished = self.done(index, updates)
        rate = (time.monotonic() - self.start) / max(self.spent, 1e-9)
        psnr = f", validation {10 * math.log10(4.0 / val_loss):.2f} dB at {stages[index].side} px" if val_loss else ""
        self.out(f"stage {index + 1}/{len(stages)} ({stages[index].side} px): {updates}/{stages[index].updates} "
                 f"updates, loss {loss:.5f}{psnr}; recipe {100 * finished / self.total:.1f} % done, about "
                 f"{_duration((self.total - finished) * rate)} left", flush=True)


def _duration(seconds):
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


# milliseconds a photo of one update in mixed_bfloat16 on one core of the development machine
# (docs/autoencoder.md, "Speed per stage"), for the time left; other sides scale with their area
PHOTO_MS = {30: 33.0, 58: 50.0, 113: 245.0, 224: 354.0}


WINDOW_224_MS = 224.0


def stage_cost(stage):
    """Estimated seconds of one update of ``stage`` (:class:`Stage`), for the time left: its batch times the
    measured cost of a photo at its side (a window's at 224), relative figures being what matters."""
    ms = PHOTO_MS.get(stage.side, PHOTO_MS[30] * (stage.side / 30) ** 2)
    if stage.window and stage.side == 224:
        ms = WINDOW_224_MS
    return stage.batch_size * ms / 1000.0


def _schedule(stage):
    """The stage's learning rate: warm-up, then constant or (``decay``) half a cosine to 0 at its end. A
    resumed stage continues it: the optimizer's update count is in the checkpoint."""
    warm = max(int(stage.warmup), 0)
    return learning_rate_schedule(stage.learning_rate, warm, max(stage.updates - warm, 1) if stage.decay else 0)


CHECKPOINT = "checkpoint.weights.h5"


STATE = "checkpoint.json"


class Trainer:
    """Trains (or resumes) the paper's decoder stage by stage (:class:`ProgressiveRecipe`) with the
    thumbnail encoder (:mod:`dgn.autoencoder.encoders`), on photos in D's input ``space`` at ``size`` px, in
    ``out_dir``: ``checkpoint.weights.h5`` (the current stage's model and optimizer) and
    ``checkpoint.json`` (stage and updates done) after every ``checkpoint_updates``, written to temporary
    files and renamed, the json last; after each checkpoint of the last stage, the decoder folder that
    ``dgn eval-dae`` and ``generator.decoder_weights`` read (decoder.weights.h5, encoder.weights.h5,
    decoder.json), its norms on statistics averaged over ``norm_photos`` photos. A kill at any moment
    loses at most the updates since the last checkpoint.

    The lengths, batch sizes and rates of stages not yet finished may change between runs (the plan
    follows the measured curve: every run's recipe is in decoder.json's history); what the weights
    are (the stages' sides, the code, the encoder, the seed, the photos' space) may not.

    Raises:
        DgnError: a bad recipe, no photos, or a folder holding another run."""

    def __init__(self, recipe, seed_shape, blocks, space, size, out_dir, out=print):
        self.recipe, self.seed_shape, self.blocks = recipe, list(seed_shape), [list(b) for b in blocks]
        self.space, self.size, self.out_dir, self.out = space, int(size), out_dir, out
        if recipe.cell is None:
            recipe.cell = max(1, math.isqrt(int(self.seed_shape[2]) // 3))
        with dtype_policy(recipe.precision):
            keras.utils.set_random_seed(recipe.seed)
            try:
                self.encoder = build_thumbnail_encoder(self.size, self.seed_shape, recipe.cell, recipe.encoder_mix)
            except ValueError as exc:
                raise DgnError(f"{exc} (generator.seed_shape)") from None
            self.decoder = build_paper_decoder(self.seed_shape, self.blocks)
        sides = stage_sides(self.decoder)
        wanted = [s.side for s in recipe.stages]
        if wanted != sides[len(sides) - len(wanted):] or not wanted:
            raise DgnError(f"progressive stages {wanted}: give the decoder's stage sides in order, ending at its "
                           f"image ({', '.join(map(str, sides))})")
        for i, s in enumerate(recipe.stages):
            if s.updates < 1 or s.updates % recipe.checkpoint_updates:
                raise DgnError(f"stage {s.side}: updates {s.updates} must be a positive multiple of "
                               f"checkpoint_updates {recipe.checkpoint_updates} (dae.steps_per_epoch)")
            if s.batch_size < 1:
                raise DgnError(f"stage {s.side}: batch_size {s.batch_size} must be at least 1")
            if i == 0 and (s.fade or s.window):
                raise DgnError(f"stage {s.side}: the first stage has no block to fade in or window; remove its "
                               f"{'fade' if s.fade else 'window'}")
            if s.fade > s.updates:
                raise DgnError(f"stage {s.side}: fade {s.fade} is longer than its {s.updates} updates; give at "
                               f"most {s.updates}")
            if s.window and not 2 <= s.window <= recipe.stages[i - 1].side:
                raise DgnError(f"stage {s.side}: window {s.window} must be between 2 and the previous stage's side "
                               f"{recipe.stages[i - 1].side} (0: the whole image)")
        self.small = thumbnail_encoder_input(self.seed_shape, recipe.cell)
        self.to_rgb = {}

    def identity(self):
        r = self.recipe
        return {"space": self.space, "size": self.size, "seed_shape": self.seed_shape, "blocks": self.blocks,
                "encoder": self.encoder_record(), "noise_stddev": r.noise_stddev, "seed": r.seed,
                "sides": [s.side for s in r.stages]}

    def encoder_record(self):
        """What decoder.json records of the encoder (:func:`dgn.weights.recorded_encoder` reads it)."""
        record = {"kind": THUMBNAIL, "cell": self.recipe.cell}
        if self.recipe.encoder_mix != "local":
            record["mix"] = self.recipe.encoder_mix
        return record

    def _state(self):
        """checkpoint.json, or None where there is none or the weights it names are missing."""
        path = os.path.join(self.out_dir, STATE)
        if not os.path.isfile(path):
            return None
        with open(path, encoding="utf-8") as fh:
            state = json.load(fh)
        return state if os.path.isfile(self._weights_path(state)) else None

    def _weights_path(self, state):
        return os.path.join(self.out_dir, state.get("weights", CHECKPOINT))   # runs before 2026-12-07: one name

    def _stage_model(self, index):
        """(the compiled model that trains stage ``index``, the fade layer or None, the compiled model of
        the whole image that validates it: the same one unless the stage trains on windows); builds the
        stages before it first, whose temporary RGB layers it shares."""
        stages = self.recipe.stages
        stage = stages[index]
        with dtype_policy(self.recipe.precision):
            keras.utils.set_random_seed(self.recipe.seed + 1 + index)
            core = _encoder_core(self.encoder, self.small)
            for j in range(index + 1):   # the RGB layers of the stages before, in order
                model, fade = build_stage(core, self.decoder, stages[j].side,
                                          stages[j - 1].side if j else None, self.to_rgb)
            whole = model
            if stage.window:   # the same layers, the same fade
                model, _ = build_stage(core, self.decoder, stage.side, stages[index - 1].side, self.to_rgb,
                                       stage.window, fade)
        model.compile(optimizer=keras.optimizers.Adam(_schedule(stage)),
                      loss=shrunk_mse(model.output.shape[1], self._margin(index)))
        if whole is not model:
            whole.compile(loss=shrunk_mse(stage.side))
        return model, fade, whole

    def _margin(self, index):
        """Border (px) of a window stage's image that differs from the whole image's: what the new block's
        'same' convolutions after its first read of the zero padding."""
        if not self.recipe.stages[index].window:
            return 0
        previous, side = self.recipe.stages[index - 1].side, self.recipe.stages[index].side
        block = [layer for layer in self.decoder.layers if isinstance(layer, keras.layers.Conv2D)
                 and previous < layer.output.shape[1] <= side]
        return sum((layer.kernel_size[0] - 1 + 1) // 2 for layer in block[1:])

    def run(self, train_images, val_images, data_names, time_limit=None, photos=None):
        """Trains from where ``out_dir`` stands, until the recipe ends or ``time_limit`` minutes have passed
        (stopping after a checkpoint). ``photos``: what chose the photos (folders, wnids, validation share),
        part of the run's identity. Returns True when the recipe is finished.

        Raises:
            DgnError: ``out_dir`` holds a run of another identity (keys a run began without are not compared)."""
        r = self.recipe
        os.makedirs(self.out_dir, exist_ok=True)
        ident_path = os.path.join(self.out_dir, "training.json")
        identity = {**self.identity(), **({"photos": photos} if photos is not None else {})}
        state = self._state()
        if state is not None and os.path.isfile(ident_path):
            with open(ident_path, encoding="utf-8") as fh:
                held = json.load(fh)["identity"]
            differ = sorted(k for k in identity if k in held and identity[k] != held[k])
            if differ:
                raise DgnError(f"{self.out_dir} holds a progressive run of other {', '.join(differ)}; use another "
                               f"folder or delete that one")
            identity = {k: v for k, v in identity.items() if k in held}   # as it began
        write_json(ident_path, {"identity": identity, "recipe": asdict(r)})
        index, done, wall = (state["stage"], state["updates"], state["wall_seconds"]) if state else (0, 0, 0.0)
        history = state.get("history", []) if state else []
        if state is not None and index == len(r.stages) - 1 and done >= r.stages[index].updates:
            self.out(f"the recipe is already finished in {self.out_dir}", flush=True)
            return True
        if state is not None:
            self.out(f"resuming stage {index + 1} ({r.stages[index].side} px) after {done} updates", flush=True)
            if done >= r.stages[index].updates:   # a finished stage: its weights start the next one
                model, _, _ = self._stage_model(index)
                self._load_checkpoint(model)
                index, done = index + 1, 0
        started, progress = time.monotonic(), Progress(r, self.out)
        while index < len(r.stages):
            if not self._train_stage(index, done, wall, started, history, progress, train_images, val_images,
                                     data_names, time_limit):
                return False     # stopped by the time limit, after a checkpoint
            index, done, history = index + 1, 0, self._state()["history"]
        return True

    def _train_stage(self, index, done, wall_before, started, history, progress, train_images, val_images,
                     data_names, time_limit):
        """Stage ``index`` from update ``done`` to its end (True) or to the first checkpoint after
        ``time_limit`` minutes from ``started`` (False). Batch g of a stage is drawn from the recipe's seed,
        the stage and g alone (:class:`StageBatches`), so a resumed stage sees what an unbroken one would."""
        r, stage = self.recipe, self.recipe.stages[index]
        model, fade, whole = self._stage_model(index)
        if done:
            self._load_checkpoint(model)
        elif index:
            self.out(f"stage {index + 1} ({stage.side} px): " + (f"the new block fades in over {stage.fade} updates"
                                                                 if stage.fade else "the new block, without fade"),
                     flush=True)
        window = (stage.window, r.stages[index - 1].side, model.output.shape[1]) if stage.window else None
        train = StageBatches(train_images, self.size, self.space, self.small, stage.side, r.noise_stddev,
                             batch_size=stage.batch_size, seed=r.seed + 1000 * (index + 1), window=window)
        val = StageBatches(val_images[:r.validation_photos], self.size, self.space, self.small, stage.side,
                           batch_size=stage.batch_size, augment=False, shuffle=False) if val_images else None
        val_x, val_y = (np.concatenate(p) for p in zip(*(val[i] for i in range(len(val))))) if val else (None, None)
        losses = []
        for g in range(done, stage.updates):
            if fade is not None:
                fade.t.assign(min(1.0, (g + 1) / max(stage.fade, 1)))
            x, y = train[g]
            losses.append(float(model.train_on_batch(x, y, return_dict=True)["loss"]))
            if (g + 1) % r.checkpoint_updates:
                continue
            progress.ran(index, len(losses))
            val_loss = float(whole.evaluate(val_x, val_y, batch_size=stage.batch_size, verbose=0)) if val else None
            loss = float(np.mean(losses))
            losses = []
            wall = round(wall_before + time.monotonic() - started, 1)
            history = history + [{"stage": stage.side, "updates": g + 1, "batch_size": stage.batch_size,
                                  "loss": round(loss, 6), "val_loss": val_loss and round(val_loss, 6),
                                  "wall_seconds": wall}]
            self._checkpoint(model, index, g + 1, wall, history, train_images, data_names)
            progress.report(index, g + 1, loss, val_loss)
            last = index == len(r.stages) - 1 and g + 1 == stage.updates
            if time_limit and time.monotonic() - started >= 60.0 * time_limit and not last:
                self.out(f"time limit of {time_limit:g} min reached; run the same command again to resume",
                         flush=True)
                return False
        return True

    def _load_checkpoint(self, model):
        """The checkpoint into the stage model, with its optimizer's state where the file has it (a packed
        checkpoint, :func:`pack_checkpoint`, has none: Adam starts afresh, and says so)."""
        path = self._weights_path(self._state())
        with h5py.File(path, "r") as fh:
            with_optimizer = "optimizer" in fh
        if with_optimizer:
            model.optimizer.build(model.trainable_variables)
        else:
            self.out("the checkpoint has no optimizer state (a packed one): Adam starts afresh", flush=True)
        with warnings.catch_warnings():   # Keras warns that the file has no optimizer variables: known
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(path)

    def _checkpoint(self, model, index, updates, wall, history, train_images, data_names):
        """The stage model with its optimizer, the decoder folder (last stage only), then checkpoint.json,
        each written to a temporary file and renamed, the json last: what a resumed run trusts."""
        name = f"checkpoint-{index}-{updates}.weights.h5"   # a new file: the one checkpoint.json names stays whole
        tmp = os.path.join(self.out_dir, ".tmp-" + name)
        model.save_weights(tmp)
        os.replace(tmp, os.path.join(self.out_dir, name))
        if index == len(self.recipe.stages) - 1:
            self.save_decoder(train_images, history, data_names, len(train_images), wall)
        previous = self._state()
        write_json(os.path.join(self.out_dir, STATE), {"stage": index, "updates": updates, "wall_seconds": wall,
                                                       "weights": name, "history": history,
                                                       "recipe": asdict(self.recipe)})
        old = (previous or {}).get("weights", CHECKPOINT)
        if old != name and os.path.isfile(os.path.join(self.out_dir, old)):
            os.remove(os.path.join(self.out_dir, old))

    def save_decoder(self, train_images, history, data_names, train_count, wall):
        """The decoder folder in ``out_dir``: decoder.weights.h5 (the paper's decoder), encoder.weights.h5
        (the thumbnail encoder) and decoder.json, the norms on statistics averaged over ``norm_photos``
        training photos (the checkpoint keeps the moving averages)."""
        r = self.recipe
        last = r.stages[-1]
        batches = norm_batches(train_images, self.size, self.space, last.batch_size, r.norm_photos, r.seed)
        used = sum(len(b) for b in batches)
        meta = {"preprocessing": self.space, "input_size": self.size, "norm": "batch", "output_norm": "moving",
                "output_activation": "linear", "seed_shape": self.seed_shape, "blocks": self.blocks,
                "encoder": self.encoder_record(), "encoder_filters": [], "encoder_bottleneck": 0,
                "dense": 0, "noise_stddev": r.noise_stddev, "data": data_names,
                "images": {"train": train_count}, "progressive": history,
                "history": [{"recipe": "progressive", "updates": sum(h["updates"] for h in _last_per_stage(history)),
                             "images_seen": sum(h["updates"] * h["batch_size"] for h in _last_per_stage(history)),
                             "wall_seconds": wall, "precision": r.precision, "norm_photos": used,
                             "machine": run_record_machine()}]}
        with kept_norm_statistics(self.encoder, self.decoder):
            precise_norm_statistics(self.encoder, self.decoder, batches)
            save_parts(self.out_dir, self.encoder, self.decoder, meta)


def _last_per_stage(history):
    last = {}
    for h in history:
        last[h["stage"]] = h
    return list(last.values())


def run_record_machine():
    """The machine a run trained on, as decoder.json's history records it."""
    return f"{platform.machine()}, {os.cpu_count()} cores, {keras.backend.backend()}"


def load_photos(data, size, validation=0.1, wnids=None, warn=print):
    """(training photos, validation photos, folder names): uint8 arrays with the short side resized for
    ``size`` px crops, split as train-dae splits them (:func:`dgn.data.list_and_split`).

    Raises:
        DgnError: no readable photo."""
    _, train, val = list_and_split(data, wnids, validation)
    short = eval_short_side(size)
    train_images, _, _ = load_images(train, short, warn)
    val_images, _, _ = load_images(val, short, warn)
    if not train_images:
        raise DgnError(f"no readable training photo in {data}; give folders of JPEG/PNG photos")
    return train_images, val_images, folder_names(data)


def train_progressive(recipe, data, space, size, out_dir, seed_shape=(5, 5, 128), blocks=None, validation=0.1,
                      wnids=None, time_limit=None, out=print):
    """Trains the paper's decoder for D's input ``space`` and ``size`` by ``recipe``
    (:class:`ProgressiveRecipe`) on the photos of ``data`` (a folder or a list), in ``out_dir``
    (:class:`Trainer`). Returns True when the recipe has ended."""
    trainer = Trainer(recipe, seed_shape, blocks or PAPER_BLOCKS, space, size, out_dir, out)
    train_images, val_images, names = load_photos(data, size, validation, wnids)
    out(f"{len(train_images)} training photos, {len(val_images)} held out", flush=True)
    photos = {"data": names, "wnids": wnids, "validation": validation}
    return trainer.run(train_images, val_images, names, time_limit, photos)


def _encoder_core(encoder, small):
    """The encoder's layers after its resize, on a small x small input: what a stage trains (the photo is
    shrunk in the data pipeline with the same resize, :func:`shrink`)."""
    x = inp = keras.Input((small, small, 3), name="small_photo")
    for layer in encoder.layers[2:]:
        x = layer(x)
    return keras.Model(inp, x, name="encoder_core")


def pack_checkpoint(run_dir, dest):
    """A progressive run's checkpoint for another machine: ``dest`` gets checkpoint.weights.h5 without the
    optimizer's state and with every weight as float16 (about 11 MB for the paper's decoder, against 51 MB),
    checkpoint.json and training.json. A run resumed from it (:func:`unpack_checkpoint`) starts Adam afresh.

    Raises:
        DgnError: ``run_dir`` holds no checkpoint."""
    import shutil

    if not os.path.isfile(os.path.join(run_dir, STATE)):
        raise DgnError(f"{run_dir} holds no progressive checkpoint (checkpoint.json); give a train-dae folder")
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(run_dir, STATE), encoding="utf-8") as fh:
        state = json.load(fh)
    source = os.path.join(run_dir, state.get("weights", CHECKPOINT))
    with h5py.File(source, "r") as fin, \
            h5py.File(os.path.join(dest, ".tmp-" + CHECKPOINT), "w") as fout:
        fout.attrs.update(dict(fin.attrs))

        def copy(name, obj):
            if name.split("/")[0] == "optimizer":
                return
            if isinstance(obj, h5py.Group):
                fout.require_group(name).attrs.update(dict(obj.attrs))
                return
            data = obj[()]
            if isinstance(data, np.ndarray) and np.issubdtype(data.dtype, np.floating):
                data = data.astype("float16")
            fout.create_dataset(name, data=data).attrs.update(dict(obj.attrs))

        fin.visititems(copy)
    os.replace(os.path.join(dest, ".tmp-" + CHECKPOINT), os.path.join(dest, CHECKPOINT))
    shutil.copy(os.path.join(run_dir, "training.json"), os.path.join(dest, "training.json"))
    write_json(os.path.join(dest, STATE), {**state, "weights": CHECKPOINT, "packed": True})
    return dest


def unpack_checkpoint(packed, run_dir):
    """A packed checkpoint (:func:`pack_checkpoint`) as ``run_dir``'s, so that train-dae resumes there.

    Raises:
        DgnError: ``packed`` is not one, or ``run_dir`` already holds a checkpoint."""
    import shutil

    if not all(os.path.isfile(os.path.join(packed, n)) for n in (CHECKPOINT, STATE, "training.json")):
        raise DgnError(f"{packed} is not a packed progressive checkpoint (checkpoint.weights.h5, checkpoint.json, "
                       f"training.json)")
    if os.path.isfile(os.path.join(run_dir, STATE)):
        raise DgnError(f"{run_dir} already holds a checkpoint; give an empty or new folder")
    os.makedirs(run_dir, exist_ok=True)
    for name in (CHECKPOINT, "training.json", STATE):   # checkpoint.json last: what a resumed run trusts
        shutil.copy(os.path.join(packed, name), os.path.join(run_dir, ".tmp-" + name))
        os.replace(os.path.join(run_dir, ".tmp-" + name), os.path.join(run_dir, name))
    return run_dir
