"""Times one training step of the autoencoder of a train-dae config (random weights, random
images: speed only) in float32 and in mixed_bfloat16, alternating, in the same process.

    python scripts/benchmark_dae.py [configs/dae-dogs.yaml] [--batch 8] [--steps 3] [--repeats 2]

Prints a markdown table (seconds per step, per image, per pass over the 1,327 training photos);
the README quotes it with the machine it ran on. Run it with nothing else on the machine.
"""

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dgn import build  # noqa: E402
from dgn.autoencoder.model import build_autoencoder
from dgn.autoencoder.schedule import make_dae_optimizer, pixel_mse
from dgn.config import load_config  # noqa: E402
from dgn.optvis.generator import output_size

PRECISIONS = ("float32", "mixed_bfloat16")
TRAINING_PHOTOS = 1327  # ../shared/data/imagenet-dogs, train-dae's training split


def build_step(spec, training, precision):
    size = output_size(spec.seed_shape, spec.blocks, "decoder")
    model, _, _ = build_autoencoder(spec, size, precision)
    model.compile(optimizer=make_dae_optimizer(training), loss=pixel_mse)
    return model, size


def time_steps(model, images, steps):
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(images, images)
    return (time.perf_counter() - start) / steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", default="configs/dae-dogs.yaml")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=2, help="alternating rounds; the best round counts")
    args = parser.parse_args()
    cfg = load_config(args.config).data
    spec, training = build.autoencoder(cfg), build.dae_training(cfg)
    models = {p: build_step(spec, training, p) for p in PRECISIONS}
    rng = np.random.default_rng(0)
    best = {}
    for p, (model, size) in models.items():
        images = rng.uniform(-1, 1, (args.batch, size, size, 3)).astype("float32")
        model.train_on_batch(images, images)  # compile
    for _ in range(args.repeats):
        for p, (model, size) in models.items():
            images = rng.uniform(-1, 1, (args.batch, size, size, 3)).astype("float32")
            best[p] = min(best.get(p, float("inf")), time_steps(model, images, args.steps))
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Keras {keras.__version__} "
          f"({keras.backend.backend()}), {args.config}, batch {args.batch}")
    print("| precision | s per step | s per image | minutes per pass (1,327 photos) | vs float32 |")
    print("|---|---:|---:|---:|---:|")
    for p in PRECISIONS:
        per_image = best[p] / args.batch
        print(f"| {p} | {best[p]:.2f} | {per_image:.3f} | {per_image * TRAINING_PHOTOS / 60:.1f} | "
              f"{best['float32'] / best[p]:.2f}x |")


if __name__ == "__main__":
    main()
