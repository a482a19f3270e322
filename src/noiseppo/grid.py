"""Captioned image grids, for looking at what a model or a policy draws."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont


def captioned_grid(
    images: Sequence[Image.Image], captions: Sequence[str], columns: int = 8, scale: int = 4, lines: int = 3
) -> Image.Image:
    """Tile ``images`` (upscaled ``scale`` times, nearest neighbour) with a caption under each."""
    if len(images) != len(captions):
        raise ValueError(f"{len(images)} images but {len(captions)} captions")
    font = ImageFont.load_default()
    w, h = images[0].width * scale, images[0].height * scale
    line_height = 11
    chars = max(8, w // 6)  # the default bitmap font is ~6 px per character
    cell_h = h + lines * line_height + 4
    columns = max(1, min(columns, len(images)))
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (columns * (w + 4), rows * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    for k, (image, caption) in enumerate(zip(images, captions, strict=True)):
        x, y = (k % columns) * (w + 4), (k // columns) * cell_h
        grid.paste(image.convert("RGB").resize((w, h), Image.NEAREST), (x, y))
        for i, line in enumerate(textwrap.wrap(caption, chars)[:lines]):
            draw.text((x, y + h + 2 + i * line_height), line, fill=(0, 0, 0), font=font)
    return grid


def to_pil(image) -> Image.Image:
    """A (3, H, W) float tensor in [0, 1] as an 8-bit PIL image (rounded, not truncated)."""
    import torch

    return Image.fromarray((image.clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
