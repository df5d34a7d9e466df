"""The one loop gives the same optimization on the TensorFlow and JAX backends (same weights)."""

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import json, sys
import numpy as np
from dgn.config import load_config
from dgn.classifiers import load_classifier
from dgn.build import build_generator_for, make_optimizer
from dgn.optvis.objectives import parse_target
from dgn.optvis.optimize import Problem, optimize

mode, folder = sys.argv[1], sys.argv[2]
cfg = load_config(text="classifier: {model: tiny, weights: none, class_index: none}\n"
                       "generator: {seed_shape: [5, 5, 8], blocks: [[16, 2], [16, 2]], noise: none, squash: false}\n"
                       "optimizer: {learning_rate: 0.002}\n"
                       "transform: {jitter: 0, scale: [1.0, 1.0], rotate: 0, samples: 1}\n")
clf = load_classifier(cfg["classifier"])
gen, f0 = build_generator_for(cfg.data, clf, seed=0)
if mode == "save":  # this backend's weights for the other to load; then this backend's run on them
    gen.save_weights(folder + "/g.weights.h5")
    clf.model.save_weights(folder + "/d.weights.h5")
gen.load_weights(folder + "/g.weights.h5")
cfg.data["classifier"]["weights"] = folder + "/d.weights.h5"
clf = load_classifier(cfg["classifier"])
objective = parse_target("3", clf, "logit", 0.01)
result = optimize(Problem(gen, clf.features(()), objective, f0), make_optimizer(cfg["optimizer"]), 15, progress=False)
print(json.dumps({"losses": result.losses, "image": float(np.abs(result.images).mean())}))
"""


def run(backend, mode, folder):
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode, folder], env=env, cwd=root,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_tensorflow_and_jax_steppers_agree(tmp_path):
    pytest.importorskip("jax")
    tf_result = run("tensorflow", "save", str(tmp_path))
    jax_result = run("jax", "run", str(tmp_path))
    assert tf_result["losses"][-1] < tf_result["losses"][0]
    assert jax_result["losses"] == pytest.approx(tf_result["losses"], rel=1e-4, abs=1e-5)
    assert jax_result["image"] == pytest.approx(tf_result["image"], rel=1e-4)
