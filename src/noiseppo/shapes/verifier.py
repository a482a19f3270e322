"""The Shapes verifier: find the objects in an image, then check them against the prompt.

It reads blurry, noisy *generated* images, not only clean renders. For a whole batch at
once (numpy and one ``scipy.ndimage.label`` call per colour):

1. **Colour segmentation.** Each pixel's *ink* is ``255 - rgb``; white has none. Every
   palette colour defines an ink direction ``255 - colour``. A pixel belongs to the colour
   whose direction its ink is best aligned with (largest projection), if the cosine
   between its ink and that direction is at least ``COSINE_MIN`` (a blend of two colours
   is nobody's). Its *coverage* is the projection length over the colour's full ink
   length; because it uses the direction, not the exact value, a paler or darker
   generated red is still red.
2. **Objects.** Pixels with coverage >= ``CORE_COVERAGE`` form *cores*, labelled as
   4-connected components per colour. Edge pixels (coverage >= ``COVERAGE_MIN``: a
   half-covered blurred edge counts, a faint haze does not) then join the core within
   ``GROW`` px, unless two cores are that close. This keeps two same-coloured objects
   whose 1 px gap was blurred shut apart, while the shape keeps its full outline.
   Components of fewer than ``MIN_AREA`` px, or with a bounding-box side under
   ``MIN_SIDE`` px, are specks, not objects. An object's centre is the centre of its
   bounding box, as in the renderer.
3. **Shape** from two scale-free features of the component's mask:
   * ``fill`` = area / bounding-box area: a square fills 1.0 of its box (>= 0.87 blurred
     and noisy), a circle pi/4 (0.70-0.84), a triangle about 0.5 (up to 0.8 blurred);
   * ``drop`` = (mass centroid y - box top) / box height: mass sits low in an apex-up
     triangle (>= 0.57), in the middle of a circle or square (<= 0.54).
   A component is a triangle if ``drop >= TRIANGLE_DROP`` or ``fill < TRIANGLE_FILL``,
   else a square if ``fill >= SQUARE_FILL``, else a circle.
4. The detected objects go through ``scene.check`` with the parsed prompt.

The ranges quoted above were measured on 1,000 rendered scenes under noise (sigma 8/255)
and 3x3 box blur; ``benchmarks/shapes_verifier.py`` measures the resulting accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from noiseppo.errors import UserError
from noiseppo.shapes.grammar import COLOURS, parse
from noiseppo.shapes.scene import SceneObject, Verdict, check

if TYPE_CHECKING:
    import torch

SIZE = 32
COVERAGE_MIN = 0.5
CORE_COVERAGE = 0.75
GROW = 2
COSINE_MIN = 0.95
MIN_AREA = 12
MIN_SIDE = 4
TRIANGLE_DROP = 0.555
TRIANGLE_FILL = 0.62
SQUARE_FILL = 0.855

_NAMES = list(COLOURS)
_INK = 255.0 - np.array([COLOURS[c] for c in _NAMES], dtype=np.float32)  # (4, 3)
_INK_NORM = np.linalg.norm(_INK, axis=1)
_UNIT = _INK / _INK_NORM[:, None]
# Connectivity inside each image only: the batch axis must never join components.
_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE[1] = ndimage.generate_binary_structure(2, 1)
_GROW = np.zeros((1, 2 * GROW + 1, 2 * GROW + 1), dtype=bool)
_GROW[0] = True


def as_uint8_images(images: np.ndarray | torch.Tensor) -> np.ndarray:
    """Bring a batch to uint8 (N, H, W, 3).

    Accepts the backend convention (float tensor or array in [0, 1], shape (N, 3, H, W))
    or uint8 arrays of shape (N, H, W, 3) as PIL gives them.
    """
    if hasattr(images, "detach"):  # a torch tensor; torch itself is not needed to read the verifier
        images = images.detach().float().cpu().numpy()
    images = np.asarray(images)
    if images.ndim != 4:
        raise UserError(f"images must be a batch of shape (N, 3, H, W) or (N, H, W, 3), got {images.shape}")
    if images.dtype == np.uint8:
        if images.shape[-1] != 3:
            raise UserError(f"uint8 images must be (N, H, W, 3), got {images.shape}")
        return images
    if images.shape[1] != 3:
        raise UserError(f"float images must be (N, 3, H, W) in [0, 1], got {images.shape}")
    if not np.isfinite(images).all():
        raise UserError("images contain NaN or inf values")
    return np.rint(np.clip(images, 0.0, 1.0) * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)


def _shape_of(fill: float, drop: float) -> str:
    if drop >= TRIANGLE_DROP or fill < TRIANGLE_FILL:
        return "triangle"
    return "square" if fill >= SQUARE_FILL else "circle"


def detect(images: np.ndarray | torch.Tensor) -> list[list[SceneObject]]:
    """Detect the objects in each image of a batch (see the module docstring)."""
    pixels = as_uint8_images(images)
    n, h, w, _ = pixels.shape
    if (h, w) != (SIZE, SIZE):
        raise UserError(f"the Shapes verifier reads {SIZE}x{SIZE} images, got {w}x{h}")
    ink = 255.0 - pixels.astype(np.float32)
    proj = ink @ _UNIT.T  # (N, H, W, 4): ink length along each colour's direction
    best = proj.argmax(-1)
    length = np.take_along_axis(proj, best[..., None], -1)[..., 0]
    norm = np.linalg.norm(ink, axis=-1)
    coverage = length / _INK_NORM[best]
    solid = (coverage >= COVERAGE_MIN) & (length >= COSINE_MIN * norm)
    core = solid & (coverage >= CORE_COVERAGE)

    objects: list[list[SceneObject]] = [[] for _ in range(n)]
    rows_of = np.broadcast_to(np.arange(h)[None, :, None], (n, h, w)).ravel()
    for k, colour in enumerate(_NAMES):
        mask = solid & (best == k)
        labels, count = ndimage.label(core & (best == k), structure=_STRUCTURE)
        if count == 0:
            continue
        # Edge pixels join the core within GROW px, unless two cores are that close: a
        # blurred gap between two objects of one colour stays unclaimed.
        high = ndimage.grey_dilation(labels, footprint=_GROW)
        low = ndimage.grey_erosion(np.where(labels == 0, count + 1, labels), footprint=_GROW)
        labels = np.where((labels == 0) & mask & (high == low), high, labels)
        flat = labels.ravel()
        area = np.bincount(flat, minlength=count + 1)[1:]
        sum_y = np.bincount(flat, weights=rows_of, minlength=count + 1)[1:]
        for i, sl in enumerate(ndimage.find_objects(labels)):
            img, rows, cols = sl
            bh, bw = rows.stop - rows.start, cols.stop - cols.start
            if area[i] < MIN_AREA or min(bh, bw) < MIN_SIDE:
                continue
            fill = area[i] / (bh * bw)
            drop = (sum_y[i] / area[i] + 0.5 - rows.start) / bh  # mass centroid, pixel centres
            objects[img.start].append(
                SceneObject(
                    colour,
                    _shape_of(fill, drop),
                    (cols.start + cols.stop) / 2,  # box centre, as the renderer defines it
                    (rows.start + rows.stop) / 2,
                    (cols.start, rows.start, cols.stop, rows.stop),
                    float(area[i]),
                )
            )
    return objects


def verify(images: np.ndarray | torch.Tensor, prompts: Sequence[str]) -> list[Verdict]:
    """Check each image against its prompt; ``prompts`` has one entry per image."""
    parsed = [parse(p) for p in prompts]
    found = detect(images)
    if len(found) != len(parsed):
        raise UserError(f"got {len(found)} images but {len(parsed)} prompts")
    return [check(p, objs) for p, objs in zip(parsed, found, strict=True)]
