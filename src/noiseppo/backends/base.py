"""The seam every frozen generator goes through.

A backend encodes prompts, states its latent shape, and turns initial latents into
images. It knows nothing of PPO or rewards; the policy knows nothing of its internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Conditioning:
    """A batch of encoded prompts, detached from any graph.

    ``token_states`` (N, L, D) and ``pooled`` (N, D) are what a noise policy conditions
    on; ``mask`` (N, L) is True on real tokens.
    """

    prompts: list[str]
    token_states: torch.Tensor
    pooled: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, index: torch.Tensor | list[int]) -> Conditioning:
        """The rows at ``index``, in that order."""
        rows = torch.as_tensor(index, dtype=torch.long)
        return Conditioning(
            [self.prompts[i] for i in rows.tolist()], self.token_states[rows], self.pooled[rows], self.mask[rows]
        )


class Backend(Protocol):
    """A frozen text-to-image generator.

    ``generate`` runs under no-grad, is deterministic given its latents, and consumes
    exactly the latents it is given: the initial noise *is* the input. Images are float
    tensors in [0, 1], shape (N, 3, H, W).
    """

    name: str
    latent_shape: tuple[int, ...]
    default_guidance: float

    def encode(self, prompts: list[str]) -> Conditioning: ...

    def generate(
        self, latents: torch.Tensor, conditioning: Conditioning, steps: int, guidance: float
    ) -> torch.Tensor: ...
