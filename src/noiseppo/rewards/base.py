"""What a reward is: ``reward(images, prompts) -> scores``, one float per image, higher is better.

A module of its own so that the registry (``noiseppo.rewards``), the scoring helpers
(``noiseppo.rewards.scoring``) and every caller import the type without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import torch


class Reward(Protocol):
    """Images (N, 3, H, W) in [0, 1] and one prompt per image -> a float tensor of N scores."""

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor: ...
