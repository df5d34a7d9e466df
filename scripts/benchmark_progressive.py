"""Seconds per update of each stage of the progressive recipe (dgn.autoencoder.progressive), per precision, batch size
and thread count, on random photos (the cost does not depend on the pixels):

    python scripts/benchmark_progressive.py [--sides 30,58,113,224] [--batches 8,16]
        [--precisions float32,mixed_bfloat16] [--threads 1] [--updates 6] [--windows 0,57]

Each setting runs in a fresh process (threads and precision are fixed when TensorFlow starts): a warm-up
of 2 updates, then ``--updates`` timed ones. Prints a markdown table (seconds per update and
milliseconds per photo) for docs/autoencoder.md; quote it with the machine and what else ran.
"""

import argparse
import json
import os
import subprocess
import sys
import time

ONE = r"""
import json, sys, time
import numpy as np
from dgn.autoencoder.progressive import Trainer, ProgressiveRecipe
side, batch, precision, updates, window = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
from dgn.optvis.generator import PAPER_BLOCKS
sides = [30, 58, 113, 224]
stages = [dict(side=s, updates=250, batch_size=batch, fade=10) for s in sides[:sides.index(side) + 1]]
stages[-1]["window"] = window
trainer = Trainer(ProgressiveRecipe(stages=stages, precision=precision), [5, 5, 128], PAPER_BLOCKS, "tf", 224, "/tmp/x")
model, fade, _ = trainer._stage_model(len(stages) - 1)
rng = np.random.default_rng(0)
x = rng.uniform(-1, 1, (batch, trainer.small, trainer.small, 3)).astype("float32")
y = rng.uniform(-1, 1, (batch,) + tuple(model.output.shape[1:])).astype("float32")
if window:
    x = (x, np.zeros((batch, 2), "int32"))
for _ in range(2):
    model.train_on_batch(x, y)
start = time.perf_counter()
for _ in range(updates):
    model.train_on_batch(x, y)
print(json.dumps({"seconds": (time.perf_counter() - start) / updates}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", default="30,58,113,224")
    parser.add_argument("--batches", default="8,16")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16")
    parser.add_argument("--threads", default="1")
    parser.add_argument("--updates", type=int, default=6)
    parser.add_argument("--windows", default="0", help="window sizes of the stage's new block (0: whole image)")
    args = parser.parse_args()
    rows = []
    print("| stage | precision | batch | threads | window | s / update | ms / photo |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    for side in args.sides.split(","):
        for precision in args.precisions.split(","):
            for batch in args.batches.split(","):
                for threads, window in ((t, w) for t in args.threads.split(",") for w in args.windows.split(",")):
                    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS="1",
                               OMP_NUM_THREADS=threads, TF_CPP_MIN_LOG_LEVEL="3")
                    out = subprocess.run([sys.executable, "-c", ONE, side, batch, precision, str(args.updates), window],
                                         env=env, capture_output=True, text=True, check=True)
                    seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
                    rows.append((side, precision, batch, threads, seconds))
                    print(f"| {side} | {precision} | {batch} | {threads} | {window} | {seconds:.3f} | "
                          f"{1000 * seconds / int(batch):.0f} |", flush=True)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} CPU cores")


if __name__ == "__main__":
    main()
