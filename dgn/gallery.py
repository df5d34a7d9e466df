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

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>__TITLE__</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f4f4f2;color:#222}
header{padding:12px 18px;background:#fff;border-bottom:1px solid #ddd;position:sticky;top:0;z-index:2}
h1{font-size:18px;margin:0 0 4px}
#summary{margin:4px 0}
#controls{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin-top:6px}
#q{font-size:15px;padding:4px 8px;width:260px}
#count{color:#666}
details{margin-top:4px}
details pre{max-height:300px;overflow:auto;background:#fafafa;border:1px solid #ddd;padding:6px}
#worst a{margin-right:10px}
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(132px,1fr));gap:10px;padding:14px 18px}
.tile{background:#fff;border:1px solid #ddd;border-radius:4px;padding:4px;cursor:pointer;text-align:center}
.tile:hover{border-color:#888}
.tile img{width:120px;height:120px;image-rendering:pixelated;object-fit:contain;display:block;margin:0 auto}
.tile .name{font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
.tile .stats{font-size:11px;color:#555}
.tile.miss .stats{color:#b00}
.tile .stats.judge{color:#147}
.hidden{display:none}
#overlay{position:fixed;inset:0;background:rgba(0,0,0,.75);display:flex;align-items:flex-start;
  justify-content:center;overflow:auto;z-index:5}
#overlay.hidden{display:none}
#panel{background:#fff;margin:30px;padding:14px;border-radius:6px;display:flex;gap:16px;max-width:95vw;flex-wrap:wrap}
#panel img{min-width:256px;max-width:min(70vw,672px);image-rendering:pixelated}
#panel pre{max-width:520px;max-height:80vh;overflow:auto;font-size:12px;margin:0}
#close{float:right;cursor:pointer;font-size:20px;border:0;background:none}
</style></head>
<body>
<header>
<h1 id="title"></h1>
<div id="summary"></div>
<div id="worst"></div>
<div id="controls">
<input id="q" type="search" placeholder="filter: name, wnid or index" autocomplete="off">
<label>sort <select id="sort"><option value="index">index</option><option value="prob">probability, lowest first</option>
<option value="-prob">probability, highest first</option><option value="rank">rank, worst first</option>
<option value="-judge">judge probability, highest first</option></select></label>
<span id="count"></span>
</div>
<details><summary>config</summary><pre id="config"></pre></details>
</header>
<main id="grid"></main>
<div id="overlay" class="hidden"><div id="panel"><div><button id="close" title="close (Esc)">&times;</button>
<a id="full-link" target="_blank"><img id="full" alt=""></a><div id="links"></div></div>
<pre id="sidecar"></pre></div></div>
<script id="data" type="application/json">__DATA__</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const grid = document.getElementById("grid"), q = document.getElementById("q");
const fmt = p => p === null || p === undefined ? "-" : (p >= 0.01 ? p.toFixed(3) : p.toExponential(1));
function el(tag, cls, text) { const e = document.createElement(tag); if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text; return e; }
document.title = DATA.title; document.getElementById("title").textContent = DATA.title;
document.getElementById("summary").textContent = DATA.report ? DATA.report.line : "";
if (DATA.report && DATA.report.worst.length) {
  const w = document.getElementById("worst"); w.appendChild(el("span", null, "worst: "));
  for (const item of DATA.report.worst) { const a = el("a", null, item.label + " (p " + fmt(item.prob) + ")");
    a.href = "#show=" + encodeURIComponent(item.image); w.appendChild(a); }
}
document.getElementById("config").textContent = JSON.stringify(DATA.config, null, 2);
const tiles = DATA.items.map((item, i) => {
  const t = el("div", "tile" + (item.rank !== null && item.rank > 1 ? " miss" : ""));
  t.dataset.i = i; t.dataset.image = item.image;
  const img = el("img"); img.loading = "lazy"; img.src = item.image; img.alt = item.label; t.appendChild(img);
  t.appendChild(el("div", "name", item.label)).title = item.label + (item.wnid ? " (" + item.wnid + ")" : "");
  t.appendChild(el("div", "stats", item.rank === null ? "activation " + fmt(item.activation)
    : "p " + fmt(item.prob) + " · rank " + item.rank));
  if (item.judge) t.appendChild(el("div", "stats judge", "judge p " + fmt(item.judge.prob) + " · rank "
    + item.judge.rank)).title = DATA.judge + ": top-1 " + item.judge.top1;
  t.addEventListener("click", () => { location.hash = "show=" + encodeURIComponent(item.image); });
  item.key = [item.label, item.wnid || "", item.name || "", String(item.index)].join(" ").toLowerCase()
    .replace(/_/g, " ");
  return t;
});
function order() {
  const s = document.getElementById("sort").value, idx = DATA.items.map((_, i) => i);
  const p = i => DATA.items[i].prob === null ? 2 : DATA.items[i].prob;
  if (s === "prob") idx.sort((a, b) => p(a) - p(b));
  if (s === "-prob") idx.sort((a, b) => p(b) - p(a));
  if (s === "rank") idx.sort((a, b) => (DATA.items[b].rank || 0) - (DATA.items[a].rank || 0));
  const j = i => DATA.items[i].judge ? DATA.items[i].judge.prob : -1;
  if (s === "-judge") idx.sort((a, b) => j(b) - j(a));
  grid.replaceChildren(...idx.map(i => tiles[i])); filter();
}
function filter() {
  const words = q.value.toLowerCase().replace(/_/g, " ").trim().split(/\\s+/).filter(Boolean);
  let shown = 0;
  DATA.items.forEach((item, i) => { const ok = words.every(w => item.key.includes(w));
    tiles[i].classList.toggle("hidden", !ok); shown += ok; });
  document.getElementById("count").textContent = shown + " of " + DATA.items.length + " images";
}
function show(image) {
  const item = DATA.items.find(it => it.image === image);
  const overlay = document.getElementById("overlay");
  if (!item) { overlay.classList.add("hidden"); return; }
  document.getElementById("full").src = item.image; document.getElementById("full-link").href = item.image;
  const links = document.getElementById("links"); links.replaceChildren();
  for (const [text, href] of [["PNG", item.image], ["sidecar JSON", item.sidecar]]) {
    const a = el("a", null, text); a.href = href; a.target = "_blank"; links.appendChild(a);
    links.appendChild(document.createTextNode(" "));
  }
  document.getElementById("sidecar").textContent = JSON.stringify(item.side, null, 2);
  overlay.classList.remove("hidden");
}
function route() {
  const h = decodeURIComponent(location.hash.slice(1));
  if (h.startsWith("q=")) { q.value = h.slice(2); filter(); show(null); }
  else if (h.startsWith("show=")) show(h.slice(5)); else show(null);
}
q.addEventListener("input", filter);
document.getElementById("sort").addEventListener("change", order);
document.getElementById("close").addEventListener("click", () => { history.replaceState(null, "", " "); show(null); });
document.getElementById("overlay").addEventListener("click", e => { if (e.target.id === "overlay")
  document.getElementById("close").click(); });
document.addEventListener("keydown", e => { if (e.key === "Escape") document.getElementById("close").click(); });
window.addEventListener("hashchange", route);
order(); route();
</script>
</body></html>
"""


def _embed(obj):
    """JSON safe inside a <script> element."""
    text = json.dumps(obj, default=str, ensure_ascii=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def write_gallery(run_dir, report=None):
    """Writes ``RUN_DIR/index.html``; returns its path."""
    from dgn.outputs import write_atomic
    from dgn.report import load_entries, read_judge, summarize, summary_line

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
    page = PAGE.replace("__TITLE__", html.escape(data["title"])).replace("__DATA__", _embed(data))
    path = os.path.join(run_dir, "index.html")
    write_atomic(path, page.encode("utf-8"))
    return path
