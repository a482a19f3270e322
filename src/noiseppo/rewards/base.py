"""What a reward is: ``reward(images, prompts) -> scores``, one float per image, higher is better.

A module of its own so that the registry (``noiseppo.rewards``), the scoring helpers
(``noiseppo.rewards.scoring``) and every caller import the type without importing each other;
and how a reward's name is shown (``redacted``), for the trainer's and the report's messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urldefrag

if TYPE_CHECKING:
    import torch


class Reward(Protocol):
    """Images (N, 3, H, W) in [0, 1] and one prompt per image -> a float tensor of N scores."""

    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor: ...


def redacted(name: str) -> str:
    """A reward name fit for a message: a URL loses its fragment, which may hold the token."""
    return urldefrag(name)[0] if name.startswith(("http://", "https://")) else name
