"""dgn report and dgn sheet on run folders (made by hand here: same files dgn generate writes)."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from dgn.cli import main
from dgn.runs.report import load_entries, summarize
from dgn.runs.sheets import contact_sheets, grid


def make_run(run_dir, classes, names=None, size=32, extra=()):
    """``<stem>.png`` + ``<stem>.json`` per (index, prob, rank), as dgn generate / generate-all write them."""
    os.makedirs(run_dir, exist_ok=True)
    rng = np.random.default_rng(0)
    config = {"name": "fake-run", "steps": 3}
    items = [(f"{i:04d}_{names[i]}" if names else f"{i:04d}",
              {"kind": "class", "index": i, "wnid": f"n{i:08d}", "name": names[i] if names else None}, p, r)
             for i, p, r in classes]
    items += [(stem, target, None, None) for stem, target in extra]
    for stem, target, prob, rank in items:
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(os.path.join(run_dir, stem + ".png"))
        side = {"image": stem + ".png", "target": target, "target_spec": stem, "activation": 1.5, "prob": prob,
                "rank": rank, "top5": [{"index": 0, "wnid": None, "name": "tench", "prob": 0.5}],
                "relu_trap": None, "config": config}
        (open(os.path.join(run_dir, stem + ".json"), "w")).write(json.dumps(side))


CLASSES = [(0, 0.9, 1), (1, 0.6, 1), (2, 0.2, 3), (3, 0.05, 12), (4, 0.4, 2), (5, 0.99, 1)]


def test_report_counts_top1_top5_mean_and_worst(tmp_path, capsys):
    run = str(tmp_path / "run")
    make_run(run, CLASSES, extra=[("channel_conv2_5", {"kind": "channel", "layer": "conv2", "channel": 5})])
    assert main(["report", run]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("6 classes: 3 top-1 (50.0 %), 5 top-5 (83.3 %), mean target probability 0.523")
    assert "worst under D: 3 p=0.05 rank 12; 2 p=0.2 rank 3" in line
    report = json.loads(open(os.path.join(run, "report.json")).read())
    assert (report["classes"], report["top1"], report["top5"], report["other_targets"]) == (6, 3, 5, 1)
    assert report["mean_prob"] == pytest.approx(sum(p for _, p, _ in CLASSES) / 6)
    assert [w["index"] for w in report["worst"]][:3] == [3, 2, 4]
    assert os.path.isfile(os.path.join(run, "index.html"))  # dgn report also refreshes the gallery


def test_report_skips_broken_sidecars_and_refuses_empty_folders(tmp_path, capsys):
    run = str(tmp_path / "run")
    make_run(run, CLASSES[:2])
    open(os.path.join(run, "0007.json"), "w").write("{not json")
    open(os.path.join(run, "0008.json"), "w").write(json.dumps({"image": "0008.png", "target": {}}))  # no PNG
    assert [e["index"] for e in load_entries(run)] == [0, 1]
    assert summarize(load_entries(run))["top1"] == 2
    os.makedirs(tmp_path / "empty")
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "no images" in capsys.readouterr().err


def test_contact_sheets_10x10_labelled_by_block(tmp_path, capsys):
    run = str(tmp_path / "run")
    names = {i: f"class{i}" for i in range(300)}
    make_run(run, [(i, 0.5, 1) for i in range(100)] + [(205, 0.5, 1)], names=names,
             extra=[("channel_conv2_5", {"kind": "channel", "layer": "conv2", "channel": 5})])
    assert main(["sheet", run]) == 0
    printed = capsys.readouterr().out.split()
    assert [os.path.basename(p) for p in printed] == ["sheet_0000-0099.png", "sheet_0200-0299.png",
                                                      "sheet_targets_01.png"]
    full = np.asarray(Image.open(printed[0]))
    # 32x32 tiles upscaled x4 to 128, 4 px padding, a label strip under each tile
    label_h = 128 // 11 + 6
    assert full.shape == (4 + 10 * (128 + label_h + 4), 4 + 10 * (128 + 4), 3)
    strip = full[4 + 128:4 + 128 + label_h, 4:4 + 128]
    assert (strip < 128).any()  # the label's text is drawn
    partial = np.asarray(Image.open(printed[1]))  # block 200-299 holds 205 only: one row of 10 tiles
    assert partial.shape[0] == 4 + 1 * (128 + label_h + 4)


def test_sheets_on_dgn_generate_run_and_grid_still_works(tiny_config, tmp_path):
    run = str(tmp_path / "gen")
    assert main(["generate", tiny_config(), "--target", "3", "--target", "channel:conv2:1", "--steps", "3",
                 "--out", run, "--quiet"]) == 0
    paths = contact_sheets(run)
    assert [os.path.basename(p) for p in paths] == ["sheet_0000-0099.png", "sheet_targets_01.png"]
    assert main(["report", run]) == 0
    tiles = [np.zeros((8, 8, 3), "uint8")] * 3
    assert grid(tiles, columns=3).shape == (12, 32, 3)


def test_report_judge_counts_under_an_independent_classifier_and_keeps_its_views(tiny_config, tmp_path, capsys,
                                                                                  monkeypatch):
    import dgn.runs.judge as compare

    run = str(tmp_path / "run")
    make_run(run, CLASSES, extra=[("channel_conv2_5", {"kind": "channel", "layer": "conv2", "channel": 5})])
    judge_cfg = tiny_config()
    assert main(["report", run, "--judge", judge_cfg, "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    # by hand: the judge on each PNG
    judge = compare.load_judge(judge_cfg)
    views = {f"{i:04d}.png": compare.judge_image(judge, np.asarray(Image.open(os.path.join(run, f"{i:04d}.png"))), [i])
             for i, _, _ in CLASSES}
    saved = json.loads(open(os.path.join(run, "judge.json")).read())
    assert saved["classifier"] == judge.name and sorted(saved["images"]) == sorted(views)
    for image, view in views.items():
        assert saved["images"][image]["rank"] == view["rank"]
        assert saved["images"][image]["prob"] == pytest.approx(view["prob"], rel=1e-5)
    report = json.loads(open(os.path.join(run, "report.json")).read())
    top1 = sum(v["rank"] == 1 for v in views.values())
    top5 = sum(v["rank"] <= 5 for v in views.values())
    assert (report["judge"]["classes"], report["judge"]["top1"], report["judge"]["top5"]) == (6, top1, top5)
    assert report["judge"]["mean_prob"] == pytest.approx(np.mean([v["prob"] for v in views.values()]), rel=1e-5)
    assert f"judged by {judge.name}: {top1} top-1" in line
    # with a judge, the worst classes are the judge's (D ranks its own images first): worst judge rank first
    worst = sorted(views.items(), key=lambda kv: (-kv[1]["rank"], kv[1]["prob"]))
    assert [w["image"] for w in report["judge"]["worst"]] == [image for image, _ in worst]
    first = report["judge"]["worst"][0]
    assert f"worst under the judge: {first['label']} p={first['judge_prob']:.3g} rank {first['judge_rank']}" in line
    assert "worst under D" not in line
    assert all(w["judge_top1"] is not None for w in report["judge"]["worst"])   # no names: the judge's index
    assert report["top1"] == 3  # D's counts unchanged
    page = open(os.path.join(run, "index.html"), encoding="utf-8").read()
    assert '"judge": {"prob"' in page  # the gallery shows each image's judge view

    # a later report (generate-all writes one at its end) keeps the judge's views of unchanged PNGs,
    # and --judge again judges only what changed
    calls = []
    real = compare.judge_image
    monkeypatch.setattr(compare, "judge_image", lambda *a: calls.append(a) or real(*a))
    assert main(["report", run]) == 0 and f"judged by {judge.name}" in capsys.readouterr().out
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(os.path.join(run, "0002.png"))
    os.utime(os.path.join(run, "0002.png"), ns=(1, 1))
    assert main(["report", run]) == 0 and "(1 not judged)" in capsys.readouterr().out
    assert main(["report", run, "--judge", judge_cfg, "--quiet"]) == 0
    assert len(calls) == 1 and "(1 not judged)" not in capsys.readouterr().out


def test_an_interrupted_judging_resumes(tiny_config, tmp_path, monkeypatch, capsys):
    import dgn.runs.judge as compare
    import dgn.runs.report as report

    run = str(tmp_path / "run")
    make_run(run, [(i, 0.5, 1) for i in range(5)])
    monkeypatch.setattr(report, "SAVE_EVERY", 2)
    real, calls = compare.judge_image, []

    def dies_at_the_fourth(*args):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(compare, "judge_image", dies_at_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        report.write_report(run, judge=tiny_config(), progress=False)
    assert len(report.read_judge(run)[1]) == 2  # saved after the second image
    monkeypatch.setattr(compare, "judge_image", lambda *a: calls.append(a) or real(*a))
    rep, line = report.write_report(run, judge=tiny_config(), progress=False)
    assert len(calls) == 3 + 3 and rep["judge"]["classes"] == 5  # only the 3 unsaved ones judged again
