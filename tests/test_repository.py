"""The repository itself: photos (ImageNet's above all, in ../shared/data) never enter it."""

import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHOTO_EXTENSIONS = (".jpg", ".jpeg")
SKIPPED_FOLDERS = {".git", ".venv", "runs", ".whl", "__pycache__", ".pytest_cache"}


def project_files():
    """The tracked files of a git checkout; elsewhere (an unpacked archive) every file under the
    project but the ignored folders."""
    if shutil.which("git") and os.path.isdir(os.path.join(ROOT, ".git")):
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
        return out.stdout.splitlines()
    files = []
    for folder, subfolders, names in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if d not in SKIPPED_FOLDERS and not d.endswith(".egg-info")]
        files += [os.path.relpath(os.path.join(folder, n), ROOT) for n in names]
    return files


def test_no_jpeg_in_the_project():
    files = project_files()
    assert "README.md" in files  # the listing found the project
    photos = [f for f in files if f.lower().endswith(PHOTO_EXTENSIONS)]
    assert photos == [], f"JPEG files in the project (photos stay in ../shared): {photos}"
