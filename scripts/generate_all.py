"""Thin wrapper: ``python scripts/generate_all.py CONFIG [options]`` is ``dgn generate-all CONFIG [options]``.

    python scripts/generate_all.py configs/paper-pretrained-vgg16.yaml --batch 16 --shard 0/4 --out runs/vgg
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dgn.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["generate-all"] + sys.argv[1:]))
