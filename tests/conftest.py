import os

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
TINY_CONFIG = """
classifier: {model: tiny, weights: none, class_index: none}
generator: {seed_shape: [5, 5, 8], blocks: [[16, 2], [16, 2]], noise: additive,
            squash: false}
objective: {targets: ["3"], activation: logit, others: 0.01}
optimizer: {name: adamax, learning_rate: 0.002}
transform: {jitter: 0, scale: [1.0, 1.0], rotate: 0, samples: 1}
steps: 40
"""


@pytest.fixture
def tiny_config(tmp_path):
    """Writes a tiny config (32x32 images, tiny random classifier) and returns its path."""
    def make(extra=""):
        path = tmp_path / "tiny.yaml"
        path.write_text(TINY_CONFIG + extra)
        return str(path)
    return make


@pytest.fixture
def class_index(tmp_path):
    """A 10-class index file in Keras's format."""
    import json
    path = tmp_path / "index.json"
    names = ["tench", "goldfish", "great_white_shark", "tiger_shark", "hammerhead",
             "electric_ray", "stingray", "cock", "hen", "crane"]
    path.write_text(json.dumps({str(i): [f"n{i:08d}", n] for i, n in enumerate(names)}))
    return str(path)


@pytest.fixture
def shared_data():
    if not os.path.isdir(SHARED):
        pytest.skip("../shared/data is not beside the project")
    return SHARED
