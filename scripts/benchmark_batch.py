"""Image-steps per second of ``dgn generate-all`` for several batch sizes against one class at a time.

    python scripts/benchmark_batch.py [--preset medium|paper224] [--batches 1,4,16,64] [--steps 3]
                                      [--classes 8] [--precision float32,mixed_bfloat16] [--grouped]
                                      [--stack copies,vmap] [--samples 1,4] [--json out.json]

Two measurements, TF backend on CPU:
- steady state: one compiled step of the batched generator (B classes), timed over ``--steps``
  steps after a warm-up step; image-steps/s = B * steps / seconds.
- end to end: ``generate_all`` of ``--classes`` classes x ``--steps`` steps into a temporary folder
  (build, trace, steps, evaluation, files), batch 1 (the one-class-at-a-time loop) against batch B.
``--precision`` runs both for each listed compute precision (``precision:`` of a config; the speed-up
column is against the first precision at B = 1).

Presets (random weights, speed only), both the pretrained configuration (frozen decoder, alpha only,
SGD, multiplicative noise):
- ``medium``: G ``seed_shape [5, 5, 32]``, blocks ``[[128, 2], [64, 3], [64, 3]]``, decoder head
  -> 58x58, the tiny built-in classifier at 58x58 (finishes in a few minutes on 2 cores);
- ``paper224``: the paper's decoder G at 224 and EfficientNet-Lite0 (slow on CPU: use few steps).
``--samples 1,4`` measures each listed ``transform.samples`` (copies of each image D sees per step)
with the quickstart's transform (jitter 8, scale 0.9-1.1, rotate 5) on every row.
``--grouped`` adds a micro-benchmark behind the untrained-configuration choice: one conv of B
independent generators as B separate Conv2D calls (what dgn does) vs one ``Conv2D(groups=B)`` on the
channel-stacked images, forward + backward.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dgn.optvis.generate_all import generate_all
from dgn.optvis.generator import build_batched_generator
from dgn.classifiers import load_classifier  # noqa: E402
from dgn.config import load_config  # noqa: E402
from dgn.optvis.objectives import BatchClassObjective
from dgn import build  # noqa: E402
from dgn.build import make_optimizer  # noqa: E402
from dgn.optvis.optimize import Problem, make_stepper

# The two configurations of the paper (speed only: random weights; the decoder is not trained).
CONFIGURATIONS = {
    "pretrained": """
generator: {head: decoder, noise: multiplicative, noise_stddev: 0.2294, alpha_init: ones, alpha_activation: relu}
objective: {activation: logit, others: 0.01}  # the paper's relu: same speed, warnings for dead targets
regularizers: {image_gamma_l1: 0.0, alpha_l2: 0.1}
optimizer: {name: sgd, learning_rate: 0.01, momentum: 0.1, nesterov: true}
""",
    "untrained": """
generator: {head: image, trainable: all, noise: additive, noise_stddev: 2.0, alpha_init: glorot_uniform,
            alpha_activation: linear}
objective: {activation: logit, others: 0.01}
regularizers: {image_gamma_l1: 0.01, alpha_l2: 0.0}
optimizer: {name: adamax, learning_rate: 0.002}
""",
}
PRESETS = {
    "medium": """
classifier: {model: tiny, weights: none, class_index: none, input_size: 58, num_classes: 1000}
generator: {seed_shape: [5, 5, 32], blocks: [[128, 2], [64, 3], [64, 3]]}
""",
    "paper224": """
classifier: {model: efficientnet_lite0, weights: none, class_index: none}
""",
}
STEPS = {"pretrained": 1200, "untrained": 500}  # the paper's steps per class


def merge_yaml(*texts):
    import yaml

    merged = {}
    for text in texts:
        for key, value in (yaml.safe_load(text) or {}).items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return yaml.safe_dump(merged)


def backend_description():
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        return f"backend jax {jax.__version__} on {len(devices)} x {devices[0].device_kind}"
    if backend == "tensorflow":
        import tensorflow as tf

        return f"backend tensorflow {tf.__version__} on CPU"
    return f"backend {backend}"


def steady(cfg, classifier, rows, steps, stack="copies"):
    batched = build_batched_generator(build.parameterization(cfg.data), build.transforms(cfg.data), classifier, rows,
                                      cfg["seed"], stack)
    objective = BatchClassObjective(list(range(rows)), "relu", 0.01)
    stepper = make_stepper(Problem(batched.model, classifier.optimizing.features(()), objective, batched.f0),
                           make_optimizer(cfg["optimizer"]))
    stepper.step()  # trace + warm up
    start = time.perf_counter()
    for _ in range(steps):
        np.asarray(stepper.step()[0])
    seconds = time.perf_counter() - start
    return rows * steps / seconds, seconds / steps


def end_to_end(cfg, classes, batch):
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        generate_all(cfg, classes=f"0:{classes}", batch=batch, out_dir=out, progress=False, finish=False)
        seconds = time.perf_counter() - start
    return classes * cfg["steps"] / seconds, seconds


def grouped_micro(batches, size=58, channels=64, kernel=3, repeats=5):
    import tensorflow as tf

    rows = []
    for b in batches:
        x = tf.random.normal((1, size, size, b * channels))
        xs = [tf.random.normal((1, size, size, channels)) for _ in range(b)]
        grouped = keras.layers.Conv2D(b * channels, kernel, padding="same", groups=b)
        separate = [keras.layers.Conv2D(channels, kernel, padding="same") for _ in range(b)]
        grouped.build(x.shape)
        for layer in separate:
            layer.build(xs[0].shape)

        @tf.function
        def step_grouped():
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(grouped(x) ** 2)
            return tape.gradient(loss, [x] + grouped.trainable_variables)

        @tf.function
        def step_separate():
            with tf.GradientTape() as tape:
                tape.watch(xs)
                loss = tf.add_n([tf.reduce_sum(layer(v) ** 2) for layer, v in zip(separate, xs)])
            variables = [w for layer in separate for w in layer.trainable_variables]
            return tape.gradient(loss, xs + variables)

        times = {}
        for name, fn in (("separate", step_separate), ("grouped", step_grouped)):
            fn()
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            times[name] = (time.perf_counter() - start) / repeats
        rows.append((b, times["separate"], times["grouped"]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="medium")
    parser.add_argument("--configuration", choices=sorted(CONFIGURATIONS), default="pretrained",
                        help="pretrained: one frozen decoder, B alpha rows; untrained: B generators")
    parser.add_argument("--batches", default="1,4,16,64")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--classes", type=int, default=16, help="classes of the end-to-end comparison (0: skip)")
    parser.add_argument("--precision", default="float32",
                        help="comma list of float32, mixed_bfloat16: each is measured (default float32)")
    parser.add_argument("--grouped", action="store_true", help="also time grouped vs separate convolutions")
    parser.add_argument("--stack", default="copies",
                        help="untrained configuration: comma list of copies, vmap (JAX only): each is measured")
    parser.add_argument("--samples", default=None,
                        help="comma list of transform.samples, each measured with the quickstart's transform")
    parser.add_argument("--json")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    text = merge_yaml(PRESETS[args.preset], CONFIGURATIONS[args.configuration])
    transform = ["transform.jitter=8", "transform.scale=[0.9,1.1]", "transform.rotate=5"] if args.samples else []
    cfg = load_config(text=text, overrides=[f"steps={args.steps}", "final.mode=last"] + transform)
    samples = [int(n) for n in args.samples.split(",")] if args.samples else [1]
    if args.configuration == "pretrained":
        cfg.data["generator"]["trainable"] = "alpha"  # random frozen decoder: speed only (no trained decoder)
    precisions = args.precision.split(",")
    classifier = load_classifier(cfg["classifier"])
    size = classifier.input_shape[0]
    print(f"{backend_description()}, Keras {keras.__version__}, {os.cpu_count()} CPUs ({platform.machine()}); "
          f"preset {args.preset}: {size}x{size}, classifier {classifier.name}, {args.configuration} configuration, "
          f"random weights; {args.steps} timed steps after 1 warm-up")
    results = {"preset": args.preset, "configuration": args.configuration, "backend": backend_description(),
               "steady": [], "end_to_end": []}
    steps = STEPS[args.configuration]
    stacks = args.stack.split(",") if args.configuration == "untrained" else ["copies"]
    print(f"\n| precision | stack | transform.samples | batch B | image-steps/s | s per step | speed-up vs first row "
          f"| 1,000 classes x {steps} steps |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    base = None
    for precision in precisions:
        cfg.data["precision"] = precision
        classifier = load_classifier(cfg["classifier"], precision)
        for stack in stacks:
            for n in samples:
                cfg.data["transform"]["samples"] = n
                for b in batches:
                    rate, per_step = steady(cfg, classifier, b, args.steps, stack)
                    base = base or rate
                    results["steady"].append({"precision": precision, "stack": stack, "samples": n, "batch": b,
                                              "image_steps_per_s": rate, "s_per_step": per_step})
                    print(f"| {precision} | {stack} | {n} | {b} | {rate:.2f} | {per_step:.3f} | {rate / base:.2f}x "
                          f"| {1000 * steps / rate / 60:.1f} min |", flush=True)
        cfg.data["transform"]["samples"] = samples[0]
    if args.classes:
        print(f"\nend to end, generate-all of {args.classes} classes x {args.steps} steps "
              f"(build, trace, steps, evaluation, files):\n")
        print("| precision | run | seconds | image-steps/s | speed-up |")
        print("|---|---|---:|---:|---:|")
        loop = None
        for precision in precisions:
            cfg.data["precision"] = precision
            for b in [1] + [b for b in batches if 1 < b <= args.classes]:
                rate, seconds = end_to_end(cfg, args.classes, b)
                loop = loop or rate
                name = "one class at a time (batch 1)" if b == 1 else f"batch {b}"
                results["end_to_end"].append({"precision": precision, "batch": b, "seconds": seconds,
                                              "image_steps_per_s": rate})
                print(f"| {precision} | {name} | {seconds:.1f} | {rate:.2f} | {rate / loop:.2f}x |", flush=True)
    if args.grouped:
        results["grouped"] = []
        print("\nuntrained configuration, one conv 64->64 k3 at 58x58 of B generators, forward + backward:\n")
        print("| B | B separate Conv2D (dgn) s | Conv2D(groups=B) s |")
        print("|---:|---:|---:|")
        for b, sep, grp in grouped_micro([b for b in batches if b > 1]):
            results["grouped"].append({"batch": b, "separate_s": sep, "grouped_s": grp})
            print(f"| {b} | {sep:.4f} | {grp:.4f} |", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
