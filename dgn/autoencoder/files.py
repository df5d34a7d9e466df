"""A trained autoencoder's folder: its parts, metadata and export; loading it back.
"""


import math
import os

import keras
import numpy as np

from dgn.autoencoder.encoders import THUMBNAIL, build_thumbnail_encoder
from dgn.autoencoder.model import CODE_STATS, STATE, build_encoder
from dgn.errors import DgnError
from dgn.optvis.generator import build_decoder
from dgn.runs.outputs import write_atomic, write_json
from dgn.weights import decoder_metadata, load_weights_strict, recorded_encoder


def run_metadata(spec, space, input_size, epoch, logs, history, data_dir, images):
    """decoder.json: what the decoder makes and how it was trained (``spec``: its
    :class:`AutoencoderSpec`; seed_shape / blocks as given, None when sized to the images). The data
    folder is named by its last component (the absolute path is only this machine's)."""
    return {"preprocessing": space, "input_size": input_size, "norm": spec.decoder_norm,
            "output_norm": spec.output_norm, "output_activation": spec.output_activation,
            "seed_shape": spec.seed_shape,
            "blocks": spec.blocks, "encoder_filters": list(spec.encoder_filters),
            "encoder_bottleneck": spec.encoder_bottleneck, "dense": spec.dense,
            "epochs": epoch, "logs": logs,
            "noise_stddev": spec.noise_stddev,
            "data": folder_names(data_dir), "images": images, "history": history}


def folder_name(path):
    """A folder by its last component: decoder.json names folders, not one machine's paths."""
    return os.path.basename(os.path.normpath(path))


def folder_names(data):
    """:func:`folder_name` of one folder, or the list of them of a list of folders."""
    return folder_name(data) if isinstance(data, str) else [folder_name(p) for p in data]


def run_record(training, epoch, wall_seconds, images):
    """One training run (``training``: its :class:`DaeTraining`) in a decoder's history: how long, on
    what, how many images were seen."""
    import platform

    t = training
    seen = epoch * t.batch_size * (t.steps_per_epoch or math.ceil(images / t.batch_size))
    return {"epochs": epoch, "images_seen": seen, "passes": round(seen / max(images, 1), 1),
            "wall_seconds": wall_seconds,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "backend": keras.backend.backend(),
            "devices": [str(d) for d in _devices()], "precision": t.precision,
            "batch_size": t.batch_size, "learning_rate": t.learning_rate,
            "warmup_steps": t.warmup_steps, "decay_steps": t.decay_steps, "schedule_start": t.schedule_start,
            "freeze_norms": t.freeze_norms, "init": folder_name(t.init) if t.init else None}


def _devices():
    if keras.backend.backend() == "jax":
        import jax

        return [d.device_kind for d in jax.devices()]
    return []


def save_parts(folder, encoder, decoder, metadata):
    """decoder.weights.h5 / encoder.weights.h5 plus decoder.json (what input space it makes)."""
    for part, model in (("decoder", decoder), ("encoder", encoder)):
        tmp = os.path.join(folder, f".tmp-{part}.weights.h5")
        model.save_weights(tmp)
        os.replace(tmp, os.path.join(folder, f"{part}.weights.h5"))
    write_json(os.path.join(folder, "decoder.json"), metadata)


def _cast_weights_file(src, dtype):
    """The bytes of a Keras ``.weights.h5`` file with every floating-point array stored as ``dtype``
    (loading casts back to the model's float32 variables)."""
    import io

    import h5py

    buffer = io.BytesIO()
    with h5py.File(src, "r") as fin, h5py.File(buffer, "w") as fout:
        fout.attrs.update(dict(fin.attrs))

        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                fout.require_group(name).attrs.update(dict(obj.attrs))
                return
            data = obj[()]
            if isinstance(data, np.ndarray) and np.issubdtype(data.dtype, np.floating):
                data = data.astype(dtype)
            fout.create_dataset(name, data=data).attrs.update(dict(obj.attrs))

        fin.visititems(copy)
    return buffer.getvalue()


def export_trained(folder, dest, encoder_dtype="float16"):
    """Copies a trained autoencoder (decoder.weights.h5, decoder.json, encoder.weights.h5, and
    code_stats.npz if ``dgn code-stats`` wrote one) from a training folder to ``dest`` (e.g. weights/dae-dogs-efficientnet_lite0), each file written under
    a temporary name and renamed. The encoder, which only eval-dae needs, is stored as
    ``encoder_dtype`` (float16 halves its ~83 MB; reconstructions change by < 0.5 of an 8-bit level)."""
    names = ("decoder.weights.h5", "decoder.json", "encoder.weights.h5")
    missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
    if missing:
        raise DgnError(f"{folder} has no {missing[0]}; export a folder written by `dgn train-dae`")
    if os.path.exists(dest) and os.path.samefile(folder, dest):
        raise DgnError(f"export-dae: {dest} is the training folder itself; give another folder, e.g. "
                       f"weights/<name>")
    try:
        os.makedirs(dest, exist_ok=True)
    except OSError as exc:
        raise DgnError(f"export-dae: cannot make the folder {dest!r} ({exc.strerror or exc}); give a folder "
                       f"path that can be created, e.g. weights/<name>") from None
    with open(os.path.join(folder, "decoder.weights.h5"), "rb") as fh:
        write_atomic(os.path.join(dest, "decoder.weights.h5"), fh.read())
    write_atomic(os.path.join(dest, "encoder.weights.h5"),
                 _cast_weights_file(os.path.join(folder, "encoder.weights.h5"), np.dtype(encoder_dtype)))
    meta = decoder_metadata(os.path.join(folder, "decoder.weights.h5"))
    if meta.get("data"):  # older decoder.json files held a machine's paths
        meta["data"] = folder_names(meta["data"])
    for run in meta.get("history", []):
        run.pop("wall_hours", None)                # derivable from wall_seconds
        if run.get("init"):
            run["init"] = folder_name(run["init"])
    write_json(os.path.join(dest, "decoder.json"), {**meta, "encoder_dtype": str(np.dtype(encoder_dtype))})
    if os.path.isfile(os.path.join(folder, CODE_STATS)):
        with open(os.path.join(folder, CODE_STATS), "rb") as fh:
            write_atomic(os.path.join(dest, CODE_STATS), fh.read())
        names += (CODE_STATS,)
    elif os.path.isfile(os.path.join(dest, CODE_STATS)):
        os.remove(os.path.join(dest, CODE_STATS))  # another decoder's statistics: `dgn code-stats` makes new ones
        print(f"removed {os.path.join(dest, CODE_STATS)}: it described the decoder this export replaces; "
              f"run `dgn code-stats` for the new one", flush=True)
    return {n: os.path.getsize(os.path.join(dest, n)) for n in names}


def checked_metadata(path, space):
    """The metadata of decoder weights ``path``, refusing ones trained for another input space."""
    meta = decoder_metadata(path)
    if meta.get("preprocessing") != space:
        raise DgnError(f"decoder {path} was trained for {meta.get('preprocessing')!r} inputs but the classifier "
                       f"reads {space!r} inputs; train a decoder for this classifier (dgn train-dae)")
    return meta


def load_decoder_weights(decoder, path, space):
    """Loads a trained decoder, refusing one trained for another classifier's input space."""
    meta = checked_metadata(path, space)
    load_weights_strict(decoder, path, "decoder",
                        f"; do generator.seed_shape and generator.blocks match the ones it was trained with "
                        f"({meta.get('seed_shape')}, {meta.get('blocks')})?")


def load_trained(spec, folder):
    """(encoder, decoder, metadata) of a trained autoencoder folder, built as ``spec`` (an
    :class:`AutoencoderSpec`: the encoder's layers, the decoder's seed_shape / blocks) says; the
    decoder's norms and last activation are those its decoder.json records, and so are the encoder's
    layers where it records them (``encoder_filters``, ``dense``: written since 2026-12-01;
    ``encoder_bottleneck`` since 2026-12-07, 0 where it is missing; ``encoder.kind`` "thumbnail": the
    encoder of the progressive recipe, :mod:`dgn.autoencoder.encoders`, since 2026-12-07)."""
    if not os.path.isfile(os.path.join(folder, "decoder.weights.h5")):
        if os.path.isfile(os.path.join(folder, STATE)) and os.path.isfile(os.path.join(folder, "training.json")):
            raise DgnError(f"{folder} holds a training run that has not written its decoder yet (a progressive run "
                           f"writes it from its last stage on); run `dgn train-dae` again to go on")
        raise DgnError(f"no trained autoencoder in {folder}; run `dgn train-dae` first or give --weights a "
                       f"folder written by `dgn train-dae` or `dgn export-dae`")
    meta = decoder_metadata(os.path.join(folder, "decoder.weights.h5"))
    size = meta["input_size"]
    seed_shape, blocks = spec.sized(size)
    recorded = recorded_encoder(meta)   # older files: the spec's filters and dense
    if recorded["kind"] == THUMBNAIL:
        encoder = build_thumbnail_encoder(size, seed_shape, recorded["cell"], recorded["mix"])
    else:
        filters = spec.encoder_filters if recorded["encoder_filters"] is None else recorded["encoder_filters"]
        encoder = build_encoder((size, size, 3), filters, recorded["dense"] or spec.dense, math.prod(seed_shape),
                                bottleneck=recorded["encoder_bottleneck"])
    decoder = build_decoder(seed_shape, blocks, head="decoder", norm=meta.get("norm", "image"),
                            output_activation=meta.get("output_activation", "relu"),
                            output_norm=meta.get("output_norm", "image"))
    load_parts(folder, encoder, decoder)
    return encoder, decoder, meta


def load_parts(folder, encoder, decoder, space=None):
    """Loads a trained folder's encoder.weights.h5 and decoder.weights.h5 into built models,
    refusing weights trained for another classifier's input space when ``space`` is given."""
    if space is not None:
        checked_metadata(os.path.join(folder, "decoder.weights.h5"), space)
    filters = [int(layer.filters) for layer in encoder.layers if layer.name.endswith("_conv1")]
    dense = next((int(layer.units) for layer in encoder.layers if isinstance(layer, keras.layers.Dense)), 0)
    bottleneck = next((int(layer.filters) for layer in encoder.layers if layer.name == "enc_bottleneck"), 0)
    load_weights_strict(encoder, os.path.join(folder, "encoder.weights.h5"), "encoder",
                        hint=f" (built with dae.encoder_filters={filters}, dae.encoder_bottleneck={bottleneck} and "
                             f"dae.dense={dense}: give the values it was trained with, e.g. "
                             f"--set 'dae.encoder_filters=[...]')")
    load_weights_strict(decoder, os.path.join(folder, "decoder.weights.h5"), "decoder")
