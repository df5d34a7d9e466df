"""What the autoencoder's output layer lets it reach, whatever the rest of the decoder does.

The decoder ends ``Conv 3 (ReLU) -> GeneratorNorm``. While training, ``batch`` statistics make every
batch's output have per-channel mean ``beta`` and standard deviation ``gamma`` exactly, so even a
perfect pre-norm image z = x gives ``beta + gamma * (x - batch mean) / batch std``; per-image
statistics (``image``) give the same with each image's own mean and std. This prints the PSNR of
those best outputs (optimal global beta and gamma) on the centre crops of a folder, and the PSNR of
the box-filter/bicubic thumbnails, so the cap can be compared with what training reaches.

    python scripts/dae_output_cap.py DIR --size 58 --batch 24 8
"""

import argparse
import math

import numpy as np


def best_constrained(x, groups):
    """PSNR of ``beta + gamma * (x - m) / s`` (m, s per channel over each group of images), with the
    global beta, gamma (per channel) that minimise the squared error. x: float (n, h, w, 3) in 0..255."""
    y = np.empty_like(x)
    for g in groups:
        part = x[g]
        m = part.mean(axis=(0, 1, 2), keepdims=True)
        s = part.std(axis=(0, 1, 2), keepdims=True) + 1e-6
        y[g] = (part - m) / s
    # least squares per channel: x ~ beta + gamma * y
    mse = 0.0
    for c in range(3):
        a, b = y[..., c].ravel(), x[..., c].ravel()
        gamma, beta = np.polyfit(a, b, 1)
        mse += np.mean((np.clip(np.round(beta + gamma * a), 0, 255) - b) ** 2) / 3
    return 10 * math.log10(255 ** 2 / mse)


def main():
    from dgn import build
    from dgn.autoencoder.evaluate import psnr, thumbnail
    from dgn.config import load_config

    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--config", default="configs/dae-dogs-58px.yaml")
    p.add_argument("--size", type=int, default=58)
    p.add_argument("--batch", type=int, nargs="+", default=[24, 8])
    p.add_argument("--split", default="val")
    args = p.parse_args()
    from dgn.autoencoder.evaluate import center_crops

    crops, _ = center_crops(build.dae_training(load_config(args.config).data), args.data, args.size, args.split)
    x = crops.astype("float64")
    n = len(x)
    print(f"{n} centre crops of {args.size}x{args.size} ({args.split})")
    for side in (8, 16, 32):
        print(f"thumbnail {side}x{side}: {psnr(crops, thumbnail(crops, side))[0]:.2f} dB")
    rng = np.random.default_rng(0)
    for b in args.batch:
        order = rng.permutation(n)
        groups = [order[i:i + b] for i in range(0, n, b)]
        print(f"output norm on batch statistics, batch {b}, perfect pre-norm image: "
              f"{best_constrained(x, groups):.2f} dB")
    print(f"output norm on each image's statistics, perfect pre-norm image: "
          f"{best_constrained(x, [[i] for i in range(n)]):.2f} dB")


if __name__ == "__main__":
    main()
