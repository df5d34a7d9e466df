"""What travels to the GPU machine and what comes back (the `run` tool's limits, docs/gpu-training.md).

A call sends a copy of the checkout: the files git tracks and the untracked ones it does not ignore,
as they are in the working tree (a symbolic link travels as a link, not as what it points to), plus
the ignored paths named in ``carry``; all of it at most 64 MiB. What the command writes under $OUT
comes back: at most 8 files of at most 16 MiB each, 64 MiB together.

The shipped weights alone (weights/, 105 MB) are over that limit, so :func:`send_away` moves every
tracked file of ``min_bytes`` or more into an ignored stash and leaves a relative symbolic link in its
place: git and the local code read the same bytes through the link, a call sends the link alone.
:func:`bring_back` puts the files back. :func:`split_file` / :func:`join_shards` cut a file into
numbered shards with their sha256 and put it together again, refusing any shard that changed.
"""

import hashlib
import json
import os
import re
import subprocess

from dgn.errors import DgnError
from dgn.runs.outputs import write_json

MIB = 2 ** 20
TREE_LIMIT = 64 * MIB           # what one call may send
BACK_FILES = 8                  # what one call may bring back: files ...
BACK_FILE_LIMIT = 16 * MIB      # ... of at most this size ...
BACK_TOTAL_LIMIT = 64 * MIB     # ... and this much together
SHARD_BYTES = BACK_FILE_LIMIT - 64 * 1024   # a little under the limit
AWAY_MIN_BYTES = 256 * 1024     # tracked files at least this large are sent away before a call
BACK_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
AWAY_LIST = "away.json"
LINK_BYTES = 256                # at most what a link left by send_away adds to a call


def sha256_file(path, chunk=4 * MIB):
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _git_files(root, *args):
    try:
        out = subprocess.run(["git", "ls-files", "-z", *args], cwd=root, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise DgnError(f"{root} is not a git checkout (git ls-files failed: {exc}); run this from the project")
    return [p for p in out.stdout.decode("utf-8").split("\0") if p]


def tracked_files(root):
    return _git_files(root, "--cached")


def tree_files(root):
    """{relative path: bytes it adds to a call} of what travels without ``carry``: tracked files and
    untracked ones git does not ignore, as they are now (a link counts as a link; a tracked file
    missing from the working tree is not there to travel)."""
    sizes = {}
    for rel in _git_files(root, "--cached", "--others", "--exclude-standard"):
        path = os.path.join(root, rel)
        if os.path.lexists(path):
            sizes[rel] = os.lstat(path).st_size
    return sizes


def folder_files(root, rel):
    """{relative path: bytes} of every file below ``root/rel`` (links as links)."""
    sizes, top = {}, os.path.join(root, rel)
    if os.path.islink(top) or os.path.isfile(top):
        return {rel: os.lstat(top).st_size}
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            sizes[os.path.relpath(path, root)] = os.lstat(path).st_size
    return sizes


def travel_size(root, carry=(), assume_away=False, min_bytes=AWAY_MIN_BYTES):
    """Bytes a call sends: {"tree": ..., "carry": {path: bytes}, "total": ..., "largest": [(path, bytes)]}.
    ``assume_away``: count each tracked file of ``min_bytes`` or more as the link :func:`send_away` leaves."""
    tree = tree_files(root)
    if assume_away:
        for rel in tracked_files(root):
            path = os.path.join(root, rel)
            if rel in tree and not os.path.islink(path) and tree[rel] >= min_bytes:
                tree[rel] = LINK_BYTES
    carried = {c: sum(folder_files(root, c).values()) for c in carry}
    total = sum(tree.values()) + sum(carried.values())
    largest = sorted(tree.items(), key=lambda kv: -kv[1])[:5]
    return {"tree": sum(tree.values()), "carry": carried, "total": total, "limit": TREE_LIMIT, "largest": largest}


def send_away(root, stash, min_bytes=AWAY_MIN_BYTES):
    """Moves every tracked regular file of ``min_bytes`` or more into ``stash`` (an ignored folder of
    the checkout that no call carries) and leaves a relative link to it in its place. Returns the paths
    sent away now; a file already away stays as it is."""
    stash = os.path.abspath(stash)
    listing = os.path.join(stash, AWAY_LIST)
    away = _read_away(listing)
    moved = []
    for rel in tracked_files(root):
        path = os.path.join(root, rel)
        if os.path.islink(path) or not os.path.isfile(path) or os.path.getsize(path) < min_bytes:
            continue
        kept = os.path.join(stash, rel)
        if os.path.lexists(kept):
            raise DgnError(f"{kept} already exists: an earlier send-away was not brought back; run "
                           f"`python scripts/gpu_dae.py back` first")
        os.makedirs(os.path.dirname(kept), exist_ok=True)
        away[rel] = {"bytes": os.path.getsize(path), "sha256": sha256_file(path)}
        write_json(listing, away)          # listed before it moves: a kill leaves it findable
        os.replace(path, kept)
        os.symlink(os.path.relpath(kept, os.path.dirname(path)), path)
        moved.append(rel)
    return moved


def bring_back(root, stash):
    """Puts every file :func:`send_away` moved back in place of its link. A path that holds a regular
    file again (written meanwhile, e.g. a new decoder) keeps that file; the stashed copy is dropped.
    Returns {path: "restored" | "restored, changed while away" | "kept newer file"}."""
    stash = os.path.abspath(stash)
    listing = os.path.join(stash, AWAY_LIST)
    away = _read_away(listing)
    done = {}
    for rel, info in sorted(away.items()):
        path, kept = os.path.join(root, rel), os.path.join(stash, rel)
        if not os.path.exists(kept):
            if os.path.isfile(path) and not os.path.islink(path):
                done[rel] = "kept newer file"
                continue
            raise DgnError(f"{rel} is away but its copy {kept} is missing; restore it with `git checkout -- {rel}`")
        if os.path.isfile(path) and not os.path.islink(path):
            os.unlink(kept)
            done[rel] = "kept newer file"
        else:
            changed = sha256_file(kept) != info["sha256"]   # written through the link meanwhile: keep that
            os.replace(kept, path)             # replaces the link in one step
            done[rel] = "restored, changed while away" if changed else "restored"
    if os.path.exists(listing):
        os.unlink(listing)
    return done


def away_paths(stash):
    return sorted(_read_away(os.path.join(os.path.abspath(stash), AWAY_LIST)))


def _read_away(listing):
    if not os.path.isfile(listing):
        return {}
    with open(listing, encoding="utf-8") as fh:
        return json.load(fh)


def split_file(src, out_dir, name, shard_bytes=SHARD_BYTES):
    """Cuts ``src`` into ``name.000``, ``name.001``, ... of at most ``shard_bytes`` in ``out_dir``;
    returns {"name", "bytes", "sha256", "shards": [{"file", "bytes", "sha256"}]}."""
    if not BACK_NAME.match(name):
        raise DgnError(f"shard name {name!r}: use letters, digits, '.', '_' and '-' only")
    whole, shards = hashlib.sha256(), []
    with open(src, "rb") as fh:
        for i, block in enumerate(iter(lambda: fh.read(shard_bytes), b"")):
            file = f"{name}.{i:03d}"
            with open(os.path.join(out_dir, file), "wb") as out:
                out.write(block)
            whole.update(block)
            shards.append({"file": file, "bytes": len(block), "sha256": hashlib.sha256(block).hexdigest()})
    return {"name": name, "bytes": sum(s["bytes"] for s in shards), "sha256": whole.hexdigest(), "shards": shards}


def join_shards(folder, entry, dest):
    """Writes the file that :func:`split_file` described in ``entry`` to ``dest`` from the shards in
    ``folder``, after checking each shard's and the whole file's sha256."""
    whole = hashlib.sha256()
    tmp = dest + ".part"
    with open(tmp, "wb") as out:
        for shard in entry["shards"]:
            path = os.path.join(folder, shard["file"])
            if not os.path.isfile(path):
                raise DgnError(f"shard {path} is missing: fetch every file the run returned")
            with open(path, "rb") as fh:
                block = fh.read()
            if len(block) != shard["bytes"] or hashlib.sha256(block).hexdigest() != shard["sha256"]:
                os.unlink(tmp)
                raise DgnError(f"shard {path} does not match its sha256 in result.json (damaged or from another run)")
            whole.update(block)
            out.write(block)
    if whole.hexdigest() != entry["sha256"]:
        os.unlink(tmp)
        raise DgnError(f"{entry['name']} put together from its shards does not match its sha256")
    os.replace(tmp, dest)
    return dest


def check_back(folder):
    """What a call's $OUT would bring back, against the limits: {"files", "bytes", "problems": [...]}."""
    files = sorted(os.listdir(folder))
    sizes = {f: os.path.getsize(os.path.join(folder, f)) for f in files}
    problems = []
    if len(files) > BACK_FILES:
        problems.append(f"{len(files)} files (at most {BACK_FILES} come back)")
    problems += [f"{f}: {b} bytes (over {BACK_FILE_LIMIT})" for f, b in sizes.items() if b > BACK_FILE_LIMIT]
    problems += [f"{f}: name not in letters, digits, '.', '_', '-'" for f in files if not BACK_NAME.match(f)]
    problems += [f"{f}: a folder" for f in files if os.path.isdir(os.path.join(folder, f))]
    if sum(sizes.values()) > BACK_TOTAL_LIMIT:
        problems.append(f"{sum(sizes.values())} bytes together (over {BACK_TOTAL_LIMIT})")
    return {"files": sizes, "bytes": sum(sizes.values()), "problems": problems}
