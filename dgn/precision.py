"""Compute precision: float32, or mixed_bfloat16 (bfloat16 compute, float32 weights).

Keras fixes a layer's compute dtype when the layer is created, from the global dtype policy;
:func:`dtype_policy` sets that policy for the models built inside it and restores the previous one.
Keras keeps the policy per thread (``keras.src.backend.common.global_state`` is a
``threading.local``), so a build in one thread does not change the dtypes of another's.
Generation in mixed_bfloat16 (``precision:`` in a config) builds G and an optimizing copy of D in
bfloat16, while the image G hands to D and D's outputs stay float32 and the sidecar's probabilities
come from the float32 D.
"""

import contextlib

import keras


PRECISIONS = ("float32", "mixed_bfloat16")


@contextlib.contextmanager
def dtype_policy(name):
    """Models built inside compute in ``name`` ("float32" or "mixed_bfloat16")."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def float32_output(tensor, name):
    """``tensor`` as float32 (an identity layer computing in float32): the outputs of a mixed model."""
    if keras.backend.standardize_dtype(tensor.dtype) == "float32":
        return tensor
    return keras.layers.Activation("linear", dtype="float32", name=name)(tensor)
