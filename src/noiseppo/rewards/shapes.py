"""The Shapes verifier as a reward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from noiseppo.shapes.verifier import SIZE, verify

if TYPE_CHECKING:
    import torch


class ShapesReward:
    """Score images with the Shapes verifier.

    ``score="partial"`` (the fraction of constraints met) gives a denser signal than
    ``score="correct"`` (all constraints met), which is the benchmark's headline metric.
    """

    image_size = (SIZE, SIZE)  # the verifier never resizes: other sizes are refused

    def __init__(self, score: Literal["partial", "correct"] = "partial"):
        self.score = score

    def __call__(self, images: torch.Tensor | np.ndarray, prompts: Sequence[str]) -> torch.Tensor:
        import torch  # lazily: scoring files from the CLI does not need it

        verdicts = verify(images, prompts)
        return torch.tensor([float(getattr(v, self.score)) for v in verdicts], dtype=torch.float32)

    def score_with_details(
        self, images: torch.Tensor | np.ndarray, prompts: Sequence[str]
    ) -> tuple[torch.Tensor, dict[str, list[float]]]:
        """Scores plus per-image correct and partial, from one verifier pass."""
        import torch

        verdicts = verify(images, prompts)
        scores = torch.tensor([float(getattr(v, self.score)) for v in verdicts], dtype=torch.float32)
        return scores, {
            "correct": [float(v.correct) for v in verdicts],
            "partial": [float(v.partial) for v in verdicts],
        }

    def details(self, images: torch.Tensor | np.ndarray, prompts: Sequence[str]) -> list[dict[str, Any]]:
        return [v.to_json() for v in verify(images, prompts)]
