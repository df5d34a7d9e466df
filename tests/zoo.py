"""Small trained classifiers of the kinds researchers build, made in seconds for the tests.

Three classes of synthetic images: 0 horizontal stripes, 1 vertical stripes, 2 a bright disc, at
random phases, periods, positions and colours. Each builder returns a trained model; ``save`` writes it
as a ``.keras`` file. Nothing here is committed as a binary: every test builds what it needs.
"""

import os

import keras
import numpy as np

CLASSES = ["horizontal", "vertical", "disc"]


def shapes(n, height=32, width=32, channels=3, seed=0):
    """(images uint8 (n, H, W, C), labels (n,)): the three synthetic classes."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype("float32")
    images = np.zeros((n, height, width, channels), "float32")
    labels = np.arange(n) % 3
    for i, label in enumerate(labels):
        period = rng.uniform(4, 8)
        phase = rng.uniform(0, 2 * np.pi)
        if label == 0:
            pattern = 0.5 + 0.5 * np.sin(2 * np.pi * y / period + phase)
        elif label == 1:
            pattern = 0.5 + 0.5 * np.sin(2 * np.pi * x / period + phase)
        else:
            cy, cx = rng.uniform(0.3, 0.7) * height, rng.uniform(0.3, 0.7) * width
            r = rng.uniform(0.15, 0.3) * min(height, width)
            pattern = ((y - cy) ** 2 + (x - cx) ** 2 < r * r).astype("float32")
        colour = rng.uniform(0.5, 1.0, channels)
        images[i] = pattern[..., None] * colour * 255.0
    images += rng.normal(0, 8, images.shape)
    return np.clip(images, 0, 255).astype("uint8"), labels


def _convs(x, prefix=""):
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name=prefix + "conv1")(x)
    x = keras.layers.MaxPooling2D(2, name=prefix + "pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name=prefix + "conv2")(x)
    return x


def _fit(model, height=32, width=32, channels=3, scale="tf", epochs=6, seed=0, n=360, outputs=None):
    keras.utils.set_random_seed(seed)
    images, labels = shapes(n, height, width, channels, seed)
    x = images.astype("float32")
    x = x / 127.5 - 1.0 if scale == "tf" else x / 255.0 if scale == "unit" else x
    loss = "sparse_categorical_crossentropy"
    y = labels
    if outputs == "binary":
        loss, y = "binary_crossentropy", (labels == 2).astype("float32")
    elif outputs == "two_heads":
        loss = {"classes": "sparse_categorical_crossentropy", "size": "mse"}
        y = {"classes": labels, "size": labels.astype("float32")}
    model.compile(keras.optimizers.Adam(0.01), loss=loss)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model


def functional(height=32, width=32, channels=3):
    """Functional, x / 127.5 - 1 input (preprocessing tf), Dense softmax top."""
    inputs = keras.Input((height, width, channels))
    x = _convs(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return _fit(keras.Model(inputs, outputs), height, width, channels)


def sequential_raw():
    """Sequential with Rescaling(1/255) inside: reads 0..255 (preprocessing raw)."""
    model = keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Rescaling(1 / 255.0, name="rescale"),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(2, name="pool1"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(3, activation="softmax", name="predictions")])
    return _fit(model, scale="raw")


def sequential_grayscale():
    """Sequential, 1 channel, 0..1 input (preprocessing unit), Dense + separate Softmax layer."""
    model = keras.Sequential([
        keras.Input((32, 32, 1)),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        keras.layers.MaxPooling2D(2, name="pool1"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(3, name="scores"),
        keras.layers.Softmax(name="probs")])
    return _fit(model, channels=1, scale="unit")


def nested():
    """A 'pretrained base' (a Functional model named base) called as one layer of the classifier."""
    base_in = keras.Input((32, 32, 3))
    base = keras.Model(base_in, _convs(base_in), name="base")
    inputs = keras.Input((32, 32, 3))
    x = base(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return _fit(keras.Model(inputs, outputs))


def dynamic():
    """Input (None, None, 3): any size (needs classifier.input_size)."""
    inputs = keras.Input((None, None, 3))
    x = _convs(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return _fit(keras.Model(inputs, outputs))


def stacked_softmax():
    """A softmax Dense followed by a Softmax layer (a common mistake: logits are the Dense's)."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(_convs(inputs))
    x = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    outputs = keras.layers.Softmax(name="again")(x)
    return _fit(keras.Model(inputs, outputs), epochs=10)


def binary():
    """One sigmoid unit: disc (1) or not (0)."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(_convs(inputs))
    outputs = keras.layers.Dense(1, activation="sigmoid", name="is_disc")(x)
    return _fit(keras.Model(inputs, outputs), outputs="binary")


def two_heads():
    """A class head and a regression head."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D(name="gap")(_convs(inputs))
    classes = keras.layers.Dense(3, activation="softmax", name="classes")(x)
    size = keras.layers.Dense(1, name="size")(x)
    return _fit(keras.Model(inputs, {"classes": classes, "size": size}), outputs="two_heads")


@keras.saving.register_keras_serializable(package="dgn_tests")
class Subclassed(keras.Model):
    """A subclassed classifier (inner layers not reachable by dgn)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.conv = keras.layers.Conv2D(8, 3, padding="same", activation="relu")
        self.gap = keras.layers.GlobalAveragePooling2D()
        self.dense = keras.layers.Dense(3, activation="softmax")

    def call(self, x):
        return self.dense(self.gap(self.conv(x)))


def subclassed():
    model = Subclassed()
    model(np.zeros((1, 32, 32, 3), "float32"))
    return _fit(model)


def channels_first():
    inputs = keras.Input((3, 32, 32))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", data_format="channels_first",
                            name="conv1")(inputs)
    x = keras.layers.GlobalAveragePooling2D(data_format="channels_first", name="gap")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs)


def save(model, folder, name):
    path = os.path.join(str(folder), f"{name}.keras")
    model.save(path)
    return path
