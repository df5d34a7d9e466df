"""The paper's claim, measured: are the images of a trained decoder recognised more often, and are they more
natural, than those of the untrained generator and of the Fourier image? (issue 33)

    python scripts/benchmark_decoder_claim.py [--judges efficientnet_lite2,mobilenet_v2] [--seeds 0,1]
        [--configs pretrained-efficientnet-lite0,decoder-prior-efficientnet-lite0,quickstart,fourier-efficientnet-lite0]
        [--classes 16 ImageNet classes] [--steps N] [--set KEY=VALUE ...] [--out runs/claim]

For every config and seed: `dgn generate-all CONFIG --classes ... --seed S` (resumable: a finished run is
reused), then `dgn report RUN --judge J` for each judge (its judge.json kept as judge-J.json), then the
images' naturalness: the slope of their radially averaged power spectrum (grey level, log power against
log frequency between 1/32 and 1/4 cycles a pixel) beside that of photos (``--photos DIR``: the
held-out dog photos), and the mean absolute log-ratio of the two mean spectra over that band (0: the
photos' spectrum). Prints one markdown table: D's top-1, each judge's top-1 / top-5 / mean probability,
the spectral slope and distance, seconds a class.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
from PIL import Image

CLASSES = "1,130,207,309,430,817,949,980,22,291,340,417,508,547,850,954"   # the 8 + 8 of docs/measurements.md
CONFIGS = "pretrained-efficientnet-lite0,decoder-prior-efficientnet-lite0,quickstart,fourier-efficientnet-lite0"


def power_spectrum(images, bins=64):
    """Radially averaged power spectrum of grey-level images (n, H, W, 3) uint8, resized to 224: (frequencies
    in cycles a pixel, mean power) over ``bins`` rings up to 0.5."""
    powers = []
    for img in images:
        grey = np.asarray(Image.fromarray(img).convert("L").resize((224, 224), Image.Resampling.BICUBIC), "float64")
        grey = (grey - grey.mean()) * np.outer(np.hanning(224), np.hanning(224))
        powers.append(np.abs(np.fft.fftshift(np.fft.fft2(grey))) ** 2)
    power = np.mean(powers, axis=0)
    fy, fx = np.meshgrid(np.fft.fftshift(np.fft.fftfreq(224)), np.fft.fftshift(np.fft.fftfreq(224)), indexing="ij")
    radius = np.hypot(fy, fx)
    edges = np.linspace(0, 0.5, bins + 1)
    freq, mean = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        ring = (radius >= lo) & (radius < hi)
        if ring.any() and lo > 0:
            freq.append((lo + hi) / 2)
            mean.append(power[ring].mean())
    return np.array(freq), np.array(mean)


def spectral_figures(images, photo_spectrum, band=(1 / 32, 1 / 4)):
    """(slope of log power against log frequency in ``band``, mean |log10(power / photos' power)| there)."""
    freq, power = power_spectrum(images)
    keep = (freq >= band[0]) & (freq <= band[1])
    slope = np.polyfit(np.log10(freq[keep]), np.log10(power[keep]), 1)[0]
    pf, pp = photo_spectrum
    # compare shapes: both spectra scaled to the same total power in the band
    a, b = power[keep] / power[keep].sum(), pp[keep] / pp[keep].sum()
    return float(slope), float(np.mean(np.abs(np.log10(a / b))))


def load_pngs(folder):
    """The run's class images (those with a sidecar), as uint8 RGB arrays."""
    from dgn.runs.report import load_entries

    return [np.asarray(Image.open(os.path.join(folder, e["image"])).convert("RGB")) for e in load_entries(folder)]


def photos(folder, limit=256):
    from dgn.autoencoder.model import DaeTraining
    from dgn.autoencoder.evaluate import center_crops

    crops, _ = center_crops(DaeTraining(validation=0.1), folder, 224, "val", limit)
    return list(crops)


def run(cmd):
    print("$ " + " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=CONFIGS)
    parser.add_argument("--classes", default=CLASSES)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--judges", default="efficientnet_lite2,mobilenet_v2")
    parser.add_argument("--steps", type=int, default=None, help="steps for every config (default: each config's)")
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE for every config (dgn --set)")
    parser.add_argument("--photos", default=os.path.join("..", "shared", "data", "imagenet-dogs"))
    parser.add_argument("--out", default=os.path.join("runs", "claim"))
    args = parser.parse_args()
    dgn = [sys.executable, "-m", "dgn"]
    photo_spectrum = power_spectrum(photos(args.photos))
    rows = []
    for config in args.configs.split(","):
        for seed in args.seeds.split(","):
            out = os.path.join(args.out, f"{config}-seed{seed}")
            cmd = dgn + ["generate-all", os.path.join("configs", config + ".yaml"), "--classes", args.classes,
                         "--seed", seed, "--out", out, "--quiet"]
            cmd += [x for s in args.set for x in ("--set", s)]
            if args.steps:
                cmd += ["--steps", str(args.steps)]
            start = time.monotonic()
            run(cmd)
            seconds = (time.monotonic() - start) / len(args.classes.split(","))
            row = {"config": config, "seed": seed, "seconds_per_class": round(seconds, 1), "judges": {}}
            for judge in args.judges.split(","):
                run(dgn + ["report", out, "--judge", judge, "--quiet"])
                shutil.copy(os.path.join(out, "report.json"), os.path.join(out, f"report-{judge}.json"))
                report = json.load(open(os.path.join(out, f"report-{judge}.json")))
                row["judges"][judge] = counts(report["judge"])
            row["d"] = counts(report)
            row["slope"], row["spectrum_distance"] = spectral_figures(load_pngs(out), photo_spectrum)
            rows.append(row)
            print(json.dumps(row), flush=True)
    photo_slope, _ = spectral_figures(photos(args.photos), photo_spectrum)
    print_table(rows, args.judges.split(","), photo_slope)


def counts(report):
    """top-1, top-5, classes and mean target probability of a report.json (D's) or of its "judge" part."""
    return {"n": report["classes"], "top1": report["top1"], "top5": report["top5"],
            "mean_p": round(report["mean_prob"], 3)}


def print_table(rows, judges, photo_slope):
    head = "| config | seed | D top-1 / mean p | " + " | ".join(f"{j} top-1 / top-5 / mean p" for j in judges) + \
           " | spectral slope (photos " + f"{photo_slope:.2f}) | spectrum distance | s / class |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for r in rows:
        cells = [f"{r['judges'][j]['top1']}/{r['judges'][j]['n']} / {r['judges'][j]['top5']} / "
                 f"{r['judges'][j]['mean_p']}" for j in judges]
        print(f"| {r['config']} | {r['seed']} | {r['d']['top1']}/{r['d']['n']} / {r['d']['mean_p']} | " + " | ".join(cells) +
              f" | {r['slope']:.2f} | {r['spectrum_distance']:.3f} | {r['seconds_per_class']} |")


if __name__ == "__main__":
    main()
