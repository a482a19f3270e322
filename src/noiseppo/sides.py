"""Render one side of a paired comparison (standard noise, or some latents) and score every image."""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm import tqdm

from noiseppo.backends.base import Backend
from noiseppo.overlap import score_while_rendering
from noiseppo.rewards.base import Reward
from noiseppo.rewards.scoring import score_with_details
from noiseppo.sampling import LatentsFn, RenderSpec, Sample, sample_batches


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
    ``reward`` plus the reward's numeric details, one value per image. Each chunk of ``spec.batch``
    images is scored while the next one renders (``noiseppo.overlap``) unless ``spec.overlap`` is off."""

    def score(chunk: list[Sample]) -> tuple[list[Sample], torch.Tensor, dict[str, list[float]]]:
        images = torch.stack([s.image for s in chunk])
        return chunk, *score_with_details(reward, images, [s.prompt for s in chunk])

    batches = sample_batches(backend, prompts, spec, latents_fn, prompt_ids)
    if progress is not None:  # a bar of its own, named, that goes when the side is done
        batches = tqdm(batches, total=math.ceil(len(prompts) * spec.seeds / spec.batch), desc=progress, leave=False)
    scored = score_while_rendering(batches, score, spec.overlap)
    samples = [s for chunk, _, _ in scored for s in chunk]
    metrics = {"reward": torch.cat([r for _, r, _ in scored]).numpy().astype(np.float64)}
    for key in scored[0][2] if scored else ():
        metrics[key] = np.asarray([v for _, _, details in scored for v in details[key]], dtype=np.float64)
    return metrics, samples
