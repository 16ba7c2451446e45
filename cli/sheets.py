"""Contact sheets laid out like the papers' comparison figures: one row per pair, columns
source | target pose | result | ground truth, every cell fitted (aspect kept) into one box on white."""
from __future__ import annotations

from typing import Sequence

from PIL import Image, ImageDraw, ImageFont

COLUMNS = ("source", "target pose", "result", "ground truth")
TITLE_HEIGHT = 18
LABEL_HEIGHT = 14
GAP = 4


def _fit(image: Image.Image, width: int, height: int) -> Image.Image:
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    cell = Image.new("RGB", (width, height), "white")
    cell.paste(image.convert("RGB").resize(size, Image.BICUBIC), ((width - size[0]) // 2, (height - size[1]) // 2))
    return cell


def contact_sheet(rows: Sequence[Sequence[Image.Image | None]], labels: Sequence[str], cell_height: int = 256,
                  aspect: float = 176 / 256, columns: Sequence[str] = COLUMNS) -> Image.Image:
    """Rows of images (None = an empty grey cell, e.g. no ground truth) -> one RGB sheet with column titles
    and a label under each row."""
    cell_width = max(1, round(cell_height * aspect))
    row_height = cell_height + LABEL_HEIGHT + GAP
    sheet = Image.new("RGB", (len(columns) * (cell_width + GAP) + GAP, TITLE_HEIGHT + len(rows) * row_height), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c, title in enumerate(columns):
        draw.text((GAP + c * (cell_width + GAP), 3), title, fill="black", font=font)
    for r, (cells, label) in enumerate(zip(rows, labels)):
        top = TITLE_HEIGHT + r * row_height
        for c, image in enumerate(cells):
            cell = _fit(image, cell_width, cell_height) if image is not None else Image.new(
                "RGB", (cell_width, cell_height), (200, 200, 200))
            sheet.paste(cell, (GAP + c * (cell_width + GAP), top))
        draw.text((GAP, top + cell_height + 1), label, fill="black", font=font)
    return sheet
