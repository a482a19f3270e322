"""``noiseppo score``: score image files with a reward, one JSON object per image."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from noiseppo.errors import UserError

if TYPE_CHECKING:
    import numpy as np


def add_parser(sub: argparse._SubParsersAction) -> None:
    score = sub.add_parser("score", help="score images with a reward; one JSON object per image")
    score.add_argument("--reward", default="shapes", help="a registered reward (noiseppo list rewards)")
    score.add_argument(
        "--prompt", action="append", required=True, help="the prompt: once for all images, or once per image"
    )
    score.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    score.set_defaults(func=run)


def _load_image(path: str) -> np.ndarray:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            # Transparent pixels lie on the Shapes world's white, not on black.
            rgba = im.convert("RGBA")
            pixels = np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB"))
    except FileNotFoundError:
        raise UserError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path}: cannot read image ({e.__class__.__name__})") from None
    return pixels


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from noiseppo.rewards import get_reward

    reward = get_reward(args.reward)
    if len(args.prompt) not in (1, len(args.images)):
        raise UserError(
            f"give one --prompt for all images or one per image; got {len(args.prompt)} for {len(args.images)} images"
        )
    prompts = args.prompt * len(args.images) if len(args.prompt) == 1 else args.prompt
    size = getattr(reward, "image_size", None)  # (height, width) a reward insists on, if any
    pixels = []
    for path in args.images:
        image = _load_image(path)
        if size is not None and image.shape[:2] != size:
            h, w = image.shape[:2]
            raise UserError(
                f"{path}: image is {w}x{h}, reward '{args.reward}' reads {size[1]}x{size[0]} (it never resizes)"
            )
        pixels.append(image)
    if len({p.shape for p in pixels}) > 1:
        raise UserError("images of different sizes cannot be scored in one call")
    batch = np.stack(pixels).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    details = getattr(reward, "details", None)
    if details:
        rows = details(batch, prompts)
    else:  # the reward contract: a float tensor, and checked scores
        import torch

        from noiseppo.rewards.scoring import score_batch

        rows = [{"score": float(s)} for s in score_batch(reward, torch.from_numpy(batch), prompts)]
    for path, row in zip(args.images, rows, strict=True):
        print(json.dumps({"image": path, **row}))
    return 0
