"""Thin wrapper for autoencoder training (resumable): ``python scripts/train_dae.py CONFIG [options]`` is ``dgn train-dae CONFIG [options]``.

    python scripts/train_dae.py configs/dae-dogs.yaml
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dgn.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["train-dae"] + sys.argv[1:]))
