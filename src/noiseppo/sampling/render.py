"""Seeded sampling: one image per (prompt, sample) pair, its noise fixed by the seed rule."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from noiseppo.backends.base import Backend, Conditioning
from noiseppo.sampling.seeds import sample_seed, standard_noise

if TYPE_CHECKING:
    from noiseppo.configs.train import TrainConfig


@dataclass
class Sample:
    prompt_index: int
    sample_index: int
    prompt: str
    seed: int
    image: torch.Tensor  # (3, H, W) in [0, 1]


LatentsFn = Callable[[Conditioning, torch.Tensor], torch.Tensor]
"""Maps (conditioning, standard noise eps) to the latents to render; identity by default."""


@dataclass(frozen=True)
class RenderSpec:
    """How a set of images is rendered: what the sides of a paired comparison share, so that they
    pair image for image (image j of prompt i: the standard noise of ``sample_seed(seed, i, j)``)."""

    steps: int
    """Sampling steps of the frozen model."""
    guidance: float
    """Classifier-free guidance scale (1: off)."""
    seeds: int = 1
    """Images per prompt."""
    seed: int = 0
    """Base seed of the seed rule (``noiseppo sample --seed``)."""
    batch: int = 64
    """Images per forward pass."""
    overlap: bool = True
    """Score each chunk while the next one renders (``noiseppo.sampling.overlap``); off: one after the other."""


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
    spec: RenderSpec,
    latents_fn: LatentsFn | None = None,
    prompt_ids: Sequence[int] | None = None,
) -> Iterator[list[Sample]]:
    """Render ``spec.seeds`` samples of each prompt, ``spec.batch`` images per forward pass, one
    list per pass (lazily: each ``next`` renders); sample j of prompt i uses ``sample_seed(spec.seed,
    i, j)``. ``prompt_ids`` gives each prompt's index i when ``prompts`` is a subset of a larger list
    whose images these must pair with (default: its position)."""
    ids = range(len(prompts)) if prompt_ids is None else prompt_ids
    jobs = [
        (i, j, p, sample_seed(spec.seed, i, j)) for i, p in zip(ids, prompts, strict=True) for j in range(spec.seeds)
    ]
    for start in range(0, len(jobs), spec.batch):
        chunk = jobs[start : start + spec.batch]
        conditioning = encode_distinct(backend, [p for _, _, p, _ in chunk])
        eps = standard_noise(backend.latent_shape, [s for *_, s in chunk])
        latents = eps if latents_fn is None else latents_fn(conditioning, eps)
        images = backend.generate(latents, conditioning, spec.steps, spec.guidance).cpu()
        yield [
            Sample(i, j, text, s, image)
            for (i, j, _, s), text, image in zip(chunk, conditioning.prompts, images, strict=True)
        ]


def sample(
    backend: Backend,
    prompts: Sequence[str],
    spec: RenderSpec,
    latents_fn: LatentsFn | None = None,
    prompt_ids: Sequence[int] | None = None,
) -> list[Sample]:
    """All of ``sample_batches`` in one list."""
    return [s for chunk in sample_batches(backend, prompts, spec, latents_fn, prompt_ids) for s in chunk]


# -- one training iteration's batch (Noise PPO and DDPO draw it alike) ------------------------------
def draw_batch(
    cfg: TrainConfig, prompts: Sequence[str], latent_shape: Sequence[int], generator: torch.Generator
) -> tuple[list[str], torch.Tensor]:
    """One iteration's prompts, each repeated ``samples_per_prompt`` times (prompt-major), and
    their standard noise, both drawn from ``generator`` in that order."""
    chosen = draw_prompt_ids(len(prompts), cfg.prompts_per_iteration, generator)
    texts = [prompts[i] for i in chosen.tolist() for _ in range(cfg.samples_per_prompt)]
    return texts, draw_noise(cfg, latent_shape, generator)


def draw_prompt_ids(count: int, per_iteration: int, generator: torch.Generator) -> torch.Tensor:
    """The indices of one iteration's prompts: without replacement when there are enough, so each
    prompt comes at most once; a smaller prompt file is drawn with replacement, as ddpo-pytorch
    draws every batch, so the default batch runs on a file of a few prompts. A prompt drawn twice
    is one group of twice the samples: advantages group by the prompt's text."""
    if count >= per_iteration:
        return torch.randperm(count, generator=generator)[:per_iteration]
    return torch.randint(count, (per_iteration,), generator=generator)


def draw_noise(cfg: TrainConfig, latent_shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """One iteration's standard noise, (prompts x samples, *latent_shape), prompt-major.

    With ``antithetic`` each prompt's second half of noises mirrors its first half (ε, -ε); with
    ``shared_noise`` every prompt gets the same ``samples_per_prompt`` noises (a prompts x noises grid).
    """
    prompts = 1 if cfg.shared_noise else cfg.prompts_per_iteration
    eps = torch.randn(prompts * cfg.samples_per_prompt, *latent_shape, generator=generator)
    if cfg.antithetic:
        groups = eps.view(prompts, cfg.samples_per_prompt, -1)
        half = cfg.samples_per_prompt // 2
        groups[:, half:] = -groups[:, :half]
    return eps.repeat(cfg.prompts_per_iteration, *[1] * len(latent_shape)) if cfg.shared_noise else eps
