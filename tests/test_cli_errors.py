"""Each bad input ends with exit code 2 and one line on stderr naming the problem, no traceback."""

import os
import subprocess
import sys

import pytest

from dgn.cli import main


def run_cli(capfd, *argv):
    code = main(list(argv))
    captured = capfd.readouterr()
    return code, captured.err.strip().splitlines()


def assert_one_line(code, lines, *words):
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("dgn: error: ")
    assert "Traceback" not in lines[0]
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("extra,words", [
    ("optimiser: {name: adam}\n", ["unknown key 'optimiser'", "valid keys"]),
    ("optimizer: {lr: 0.1}\n", ["unknown key 'optimizer.lr'", "learning_rate"]),
    ("steps: many\n", ["'steps' must be an integer"]),
    ("steps: 0\n", ["'steps' must be >= 1"]),
    ("final: {mode: mean}\n", ["'final.mode'", "valid: last, median"]),
    ("classifier: {model: tiny, weights: missing.weights.h5}\n", ["file not found", "missing.weights.h5"]),
    ("generator: {trainable: alpha, head: decoder}\n", ["decoder_weights"]),
    ("generator: {seed_shape: [4, 4]}\n", ["seed_shape"]),
])
def test_bad_config_values(tmp_path, capfd, extra, words):
    path = tmp_path / "bad.yaml"
    path.write_text(extra)
    assert_one_line(*run_cli(capfd, "generate", str(path)), *words)


def test_missing_config_file(capfd):
    assert_one_line(*run_cli(capfd, "generate", "nope.yaml"), "config file not found", "nope.yaml")


def test_unreadable_yaml(tmp_path, capfd):
    path = tmp_path / "broken.yaml"
    path.write_text("steps: [1, 2\nseed: 3\n")
    assert_one_line(*run_cli(capfd, "generate", str(path)), "unreadable YAML", "line")


def test_bad_set(tiny_config, capfd):
    cfg = tiny_config()
    assert_one_line(*run_cli(capfd, "generate", cfg, "--set", "steps"), "expected KEY=VALUE")
    assert_one_line(*run_cli(capfd, "generate", cfg, "--set", "optimizer=3"), "is a section")
    assert_one_line(*run_cli(capfd, "generate", cfg, "--set", "steps=[1"), "not valid YAML")
    assert_one_line(*run_cli(capfd, "generate", cfg, "--set", "seed=-1"), "'seed' must be >= 0")


def test_unknown_class_layer_channel(tiny_config, capfd):
    cfg = tiny_config()
    assert_one_line(*run_cli(capfd, "generate", cfg, "--target", "10"), "out of range", "0..9")
    assert_one_line(*run_cli(capfd, "generate", cfg, "--target", "tench"), "unknown class")
    assert_one_line(*run_cli(capfd, "generate", cfg, "--target", "channel:block5_conv1:3"), "no layer")
    assert_one_line(*run_cli(capfd, "generate", cfg, "--target", "channel:conv2:16"), "channels 0..15")


def test_generator_size_must_match_classifier(tiny_config, capfd):
    cfg = tiny_config("classifier: {model: tiny, weights: none, class_index: none, input_size: 40}\n")
    assert_one_line(*run_cli(capfd, "generate", cfg), "makes 32x32 images", "reads 40x40", "remove generator.seed_shape")


def test_classifier_top_must_be_softmax(tmp_path, capfd):
    import keras
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(4, activation="sigmoid")(x))
    model.save(tmp_path / "sigmoid.keras")
    path = tmp_path / "c.yaml"
    path.write_text(f"classifier: {{model: {tmp_path / 'sigmoid.keras'}, preprocessing: tf}}\n")
    assert_one_line(*run_cli(capfd, "generate", str(path)), "softmax")


def test_argparse_errors_exit_2(capfd):
    with pytest.raises(SystemExit) as exc:
        main(["generate"])
    assert exc.value.code == 2
    assert "dgn: error:" in capfd.readouterr().err


CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs")


@pytest.mark.parametrize("argv,words", [
    (["generate", os.path.join(CONFIGS, "quickstart.yaml"), "--steps", "x"], ["invalid int value: 'x'", "dgn generate -h"]),
    (["eval-dae", os.path.join(CONFIGS, "dae-dogs.yaml"), "--data", "d", "--split", "test"], ["invalid choice: 'test'"]),
    (["train-dae", os.path.join(CONFIGS, "dae-dogs.yaml"), "--time-limit", "0"], ["--time-limit 0", "positive"]),
    ([], ["COMMAND"]),
])
def test_bad_command_lines(capfd, argv, words):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit, raised by dgn's parser
        code = exc.code
    assert_one_line(code, capfd.readouterr().err.strip().splitlines(), *words)


def test_autoencoder_of_another_size_fails_before_the_photos_are_read(tmp_path, capfd):
    # the photo folder does not exist: the size check must come first, and name a seed that fits
    cfg = os.path.join(CONFIGS, "dae-dogs-58px.yaml")
    missing = str(tmp_path / "no-photos")
    out = str(tmp_path / "run")
    assert_one_line(*run_cli(capfd, "train-dae", cfg, "--data", missing, "--out", out,
                             "--set", "generator.seed_shape=[1, 1, 1]"),
                    "makes no image", "58x58", "generator.seed_shape [5, 5, c]")
    assert_one_line(*run_cli(capfd, "train-dae", cfg, "--data", missing, "--out", out,
                             "--set", "classifier.input_size=57"),
                    "57x57", "42x42, 58x58, 74x74", "generator.blocks")


def test_an_out_that_is_a_file_is_refused_before_any_work(tiny_config, tmp_path, capfd):
    """Issue 35, item 1: every command's --out is a folder; a file there is one line, exit 2, at once (the
    check comes before the backend loads and before any optimization), and the file is left as it was."""
    import time

    config = tiny_config()
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"not read")
    taken = tmp_path / "taken.txt"
    taken.write_text("mine")
    for argv in (["generate", config], ["generate-all", config, "--classes", "0:1"], ["compare", config],
                 ["dream", config, "--image", str(photo)], ["explain", config, "--image", str(photo)],
                 ["examples", config, "--data", str(tmp_path)], ["sheet", str(tmp_path)]):
        for out in (taken, taken / "inside"):
            started = time.time()
            assert_one_line(*run_cli(capfd, *argv, "--out", str(out)), "--out", "is", "a file", "give a folder")
            assert time.time() - started < 5, argv
    assert taken.read_text() == "mine"
    from dgn.errors import DgnError
    from dgn.optvis.render import generate
    from dgn.config import load_config

    with pytest.raises(DgnError, match="is a file"):   # the library refuses it too, before the classifier loads
        generate(load_config(config), out_dir=str(taken), progress=False)


def test_generate_then_generate_all_of_one_config_share_a_folder(tiny_config, tmp_path, capfd):
    """Issue 35, item 5: `dgn generate CONFIG` then `dgn generate-all CONFIG` into one folder coexist; with
    other --steps the refusal says that it is the same config with other values, and what to do."""
    config = tiny_config()
    out = str(tmp_path / "run")
    assert main(["generate", config, "--target", "3", "--steps", "2", "--out", out, "--quiet"]) == 0
    assert main(["generate-all", config, "--classes", "0:2", "--steps", "2", "--out", out, "--quiet"]) == 0
    assert sorted(n for n in os.listdir(out) if n.endswith(".png")) == ["0000.png", "0001.png", "0003.png"]
    capfd.readouterr()
    assert_one_line(*run_cli(capfd, "generate-all", config, "--classes", "0:2", "--out", out, "--quiet"),
                    "another config's run", "steps (there 2, here 40)", "the same config", "--steps", "--force")


# Ctrl-C at two moments of a start: while the command line loads (an import), and while the command loads Keras.
CTRL_C = """
import importlib.abc, sys
import os, signal
MODULE = sys.argv[1]
class Interrupt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == MODULE:
            raise KeyboardInterrupt
        if "signal:" + name == MODULE:   # a real SIGINT in the middle of the import, which then goes on
            os.kill(os.getpid(), signal.SIGINT)
sys.meta_path.insert(0, Interrupt())
from dgn import command_line
sys.argv = ["dgn", "generate", sys.argv[2], "--steps", "1", "--out", sys.argv[3]]
sys.exit(command_line())
"""


@pytest.mark.parametrize("module", ["yaml", "keras", "signal:keras"])
def test_ctrl_c_while_starting_is_one_line(tiny_config, tmp_path, module):
    done = subprocess.run([sys.executable, "-c", CTRL_C, module, tiny_config(), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines() == ["dgn: interrupted"]
