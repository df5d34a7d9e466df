"""The repository itself: photos (ImageNet's above all, in ../shared/data) never enter it."""

import fnmatch
import os
import shutil
import subprocess

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
