"""The reward registry: ``reward(images, prompts) -> scores``.

A reward takes a batch of images (float tensor in [0, 1], shape (N, 3, H, W)) and one
prompt per image, and returns a float tensor of N scores, higher is better. It may be a
black box: nothing is differentiated through it. A reward may also offer
``details(images, prompts) -> list[dict]`` with per-image diagnostics (the Shapes
verifier's per-constraint breakdown), which ``noiseppo score`` prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from noiseppo.errors import UserError
from noiseppo.rewards.shapes import ShapesReward

if TYPE_CHECKING:
    import torch


class Reward(Protocol):
    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor: ...


REWARDS: dict[str, tuple[Callable[[], Reward], str]] = {
    "shapes": (
        lambda: ShapesReward("partial"),
        "Shapes verifier, fraction of the prompt's constraints met (0-1)",
    ),
    "shapes-correct": (
        lambda: ShapesReward("correct"),
        "Shapes verifier, 1 if every constraint of the prompt holds, else 0",
    ),
}


def get_reward(name: str) -> Reward:
    """Build the registered reward ``name``."""
    if name not in REWARDS:
        raise UserError(f"unknown reward '{name}' (known: {', '.join(REWARDS)})")
    return REWARDS[name][0]()
