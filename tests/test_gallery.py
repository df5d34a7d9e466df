"""RUN_DIR/index.html: the embedded data, and the page run in a real headless Chromium when installed."""

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from dgn.runs.gallery import write_gallery

NAMES = ["tench", "goldfish", "great_white_shark", "tiger_shark", "hammerhead", "electric_ray"]


def make_run(run_dir, evil=False):
    os.makedirs(run_dir, exist_ok=True)
    for i, name in enumerate(NAMES):
        if evil and i == 5:
            name = "ray</script><img src=x onerror=alert(1)>"
        stem = f"{i:04d}_{NAMES[i]}"
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(os.path.join(run_dir, stem + ".png"))
        side = {"image": stem + ".png", "target": {"kind": "class", "index": i, "wnid": f"n{i:08d}", "name": name},
                "activation": 1.0, "prob": 0.9 - 0.1 * i, "rank": 1 if i < 4 else 7,
                "top5": [{"index": i, "name": name, "prob": 0.5}], "relu_trap": None, "steps": 3,
                "config": {"name": "tiny-run", "steps": 3}}
        with open(os.path.join(run_dir, stem + ".json"), "w") as fh:
            json.dump(side, fh)


def _data(page):
    match = re.search(r'<script id="data" type="application/json">(.*?)</script>', page, re.S)
    return json.loads(match.group(1))


def test_gallery_embeds_every_image_and_escapes_names(tmp_path):
    run = str(tmp_path / "run")
    make_run(run, evil=True)
    page = open(write_gallery(run), encoding="utf-8").read()
    data = _data(page)
    assert [it["index"] for it in data["items"]] == list(range(6))
    first = data["items"][0]
    assert (first["image"], first["sidecar"], first["name"], first["rank"]) == \
        ("0000_tench.png", "0000_tench.json", "tench", 1)
    assert first["prob"] == pytest.approx(0.9) and "config" not in first["side"]
    assert data["config"]["name"] == "tiny-run" and data["report"]["classes"] == 6
    assert data["report"]["top1"] == 4
    assert page.count("</script>") == 2  # the evil name cannot close the data element
    assert data["items"][5]["name"].startswith("ray</script>")


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no chromium on this machine (Debian: apt-get install chromium)")


def _dom(browser, url, tmp_path):
    args = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_gallery_in_headless_chromium_filters_and_opens_sidecar(tmp_path):
    browser = _chromium()
    run = tmp_path / "run"
    make_run(str(run))
    url = "file://" + write_gallery(str(run))
    dom = _dom(browser, url, tmp_path)
    assert len(re.findall(r'class="tile[^"]*"', dom)) == 6
    assert "6 of 6 images" in dom and "6 classes: 4 top-1" in dom
    assert 'src="0003_tiger_shark.png"' in dom and "p 0.600 · rank 1" in dom
    # filter by name (the URL's #q= fills the box like typing does)
    dom = _dom(browser, url + "#q=shark", tmp_path)
    shown = re.findall(r'class="(tile[^"]*)"[^>]*data-image="([^"]+)"', dom)
    assert sorted(img for cls, img in shown if "hidden" not in cls) == ["0002_great_white_shark.png",
                                                                         "0003_tiger_shark.png"]
    assert "2 of 6 images" in dom
    # a click (or a #show= link) opens the full image and its sidecar
    dom = _dom(browser, url + "#show=0004_hammerhead.png", tmp_path)
    assert '<div id="overlay" class="">' in dom
    assert 'id="full" alt="" src="0004_hammerhead.png"' in dom
    assert "&quot;name&quot;: &quot;hammerhead&quot;" in dom or '"name": "hammerhead"' in dom
    assert 'href="0004_hammerhead.json"' in dom
    # with a judge's views (dgn report --judge): a second line per tile, and sorting by them
    from dgn.runs.report import JUDGE, _signature
    views = {f"{i:04d}_{n}.png": {"classifier": "lite2", "prob": 0.05 * (i + 1), "rank": 6 - i,
                                  "top1": {"index": 3, "name": "tiger_shark", "prob": 0.3},
                                  "png": _signature(str(run / f"{i:04d}_{n}.png"))} for i, n in enumerate(NAMES)}
    (run / JUDGE).write_text(json.dumps({"classifier": "lite2", "images": views}))
    url = "file://" + write_gallery(str(run))
    dom = _dom(browser, url, tmp_path)
    assert "judge p 0.300 · rank 1" in dom and "judge p 0.050 · rank 6" in dom
    assert 'title="lite2: top-1 tiger shark"' in dom
