"""Loading weights files strictly: Keras 3 only warns when a file does not fit a model's layers
(and keeps their random weights); dgn refuses such a file with one clear line."""

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
