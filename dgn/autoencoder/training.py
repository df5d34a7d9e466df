"""``train_dae``: the training loop with checkpoints every epoch, resume after a kill, a time limit.
"""


import json
import os
import time
from dataclasses import asdict

import keras

from dgn.autoencoder.evaluate import _dataset_images
from dgn.autoencoder.files import run_metadata, load_parts, run_record, save_parts
from dgn.autoencoder.model import (CHECKPOINT, DAE_KEYS, DECODER_OUTPUT_NORM, STATE, build_autoencoder,
                                   check_decoder_size)
from dgn.autoencoder.norms import freeze_norms, kept_norm_statistics, norm_batches, precise_norm_statistics
from dgn.autoencoder.schedule import make_dae_optimizer, perceptual_features, pixel_mse, reconstruction_loss
from dgn.data import ImageDataset
from dgn.errors import DgnError
from dgn.runs.outputs import write_atomic, write_json
from dgn.weights import decoder_metadata


class TimeLimit(keras.callbacks.Callback):
    """Stops training at the end of the first epoch that ends ``minutes`` after the start
    (after its checkpoint), so a run with a deadline resumes later from a complete epoch."""

    def __init__(self, minutes):
        super().__init__()
        self.seconds, self.start = 60.0 * minutes, time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        if time.monotonic() - self.start >= self.seconds:
            self.model.stop_training = True
            print(f"time limit of {self.seconds / 60:g} min reached after epoch {epoch + 1}; "
                  f"run the same command again to resume", flush=True)


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: the full training state (weights and optimizer), then the exported parts
    (``on_saved``), then the epoch number (checkpoint.json), each written to a temporary file and
    renamed. checkpoint.json comes last and is what a resumed run trusts, so a kill at any moment
    leaves a complete epoch: the one it names, whose every file is written."""

    def __init__(self, folder, on_saved=None, wall_seconds=0.0):
        super().__init__()
        self.folder, self.on_saved = folder, on_saved
        self.wall_before, self.start = float(wall_seconds), time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        tmp = os.path.join(self.folder, ".tmp-" + CHECKPOINT)
        self.model.save_weights(tmp)
        os.replace(tmp, os.path.join(self.folder, CHECKPOINT))
        wall = round(self.wall_before + time.monotonic() - self.start, 1)
        if self.on_saved:
            self.on_saved(epoch + 1, logs or {}, wall)
        write_json(os.path.join(self.folder, STATE), {"epoch": epoch + 1, "logs": logs or {}, "wall_seconds": wall})


# dae fields added after runs were made: at these values they leave those runs' identity unchanged
IDENTITY_DEFAULTS = {"freeze_norms": False, "encoder_bottleneck": 0, "decay_steps": 0, "schedule_start": 0, "output_norm": DECODER_OUTPUT_NORM, "output_activation": "relu"}


def _dae_value(spec, training, key):
    return getattr(spec if hasattr(spec, key) else training, key)


def _training_identity(spec, training):
    """What decides a training run's weights (training.json): a folder holding a run of another
    identity is not resumed. The dae keys in the config's order (:data:`DAE_KEYS`)."""
    dae = {k: _dae_value(spec, training, k) for k in DAE_KEYS}
    return {"generator": {"seed_shape": spec.seed_shape, "blocks": spec.blocks},
            "dae": {k: v for k, v in dae.items()
                    if k not in ("epochs", "out", "data", "precision", "warmup_steps", "norm_photos")
                    and not (k in IDENTITY_DEFAULTS and v == IDENTITY_DEFAULTS[k])},
            "classifier": training.classifier_model, "seed": spec.seed,
            "decoder_output_norm": DECODER_OUTPUT_NORM}


def train_dae(spec, training, classifier, data_dir=None, out_dir=None, epochs=None, verbose=1,
              time_limit=None, record=None):
    """Trains (or resumes) the autoencoder ``spec`` (:class:`AutoencoderSpec`) as ``training`` says
    (:class:`DaeTraining`) for ``classifier`` (D: its input space and size, and the perceptual
    term's layers); returns the output folder. ``data_dir``, ``out_dir``, ``epochs``: instead of
    ``training``'s; ``record``: what training.json records as the run's config (the config dict
    the objects were built from), beside the identity."""
    data_dir = training.images(data_dir)
    out_dir = out_dir or training.out
    epochs = training.epochs if epochs is None else epochs
    if epochs < 1:
        raise DgnError(f"epochs {epochs}: give a whole number of at least 1")
    space, size = classifier.preprocessing, classifier.input_shape[0]
    check_decoder_size(spec, size)  # a decoder of another size fails before the images are read
    if training.freeze_norms and not training.init:
        raise DgnError("dae.freeze_norms fixes the norm statistics of trained weights: give dae.init (a folder "
                       "written by train-dae or export-dae) or set dae.freeze_norms to false")
    # a misspelt layer fails here, before the images are read
    features = perceptual_features(classifier, training.perceptual_layers) if training.perceptual_weight else None
    os.makedirs(out_dir, exist_ok=True)
    state_path = os.path.join(out_dir, STATE)
    identity = _training_identity(spec, training)
    ident_path = os.path.join(out_dir, "training.json")
    # only a folder holding a checkpoint holds a run: one that failed before its first epoch (a wrong
    # folder, no photos) does not keep the corrected command from starting there
    if os.path.isfile(ident_path) and os.path.isfile(state_path):
        with open(ident_path, encoding="utf-8") as fh:
            held = json.load(fh)["identity"]
        if held != identity:
            differ = sorted({f"{part}.{k}" for part in identity if isinstance(identity[part], dict)
                             for k in set(identity[part]) | set((held.get(part) or {}))
                             if identity[part].get(k) != (held.get(part) or {}).get(k)}
                            | {part for part in identity if not isinstance(identity[part], dict)
                               and identity[part] != held.get(part)})
            raise DgnError(f"{out_dir} holds a training run of another configuration (differs in "
                           f"{', '.join(differ) or 'its identity'}); use another --out or delete that folder")
    train_images, val_images, skipped, total = _dataset_images(training, data_dir, size)
    if record is None:
        record = {"autoencoder": asdict(spec), "training": asdict(training)}
    write_json(ident_path, {"identity": identity, "config": record})
    where = data_dir if isinstance(data_dir, str) else " + ".join(data_dir)
    print(f"{total} images in {where}: {len(train_images)} train, {len(val_images)} validation, "
          f"{skipped} unreadable skipped", flush=True)
    train_ds = ImageDataset(train_images, size, space, training.batch_size, augment=training.augment,
                            seed=spec.seed, steps_per_epoch=training.steps_per_epoch)
    val_ds = ImageDataset(val_images, size, space, training.batch_size, augment=False, shuffle=False) \
        if val_images else None
    model, encoder, decoder = build_autoencoder(spec, size, training.precision)
    resuming = os.path.isfile(state_path) and os.path.isfile(os.path.join(out_dir, CHECKPOINT))
    if training.init and not resuming:
        load_parts(training.init, encoder, decoder, space)
        print(f"starting from the trained weights in {training.init}", flush=True)
    if training.freeze_norms:
        # on the statistics dae.init's weights trained with (a resumed run: its checkpoint's, the same)
        stats_batches = []
        count = freeze_norms(encoder, decoder)
        print(f"{count} norms frozen on the statistics of {training.init}", flush=True)
    else:   # the norm statistics of the saved weights (PreciseBN, each epoch)
        stats_batches = norm_batches(train_images, size, space, training.batch_size, training.norm_photos, spec.seed)
    model.compile(optimizer=make_dae_optimizer(training),
                  loss=reconstruction_loss(features, training.perceptual_weight),
                  metrics=[pixel_mse] if features is not None else None)
    initial, wall_before = 0, 0.0
    if resuming:
        with open(state_path, encoding="utf-8") as fh:
            state = json.load(fh)
        initial, wall_before = int(state["epoch"]), float(state.get("wall_seconds", 0.0))
        model.optimizer.build(model.trainable_variables)
        model.load_weights(os.path.join(out_dir, CHECKPOINT))
        train_ds.epoch = initial
        print(f"resuming from the checkpoint of epoch {initial} in {out_dir}", flush=True)
    _keep_log_rows(os.path.join(out_dir, "log.csv"), initial)
    if initial >= epochs:
        print(f"already trained for {initial} epochs (>= {epochs}); nothing to do", flush=True)
        return out_dir

    # the runs that trained dae.init's weights come first in this run's history; a resumed run takes
    # them from its own saved decoder.json (the init folder may have been replaced since it began)
    own = os.path.join(out_dir, "decoder.weights.h5")
    if resuming and os.path.isfile(own):
        earlier = decoder_metadata(own).get("history", [])[:-1]
    elif training.init:
        earlier = decoder_metadata(os.path.join(training.init, "decoder.weights.h5")).get("history", [])
    else:
        earlier = []

    # what the history records: photos whose batch statistics the saved weights carry (0: frozen or the
    # moving averages; fewer than norm_photos when the training photos or whole batches run out)
    used = sum(len(b) for b in stats_batches)

    def saved(epoch, logs, wall):
        history = earlier + [{**run_record(training, epoch, wall, len(train_images)), "norm_photos": used}]
        # the checkpoint that training resumes from keeps the moving averages; frozen norms have no
        # layer here (norm_layers) and keep their statistics
        with kept_norm_statistics(encoder, decoder):
            precise_norm_statistics(encoder, decoder, stats_batches)
            save_parts(out_dir, encoder, decoder, run_metadata(spec, space, size, epoch, logs, history, data_dir,
                                                            {"train": len(train_images), "validation": len(val_images)}))

    # the log's row before the checkpoint, whose checkpoint.json marks the epoch done
    callbacks = [keras.callbacks.CSVLogger(os.path.join(out_dir, "log.csv"), append=True),
                 EpochCheckpoint(out_dir, saved, wall_before)]
    if time_limit:
        callbacks.append(TimeLimit(time_limit))
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial,
              callbacks=callbacks, verbose=verbose)
    return out_dir


def _keep_log_rows(path, epochs):
    """log.csv with its header and the rows of the first ``epochs`` epochs only: a kill after an
    epoch's row but before its checkpoint leaves a row that the resumed run writes again."""
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().splitlines(keepends=True)
    keep = lines[:1 + epochs] if epochs else []
    if keep != lines:
        write_atomic(path, "".join(keep).encode("utf-8"))
