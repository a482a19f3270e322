"""JPEG file size as a reward, DDPO's model-free task.

An image's size as a JPEG at quality 95, in kB: ``jpeg_incompressibility`` rewards large
files (detail, texture), ``jpeg_compressibility`` small ones (the size negated).
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch

from noiseppo.images import to_pil

QUALITY = 95


def jpeg_kb(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """JPEG sizes in kB (1000 bytes) of (N, 3, H, W) images in [0, 1]."""
    sizes = []
    for image in torch.as_tensor(images).float().cpu():
        buffer = io.BytesIO()
        to_pil(image).save(buffer, format="JPEG", quality=QUALITY)
        sizes.append(buffer.tell() / 1000)
    return torch.tensor(sizes, dtype=torch.float32)


def jpeg_compressibility(images: torch.Tensor | np.ndarray, prompts: Sequence[str]) -> torch.Tensor:
    return -jpeg_kb(images)


def jpeg_incompressibility(images: torch.Tensor | np.ndarray, prompts: Sequence[str]) -> torch.Tensor:
    return jpeg_kb(images)
