"""Builds dgn's API reference (HTML, from the docstrings, with pdoc) into a folder.

    python scripts/api_docs.py docs/api        # then open docs/api/index.html

Prints pdoc's warnings (a name in ``__all__`` that does not resolve, a broken docstring) and exits 1
if there are any: ``tests/test_repository.py`` builds it so that none creep in.
"""

import os
import pathlib
import pkgutil
import sys
import tempfile
import warnings

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import pdoc  # noqa: E402

import dgn  # noqa: E402


def build(out_dir):
    """Writes the reference to ``out_dir``; returns pdoc's warnings (strings)."""
    for name in dgn.__all__:   # the public API is imported on first use: resolve it as a user's first use does
        getattr(dgn, name)
    # dgn's __all__ names its public API, so pdoc would document only those submodules: name them all
    names = ["dgn"] + [m.name for m in pkgutil.iter_modules(dgn.__path__, "dgn.")
                       if m.name != "dgn.__main__" and m.name[4:] not in dgn.__all__]
    out_dir, cwd = pathlib.Path(out_dir).resolve(), os.getcwd()
    os.chdir(tempfile.gettempdir())   # no folder named dgn here: pdoc documents the imported package
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pdoc.pdoc(*names, output_directory=out_dir)
    finally:
        os.chdir(cwd)
    return [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if "pdoc" in w.filename]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/api_docs.py OUT_DIR")
    problems = build(sys.argv[1])
    print("\n".join(problems) or f"{sys.argv[1]}/index.html")
    sys.exit(1 if problems else 0)
