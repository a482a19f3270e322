"""Best-of-N: render N candidates per image and let the reward pick one (an inference-time baseline).

Candidate ``k`` of image ``j`` of prompt ``i`` under ``--seed s`` uses the standard noise of
``sample_seed(candidate_seed(s, k), i, j)``. Candidate 0 is the image's own seed
(``candidate_seed(s, 0) == s``), so best-of-1 *is* the standard (or policy) image of
``noiseppo sample --seed s``; candidates 1, 2, ... come from base seeds derived from
``(s, BEST_OF_STREAM, k)``, a stream no command's sample indices reach, so they never
coincide with the evaluation's own seeds. Best-of-N for every N up to ``n`` reads the first
N candidates of one rendering: best-of-4 is best-of-16 restricted to candidates 0-3.

Cost at inference: N renders and N reward calls per image. The reward at inference is an
oracle that a deployed model usually lacks (the Shapes verifier knows the scene's truth).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from noiseppo.backends.base import Backend
from noiseppo.rewards.base import Reward
from noiseppo.sampling.render import LatentsFn, RenderSpec
from noiseppo.sampling.render_and_score import score_side
from noiseppo.sampling.seeds import BEST_OF_STREAM, sample_seed


def candidate_seed(seed: int, k: int) -> int:
    """The base seed of candidate ``k`` (0: ``seed`` itself, so best-of-1 is plain sampling)."""
    return seed if k == 0 else sample_seed(seed, BEST_OF_STREAM, k)


@dataclass
class Candidates:
    """Every candidate's scores: ``scores[metric]`` is (n, images), images in ``sample`` order."""

    scores: dict[str, np.ndarray]
    prompt_index: np.ndarray
    images: list[list[torch.Tensor]] | None  # [k][image], kept only when asked for

    def pick(self, n: int) -> np.ndarray:
        """Index of the chosen candidate of each image among the first ``n``: the highest
        reward, the lowest ``k`` on ties; a NaN reward never wins unless all are NaN."""
        reward = np.where(np.isnan(self.scores["reward"][:n]), -np.inf, self.scores["reward"][:n])
        return reward.argmax(0)

    def best(self, n: int) -> dict[str, np.ndarray]:
        """The chosen candidate's value of every metric, per image."""
        chosen = self.pick(n)
        columns = np.arange(chosen.size)
        return {metric: values[chosen, columns] for metric, values in self.scores.items()}


def render_candidates(
    backend: Backend,
    reward: Reward,
    prompts: Sequence[str],
    spec: RenderSpec,
    n: int,
    latents_fn: LatentsFn | None = None,
    keep_images: bool = False,
) -> Candidates:
    """Render and score ``n`` candidates of each of the ``spec.seeds`` images of every prompt:
    standard noise, or a policy's latents of that noise (``latents_fn``). Candidate k is rendered
    as ``spec`` with the base seed ``candidate_seed(spec.seed, k)``."""
    per_k, images = [], []
    for k in range(n):
        candidate = replace(spec, seed=candidate_seed(spec.seed, k))
        metrics, samples = score_side(backend, reward, list(prompts), candidate, latents_fn)
        per_k.append(metrics)
        if keep_images:
            images.append([s.image for s in samples])
    scores = {m: np.stack([row[m] for row in per_k]) for m in per_k[0]}
    prompt_index = np.array([s.prompt_index for s in samples])
    return Candidates(scores, prompt_index, images if keep_images else None)
