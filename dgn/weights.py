"""Loading weights files strictly: Keras 3 only warns when a file does not fit a model's layers
(and keeps their random weights); dgn refuses such a file with one clear line."""

import json
import os
import warnings

from dgn.errors import DgnError


def load_weights_strict(model, path, what, hint=""):
    """``model.load_weights(path)`` or a DgnError naming ``what`` (e.g. 'classifier vgg16')."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
        except Exception as exc:  # shape mismatch, wrong file kind, unreadable file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DgnError(f"{what}: cannot load weights {path}: {first}{hint}") from None
    if any("freshly-initialized" in str(w.message) or "Skipping" in str(w.message) for w in caught):
        raise DgnError(f"{what}: cannot load weights {path}: the file does not match the model's layers "
                       f"(is it for another architecture?){hint}")


def decoder_metadata(path):
    """decoder.json beside decoder weights ``path`` (``dgn train-dae`` writes it): what the decoder
    makes and how it trained.

    Raises:
        DgnError: there is none."""
    meta = os.path.splitext(os.path.splitext(path)[0])[0] + ".json"
    if not os.path.isfile(meta):
        raise DgnError(f"decoder weights {path} have no metadata file {meta}; it is written by `dgn train-dae`")
    with open(meta, encoding="utf-8") as fh:
        return json.load(fh)


def recorded_encoder(meta):
    """The encoder layers a decoder.json ``meta`` records: ``encoder_filters`` and ``dense`` (written
    since 2026-12-01; None where missing) and ``encoder_bottleneck`` (since 2026-12-07; 0 where
    missing: the layer did not exist before), and the encoder's ``kind`` ("paper", where decoder.json has no
    ``encoder`` entry; "thumbnail": :mod:`dgn.autoencoder.encoders`, with its ``cell`` and ``mix``)."""
    encoder = meta.get("encoder") or {}
    return {"kind": encoder.get("kind", "paper"), "cell": encoder.get("cell"), "mix": encoder.get("mix", "local"),
            "encoder_filters": meta.get("encoder_filters"), "encoder_bottleneck": meta.get("encoder_bottleneck", 0),
            "dense": meta.get("dense")}


def trained_output_norm(decoder_weights):
    """G's last norm for a trained decoder when ``generator.output_norm`` is not given: "moving" for
    one whose last norm trained as an affine map (``dae.output_norm: moving``, recorded in its
    decoder.json), so that G draws what the decoder learned to draw; None (``generator.norm``) for
    one trained on batch statistics, the paper's setting, or one without a readable decoder.json
    (loading the decoder refuses that with its own message). Re-normalizing each image instead drops
    a 58 px decoder's reconstructions from 21.05 to 16.02 dB (docs/autoencoder.md)."""
    try:
        meta = decoder_metadata(decoder_weights)
    except (DgnError, OSError, ValueError):
        return None
    return "moving" if meta.get("output_norm") == "moving" else None
