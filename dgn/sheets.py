"""Picture sheets: originals next to reconstructions, and labelled contact sheets."""

import numpy as np
from PIL import Image, ImageDraw

from dgn.outputs import write_png


def grid(tiles, columns, pad=2, labels=None, label_height=0, background=255):
    """Arranges equal-size uint8 tiles (H, W, 3) in a grid, optionally with a text label under each."""
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
            draw.text((x + 2, y + h + 1), str(labels[k])[: max(4, w // 6)], fill=(0, 0, 0))
    return np.asarray(sheet)


def pairs_sheet(path, originals, reconstructions):
    """Two rows: originals on top, their reconstructions below."""
    tiles = list(originals) + list(reconstructions)
    write_png(path, grid(tiles, columns=len(originals)))
