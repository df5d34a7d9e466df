"""Photos per second of ``dgn examples``' pass over a folder against a bare ``model.predict`` loop.

    python scripts/benchmark_examples.py DIR [--photos 1000] [--layer block5c_add] [--batch 32] [--json out.json]

Both read the same first ``--photos`` photos of DIR (recursively, sorted), decode and fit each to
EfficientNet-Lite0's 224 x 224 input (the ImageNet evaluation crop), and run D in batches of
``--batch``:
- bare: for each batch, decode the photos one after another, then ``model.predict(batch)`` of the
  shipped classifier's Keras model (its softmax output);
- dgn: :class:`dgn.attribution.examples.Pass` into an empty cache folder: D up to ``--layer`` and its logits, the
  per-channel maximum over positions and its position reduced inside the compiled call, photos of the
  next batch decoded on a second thread meanwhile, one cache file per 256 photos.
Each is run twice and the faster run kept (the first also pays for tracing). Prints one JSON line.
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--layer", default="block5c_add")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--json")
    args = parser.parse_args(argv)

    import keras

    import dgn
    from dgn.attribution import examples
    from dgn.data import list_images
    from dgn.images import fit_to_input, load_image

    clf = dgn.load_classifier("efficientnet_lite0")
    paths = list_images(args.data)[:args.photos]

    def bare():
        start = time.perf_counter()
        for i in range(0, len(paths), args.batch):
            pixels = np.stack([fit_to_input(load_image(p), (224, 224), "imagenet") for p in paths[i:i + args.batch]])
            clf.model.predict(clf.from_pixels(pixels), verbose=0, batch_size=args.batch)
        return time.perf_counter() - start

    def ours():
        with tempfile.TemporaryDirectory() as cache:
            run = examples.Pass(clf, args.data, [args.layer, "logits"], cache, "auto", args.batch)
            run.paths = paths
            run.chunks = (len(paths) + examples.CHUNK - 1) // examples.CHUNK
            start = time.perf_counter()
            run.run(progress=False)
            return time.perf_counter() - start

    times = {"bare": min(bare(), bare()), "dgn": min(ours(), ours())}
    out = {"photos": len(paths), "batch": args.batch, "layer": args.layer,
           "bare_photos_per_s": round(len(paths) / times["bare"], 2),
           "dgn_photos_per_s": round(len(paths) / times["dgn"], 2),
           "ratio": round(times["bare"] / times["dgn"], 3),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
           "backend": keras.backend.backend(), "keras": keras.__version__,
           "date": time.strftime("%Y-%m-%d")}
    print(json.dumps(out))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)


if __name__ == "__main__":
    main()
