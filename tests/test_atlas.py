"""Layer atlases (generate-all --channels), receptive fields and dataset examples (dgn examples), and
sharded runs from a scheduler's environment, on the tiny classifier."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import dgn
from dgn.runs.shards import auto_shard
from dgn.optvis.generate_all import generate_all
from dgn.cli import main
from dgn.config import load_config
from dgn.errors import DgnError
from dgn.attribution.receptive_field import geometry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ONE_THREAD_ATLAS = """
import sys
from dgn.optvis.generate_all import generate_all
from dgn.config import load_config
from dgn.optvis.render import generate
config, out = sys.argv[1], sys.argv[2]
cfg = load_config(config, ["steps=6"])
generate_all(cfg, channels=["conv2:0:5"], batch=3, out_dir=out + "/atlas", progress=False, finish=True)
for c in range(5):
    generate(cfg, targets=[f"channel:conv2:{c}"], out_dir=out + "/one", progress=False)
"""


def _png(path):
    return np.asarray(Image.open(path), dtype=np.int32)


def test_channel_atlas_equals_per_channel_generate_and_has_layer_sheets(tiny_config, tmp_path):
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "PYTHONPATH": ROOT}
    done = subprocess.run([sys.executable, "-c", ONE_THREAD_ATLAS, tiny_config(), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for c in range(5):
        stem = f"channel_conv2_{c}"
        np.testing.assert_array_equal(_png(tmp_path / "atlas" / f"{stem}.png"), _png(tmp_path / "one" / f"{stem}.png"))
        side = json.loads((tmp_path / "atlas" / f"{stem}.json").read_text())
        alone = json.loads((tmp_path / "one" / f"{stem}.json").read_text())
        assert side["target"] == {"kind": "channel", "layer": "conv2", "channel": c}
        assert side["activation"] == pytest.approx(alone["activation"], rel=1e-5, abs=1e-6)
        assert side["batch"]["layer"] == "conv2" and side["batch"]["size"] == (3 if c < 3 else 2)
    sheets = os.listdir(tmp_path / "atlas" / "sheets")
    assert sheets == ["sheet_conv2_0000-0004.png"]
    report = json.loads((tmp_path / "atlas" / "report.json").read_text())
    assert sorted(u["label"] for u in report["units"]) == [f"conv2:{c}" for c in range(5)]
    assert all(isinstance(u["activation"], float) for u in report["units"])
    assert "5 unit images" in report["line"]
    manifest = [json.loads(line) for line in open(tmp_path / "atlas" / "manifest.jsonl")]
    assert sorted(e["unit"] for e in manifest) == [f"channel:conv2:{c}" for c in range(5)]


def test_atlas_resumes_and_rejects_bad_channel_specs(tiny_config, tmp_path, capsys):
    cfg = load_config(tiny_config(), ["steps=2"])
    out = str(tmp_path / "run")
    first = generate_all(cfg, channels=["conv1:0:2", "conv2:3"], out_dir=out, progress=False, finish=False)
    again = generate_all(cfg, channels=["conv1:0:3", "conv2:3"], out_dir=out, progress=False, finish=False)
    assert (first["generated"], again["generated"], again["skipped"]) == (3, 1, 3)
    config = tiny_config()
    for spec, words in (("nolayer", "no layer 'nolayer'"), ("conv2:16", "channels 0..15"),
                        ("conv2:4:2", "channels 0..15"), ("conv2:a", "integers")):
        assert main(["generate-all", config, "--channels", spec, "--out", out, "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, (spec, err)
    assert main(["generate-all", config, "--channels", "conv2", "--classes", "0:2", "--quiet"]) == 2
    assert "not both" in capsys.readouterr().err


def test_receptive_field_against_a_hand_computation():
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="valid", name="c1")(inputs)               # 30: size 3, start 1
    x = keras.layers.MaxPooling2D(2, name="p1")(x)                                   # 15: jump 2, size 4, start 1.5
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="c2")(x)           # 8: pad 1 -> jump 4, size 8
    x = keras.layers.Conv2D(4, 3, dilation_rate=2, padding="valid", name="c3")(x)    # k' 5: size 8 + 4*4 = 24
    skip = keras.layers.Conv2D(4, 1, name="skip")(keras.layers.ZeroPadding2D(1, name="zp")(inputs))
    out = keras.layers.Dense(3, activation="softmax", name="head")(
        keras.layers.Concatenate()([keras.layers.GlobalAveragePooling2D()(x), keras.layers.GlobalAveragePooling2D()(skip)]))
    clf = dgn.classifier(keras.Model(inputs, out), preprocessing="tf")
    g = geometry(clf, "c2")
    assert (g.jump, g.size, g.start) == ((4.0, 4.0), (8.0, 8.0), (1.5, 1.5))
    # by hand: position (3, 2) of c2 is centred on input pixel 1.5 + 4 * (3, 2) = (13.5, 9.5), 8 wide
    assert g.box(3, 2, 32, 32) == (10, 6, 18, 14) and g.box(0, 0, 32, 32) == (0, 0, 6, 6)
    g3 = geometry(clf, "c3")
    assert g3.size == (24.0, 24.0) and g3.start == (1.5 + 2 * 4, 1.5 + 2 * 4)
    assert geometry(clf, "zp").start == (-1.0, -1.0) and geometry(clf, "skip").size == (1.0, 1.0)
    assert geometry(clf, "head").whole
    # every pixel of the box, and no other, changes c2's activation at (3, 2) (a linear network of it)
    probe = keras.Model(clf.analysis.inputs, clf.layer_output("c2"))
    probes = np.zeros((32 * 32 + 1, 32, 32, 3), "float32")   # the last one all zeros: the reference
    probes[np.arange(32 * 32), np.arange(32 * 32) // 32, np.arange(32 * 32) % 32] = 1.0
    units = np.asarray(probe.predict(probes, batch_size=256, verbose=0))[:, 3, 2]
    touched = ~np.isclose(units[:-1], units[-1:], rtol=0, atol=1e-7).all(axis=-1)
    ys, xs = np.nonzero(touched.reshape(32, 32))
    assert len(ys) > 0
    assert ys.min() >= 10 and ys.max() < 18 and xs.min() >= 6 and xs.max() < 14


@pytest.fixture
def photo_folder(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "photos" / "n0001"
    folder.mkdir(parents=True)
    for i in range(11):
        size = (40 + i, 36) if i % 2 else (32, 32)
        Image.fromarray(rng.integers(0, 256, size + (3,), dtype=np.uint8)).save(folder / f"p{i:02d}.png")
    (folder / "broken.png").write_bytes(b"not a png")
    return str(tmp_path / "photos")


def test_examples_top_k_equals_a_brute_force_ranking_and_is_cached(tiny_config, tmp_path, photo_folder, capsys,
                                                                   monkeypatch):
    import dgn.attribution.examples as examples
    from dgn.classify import fit_mode
    from dgn.data import list_images
    from dgn.images import fit_to_input, load_image

    monkeypatch.setattr(examples, "CHUNK", 4)     # 12 files: 3 chunks
    config = tiny_config()
    out = str(tmp_path / "run")
    assert main(["generate", config, "--target", "channel:conv2:5", "--steps", "2", "--out", out, "--quiet"]) == 0
    # photo_folder holds one broken photo: skipped and counted, exit 2 (the one rule, report_unreadable)
    assert main(["examples", config, "--data", photo_folder, "--channels", "conv2:3:6", "--top", "4", "--out", out,
                 "--quiet"]) == 2
    line = capsys.readouterr().out
    # 12 files, one broken: 11 read (issue 35 item 16: the count is of the photos that could be read)
    assert "1 unreadable photos skipped" in line and "11 photos read" in line and "of 11 readable photos" in line
    cfg = load_config(config)
    clf = dgn.load_classifier("tiny", weights="none", class_index="none")
    paths = [p for p in list_images(photo_folder) if not p.endswith("broken.png")]
    acts = np.asarray(keras.Model(clf.analysis.inputs, clf.layer_output("conv2"))(
        clf.from_pixels(np.stack([fit_to_input(load_image(p), (32, 32), fit_mode(clf)) for p in paths]))))
    for c in (3, 4, 5):
        record = json.loads(open(os.path.join(out, "examples", f"channel_conv2_{c}.json")).read())
        peaks = acts[..., c].reshape(len(paths), -1).max(1)
        expected = [os.path.relpath(paths[i], photo_folder) for i in np.argsort(-peaks, kind="stable")[:4]]
        assert [e["photo"] for e in record["examples"]] == expected
        for e in record["examples"]:
            i = paths.index(os.path.join(photo_folder, e["photo"]))
            y, x = e["position"]
            assert acts[i, y, x, c] == pytest.approx(e["activation"], rel=1e-5)
            assert e["box"] == list(geometry(clf, "conv2").box(y, x, 32, 32))
            assert os.path.isfile(os.path.join(out, e["file"]))
    # the generated image's sidecar carries its examples; the gallery shows them
    side = json.loads(open(os.path.join(out, "channel_conv2_5.json")).read())
    assert len(side["examples"]) == 4 and "dataset examples" in open(os.path.join(out, "index.html")).read()
    assert os.path.isfile(os.path.join(out, "sheets", "sheet_conv2_examples.png"))   # image + patches per row
    # a rerun (another K) reads no photo; a lost chunk (a killed pass) is all that is read again
    assert main(["examples", config, "--data", photo_folder, "--channels", "conv2:3:6", "--top", "2", "--out", out,
                 "--quiet"]) == 2
    assert "0 photos read" in capsys.readouterr().out
    assert sorted(os.listdir(os.path.join(out, "examples", "channel_conv2_3"))) == ["01.png", "02.png"]  # none stale
    assert os.path.join("n0001", "broken.png") in json.loads(open(os.path.join(out, "examples", "unreadable.json")).read())
    cache = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(out, "examples", "cache")) for f in fs]
    os.remove(sorted(cache)[-1])
    assert main(["examples", config, "--data", photo_folder, "--channels", "conv2:3:6", "--out", out, "--quiet"]) == 2
    assert "4 photos read" in capsys.readouterr().out
    # classes: the top photos by logit
    assert main(["examples", config, "--data", photo_folder, "--classes", "2", "--top", "3", "--out", out,
                 "--maps", "gradcam", "--quiet"]) == 2
    record = json.loads(open(os.path.join(out, "examples", "0002.json")).read())
    assert record["maps"] == "gradcam" and all(os.path.isfile(os.path.join(out, e["map"])) for e in record["examples"])
    assert main(["examples", config, "--data", photo_folder, "--classes", "2", "--out", out, "--maps", "nope",
                 "--quiet"]) == 2 and "unknown attribution method" in capsys.readouterr().err
    logits = clf.predict_logits(clf.from_pixels(np.stack([fit_to_input(load_image(p), (32, 32), "center")
                                                          for p in paths])))
    expected = [os.path.relpath(paths[i], photo_folder) for i in np.argsort(-logits[:, 2], kind="stable")[:3]]
    assert [e["photo"] for e in record["examples"]] == expected
    del cfg


def test_examples_bad_input_is_one_line(tiny_config, tmp_path, capsys):
    config = tiny_config()
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    (broken / "b.jpg").write_bytes(b"")
    for _ in range(2):   # and again, from the cache
        assert main(["examples", config, "--data", str(broken), "--channels", "conv2:0:2", "--out",
                     str(tmp_path / "run"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "could be read" in err, err
    for args, words in ((["--data", str(tmp_path / "missing"), "--channels", "conv2"], "not found"),
                        (["--data", str(empty), "--channels", "conv2"], "no photos"),
                        (["--data", str(empty)], "--channels"),
                        (["--data", str(empty), "--channels", "conv9"], "no layer"),
                        (["--data", str(empty), "--channels", "conv2:99"], "channels 0..15"),
                        (["--data", str(empty), "--channels", "conv2", "--top", "0"], "at least 1")):
        assert main(["examples", config, *args, "--out", str(tmp_path / "run"), "--quiet"]) == 2, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, (args, err)


def test_shard_auto_reads_the_schedulers_environment():
    assert auto_shard({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3"}) == (2, 3)
    assert auto_shard({"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "4"}) == (1, 3)
    assert auto_shard({"JOB_COMPLETION_INDEX": "0", "DGN_SHARD_COUNT": "4"}) == (0, 4)
    assert auto_shard({"DGN_SHARD_INDEX": "1", "DGN_SHARD_COUNT": "2"}) == (1, 2)
    for env, words in (({}, "no shard in the environment"), ({"DGN_SHARD_INDEX": "x", "DGN_SHARD_COUNT": "2"},
                                                              "integers"),
                       ({"JOB_COMPLETION_INDEX": "4", "DGN_SHARD_COUNT": "4"}, "index must be 0..3"),
                       ({"SLURM_ARRAY_TASK_ID": "1"}, "not SLURM_ARRAY_TASK_COUNT")):
        with pytest.raises(DgnError, match=words):
            auto_shard(env)


def test_three_processes_with_shard_auto_fill_one_run(tiny_config, tmp_path):
    """Three processes of one SLURM array into one folder: one manifest, and sheets, report and gallery
    written once the last shard ends."""
    config, out = tiny_config(), str(tmp_path / "atlas")
    procs = []
    for i in range(3):
        env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1",
               "SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_COUNT": "3"}
        procs.append(subprocess.Popen([sys.executable, "-m", "dgn", "generate-all", config, "--channels", "conv2:0:7",
                                       "--steps", "2", "--shard", "auto", "--out", out, "--quiet"],
                                      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-500:] for r in results]
    manifest = [json.loads(line) for line in open(os.path.join(out, "manifest.jsonl"))]
    assert sorted(e["unit"] for e in manifest) == sorted(f"channel:conv2:{c}" for c in range(7))
    assert sorted({e["shard"] for e in manifest}) == ["0/3", "1/3", "2/3"]
    assert os.path.isfile(os.path.join(out, "index.html")) and os.path.isfile(os.path.join(out, "report.json"))
    assert os.listdir(os.path.join(out, "sheets")) == ["sheet_conv2_0000-0006.png"]


def test_the_scheduler_scripts_shard_automatically():
    import yaml

    job = yaml.safe_load(open(os.path.join(ROOT, "scripts", "k8s_atlas_job.yaml")))
    spec = job["spec"]
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert spec["completionMode"] == "Indexed" and int(env["DGN_SHARD_COUNT"]) == spec["completions"]
    assert container["args"][:1] == ["generate-all"] and "--shard" in container["args"]
    assert container["args"][container["args"].index("--shard") + 1] == "auto"
    script = open(os.path.join(ROOT, "scripts", "slurm_atlas.sh")).read()
    assert "--shard auto" in script and "#SBATCH" in script
    done = subprocess.run(["bash", "-n", os.path.join(ROOT, "scripts", "slurm_atlas.sh")], capture_output=True)
    assert done.returncode == 0
