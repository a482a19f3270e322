"""Render and score: the one loop behind training's rollout, a side of a paired comparison, the
golden-noise matrices and ``noiseppo sample``'s verdicts."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import torch
from tqdm import tqdm

from noiseppo.backends.base import Backend
from noiseppo.rewards.base import Reward
from noiseppo.rewards.scoring import score_with_details
from noiseppo.sampling.overlap import score_while_rendering
from noiseppo.sampling.render import LatentsFn, RenderSpec, Sample, sample_batches


def score_chunks(
    chunks: Iterable[tuple[Sequence[str], torch.Tensor]],
    reward: Reward,
    overlap: bool = True,
    timer: Callable[[], AbstractContextManager] = nullcontext,
) -> tuple[torch.Tensor, dict[str, np.ndarray]]:
    """Score every chunk of (prompts, images): the rewards and the reward's numeric details, one
    value per image each, in chunk order. Iterating ``chunks`` renders; each chunk is scored while
    the next one renders (``noiseppo.sampling.overlap``) unless ``overlap`` is off. ``timer()`` is entered
    around each scoring (training times the reward's own time with it)."""

    def score(chunk: tuple[Sequence[str], torch.Tensor]) -> tuple[torch.Tensor, dict[str, list[float]]]:
        with timer():
            return score_with_details(reward, chunk[1], chunk[0])

    scored = score_while_rendering(chunks, score, overlap)
    rewards = torch.cat([r for r, _ in scored]) if scored else torch.zeros(0)
    keys = scored[0][1] if scored else {}
    details = {key: np.asarray([v for _, d in scored for v in d[key]], dtype=np.float64) for key in keys}
    return rewards, details


def score_side(
    backend: Backend,
    reward: Reward,
    prompts: list[str],
    spec: RenderSpec,
    latents_fn: LatentsFn | None,
    prompt_ids: list[int] | None = None,
    progress: str | None = None,
) -> tuple[dict[str, np.ndarray], list[Sample]]:
    """Render one side (standard noise, or a policy's latents) and score every image:
    ``reward`` plus the reward's numeric details, one value per image, and the samples."""
    batches = sample_batches(backend, prompts, spec, latents_fn, prompt_ids)
    if progress is not None:  # a bar of its own, named, that goes when the side is done
        batches = tqdm(batches, total=math.ceil(len(prompts) * spec.seeds / spec.batch), desc=progress, leave=False)
    samples: list[Sample] = []

    def chunks() -> Iterator[tuple[list[str], torch.Tensor]]:  # each next() renders one chunk
        for chunk in batches:
            samples.extend(chunk)
            yield [s.prompt for s in chunk], torch.stack([s.image for s in chunk])

    rewards, details = score_chunks(chunks(), reward, spec.overlap)
    return {"reward": rewards.numpy().astype(np.float64), **details}, samples
