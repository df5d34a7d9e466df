"""A tiny built-in classifier for tests and smoke runs (random weights unless given a file)."""

import keras


def build_tiny_classifier(input_size=32, num_classes=10, seed=1234):
    """Conv(8) -> Conv(16, stride 2) -> BN -> global average pool -> Dense(num_classes, softmax)."""
    init = lambda i: keras.initializers.HeNormal(seed=seed + i)  # noqa: E731
    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", kernel_initializer=init(0), name="conv1")(inputs)
    x = keras.layers.Conv2D(16, 3, strides=2, padding="same", kernel_initializer=init(1), name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation("relu", name="relu2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax",
                                 kernel_initializer=keras.initializers.GlorotUniform(seed=seed + 2),
                                 name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny")
