"""Class names: the ImageNet class index (Keras's ``imagenet_class_index.json``) and target lookup."""

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
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
        names = [tuple(raw[str(i)]) for i in range(len(raw))]
    except (OSError, ValueError, KeyError) as exc:
        raise DgnError(f"class index {path} is unreadable ({exc}); give Keras's imagenet_class_index.json") from None
    if len(names) != num_classes:
        raise DgnError(f"class index {path} has {len(names)} classes but the classifier has {num_classes}; "
                       f"set classifier.class_index to a matching file or 'none'")
    return names


def class_info(index, names):
    """The sidecar's description of a class: index, wnid, name (None without a class index)."""
    wnid, name = names[index] if names else (None, None)
    return {"index": int(index), "wnid": wnid, "name": name}


def resolve_class(ref, names, num_classes):
    """A class given by index, wnid or name (case-insensitive, '_' or ' ') -> index."""
    text = str(ref).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < num_classes:
            raise DgnError(f"class index {index} is out of range; the classifier has classes 0..{num_classes - 1}")
        return index
    if names is None:
        raise DgnError(f"unknown class {text!r}: without a class index only indices 0..{num_classes - 1} work; "
                       f"set classifier.class_index to an imagenet_class_index.json")
    key = text.lower().replace(" ", "_")
    hits = [i for i, (wnid, name) in enumerate(names) if key in (wnid.lower(), name.lower())]
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        options = ", ".join(f"{i} ({names[i][0]})" for i in hits)
        raise DgnError(f"class name {text!r} is ambiguous: {options}; give the index or the wnid")
    close = [name for _, name in names if key in name.lower()][:5]
    hint = f"; did you mean {', '.join(close)}?" if close else "; give an index, a wnid (n02099601) or a name"
    raise DgnError(f"unknown class {text!r}{hint}")
