"""The repository itself: photos (ImageNet's above all, in ../shared/data) never enter it."""

import fnmatch
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO_EXTENSIONS = (".jpg", ".jpeg")


def project_files():
    """The tracked files of a git checkout; elsewhere (an unpacked archive) every file under the
    project outside the folders .gitignore names."""
    if shutil.which("git") and os.path.isdir(os.path.join(ROOT, ".git")):
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout.splitlines()
    with open(os.path.join(ROOT, ".gitignore")) as f:  # its folder patterns: .venv/, runs/, *.egg-info/ ...
        ignored = [line.strip().rstrip("/") for line in f if line.strip().endswith("/")]
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders
                         if d != ".git" and not any(fnmatch.fnmatch(d, p) for p in ignored)]
        files += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names]
    return files


def test_no_jpeg_in_the_project():
    files = project_files()
    assert "README.md" in files  # the listing found the project
    photos = [f for f in files if f.lower().endswith(PHOTO_EXTENSIONS)]
    assert photos == [], f"JPEG files in the project (photos stay in ../shared): {photos}"


def test_the_readme_python_example_runs_as_written(tmp_path, monkeypatch):
    """The README's Python block, run as a user would (in a fresh folder), with 2 steps instead of 300."""
    import re as _re

    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    blocks = _re.findall(r"```python\n(.*?)```", text, flags=_re.S)
    assert len(blocks) == 1, "one Python example in the README"
    code = blocks[0].replace("steps=300", "steps=2")
    assert "steps=2" in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    for stem in ("golden_retriever", "block4a_12"):
        assert os.path.isfile(tmp_path / "runs" / "python" / f"{stem}.png")
        assert os.path.isfile(tmp_path / "runs" / "python" / f"{stem}.json")


def test_no_import_cycles_between_dgn_modules():
    """Module-level and function-level imports alike: the commands sit on the library, not beside it."""
    import ast

    mods = {}
    for folder, _, files in os.walk(os.path.join(ROOT, "dgn")):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                mods[module[:-9] if module.endswith(".__init__") else module] = path
    graph = {m: set() for m in mods}
    for module, path in mods.items():
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dgn"):
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[module] |= {t for t in targets if t in mods and t not in (module, "dgn")}

    def reaches(start, goal, seen):
        for nxt in graph[start]:
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                if reaches(nxt, goal, seen):
                    return True
        return False

    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_every_config_in_configs_loads():
    """Each config the project ships passes validation as it is, but for the two that name a file the
    user makes first: the shapes classifier (scripts/train_shapes_classifier.py) and the VGG-16
    decoder (trained with train-dae, VGG-16's ImageNet weights being a download); those fail, where the
    file is missing, naming it."""
    from dgn.config import load_config
    from dgn.errors import ConfigError

    made_first = {"own-classifier-example.yaml": os.path.join("runs", "shapes", "shapes.keras"),
                  "paper-pretrained-vgg16.yaml": os.path.join("weights", "dae-dogs-vgg16")}
    folder = os.path.join(ROOT, "configs")
    names = sorted(n for n in os.listdir(folder) if n.endswith(".yaml"))
    assert "dae-dogs-4blocks.yaml" in names and len(names) >= 16
    for name in names:
        path = os.path.join(folder, name)
        if name in made_first and not os.path.exists(os.path.join(ROOT, made_first[name])):
            with pytest.raises(ConfigError, match="file not found") as caught:
                load_config(path)
            assert made_first[name] in str(caught.value)
            continue
        assert load_config(path).data["name"], name


def test_the_api_reference_builds_without_warnings(tmp_path):
    """scripts/api_docs.py (pdoc, from the docstrings; linked from the README) documents every module."""
    done = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "api_docs.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for page in ("dgn.html", "dgn/optvis/render.html", "dgn/optvis/param.html", "dgn/attribution.html",
                 "dgn/runs/folder.html", "dgn/cli.html"):
        assert (tmp_path / page).is_file(), page
