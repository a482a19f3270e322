"""Seeded sampling: one image per (prompt, sample) pair, its noise fixed by the seed rule."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from noiseppo.backends.base import Backend, Conditioning
from noiseppo.seeds import sample_seed


@dataclass
class Sample:
    prompt_index: int
    sample_index: int
    prompt: str
    seed: int
    image: torch.Tensor  # (3, H, W) in [0, 1]


def standard_noise(shape: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
    """N(0, I) latents, one per seed, drawn on the CPU so every device sees the same noise."""
    return torch.stack([torch.randn(*shape, generator=torch.Generator().manual_seed(s)) for s in seeds])


LatentsFn = Callable[[Conditioning, torch.Tensor], torch.Tensor]
"""Maps (conditioning, standard noise eps) to the latents to render; identity by default."""


def sample(
    backend: Backend,
    prompts: Sequence[str],
    n: int,
    steps: int,
    guidance: float,
    seed: int,
    batch: int = 64,
    latents_fn: LatentsFn | None = None,
) -> list[Sample]:
    """Render ``n`` samples of each prompt; sample j of prompt i uses ``sample_seed(seed, i, j)``."""
    jobs = [(i, j, p, sample_seed(seed, i, j)) for i, p in enumerate(prompts) for j in range(n)]
    out: list[Sample] = []
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        conditioning = backend.encode([p for _, _, p, _ in chunk])
        eps = standard_noise(backend.latent_shape, [s for *_, s in chunk])
        latents = eps if latents_fn is None else latents_fn(conditioning, eps)
        images = backend.generate(latents, conditioning, steps, guidance).cpu()
        out.extend(
            Sample(i, j, text, s, image)
            for (i, j, _, s), text, image in zip(chunk, conditioning.prompts, images, strict=True)
        )
    return out
