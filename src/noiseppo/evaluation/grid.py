"""Captioned image grids, for looking at what a model or a policy draws.

A grid is made of *blocks*, one per prompt: the prompt on top, its images side by side, and
under each image its label and the reward's verdict on a line of its own (green when the
verifier accepts it, red when not), so a verdict never runs into the prompt. Blocks are framed
apart, and a title line says what was drawn (which noise, which policy). A long listing is cut
into pages of at most ``max_height`` pixels rather than one strip nobody can read whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_SIZE = 12
LINE = 15  # pixels per text line at FONT_SIZE
PAD = 6
MAX_WIDTH = 1100  # a page fits a laptop screen's width at 100%
MAX_HEIGHT = 2000
HEAD = 2 * PAD + LINE  # the title line
OK, WRONG, INK, RULE = (0, 120, 40), (190, 20, 20), (20, 20, 20), (200, 200, 200)


@dataclass
class Cell:
    """One image of a block and what to print under it."""

    image: Image.Image
    label: str
    """What the image is: "standard", "policy", "sample 2"."""
    correct: bool | None = None
    """The verifier's verdict (None: the reward has none)."""
    score: float | None = None
    """The reward (or, with a verdict, the partial score), printed after the verdict."""


@dataclass
class Block:
    """One prompt and its images."""

    prompt: str
    cells: list[Cell]


def _font() -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=FONT_SIZE)


def _wrap(text: str, width: float, font, lines: int) -> list[str]:
    """Greedy word wrap to ``width`` pixels; the last kept line ends in "…" when text is left over."""
    out: list[str] = []
    words = text.split()
    while words and len(out) < lines:
        line = words.pop(0)
        while words and font.getlength(f"{line} {words[0]}") <= width:
            line = f"{line} {words.pop(0)}"
        out.append(line)
    if words and out:
        last = out[-1]
        while last and font.getlength(last + "…") > width:
            last = last[:-1]
        out[-1] = last + "…"
    return out


def cell_text(cell: Cell) -> tuple[str, tuple[int, int, int]]:
    """The line under an image (label, verdict, score) and its colour."""
    if cell.correct is None:
        text = cell.label if cell.score is None else f"{cell.label}: {cell.score:.3f}"
        return text, INK
    verdict = "OK" if cell.correct else "wrong"
    score = "" if cell.score is None else f" ({cell.score:.2f})"
    return f"{cell.label}: {verdict}{score}", OK if cell.correct else WRONG


@dataclass
class _Layout:
    w: int  # one image, upscaled
    h: int
    block_w: int
    block_h: int
    across: int  # blocks per row


def _layout(blocks: Sequence[Block], scale: int, prompt_lines: int) -> _Layout:
    if not blocks or not all(b.cells for b in blocks):
        raise ValueError("a grid needs at least one block, each with at least one image")
    first = blocks[0].cells[0].image
    w, h = first.width * scale, first.height * scale
    block_w = max(len(b.cells) for b in blocks) * (w + PAD) + PAD
    block_h = PAD + prompt_lines * LINE + h + LINE + 2 * PAD
    return _Layout(w, h, block_w, block_h, max(1, min(len(blocks), MAX_WIDTH // block_w)))


def prompt_grid(blocks: Sequence[Block], title: str, scale: int = 4, prompt_lines: int = 2) -> Image.Image:
    """One page: ``title``, then the blocks in rows as wide as ``MAX_WIDTH`` allows."""
    font = _font()
    lay = _layout(blocks, scale, prompt_lines)
    rows = -(-len(blocks) // lay.across)
    grid = Image.new("RGB", (lay.across * lay.block_w + 1, HEAD + rows * lay.block_h + 1), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    draw.text((PAD, PAD), _wrap(title, grid.width - 2 * PAD, font, 1)[0], fill=INK, font=font)
    for k, block in enumerate(blocks):
        x, y = (k % lay.across) * lay.block_w, HEAD + (k // lay.across) * lay.block_h
        draw.rectangle((x, y, x + lay.block_w, y + lay.block_h), outline=RULE)
        for i, line in enumerate(_wrap(block.prompt, lay.block_w - 2 * PAD, font, prompt_lines)):
            draw.text((x + PAD, y + PAD + i * LINE), line, fill=INK, font=font)
        top = y + PAD + prompt_lines * LINE
        for j, cell in enumerate(block.cells):
            left = x + PAD + j * (lay.w + PAD)
            grid.paste(cell.image.convert("RGB").resize((lay.w, lay.h), Image.NEAREST), (left, top))
            text, colour = cell_text(cell)
            draw.text((left, top + lay.h + 2), _wrap(text, lay.w + PAD, font, 1)[0], fill=colour, font=font)
    return grid


def grid_pages(
    blocks: Sequence[Block], title: str, scale: int = 4, max_height: int = MAX_HEIGHT, prompt_lines: int = 2
) -> list[Image.Image]:
    """``prompt_grid`` pages of at most ``max_height`` pixels each (one page if it fits),
    titled "``title`` (page i of n)" when there is more than one."""
    lay = _layout(blocks, scale, prompt_lines)
    per_page = lay.across * max(1, (max_height - HEAD - 1) // lay.block_h)
    chunks = [blocks[i : i + per_page] for i in range(0, len(blocks), per_page)]
    if len(chunks) == 1:
        return [prompt_grid(blocks, title, scale, prompt_lines)]
    return [
        prompt_grid(chunk, f"{title} (page {i} of {len(chunks)})", scale, prompt_lines)
        for i, chunk in enumerate(chunks, start=1)
    ]


def save_pages(pages: Sequence[Image.Image], folder: Path, stem: str) -> str:
    """Save ``stem``.png (one page) or ``stem``-1.png ... ``stem``-N.png; returns what was written, in words."""
    if len(pages) == 1:
        pages[0].save(folder / f"{stem}.png")
        return f"{stem}.png"
    for i, page in enumerate(pages, start=1):
        page.save(folder / f"{stem}-{i}.png")
    return f"{stem}-1.png ... {stem}-{len(pages)}.png ({len(pages)} pages)"
