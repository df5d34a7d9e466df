"""Does a decoder trained with the paper's last layer (ReLU conv, then a norm on batch statistics)
start a run whose last norm is an affine map after a linear conv (``dae.output_norm: moving``,
``dae.output_activation: linear``) where it left off? Prints the validation PSNR (dB, 8-bit RGB, as
eval-dae computes it, clipped to 0..255) and the loss training sees (the unclipped mean squared
error in D's input space) of the trained weights rebuilt with each last layer, in evaluation mode (moving
averages) and in training mode (batch statistics in the hidden norms), and with the last norm on
each image's own statistics (``generator.norm: image``, how the paper's pretrained configuration
generates).

    python scripts/dae_last_layer_switch.py DIR [--config configs/dae-dogs.yaml]
        [--weights weights/dae-dogs-efficientnet_lite0] [--limit 48]
"""

import argparse
import sys

import numpy as np

from dgn.errors import DgnError


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("data", help="a photo folder; its validation split (train-dae's) is used")
    p.add_argument("--config", default="configs/dae-dogs.yaml")
    p.add_argument("--weights", default="weights/dae-dogs-efficientnet_lite0")
    p.add_argument("--limit", type=int, default=48, help="the first N validation photos")
    args = p.parse_args(argv)
    if args.limit < 1:
        p.error(f"--limit {args.limit}: give a whole number of at least 1")
    try:
        compare(args)
    except DgnError as exc:  # a bad folder, config or weights: one line, exit 2
        print(f"dae_last_layer_switch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def compare(args):

    from dgn import build, preprocessing
    from dgn.autoencoder.evaluate import center_crops
    from dgn.autoencoder.files import load_trained
    from dgn.config import load_config
    from dgn.optvis.generator import build_decoder

    cfg = load_config(args.config, [f"dae.data={args.data}"])
    spec, training = build.autoencoder(cfg.data), build.dae_training(cfg.data)
    encoder, decoder, meta = load_trained(spec, args.weights)
    size, space = meta["input_size"], meta["preprocessing"]
    crops, _ = center_crops(training, args.data, size, "val", args.limit)
    x = preprocessing.from_rgb(crops.astype("float32"), space)
    codes = [encoder(x[i:i + 8], training=False) for i in range(0, len(x), 8)]

    def psnr(model, training_mode):
        """PSNR of the 8-bit reconstructions (clipped to 0..255, as eval-dae) and, after a slash, the
        loss training sees: the mean squared error in D's input space, unclipped."""
        y = np.concatenate([np.asarray(model(c, training=training_mode)).astype("float64") for c in codes])
        err = preprocessing.to_uint8_batch(y, space).astype("float64") - crops
        loss = np.mean((y - x) ** 2)
        return f"{10 * np.log10(255.0 ** 2 / np.mean(err ** 2)):.3f} dB / loss {loss:.4f}"

    print(f"{len(crops)} validation photos of {args.data}, weights {args.weights} "
          f"(last norm {meta.get('output_norm')}, last conv {meta.get('output_activation') or 'as built'})")
    print(f"  as trained, evaluation mode: {psnr(decoder, False)}")
    seed_shape, blocks = spec.sized(size)
    # "image": each image normalized by its own statistics, then gamma and beta, as the paper's
    # pretrained configuration generates (generator.norm: image)
    for activation, norm in (("relu", "batch"), ("linear", "moving"), ("relu", "moving"), ("linear", "image")):
        rebuilt = build_decoder(seed_shape, blocks, head="decoder", norm=meta["norm"],
                                output_activation=activation, output_norm=norm)
        rebuilt.set_weights(decoder.get_weights())
        print(f"  last conv {activation:6s} last norm {norm:6s}: evaluation mode {psnr(rebuilt, False)}, "
              f"training mode {psnr(rebuilt, True)}")


if __name__ == "__main__":
    sys.exit(main())
