"""The contact sheet of a batch run: every set the validation flagged, original and converted side
by side (both shaded under the validation's first light), as one PNG and one static HTML page
(images embedded, so the page is a single file a modder can open or send)."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .imageio import encode_png, write_atomically

SHEET_PNG = "pbr_forge_flagged.png"
SHEET_HTML = "pbr_forge_flagged.html"
THUMBNAIL = 128          # pixels per side of each image on the sheet
COLUMNS = 4              # set pairs per row of the PNG
LABEL_HEIGHT = 28        # two text lines under each pair
VERDICT_COLOURS = {"warn": (230, 160, 20), "fail": (210, 40, 40)}


@dataclass(frozen=True)
class SheetEntry:
    texture: str
    verdict: str
    score: float
    reasons: tuple
    original: np.ndarray   # (THUMBNAIL, THUMBNAIL, 3) uint8 sRGB
    converted: np.ndarray


def thumbnail(render_srgb: np.ndarray) -> np.ndarray:
    """A validation render (float sRGB in [0, 1]) -> the (THUMBNAIL, THUMBNAIL, 3) uint8 kept per set."""
    image = Image.fromarray(np.round(np.clip(render_srgb, 0, 1) * 255).astype(np.uint8))
    return np.asarray(image.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.BILINEAR))


def write_contact_sheet(entries: list, folder: Path) -> dict:
    """Write the PNG and HTML sheet of `entries` (sorted by score, worst first) into `folder`;
    returns {"png": path, "html": path}, or {} when there is nothing to show."""
    if not entries:
        return {}
    entries = sorted(entries, key=lambda e: (e.score, e.texture))
    folder = Path(folder)
    png_path = write_atomically(folder / SHEET_PNG, encode_png(_sheet_image(entries) / 255.0))
    html_path = write_atomically(folder / SHEET_HTML, _sheet_html(entries).encode("utf-8"))
    return {"png": png_path, "html": html_path}


def _sheet_image(entries: list) -> np.ndarray:
    cell_w, cell_h = 2 * THUMBNAIL, THUMBNAIL + LABEL_HEIGHT
    rows = -(-len(entries) // COLUMNS)
    sheet = Image.new("RGB", (min(len(entries), COLUMNS) * cell_w, rows * cell_h), (32, 32, 32))
    draw = ImageDraw.Draw(sheet)
    for index, entry in enumerate(entries):
        x, y = (index % COLUMNS) * cell_w, (index // COLUMNS) * cell_h
        sheet.paste(Image.fromarray(np.hstack([entry.original, entry.converted])), (x, y))
        draw.text((x + 3, y + THUMBNAIL + 1), _shorten(entry.texture, 40), fill=(235, 235, 235))
        draw.text((x + 3, y + THUMBNAIL + 14), f"{entry.verdict.upper()} {entry.score:.3f}",
                  fill=VERDICT_COLOURS.get(entry.verdict, (235, 235, 235)))
    return np.asarray(sheet, dtype=np.float32)


def _shorten(text: str, length: int) -> str:
    return text if len(text) <= length else "..." + text[-(length - 3):]


def _sheet_html(entries: list) -> str:
    rows = []
    for entry in entries:
        pair = base64.b64encode(encode_png(np.hstack([entry.original, entry.converted]) / 255.0)).decode("ascii")
        reasons = "".join(f"<li>{html.escape(reason)}</li>" for reason in entry.reasons)
        rows.append(
            f'<tr class="{entry.verdict}"><td><img src="data:image/png;base64,{pair}" '
            f'alt="original and converted"></td><td><b>{html.escape(entry.texture)}</b><br>'
            f'{entry.verdict.upper()} &middot; score {entry.score:.3f}<ul>{reasons}</ul></td></tr>')
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>PBR Forge: sets to check</title>"
            "<style>body{font-family:sans-serif;background:#222;color:#eee}td{padding:6px;vertical-align:top}"
            ".warn b{color:#e6a014}.fail b{color:#d22}</style></head><body>"
            f"<h1>{len(entries)} set(s) to check</h1><p>Left: the original as the old game shaded it; "
            "right: the converted PBR set under the same light.</p><table>"
            + "\n".join(rows) + "</table></body></html>\n")
