"""Seeded sampling: one image per (prompt, sample) pair, its noise fixed by the seed rule."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from noiseppo.backends.base import Backend, Conditioning
from noiseppo.seeds import sample_seed, standard_noise


@dataclass
class Sample:
    prompt_index: int
    sample_index: int
    prompt: str
    seed: int
    image: torch.Tensor  # (3, H, W) in [0, 1]


LatentsFn = Callable[[Conditioning, torch.Tensor], torch.Tensor]
"""Maps (conditioning, standard noise eps) to the latents to render; identity by default."""


def encode_distinct(backend: Backend, prompts: Sequence[str]) -> Conditioning:
    """``backend.encode(prompts)``, with each distinct prompt encoded once and the rows expanded:
    a batch of P prompts x K samples costs the text encoder P rows, not P·K."""
    distinct = list(dict.fromkeys(prompts))
    if len(distinct) == len(prompts):
        return backend.encode(list(prompts))
    row = {p: k for k, p in enumerate(distinct)}
    return backend.encode(distinct).select([row[p] for p in prompts])


def sample_batches(
    backend: Backend,
    prompts: Sequence[str],
    n: int,
    steps: int,
    guidance: float,
    seed: int,
    batch: int = 64,
    latents_fn: LatentsFn | None = None,
    prompt_ids: Sequence[int] | None = None,
) -> Iterator[list[Sample]]:
    """Render ``n`` samples of each prompt, ``batch`` images per forward pass, one list per pass
    (lazily: each ``next`` renders); sample j of prompt i uses ``sample_seed(seed, i, j)``.
    ``prompt_ids`` gives each prompt's index i when ``prompts`` is a subset of a larger list
    whose images these must pair with (default: its position)."""
    ids = range(len(prompts)) if prompt_ids is None else prompt_ids
    jobs = [(i, j, p, sample_seed(seed, i, j)) for i, p in zip(ids, prompts, strict=True) for j in range(n)]
    for start in range(0, len(jobs), batch):
        chunk = jobs[start : start + batch]
        conditioning = encode_distinct(backend, [p for _, _, p, _ in chunk])
        eps = standard_noise(backend.latent_shape, [s for *_, s in chunk])
        latents = eps if latents_fn is None else latents_fn(conditioning, eps)
        images = backend.generate(latents, conditioning, steps, guidance).cpu()
        yield [
            Sample(i, j, text, s, image)
            for (i, j, _, s), text, image in zip(chunk, conditioning.prompts, images, strict=True)
        ]


def sample(*args: Any, **kwargs: Any) -> list[Sample]:
    """All of ``sample_batches`` (the same arguments) in one list."""
    return [s for chunk in sample_batches(*args, **kwargs) for s in chunk]
