"""Times one optimization step at 224x224 through VGG-16 (random weights) for both paper
configurations: dgn's loop against a bare hand-written Keras/TensorFlow loop doing the same
computation (same G, same D, same loss, same optimizer), measured in the same process, interleaved.

    python scripts/benchmark.py [--steps 5] [--repeats 8] [--json out.json]

Prints a markdown table; the README quotes it with the machine it ran on.
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dgn.classifiers import load_classifier  # noqa: E402
from dgn.config import load_config  # noqa: E402
from dgn.build import build_generator_for, make_optimizer  # noqa: E402
from dgn.optvis.objectives import parse_target
from dgn.optvis.optimize import Problem, make_stepper

UNTRAINED = """
classifier: {model: vgg16, weights: none, class_index: none}
objective: {activation: relu, others: 0.01}
optimizer: {name: adamax, learning_rate: 0.002}
"""
PRETRAINED = """
classifier: {model: vgg16, weights: none, class_index: none}
generator: {head: decoder, noise: multiplicative, noise_stddev: 0.2294, alpha_init: ones, alpha_activation: relu}
objective: {activation: relu, others: 0.01}
regularizers: {image_gamma_l1: 0.0, alpha_l2: 0.1}
optimizer: {name: sgd, learning_rate: 0.01, momentum: 0.1, nesterov: true}
"""


def bare_step_fn(generator, classifier, f0, target, others, optimizer):
    """The same computation written by hand: tf.function + GradientTape, nothing else."""
    import tensorflow as tf

    logits_model = classifier.logits_model
    variables = generator.trainable_variables
    optimizer.build(variables)
    f0 = tf.constant(f0)
    mask = np.full((1, classifier.num_classes), others, "float32")
    mask[0, target] = 0.0
    onehot = np.zeros((1, classifier.num_classes), "float32")
    onehot[0, target] = 1.0

    @tf.function(jit_compile=False)
    def step():
        with tf.GradientTape() as tape:
            z = tf.nn.relu(logits_model(generator(f0, training=True), training=False))
            loss = tf.reduce_sum(mask * z) - tf.reduce_sum(onehot * z) + tf.add_n(generator.losses)
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    return lambda: float(step())


def time_steps(fn, steps):
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) / steps


def bench(name, text, steps, repeats):
    cfg = load_config(text=text)
    data = cfg.data
    if "decoder" in text:
        data["generator"]["trainable"] = "alpha"  # random decoder weights: speed only
    classifier = load_classifier(data["classifier"])
    objective = parse_target("207", classifier, "relu", 0.01)
    gen_dgn, f0 = build_generator_for(data, classifier, seed=0)
    stepper = make_stepper(Problem(gen_dgn, classifier.features(()), objective, f0),
                           make_optimizer(data["optimizer"]))
    gen_bare, _ = build_generator_for(data, classifier, seed=0)
    bare = bare_step_fn(gen_bare, classifier, f0, 207, 0.01, make_optimizer(data["optimizer"]))

    def dgn_step():  # what dgn.optvis.optimize.optimize does per step, progress and bookkeeping included
        loss, value, dead = stepper.step()
        float(loss), np.asarray(value).tolist(), np.asarray(dead, dtype=int)

    for fn in (dgn_step, bare):  # compile and warm up
        time_steps(fn, 3)
    # Alternate short chunks (ABBA order) so that load from other processes hits both alike;
    # report the median chunk of each.
    dgn_times, bare_times = [], []
    for r in range(repeats):
        order = (bare, dgn_step) if r % 2 == 0 else (dgn_step, bare)
        for fn in order:
            (bare_times if fn is bare else dgn_times).append(time_steps(fn, steps))
    trainable = int(sum(np.prod(v.shape) for v in gen_dgn.trainable_variables))
    bare_s, dgn_s = float(np.median(bare_times)), float(np.median(dgn_times))
    return {"configuration": name, "trainable": trainable, "bare_s": bare_s, "dgn_s": dgn_s,
            "overhead_pct": 100.0 * (dgn_s / bare_s - 1.0)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="steps per timed chunk")
    parser.add_argument("--repeats", type=int, default=8, help="chunks per loop (alternating)")
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = [bench("without pretraining (whole G)", UNTRAINED, args.steps, args.repeats),
            bench("with pretraining (alpha only)", PRETRAINED, args.steps, args.repeats)]
    import tensorflow as tf
    print(f"backend {keras.backend.backend()} (TF {tf.__version__}, Keras {keras.__version__}), "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; median of {args.repeats} "
          f"alternating chunks of {args.steps} steps, VGG-16 random weights, 224x224, batch 1")
    print("| configuration | trainable weights | bare loop s/step | dgn s/step | dgn vs bare |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['configuration']} | {r['trainable']:,} | {r['bare_s']:.3f} | {r['dgn_s']:.3f} | "
              f"{r['overhead_pct']:+.1f} % |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
