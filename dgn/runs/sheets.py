"""Picture sheets: originals next to reconstructions, and labelled contact sheets (``dgn sheet``).

A run's contact sheets are like the authors' published ones: 100 classes per sheet, 10x10, each
tile labelled with the class index and name. Class ``i`` sits on sheet ``i // 100`` at its place in
that block (a class not generated yet is a grey tile; the sheet ends at the run's last class, so a
6-class classifier's sheet has 6 tiles); images of other targets (channels, neurons, compounds from
``dgn generate``) fill further sheets in file-name order.
"""

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from dgn.errors import DgnError
from dgn.runs.outputs import png_bytes, slug, write_atomic, write_png
from dgn.runs.report import load_entries


MIN_TILE = 128


def grid(tiles, columns, pad=2, labels=None, label_height=0, background=255, font=None, lines=1):
    """Arranges equal-size uint8 tiles (H, W, 3) in a grid, optionally with a text label under each:
    with a ``font``, wrapped at spaces onto up to ``lines`` lines of the tile's width (the last one cut
    with an ellipsis); ``label_height`` pixels under each tile hold them."""
    tiles = [np.asarray(t, dtype="uint8") for t in tiles]
    h, w = tiles[0].shape[:2]
    rows = int(np.ceil(len(tiles) / columns))
    cell_h = h + label_height
    sheet = Image.new("RGB", (columns * (w + pad) + pad, rows * (cell_h + pad) + pad), (background,) * 3)
    draw = ImageDraw.Draw(sheet)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        x, y = pad + c * (w + pad), pad + r * (cell_h + pad)
        sheet.paste(Image.fromarray(tile), (x, y))
        if labels and label_height:
            if font is None:
                draw.text((x + 2, y + h + 1), str(labels[k])[: max(4, w // 6)], fill=(0, 0, 0))
            else:
                step = label_height // max(1, lines)
                for i, line in enumerate(_wrap(str(labels[k]), font, w - 4, lines)):
                    draw.text((x + 2, y + h + 1 + i * step), line, fill=(0, 0, 0), font=font)
    return np.asarray(sheet)


def _wrap(text, font, width, lines):
    """``text`` as at most ``lines`` lines no wider than ``width`` pixels, broken at spaces; the last
    line holds the rest, cut with an ellipsis where it is too wide."""
    out, words = [], text.split(" ")
    while words and len(out) < lines - 1:
        line = words.pop(0)
        while words and font.getlength(line + " " + words[0]) <= width:
            line += " " + words.pop(0)
        out.append(line)
    rest = " ".join(words)
    return [_fit(line, font, width) for line in out] + ([_fit(rest, font, width)] if rest else [])


def pairs_sheet(path, originals, reconstructions):
    """Two rows: originals on top, their reconstructions below."""
    tiles = list(originals) + list(reconstructions)
    write_png(path, grid(tiles, columns=len(originals)))


def label_font(size):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, AttributeError):  # old Pillow or no FreeType: the bitmap font
        return ImageFont.load_default()


def _fit(text, font, width):
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text + "…"


def _tile(path, size):
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = img.resize((size, size), Image.NEAREST if img.size[0] < size else Image.LANCZOS)
            return np.asarray(img)
    except Exception:
        return np.full((size, size, 3), 200, dtype="uint8")


def _tile_size(run_dir, entries):
    try:
        with Image.open(os.path.join(run_dir, entries[0]["image"])) as img:
            size = img.size[0]
    except Exception:
        size = MIN_TILE
    if size < MIN_TILE:
        size *= -(-MIN_TILE // size)  # integer upscale of small images (nearest), so labels fit
    return size


def labelled_sheet(run_dir, entries, size, columns=10, cells=100, labels=None):
    """One sheet: tiles of ``entries`` (None: an empty grey tile) with labels under them."""
    font_size = max(10, size // 11)
    font = label_font(font_size)
    tiles, texts = [], []
    for k in range(cells):
        entry = entries[k] if k < len(entries) else None
        if entry is None:
            tiles.append(np.full((size, size, 3), 225, dtype="uint8"))
        else:
            tiles.append(_tile(os.path.join(run_dir, entry["image"]), size))
        texts.append(labels[k] if labels else (entry["label"] if entry else ""))
    return grid(tiles, columns, pad=4, labels=texts, label_height=font_size + 6, font=font)


def examples_sheet(run_dir, layer, items, size, top=5):
    """One row per channel: its generated image, then the patches of its top ``top`` dataset examples
    (``dgn examples``), labelled with the channel and each example's activation."""
    tiles, labels = [], []
    small = max(MIN_TILE, size // 2)
    for channel, e in items:
        tiles.append(_tile(os.path.join(run_dir, e["image"]), small))
        labels.append(f"{layer}:{channel}")
        examples = (e["side"].get("examples") or [])[:top]
        for ex in examples:
            tiles.append(_tile(os.path.join(run_dir, ex["file"]), small))
            labels.append(f"{ex['activation']:.3g}")
        for _ in range(top - len(examples)):
            tiles.append(np.full((small, small, 3), 225, dtype="uint8"))
            labels.append("")
    font_size = max(10, small // 11)
    return grid(tiles, top + 1, pad=4, labels=labels, label_height=font_size + 6, font=label_font(font_size))


def contact_sheets(run_dir, out_dir=None, per_sheet=100, columns=10):
    """Writes ``RUN_DIR/sheets/sheet_0000-0099.png`` ... ; returns the paths written."""
    entries = load_entries(run_dir)
    if not entries:
        raise DgnError(f"no images with sidecars in {run_dir}; run dgn generate or dgn generate-all into it first")
    out_dir = out_dir or os.path.join(run_dir, "sheets")
    size = _tile_size(run_dir, entries)
    classes = {}
    others = []
    for e in entries:
        if e["index"] is not None and e["index"] not in classes:
            classes[e["index"]] = e
        else:
            others.append(e)
    paths = []
    for block in sorted({i // per_sheet for i in classes}):
        first = block * per_sheet
        last = max(i for i in classes if i // per_sheet == block)
        count = last - first + 1   # up to the last class of the run: no tiles for classes that do not exist
        cells = [classes.get(first + k) for k in range(count)]
        labels = [e["label"] if e else str(first + k) for k, e in enumerate(cells)]
        sheet = labelled_sheet(run_dir, cells, size, min(columns, count), count, labels)
        path = os.path.join(out_dir, f"sheet_{first:04d}-{first + per_sheet - 1:04d}.png")
        write_atomic(path, png_bytes(sheet))
        paths.append(path)
    layers = {}
    for e in others if not classes else ():   # a layer atlas (no classes): sheets per layer, by channel
        target = e["side"].get("target") or {}
        if target.get("kind") == "channel":
            layers.setdefault(target["layer"], []).append((int(target["channel"]), e))
    if layers:
        others = [e for e in others if (e["side"].get("target") or {}).get("kind") != "channel"]

    for layer, items in layers.items():
        items.sort(key=lambda item: item[0])
        for start in range(0, len(items), per_sheet):
            chunk = items[start:start + per_sheet]
            sheet = labelled_sheet(run_dir, [e for _, e in chunk], size, min(columns, len(chunk)), len(chunk),
                                   [f"{layer}:{c}" if start == 0 and k == 0 else str(c)
                                    for k, (c, _) in enumerate(chunk)])
            path = os.path.join(out_dir, f"sheet_{slug(layer)}_{chunk[0][0]:04d}-{chunk[-1][0]:04d}.png")
            write_atomic(path, png_bytes(sheet))
            paths.append(path)
        if any(e["side"].get("examples") for _, e in items):
            path = os.path.join(out_dir, f"sheet_{slug(layer)}_examples.png")
            write_atomic(path, png_bytes(examples_sheet(run_dir, layer, items[:per_sheet // 5 or 1], size)))
            paths.append(path)
    for n, start in enumerate(range(0, len(others), per_sheet), start=1):
        chunk = others[start:start + per_sheet]
        sheet = labelled_sheet(run_dir, chunk, size, min(columns, len(chunk)), len(chunk))
        path = os.path.join(out_dir, f"sheet_targets_{n:02d}.png")
        write_atomic(path, png_bytes(sheet))
        paths.append(path)
    return paths
