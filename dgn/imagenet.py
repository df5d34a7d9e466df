"""Class names: the ImageNet class index (Keras's ``imagenet_class_index.json``) and target lookup."""

import difflib
import json
import os

from dgn.errors import DgnError


INDEX_FILE = "imagenet_class_index.json"
INDEX_URL = "https://storage.googleapis.com/download.tensorflow.org/data/imagenet_class_index.json"


def keras_cache_path():
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models", INDEX_FILE)


def load_class_index(source="auto", num_classes=1000):
    """Returns a list of (wnid, name) per class index, or None when names are unavailable.

    ``source``: a file path; ``"none"``; or ``"auto"``: Keras's cache
    (``$KERAS_HOME/models/imagenet_class_index.json``), else Keras's download (fails offline:
    then outputs name classes by index only).
    """
    if source in (None, "none"):
        return None
    path = source
    if source == "auto":
        if num_classes != 1000:
            return None
        path = keras_cache_path()
        if not os.path.isfile(path):
            try:
                import keras
                path = keras.utils.get_file(INDEX_FILE, INDEX_URL, cache_subdir="models",
                                            file_hash="c2c37ea517e94d9795004a39431a14cb")
            except Exception:  # offline: names are optional
                return None
    names = read_class_names(path)
    if len(names) != num_classes:
        raise DgnError(f"class names file {path} has {len(names)} classes but the classifier has {num_classes}; "
                       f"set classifier.class_index to a matching file or 'none'")
    return names


FORMATS = ("Keras's imagenet_class_index.json ({\"0\": [\"n01440764\", \"tench\"], ...}), a JSON list of names, "
           "a JSON object {\"0\": \"name\", ...}, or a text file with one name per line")


def read_class_names(path):
    """A class names file -> list of (wnid or None, name) per class index, in index order.

    Formats: Keras's ``imagenet_class_index.json`` (``{"0": ["n01440764", "tench"], ...}``), a JSON list
    of names (or of [wnid, name] pairs), a JSON object ``{"0": "name", ...}`` with indices 0..N-1, or a
    text file with one name per line (blank lines and lines starting with ``#`` skipped).

    Raises:
        DgnError: unreadable file, missing or repeated indices, or entries that are not names.
    """
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise DgnError(f"class names file {path} is unreadable ({exc}); give {FORMATS}") from None
    stripped = text.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise DgnError(f"class names file {path} is not valid JSON ({exc}); give {FORMATS}") from None
        if isinstance(raw, dict):
            try:
                keys = sorted(int(k) for k in raw)
            except ValueError:
                raise DgnError(f"class names file {path}: keys must be class indices 0..N-1; give {FORMATS}") from None
            if keys != list(range(len(keys))):
                raise DgnError(f"class names file {path}: indices must be 0..{len(keys) - 1} with none missing; "
                               f"give {FORMATS}")
            entries = [raw[str(i)] if str(i) in raw else raw[i] for i in keys]
        else:
            entries = raw
        names = [_entry(e, path) for e in entries]
    else:
        names = [(None, line.strip()) for line in text.splitlines()
                 if line.strip() and not line.lstrip().startswith("#")]
    if not names:
        raise DgnError(f"class names file {path} names no class; give {FORMATS}")
    return names


def _entry(entry, path):
    if isinstance(entry, str) and entry.strip():
        return None, entry.strip()
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and all(isinstance(v, str) for v in entry):
        return entry[0], entry[1]
    raise DgnError(f"class names file {path}: entry {entry!r} is not a name or a [wnid, name] pair; give {FORMATS}")


def class_info(index, names):
    """The sidecar's description of a class: index, wnid, name (None without a class index)."""
    wnid, name = names[index] if names else (None, None)
    return {"index": int(index), "wnid": wnid, "name": name}


def _key(text):
    return str(text).strip().lower().replace(" ", "_")


def resolve_class(ref, names, num_classes):
    """A class given by index, wnid or name (case-insensitive, '_' or ' ') -> index."""
    text = str(ref).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < num_classes:
            raise DgnError(f"class index {index} is out of range; the classifier has classes 0..{num_classes - 1}")
        return index
    if names is None:
        raise DgnError(f"unknown class {text!r}: the classifier has no class names, so give an index "
                       f"0..{num_classes - 1}, or name its {num_classes} classes (config: classifier.class_index, a "
                       f"JSON list of names; Python: class_names=[...] or class_index=FILE)")
    key = _key(text)
    hits = [i for i, (wnid, name) in enumerate(names) if key in ((wnid or "").lower(), _key(name))]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        options = ", ".join(f"{i} ({names[i][0] or names[i][1]})" for i in hits)
        raise DgnError(f"class name {text!r} is ambiguous: {options}; give the index" +
                       (" or the wnid" if names[hits[0]][0] else ""))
    labels = [name for _, name in names]
    close = [name for name in labels if key in _key(name)][:3]
    close += [n for n in difflib.get_close_matches(text, labels, n=5, cutoff=0.5) if n not in close]
    hint = f"; did you mean {', '.join(close[:5])}?" if close else \
        f"; give an index 0..{num_classes - 1} or a name (`dgn info CONFIG` lists them)"
    raise DgnError(f"unknown class {text!r}{hint}")
