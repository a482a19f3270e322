"""The Shapes renderer and a deterministic dataset for training models on the world.

A scene holds exactly the objects its prompt names. Each object sits in a square box of
8-12 px, axis-aligned, fully inside the 32x32 canvas; boxes of different objects are
separated by at least one empty pixel row or column. For relation prompts the first
object's centre is at least ``RELATION_MARGIN`` px from the second's along the named
axis, on the named side. Shapes are drawn with PIL at 4x and box-filtered down, so edges
are anti-aliased while every pixel outside an object's box stays pure background.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from noiseppo.shapes.grammar import BACKGROUND, COLOURS, ShapesPrompt, parse
from noiseppo.shapes.scene import SceneObject

SIZE = 32
MIN_BOX, MAX_BOX = 8, 12
MIN_GAP = 1
RELATION_MARGIN = 3
_SUPERSAMPLE = 4
_MAX_TRIES = 1000


def _separated(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Boxes (x0, y0, x1, y1), x1/y1 exclusive, with >= MIN_GAP empty pixels between them."""
    return a[2] + MIN_GAP <= b[0] or b[2] + MIN_GAP <= a[0] or a[3] + MIN_GAP <= b[1] or b[3] + MIN_GAP <= a[1]


def _relation_holds(relation: str, a: SceneObject, b: SceneObject) -> bool:
    m = RELATION_MARGIN
    return {
        "left of": a.cx + m <= b.cx,
        "right of": a.cx >= b.cx + m,
        "above": a.cy + m <= b.cy,
        "below": a.cy >= b.cy + m,
    }[relation]


def _place(prompt: ShapesPrompt, rng: np.random.Generator) -> list[SceneObject]:
    names = [(g.colour, g.shape) for g in prompt.groups for _ in range(g.count)]
    for _ in range(_MAX_TRIES):
        objects: list[SceneObject] = []
        for colour, shape in names:
            s = int(rng.integers(MIN_BOX, MAX_BOX + 1))
            x0, y0 = (int(v) for v in rng.integers(0, SIZE - s + 1, size=2))
            box = (x0, y0, x0 + s, y0 + s)
            if not all(_separated(box, o.box) for o in objects):
                break
            objects.append(SceneObject(colour, shape, x0 + s / 2, y0 + s / 2, box))
        else:
            if prompt.relation is None or _relation_holds(prompt.relation, *objects):
                return objects
    raise RuntimeError(f"could not place '{prompt.text}' in {_MAX_TRIES} tries")  # a bug, not bad input


def _draw(objects: Sequence[SceneObject]) -> tuple[Image.Image, list[SceneObject]]:
    k = _SUPERSAMPLE
    canvas = Image.new("RGB", (SIZE * k, SIZE * k), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for o in objects:
        x0, y0, x1, y1 = (v * k for v in o.box)
        fill = COLOURS[o.colour]
        # PIL's boxes are inclusive of their last pixel, hence the -1.
        if o.shape == "square":
            draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
        elif o.shape == "circle":
            draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
        else:  # isosceles triangle, apex up, base on the bottom of the box
            draw.polygon([((x0 + x1 - 1) / 2, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)], fill=fill)
    image = canvas.resize((SIZE, SIZE), Image.BOX)
    pixels = np.asarray(image)
    ink = (pixels != np.array(BACKGROUND, dtype=np.uint8)).any(-1)
    areas = [float(ink[o.box[1] : o.box[3], o.box[0] : o.box[2]].sum()) for o in objects]
    out = [SceneObject(o.colour, o.shape, o.cx, o.cy, o.box, a) for o, a in zip(objects, areas, strict=True)]
    return image, out


def render_scene(prompt: str | ShapesPrompt, seed: int) -> tuple[Image.Image, list[SceneObject]]:
    """Render ``prompt`` with scene seed ``seed``; return the image and its ground truth."""
    parsed = parse(prompt) if isinstance(prompt, str) else prompt
    rng = np.random.default_rng(seed)
    return _draw(_place(parsed, rng))


def render(prompt: str | ShapesPrompt, seed: int) -> Image.Image:
    """Render ``prompt`` as a 32x32 RGB PIL image; the same (prompt, seed) gives the same image."""
    return render_scene(prompt, seed)[0]


def degrade(images: np.ndarray, noise: bool, blur: bool, seed: int, sigma: float = 8.0) -> np.ndarray:
    """Renders made to look generated: a 3x3 box blur, then Gaussian noise of ``sigma``/255.

    ``images`` is uint8 (N, 32, 32, 3); the verifier's robustness figures use these.
    """
    x = images.astype(np.float32)
    if blur:
        x = ndimage.uniform_filter(x, size=(1, 3, 3, 1), mode="nearest")
    if noise:
        x = x + np.random.default_rng(seed).normal(0.0, sigma, size=x.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


class ShapesDataset:
    """A deterministic, random-access dataset of rendered scenes.

    Item ``i`` draws its prompt and its scene seed from
    ``numpy.random.default_rng([seed, i])``, so any item can be produced on its own, in
    any order, by any worker, and always comes out the same. With
    ``balance_templates=True`` the template is drawn uniformly first, then a prompt of
    that template; otherwise a prompt is drawn uniformly from ``prompts`` (where the 528
    relation prompts would outnumber the 36 one-group prompts 15 to 1). Items are
    ``(prompt_text, image)`` with ``image`` a uint8 array of shape (32, 32, 3).
    """

    def __init__(self, prompts: Sequence[str], seed: int = 0, length: int = 1_000_000, balance_templates: bool = True):
        if not prompts:
            raise ValueError("ShapesDataset needs at least one prompt")
        parsed = [parse(p) for p in prompts]
        self.prompts = [p.text for p in parsed]
        groups: dict[str, list[str]] = {}
        for p in parsed:
            groups.setdefault(p.template if balance_templates else "all", []).append(p.text)
        self.groups = list(groups.values())
        self.seed = seed
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> tuple[str, np.ndarray]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, i])
        group = self.groups[int(rng.integers(len(self.groups)))]
        prompt = group[int(rng.integers(len(group)))]
        scene_seed = int(rng.integers(2**63 - 1))
        return prompt, np.asarray(render(prompt, scene_seed))
