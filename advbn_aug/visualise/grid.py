"""Render rows of images as PNGs and one captioned HTML page: ``grid.png`` (every row, a label on its left),
``rows/NN_<key>.png`` (one strip per row), ``index.html`` (the grid, then each strip with its caption) and
``grid.json`` (titles, captions, numbers)."""

from __future__ import annotations

import html
import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Row", "GridFiles", "write_grid", "render_grid", "render_strip"]

_LABEL_WIDTH = 200
_GAP = 4
_BG = (255, 255, 255)


@dataclass
class Row:
    """One row: uint8 ``images`` ``(n, H, W, 3)``, a short ``title`` (drawn left of the row in ``grid.png``), a
    ``caption`` (HTML page) and ``metrics`` (written to ``grid.json``)."""

    key: str
    title: str
    caption: str
    images: np.ndarray
    metrics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        x = self.images
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3 or not len(x):
            shape = getattr(x, "shape", None)
            raise ValueError(f"row {self.key!r}: images must be a non-empty uint8 (n, H, W, 3) array, got {shape}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.key):
            raise ValueError(f"row key {self.key!r} must be a file-name-safe word (letters, digits, _ . -)")


@dataclass
class GridFiles:
    """Where :func:`write_grid` wrote: the grid PNG, one PNG per row, the HTML page and the JSON summary."""

    grid: Path
    rows: list[Path]
    html: Path
    json: Path


def _tile(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``(H, W, 3)`` resized to ``(size, size, 3)``: nearest-neighbour (crisp pixels) up, area down."""
    from PIL import Image

    if img.shape[:2] == (size, size):
        return img
    up = size >= max(img.shape[:2])
    return np.asarray(Image.fromarray(img).resize((size, size), Image.NEAREST if up else Image.BOX))


def render_strip(images: np.ndarray, tile: int, columns: int | None = None) -> np.ndarray:
    """uint8 ``(n, H, W, 3)`` -> one uint8 strip ``(tile, columns * (tile + gap) - gap, 3)``, white padding."""
    columns = columns or len(images)
    out = np.full((tile, columns * (tile + _GAP) - _GAP, 3), _BG, dtype=np.uint8)
    for i, img in enumerate(images[:columns]):
        out[:, i * (tile + _GAP):i * (tile + _GAP) + tile] = _tile(img, tile)
    return out


def render_grid(rows: list[Row], tile: int) -> np.ndarray:
    """All rows stacked, each with its title wrapped in a label column on the left; uint8 ``(H, W, 3)``."""
    from PIL import Image, ImageDraw, ImageFont

    columns = max(len(r.images) for r in rows)
    strip_w = columns * (tile + _GAP) - _GAP
    height = len(rows) * (tile + _GAP) + _GAP
    canvas = Image.new("RGB", (_LABEL_WIDTH + strip_w + _GAP, height), _BG)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for k, row in enumerate(rows):
        y = _GAP + k * (tile + _GAP)
        canvas.paste(Image.fromarray(render_strip(row.images, tile, columns)), (_LABEL_WIDTH, y))
        lines = textwrap.wrap(row.title, width=max(8, (_LABEL_WIDTH - 8) // 6))[: max(1, tile // 12)]
        text_h = 12 * len(lines)
        for j, line in enumerate(lines):
            draw.text((4, y + (tile - text_h) // 2 + 12 * j), line, fill=(0, 0, 0), font=font)
    return np.asarray(canvas)


def _save_png(array: np.ndarray, path: Path) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, optimize=True)
    return path


def _page(title: str, intro: str, rows: list[Row], row_files: list[str]) -> str:
    esc = html.escape
    figures = [f'<figure id="{esc(r.key)}"><img src="{esc(f)}" alt="{esc(r.title)}">'
               f"<figcaption><b>{esc(r.title)}.</b> {esc(r.caption)}</figcaption></figure>"
               for r, f in zip(rows, row_files)]
    return "\n".join([
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">', f"<title>{esc(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:1em auto;padding:0 1em}"
        "img{image-rendering:pixelated;max-width:100%}figure{margin:1.2em 0}"
        "figcaption{font-size:.9em;color:#333;margin-top:.3em}</style>", "</head>", "<body>",
        f"<h1>{esc(title)}</h1>", f"<p>{esc(intro)}</p>",
        '<figure id="grid"><img src="grid.png" alt="all rows"><figcaption>All rows; the label left of each row is '
        "its title, the captions below say what it shows and what the model predicts on it.</figcaption></figure>",
        *figures, "</body>", "</html>", ""])


def write_grid(rows: list[Row], output: str | Path, *, tile: int = 64, title: str = "Decoded features",
               intro: str = "", extra: dict[str, Any] | None = None) -> GridFiles:
    """Write ``grid.png``, ``rows/NN_<key>.png``, ``index.html`` and ``grid.json`` under ``output``."""
    if not rows:
        raise ValueError("no rows to write")
    keys = [r.key for r in rows]
    if len(set(keys)) != len(keys):
        raise ValueError(f"row keys must be unique, got {keys}")
    out = Path(output)
    grid = _save_png(render_grid(rows, tile), out / "grid.png")
    names = [f"rows/{i:02d}_{r.key}.png" for i, r in enumerate(rows)]
    row_paths = [_save_png(render_strip(r.images, tile), out / n) for r, n in zip(rows, names)]
    page = out / "index.html"
    page.write_text(_page(title, intro, rows, names), encoding="utf-8")
    summary = {"title": title, "intro": intro, **(extra or {}),
               "rows": [{"key": r.key, "title": r.title, "caption": r.caption, "file": n, "images": len(r.images),
                         **r.metrics} for r, n in zip(rows, names)]}
    js = out / "grid.json"
    js.write_text(json.dumps(summary, indent=2) + "\n")
    return GridFiles(grid, row_paths, page, js)
