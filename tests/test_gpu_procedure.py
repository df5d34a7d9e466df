"""The GPU training procedure (scripts/gpu_dae.py, docs/gpu-training.md) run end to end on the CPU:
prepare packs photos and starting weights, a copy of what travels plays the GPU machine's tree and
runs ``device`` under JAX with $OUT a temporary folder, finish checks what came back, evaluates and
replaces the "shipped" weights (a temporary folder) only when validation PSNR improves."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import gpu_dae  # noqa: E402
import gpu_pack  # noqa: E402
import gpu_travel  # noqa: E402
from dgn.errors import DgnError  # noqa: E402

CONFIG = """
name: dae-tiny
seed: 0
classifier: {model: tiny, weights: none, class_index: none}
generator: {seed_shape: [5, 5, 8], blocks: [[16, 2], [16, 2]], head: decoder}
dae:
  data: [photos/dogs-a, photos/dogs-b]
  encoder_filters: [8, 8]
  dense: 32
  batch_size: 4
  steps_per_epoch: 2
  epochs: 1
  learning_rate: 0.001
  output_norm: moving
  output_activation: linear
"""


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def is_git_checkout():
    return shutil.which("git") is not None and os.path.isdir(os.path.join(ROOT, ".git"))


def make_photos(folder, count, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:40, 0:44] / 40.0
    for i in range(count):
        a, b, c = rng.uniform(0.2, 1.0, 3)
        img = np.stack([a * yy, b * xx, c * (1 - yy)], -1) * 255 + rng.normal(0, 8, (40, 44, 3))
        path = os.path.join(folder, f"n0{seed}", f"img{i:03d}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        Image.fromarray(np.clip(img, 0, 255).astype("uint8")).save(path)


def device_tree(dest, travel):
    """What a call would put on the GPU machine: the checkout's tracked and untracked-not-ignored
    files, each tracked file prepare would send away as a (dangling) link, plus the carried folder."""
    big = {rel for rel in gpu_travel.tracked_files(ROOT)
           if os.path.isfile(os.path.join(ROOT, rel)) and os.path.getsize(os.path.join(ROOT, rel))
           >= gpu_travel.AWAY_MIN_BYTES}
    for rel in gpu_travel.tree_files(ROOT):
        src, dst = os.path.join(ROOT, rel), os.path.join(dest, rel)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if rel in big or os.path.islink(src):
            os.symlink(os.path.join("..", "runs", "gpu", "stash", rel), dst)
        else:
            shutil.copyfile(src, dst)
    shutil.copytree(travel, os.path.join(dest, gpu_dae.TRAVEL))


@pytest.mark.skipif(not is_git_checkout(), reason="what travels is defined by git (not a checkout)")
def test_gpu_procedure_end_to_end(tmp_path):
    from dgn.autoencoder.files import export_trained
    from dgn.autoencoder.training import train_dae
    from dgn.config import load_config

    make_photos(str(tmp_path / "photos" / "dogs-a"), 14, 1)
    make_photos(str(tmp_path / "photos" / "dogs-b"), 14, 2)
    config = tmp_path / "dae-tiny.yaml"
    config.write_text(CONFIG)
    shipped = str(tmp_path / "weights" / "dae-tiny")
    from dgn import build
    data = load_config(str(config)).data
    train_dae(build.autoencoder(data), build.dae_training(data), build.dae_classifier(data),
              out_dir=str(tmp_path / "init-run"), verbose=0, record=data)
    export_trained(str(tmp_path / "init-run"), shipped)
    before = {n: sha(os.path.join(shipped, n)) for n in os.listdir(shipped)}
    gpu_dir = str(tmp_path / "gpu")
    common = ["--root", ROOT, "--gpu-dir", gpu_dir]

    # prepare: the starting weights and the training photos (never a validation photo) in travel/
    assert gpu_dae.main(common + ["prepare", "--config", str(config), "--weights", shipped, "--no-wheels",
                                  "--no-away", "--epochs", "2", "--steps-per-epoch", "2", "--batch", "4",
                                  "--warmup", "0", "--minutes", "1", "--norms", "frozen"]) == 0
    travel = os.path.join(gpu_dir, "travel")
    plan = json.load(open(os.path.join(travel, "plan.json")))
    from dgn.data import list_and_split
    train_count = sum(len(list_and_split(str(tmp_path / "photos" / f))[1]) for f in ("dogs-a", "dogs-b"))
    assert plan["window"]["photos"] == plan["window"]["of"] == train_count
    assert sorted(plan["photos"]) == ["photos/dogs-a", "photos/dogs-b"]
    packed = [f for _, _, files in os.walk(os.path.join(travel, "photos")) for f in files]
    assert len(packed) == train_count and all(f.endswith(".webp") for f in packed)
    sizes = gpu_travel.travel_size(ROOT, [os.path.relpath(travel, ROOT)], assume_away=True)
    assert sizes["total"] <= gpu_travel.TREE_LIMIT

    # the GPU machine: a copy of what travels, under JAX, $OUT a temporary folder
    tree, out = str(tmp_path / "device"), str(tmp_path / "out")
    device_tree(tree, travel)
    env = {**os.environ, "KERAS_BACKEND": "jax", "OUT": out, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)
    # without a GPU the device step trains nothing and says why (a CUDA plugin that failed to load)
    refused = subprocess.run([sys.executable, "scripts/gpu_dae.py", "device"], cwd=tree, env=env,
                             capture_output=True, text=True, timeout=240)
    assert refused.returncode == 1 and "JAX sees no GPU" in refused.stdout, refused.stdout + refused.stderr[-2000:]
    assert json.load(open(os.path.join(out, "result.json")))["status"] == "failed"
    shutil.rmtree(out)
    done = subprocess.run([sys.executable, "scripts/gpu_dae.py", "device", "--allow-cpu"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    back = gpu_travel.check_back(out)
    assert back["problems"] == [] and len(back["files"]) <= 8
    assert all(size <= 16 * 2 ** 20 for size in back["files"].values())
    result = json.load(open(os.path.join(out, "result.json")))
    assert result["status"] == "ok" and result["train"]["epochs"] == 2 and result["code_stats"]
    for shard in result["bundle"]["shards"]:
        assert sha(os.path.join(out, shard["file"])) == shard["sha256"]
    assert set(result["bundle"]["members"]) >= {"decoder.weights.h5", "encoder.weights.h5", "decoder.json",
                                                 "code_stats.npz", "log.csv"}

    # a damaged shard: refused, nothing replaced
    broken = str(tmp_path / "broken")
    shutil.copytree(out, broken)
    with open(os.path.join(broken, "dae.tar.000"), "r+b") as fh:
        fh.seek(100)
        byte = fh.read(1)
        fh.seek(100)
        fh.write(bytes([byte[0] ^ 1]))
    finish = common + ["finish", "--config", str(config), "--weights", shipped]
    assert gpu_dae.main(finish + ["--from", broken]) == 2
    assert {n: sha(os.path.join(shipped, n)) for n in os.listdir(shipped)} == before

    # replaced when the new PSNR is higher than the shipped one's + min-gain (here forced by -100 dB)
    assert gpu_dae.main(finish + ["--from", out, "--min-gain", "-100"]) == 0
    report = json.load(open(os.path.join(gpu_dir, "results", os.listdir(os.path.join(gpu_dir, "results"))[0],
                                         "finish.json")))
    assert report["replaced"] is True
    assert "psnr" in report["validation"]["new"] and "psnr" in report["validation"]["shipped"]
    members = result["bundle"]["members"]
    for name in ("decoder.weights.h5", "encoder.weights.h5", "decoder.json", "code_stats.npz"):
        assert sha(os.path.join(shipped, name)) == members[name]["sha256"]
    history = json.load(open(os.path.join(shipped, "decoder.json")))["history"]
    assert len(history) == 2 and history[-1]["backend"] == "jax" and history[-1]["init"] == "dae-tiny"
    assert os.path.isfile(os.path.join(report["result"], "recon-val.png"))
    assert plan["cosine"] == {"updates": 18000, "start": 0, "learning_rate": 0.0002}
    assert "dae.decay_steps=18000" in plan["sets"] and "dae.schedule_start=0" in plan["sets"]
    # the norms trained on fixed statistics there (prepare --norms frozen; the default for weights whose
    # last run recorded no freeze_norms, as the shipped ones; these recorded false: batch, test above)
    assert "dae.freeze_norms=true" in plan["sets"] and history[-1]["freeze_norms"] is True
    # the next run takes up the learning rate's cosine where this one left it (2 epochs x 2 updates),
    # read from the replaced weights' decoder.json, as the next prepare reads it
    meta = json.load(open(os.path.join(shipped, "decoder.json")))
    assert gpu_dae.cosine_position(meta, 18000, 0.0002) == 4

    # not replaced when it is not better: the same weights again give the same PSNR
    replaced = {n: sha(os.path.join(shipped, n)) for n in os.listdir(shipped)}
    assert gpu_dae.main(finish + ["--from", out]) == 0
    report = json.load(open(os.path.join(report["result"], "finish.json")))
    assert report["replaced"] is False
    assert report["validation"]["new"]["psnr"] == report["validation"]["shipped"]["psnr"]
    assert {n: sha(os.path.join(shipped, n)) for n in os.listdir(shipped)} == replaced
    state = json.load(open(os.path.join(gpu_dir, "state.json")))
    assert state["next_offset"] == 0  # every training photo travelled: the next window starts over


def test_runs_follow_one_cosine_until_it_ends():
    run = {"decay_steps": 1000, "learning_rate": 0.001, "schedule_start": 600, "images_seen": 2400, "batch_size": 24}
    assert gpu_dae.cosine_position({"history": [run]}, 1000, 0.001) == 700
    # another cosine, another peak, a run from before schedule_start existed: a new cosine begins
    assert gpu_dae.cosine_position({"history": [run]}, 2000, 0.001) == 0
    assert gpu_dae.cosine_position({"history": [run]}, 1000, 0.0002) == 0
    assert gpu_dae.cosine_position({"history": []}, 1000, 0.001) == 0
    assert gpu_dae.cosine_position({"history": [{**run, "schedule_start": None}]}, 1000, 0.001) == 0
    assert gpu_dae.cosine_position({"history": [{**run, "images_seen": None}]}, 1000, 0.001) == 0
    # the run that began the cosine spent its warm-up before it (Keras's CosineDecay): 100 updates, 99 of them
    first = {**run, "schedule_start": 0, "warmup_steps": 100}
    assert gpu_dae.cosine_position({"history": [first]}, 1000, 0.001) == 1
    old = {k: v for k, v in run.items() if k != "schedule_start"}
    assert gpu_dae.cosine_position({"history": [old]}, 1000, 0.001) == 0
    # the cosine has ended (its last run reached update 1000): a new one begins
    assert gpu_dae.cosine_position({"history": [{**run, "images_seen": 9600}]}, 1000, 0.001) == 0
    assert gpu_dae.cosine_position({"history": [run]}, 0, 0.001) == 0  # --cosine-updates 0: each run its own


def test_shards_round_trip_and_refuse_damage(tmp_path):
    src = tmp_path / "blob"
    src.write_bytes(os.urandom(5000))
    out = tmp_path / "out"
    out.mkdir()
    entry = gpu_travel.split_file(str(src), str(out), "blob.bin", shard_bytes=1500)
    assert [s["bytes"] for s in entry["shards"]] == [1500, 1500, 1500, 500]
    gpu_travel.join_shards(str(out), entry, str(tmp_path / "joined"))
    assert (tmp_path / "joined").read_bytes() == src.read_bytes()
    (out / "blob.bin.002").write_bytes(b"x" * 1500)
    with pytest.raises(DgnError, match="sha256"):
        gpu_travel.join_shards(str(out), entry, str(tmp_path / "joined2"))
    assert not (tmp_path / "joined2").exists()


def test_check_back_names_each_limit(tmp_path):
    for i in range(9):
        (tmp_path / f"f{i}").write_bytes(b"x")
    (tmp_path / "bad name").write_bytes(b"x")
    problems = gpu_travel.check_back(str(tmp_path))["problems"]
    assert any("10 files" in p for p in problems) and any("bad name" in p for p in problems)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_send_away_and_bring_back(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / ".gitignore").write_text("runs/\n")
    (tmp_path / "weights").mkdir()
    big = tmp_path / "weights" / "big.h5"
    big.write_bytes(os.urandom(300 * 1024))
    (tmp_path / "small.txt").write_text("small")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    digest, stash = sha(big), str(tmp_path / "runs" / "gpu" / "stash")
    assert gpu_travel.travel_size(str(tmp_path))["total"] > 300 * 1024
    assert gpu_travel.send_away(str(tmp_path), stash) == ["weights/big.h5"]
    assert os.path.islink(big) and sha(big) == digest          # still readable here, through the link
    assert gpu_travel.travel_size(str(tmp_path))["total"] < 1024  # sent as a link
    assert gpu_travel.send_away(str(tmp_path), stash) == []     # already away
    assert gpu_travel.bring_back(str(tmp_path), stash) == {"weights/big.h5": "restored"}
    assert not os.path.islink(big) and sha(big) == digest
    status = subprocess.run(["git", "status", "--porcelain"], cwd=tmp_path, capture_output=True, text=True)
    assert status.stdout == ""
    # a file written in its place while away (finish's new decoder) wins over the stashed copy
    gpu_travel.send_away(str(tmp_path), stash)
    os.unlink(big)
    big.write_bytes(b"new")
    assert gpu_travel.bring_back(str(tmp_path), stash) == {"weights/big.h5": "kept newer file"}
    assert big.read_bytes() == b"new" and gpu_travel.away_paths(stash) == []


def test_compact_weights_rounds_to_float16_and_keeps_large_values(tmp_path):
    import h5py

    src, dst = str(tmp_path / "a.weights.h5"), str(tmp_path / "b.weights.h5")
    kernel = np.random.default_rng(0).normal(0, 0.1, (64, 64)).astype("float32")
    with h5py.File(src, "w") as fh:
        fh.create_dataset("layers/dense/vars/0", data=kernel)
        fh.create_dataset("layers/norm/vars/3", data=np.array([1e5, 2.0], "float32"))
        fh["layers"].attrs["kind"] = "x"
    worst = gpu_pack.compact_weights(src, dst)
    with h5py.File(dst) as fh:
        assert fh["layers/dense/vars/0"].dtype == np.float16 and fh["layers"].attrs["kind"] == "x"
        assert fh["layers/norm/vars/3"].dtype == np.float32   # 1e5 does not fit float16
        assert np.max(np.abs(fh["layers/dense/vars/0"][()].astype("float32") - kernel)) == pytest.approx(worst)
    assert worst < 1e-3 and os.path.getsize(dst) < os.path.getsize(src)


def test_docs_give_the_run_tools_call():
    with open(os.path.join(ROOT, "docs", "gpu-training.md"), encoding="utf-8") as fh:
        text = fh.read()
    assert gpu_dae.COMMAND.format(travel=gpu_dae.TRAVEL) in text
    assert f'`["{gpu_dae.TRAVEL}"]`' in text and len(gpu_dae.COMMAND.format(travel=gpu_dae.TRAVEL)) <= 2000


def test_parts_of_two_epochs_are_refused(tmp_path):
    """check_parts: the decoder, encoder and decoder.json written in train-dae's order are one epoch,
    also when checkpoint.json does not name it yet; a decoder newer than the encoder (a kill between
    the two) or a decoder.json older than them is refused."""
    names = ("decoder.weights.h5", "encoder.weights.h5", "decoder.json")
    for name in names:
        (tmp_path / name).write_text("x")

    def stamp(*seconds):
        for name, t in zip(names, seconds):
            os.utime(tmp_path / name, ns=(t * 10 ** 9, t * 10 ** 9))

    stamp(1, 2, 3)
    gpu_dae.check_parts(str(tmp_path))
    for bad in ((3, 2, 4), (1, 3, 2)):
        stamp(*bad)
        with pytest.raises(gpu_dae.DgnError, match="two epochs"):
            gpu_dae.check_parts(str(tmp_path))


def test_learning_rate_defaults_follow_the_cosine_of_the_starting_weights():
    run = {"decay_steps": 1000, "learning_rate": 0.001, "schedule_start": 600, "images_seen": 2400, "batch_size": 24}
    # the starting weights' cosine goes on (update 700 of 1000): its peak, so that the runs add up
    assert gpu_dae.default_rate({"history": [run]}, 1000, scratch=False) == 0.001
    # it has ended, or it was another cosine: 2e-4 from trained weights
    assert gpu_dae.default_rate({"history": [{**run, "images_seen": 9600}]}, 1000, scratch=False) == 2e-4
    assert gpu_dae.default_rate({"history": [run]}, 2000, scratch=False) == 2e-4
    assert gpu_dae.default_rate({}, 1000, scratch=False) == 2e-4
    assert gpu_dae.default_rate({}, 1000, scratch=True) == 1e-3
    # the norms: batch from random weights, else as the weights' last run trained (frozen where unrecorded)
    assert gpu_dae.default_norms({}, scratch=True) == "batch"
    assert gpu_dae.default_norms({"history": [run]}, scratch=False) == "frozen"
    assert gpu_dae.default_norms({"history": [{**run, "freeze_norms": False}]}, scratch=False) == "batch"
    assert gpu_dae.default_norms({"history": [{**run, "freeze_norms": True}]}, scratch=False) == "frozen"


@pytest.mark.skipif(not is_git_checkout(), reason="what travels is defined by git (not a checkout)")
def test_a_run_from_random_weights_travels_no_weights_and_trains_there(tmp_path, capsys):
    make_photos(str(tmp_path / "photos" / "dogs-a"), 10, 1)
    make_photos(str(tmp_path / "photos" / "dogs-b"), 10, 2)
    config = tmp_path / "dae-tiny.yaml"
    # a config that names starting weights (of its encoder): --scratch trains from random ones all the same
    from dgn import build
    from dgn.autoencoder.training import train_dae
    from dgn.config import load_config

    config.write_text(CONFIG + "  encoder_bottleneck: 4\n")
    data = load_config(str(config)).data
    train_dae(build.autoencoder(data), build.dae_training(data), build.dae_classifier(data),
              out_dir=str(tmp_path / "weights" / "earlier"), verbose=0)
    config.write_text(CONFIG + "  encoder_bottleneck: 4\n  init: weights/earlier\n")
    gpu_dir = str(tmp_path / "gpu")
    common = ["--root", ROOT, "--gpu-dir", gpu_dir]
    prepare = common + ["prepare", "--config", str(config), "--weights", str(tmp_path / "absent"), "--no-wheels",
                        "--no-away", "--scratch", "--epochs", "1", "--steps-per-epoch", "2", "--batch", "4",
                        "--warmup", "0", "--minutes", "1"]
    # weights of another encoder than the config's: refused here in one line, not on the GPU machine
    other = str(tmp_path / "weights" / "other")
    shutil.copytree(str(tmp_path / "weights" / "earlier"), other)
    meta = json.load(open(os.path.join(other, "decoder.json")))
    with open(os.path.join(other, "decoder.json"), "w") as fh:
        json.dump({**meta, "encoder_bottleneck": 8}, fh)
    assert gpu_dae.main(common + ["prepare", "--config", str(config), "--weights", other, "--no-wheels",
                                  "--no-away"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another encoder" in err[0] and "dae.encoder_bottleneck=8" in err[0]
    # frozen norms need trained statistics: one line, nothing packed
    assert gpu_dae.main(prepare + ["--norms", "frozen"]) == 2
    assert "--scratch has none" in capsys.readouterr().err
    assert gpu_dae.main(prepare) == 0
    travel = os.path.join(gpu_dir, "travel")
    plan = json.load(open(os.path.join(travel, "plan.json")))
    assert plan["init"] is None and plan["cosine"]["learning_rate"] == 1e-3
    assert "dae.freeze_norms=false" in plan["sets"] and "dae.learning_rate=0.001" in plan["sets"]
    assert "dae.init=null" in plan["sets"]
    assert load_config(os.path.join(travel, "config.yaml"), gpu_dae.device_sets(plan, travel))["dae"]["init"] is None
    manifest = json.load(open(os.path.join(travel, "manifest.json")))
    assert set(manifest["files"]) == {"config.yaml", "plan.json"}
    assert sorted(os.listdir(travel)) == ["config.yaml", "manifest.json", "photos", "plan.json"]

    tree, out = str(tmp_path / "device"), str(tmp_path / "out")
    device_tree(tree, travel)
    env = {**os.environ, "KERAS_BACKEND": "jax", "OUT": out, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)
    done = subprocess.run([sys.executable, "scripts/gpu_dae.py", "device", "--allow-cpu"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.load(open(os.path.join(out, "result.json")))
    assert result["status"] == "ok" and result["train"]["epochs"] == 1
    dest = str(tmp_path / "back")
    gpu_dae.unpack_result(out, dest)
    meta = json.load(open(os.path.join(dest, "decoder.json")))
    # one run in its history, from no init, with the config's encoder
    assert len(meta["history"]) == 1 and meta["history"][0]["init"] is None and meta["encoder_bottleneck"] == 4
