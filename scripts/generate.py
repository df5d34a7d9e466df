"""Thin wrapper for per-class runs: ``python scripts/generate.py CONFIG [options]`` is ``dgn generate CONFIG [options]``.

    python scripts/generate.py configs/quickstart.yaml --target flamingo --target channel:top_conv:12
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from dgn.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["generate"] + sys.argv[1:]))
