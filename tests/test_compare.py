"""``dgn compare`` on the tiny classifier: one sheet row per method, a summary with a judge."""

import json

import numpy as np
from PIL import Image

from dgn.cli import main

TINY = """
classifier: {model: tiny, weights: none, class_index: none}
objective: {targets: ["3"], activation: logit, others: 0.0}
steps: 6
"""
METHODS = {
    "pixel": "parameterization: {kind: pixel}\noptimizer: {name: sgd, learning_rate: 0.5}\n",
    "fourier": "parameterization: {kind: fourier}\noptimizer: {name: adam, learning_rate: 0.05}\n",
    "generator": "generator: {seed_shape: [5, 5, 8], blocks: [[16, 2], [16, 2]]}\n",
}


def _configs(tmp_path):
    paths = []
    for name, extra in METHODS.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(f"name: {name}\n" + TINY + extra)
        paths.append(str(path))
    return paths


def test_compare_writes_one_row_per_method_and_a_judged_summary(tmp_path, capsys):
    configs = _configs(tmp_path)
    judge = tmp_path / "judge.yaml"
    judge.write_text("classifier: {model: tiny, weights: none, class_index: none}\n")
    out = tmp_path / "cmp"
    assert main(["compare", *configs, "--target", "3", "--target", "5", "--judge", str(judge),
                 "--out", str(out), "--quiet"]) == 0
    sheet = np.asarray(Image.open(out / "compare.png"))
    # 3 rows x 2 columns of 32x32 tiles with three-line (41-pixel) labels and 4-pixel gaps
    assert sheet.shape == (4 + 3 * (128 + 41 + 4), 4 + 2 * (128 + 4), 3)  # 32x32 images enlarged 4x: labels fit
    summary = json.loads((out / "compare.json").read_text())
    assert [m["method"] for m in summary["methods"]] == ["pixel", "fourier", "generator"]
    assert [m["parameterization"] for m in summary["methods"]] == ["pixel", "fourier", "generator"]
    for row in summary["methods"]:
        assert [r["target"] for r in row["results"]] == ["3", "5"]
        for r in row["results"]:
            assert (out / r["image"]).is_file() and (out / r["image"].replace(".png", ".json")).is_file()
            assert 1 <= r["judge"]["rank"] <= 10 and 0 <= r["judge"]["prob"] <= 1
    assert set(summary["means"]) == {"pixel", "fourier", "generator"}
    assert "top1_judge" in summary["means"]["pixel"]
    printed = capsys.readouterr().out
    assert "3 methods x 2 targets" in printed and "pixel: top-1 under D" in printed


def test_compare_refuses_duplicate_names_and_unknown_targets_at_once(tmp_path, capsys):
    configs = _configs(tmp_path)
    assert main(["compare", configs[0], configs[0], "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "same name" in capsys.readouterr().err
    assert main(["compare", *configs[:2], "--target", "99", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "o").exists()   # nothing ran before the typo was found


def test_tiles_are_labelled_with_their_target():
    from dgn.optvis.objectives import target_label
    assert target_label({"kind": "class", "index": 207, "name": "golden_retriever"}) == "golden_retriever"
    assert target_label({"kind": "class", "index": 3, "name": None}) == "3"
    assert target_label({"kind": "classes", "classes": [{"index": 1, "name": "goldfish"},
                                                        {"index": 2, "name": None}]}) == "goldfish+2"
    assert target_label({"kind": "channel", "layer": "block5_conv3", "channel": 37}) == "block5_conv3:37"
    assert target_label({"kind": "neuron", "layer": "conv", "channel": 2, "y": 3, "x": 4}) == "conv:2@3,4"


def test_compare_resumes_with_the_images_of_the_same_config(tmp_path, capsys):
    """A second compare into the same folder reuses what the same config made; a changed config or a
    damaged file is made again."""
    pixel, fourier, _ = _configs(tmp_path)
    out = tmp_path / "cmp"
    assert main(["compare", pixel, "--target", "3", "--out", str(out), "--quiet"]) == 0
    first = (out / "pixel" / "0003.json").read_text()
    capsys.readouterr()
    # extended by a target and a method: the finished image is reused byte for byte
    assert main(["compare", pixel, fourier, "--target", "3", "--target", "5", "--out", str(out), "--quiet"]) == 0
    assert "(1 finished images reused)" in capsys.readouterr().out
    assert (out / "pixel" / "0003.json").read_text() == first
    summary = json.loads((out / "compare.json").read_text())
    assert summary["reused"] == 1 and [r["target"] for r in summary["methods"][1]["results"]] == ["3", "5"]
    # other steps: made again
    assert main(["compare", pixel, "--target", "3", "--steps", "4", "--out", str(out), "--quiet"]) == 0
    assert "reused" not in capsys.readouterr().out
    assert json.loads((out / "pixel" / "0003.json").read_text())["steps"] == 4
    # a file the config names changed (retrained weights under the same path): made again
    index = tmp_path / "index.json"
    index.write_text(json.dumps({str(i): [f"n{i:08d}", f"class_{i}"] for i in range(10)}))
    sets = ["--set", f"classifier.class_index={index}", "--steps", "4"]
    assert main(["compare", pixel, "--target", "3", *sets, "--out", str(out / "named"), "--quiet"]) == 0
    assert main(["compare", pixel, "--target", "3", *sets, "--out", str(out / "named"), "--quiet"]) == 0
    assert "(1 finished images reused)" in capsys.readouterr().out
    index.write_text(index.read_text() + "\n")
    assert main(["compare", pixel, "--target", "3", *sets, "--out", str(out / "named"), "--quiet"]) == 0
    assert "reused" not in capsys.readouterr().out
    # a truncated PNG: made again
    png = out / "pixel" / "0003.png"
    png.write_bytes(png.read_bytes()[:40])
    assert main(["compare", pixel, "--target", "3", "--steps", "4", "--out", str(out), "--quiet"]) == 0
    assert "reused" not in capsys.readouterr().out
    assert Image.open(png).size == (32, 32)


def test_compare_with_real_photos_and_their_maps(tmp_path, capsys):
    """--photos adds a row with each class target's top photo under D; --maps its attribution map."""
    import os

    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (40, 36, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    configs = _configs(tmp_path)[:1]
    out = tmp_path / "cmp"
    assert main(["compare", *configs, "--target", "3", "--target", "channel:conv2:1", "--photos", str(photos),
                 "--maps", "gradcam", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "compare.json").read_text())
    first, second = summary["photos"]
    assert first["target"] == "3" and first["photo"] in os.listdir(photos) and first["map"] == "gradcam"
    assert second["photo"] is None                       # channels: class targets only
    sheet = np.asarray(Image.open(out / "compare.png"))
    assert sheet.shape[0] == 4 + 3 * (128 + 41 + 4)      # the method, the photos and the maps
    assert main(["compare", *configs, "--target", "3", "--maps", "gradcam", "--out", str(out), "--quiet"]) == 2
    assert "--photos" in capsys.readouterr().err


def test_long_tile_labels_wrap_instead_of_being_cut():
    from dgn.runs.sheets import _wrap, label_font
    font = label_font(11)
    label = "D 1.00 J 0.41 toy fox terrier [toy-fourier-run]"
    lines = _wrap(label, font, 124, 3)
    assert 1 < len(lines) <= 3 and " ".join(lines) == label          # all of it, on the tile's width
    assert all(font.getlength(line) <= 124 for line in lines)
    cut = _wrap("word " * 40, font, 124, 3)
    assert len(cut) == 3 and cut[-1].endswith("…")                   # too long for three lines: an ellipsis
