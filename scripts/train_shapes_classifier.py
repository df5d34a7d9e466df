"""Trains a small classifier of the kind a researcher brings to dgn, for the README's "Use your own
classifier" example: 64x64 RGB images of six shapes, a Sequential model with Rescaling(1/255) inside (so it
reads 0..255: ``preprocessing: raw``), saved as a .keras file with a class names file beside it.

    python scripts/train_shapes_classifier.py --out runs/shapes            # shapes.keras, shapes.txt
    python scripts/train_shapes_classifier.py --out runs/shapes --judge    # also judge.keras: a second,
                                                                          # differently built network

The judge is an independent second opinion for the generated images (``dgn report --judge
runs/shapes/judge.keras:raw``): another architecture, another seed, trained on other draws of the shapes.
Takes about a minute per model on 2 CPU cores.
"""

import argparse
import os
import sys

import numpy as np

CLASSES = ["horizontal stripes", "vertical stripes", "disc", "square", "ring", "checkerboard"]


def shapes(n, size=64, seed=0):
    """(uint8 images (n, size, size, 3), labels (n,)): the six classes at random positions, sizes, periods and
    colours on a random dark background, with pixel noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype("float32")
    images = np.zeros((n, size, size, 3), "float32")
    labels = np.arange(n) % len(CLASSES)
    for i, label in enumerate(labels):
        period, phase = rng.uniform(6, 14), rng.uniform(0, 2 * np.pi)
        cy, cx = rng.uniform(0.35, 0.65, 2) * size
        r = rng.uniform(0.18, 0.32) * size
        if label == 0:
            mask = np.sin(2 * np.pi * y / period + phase) > 0
        elif label == 1:
            mask = np.sin(2 * np.pi * x / period + phase) > 0
        elif label == 2:
            mask = (y - cy) ** 2 + (x - cx) ** 2 < r * r
        elif label == 3:
            mask = (np.abs(y - cy) < r * 0.9) & (np.abs(x - cx) < r * 0.9)
        elif label == 4:
            d = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
            mask = (d < r) & (d > r * 0.6)
        else:
            mask = (np.sin(2 * np.pi * y / period + phase) > 0) ^ (np.sin(2 * np.pi * x / period + phase) > 0)
        background = rng.uniform(0, 80, 3)
        colour = rng.uniform(120, 255, 3)
        images[i] = np.where(mask[..., None], colour, background)
    images += rng.normal(0, 10, images.shape)
    return np.clip(images, 0, 255).astype("uint8"), labels


def build(kind, size=64, classes=len(CLASSES)):
    import keras
    layers = keras.layers
    if kind == "classifier":   # a plain Sequential CNN reading 0..255
        return keras.Sequential([
            keras.Input((size, size, 3)), layers.Rescaling(1 / 255.0, name="rescale"),
            layers.Conv2D(16, 3, padding="same", activation="relu", name="conv1"), layers.MaxPooling2D(name="pool1"),
            layers.Conv2D(32, 3, padding="same", activation="relu", name="conv2"), layers.MaxPooling2D(name="pool2"),
            layers.Conv2D(64, 3, padding="same", activation="relu", name="conv3"),
            layers.GlobalAveragePooling2D(name="gap"), layers.Dense(classes, activation="softmax", name="predictions")],
            name="shapes")
    inputs = keras.Input((size, size, 3))   # the judge: functional, strided, batch-normalized, other widths
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    for filters in (24, 48, 96):
        x = layers.Conv2D(filters, 5, strides=2, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
    x = layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, layers.Dense(classes, activation="softmax")(x), name="shapes_judge")


def train(kind, out, seed, epochs, count):
    import keras
    keras.utils.set_random_seed(seed)
    x, y = shapes(count, seed=seed)
    xv, yv = shapes(600, seed=seed + 1000)
    model = build(kind)
    model.compile(keras.optimizers.Adam(0.003), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x.astype("float32"), y, epochs=epochs, batch_size=64, verbose=2)
    accuracy = float(np.mean(np.asarray(model.predict(xv.astype("float32"), verbose=0)).argmax(-1) == yv))
    tmp = out + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, out)   # never a half-written model
    print(f"{out}: validation accuracy {accuracy:.3f} on 600 new images")
    return accuracy


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/shapes", help="folder for shapes.keras, shapes.txt (and judge.keras)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--images", type=int, default=3000, help="training images")
    parser.add_argument("--judge", action="store_true", help="also train the second network, judge.keras")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "shapes.txt"), "w", encoding="utf-8") as fh:
        fh.write("\n".join(CLASSES) + "\n")
    train("classifier", os.path.join(args.out, "shapes.keras"), 0, args.epochs, args.images)
    if args.judge:
        train("judge", os.path.join(args.out, "judge.keras"), 1, args.epochs, args.images)
    return 0


if __name__ == "__main__":
    sys.exit(main())
