"""``RUN_DIR/index.html``: a static gallery of a run, opened from disk (no server).

Every image with its index, name, target probability and rank under D (and under the judge, when
``dgn report --judge`` judged the run); a filter box (name, wnid or
index; ``index.html#q=shark`` pre-fills it), sorting, the report's summary and worst classes; a click
opens the full image and its sidecar (``#show=IMAGE.png`` links to it). The data is embedded in the
page (browsers do not let a file:// page read other files), and the DOM is built with textContent.
"""

import html
import json
import os

from dgn.errors import DgnError
from dgn.runs.outputs import write_atomic
from dgn.runs.report import load_entries, read_judge, summarize, summary_line


TEMPLATE = "gallery.html"   # package data: dgn/templates/gallery.html (HTML, CSS and script)


def page_template():
    """The gallery page with ``__TITLE__`` and ``__DATA__`` to fill in (read from the package)."""
    from importlib import resources

    return resources.files("dgn.runs").joinpath("templates", TEMPLATE).read_text(encoding="utf-8")


def _embed(obj):
    """JSON safe inside a <script> element."""
    text = json.dumps(obj, default=str, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def write_gallery(run_dir, report=None):
    """Writes ``RUN_DIR/index.html``; returns its path."""
    entries = load_entries(run_dir)
    if not entries:
        raise DgnError(f"no images with sidecars in {run_dir}; run dgn generate or dgn generate-all into it first")
    if report is None:
        report = summarize(entries)
        report["line"] = summary_line(report)
    configs = [e["side"].get("config") for e in entries if isinstance(e["side"].get("config"), dict)]
    config = configs[0] if configs else None
    judge, views = read_judge(run_dir)
    items = []
    for e in entries:
        side = {k: v for k, v in e["side"].items() if k != "config"}
        items.append({"image": e["image"], "sidecar": e["sidecar"], "index": e["index"], "wnid": e["wnid"],
                      "name": e["name"], "label": e["label"], "prob": e["prob"], "rank": e["rank"],
                      "activation": e["activation"], "side": side})
        view = views.get(e["image"])
        if view and "rank" in view:
            items[-1]["judge"] = {"prob": view["prob"], "rank": view["rank"],
                                  "top1": (view["top1"].get("name") or str(view["top1"].get("index"))).replace("_", " ")}
    name = (config or {}).get("name") or os.path.basename(os.path.abspath(run_dir))
    data = {"title": f"dgn: {name}", "report": report, "config": config, "items": items, "judge": judge}
    page = page_template().replace("__TITLE__", html.escape(data["title"])).replace("__DATA__", _embed(data))
    path = os.path.join(run_dir, "index.html")
    write_atomic(path, page.encode("utf-8"))
    return path
