"""Converting the package's images, float tensors (3, H, W) in [0, 1], to what other code reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PIL import Image

if TYPE_CHECKING:
    import torch


def to_pil(image: torch.Tensor) -> Image.Image:
    """A (3, H, W) float tensor in [0, 1] as an 8-bit PIL image (rounded, not truncated)."""
    import torch

    return Image.fromarray((image.clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())
