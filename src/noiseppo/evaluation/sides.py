"""The paired evaluation: standard noise against other latents on the same prompts and seeds.

The one place the package renders the sides it compares: the trainer's held-out pass, ``noiseppo
eval``, ``noiseppo compare``, the DDPO baselines and the studies in ``experiments/`` all go
through ``PairedSides``. Image k of every side comes from the same prompt and seed (the
``RenderSpec``'s seed rule), so the sides pair image by image; ``clusters[k]`` is image k's
prompt, which the bootstrap resamples as a whole (``noiseppo.evaluation.paired``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from noiseppo.evaluation.paired import paired_row
from noiseppo.evaluation.specificity import controls, specificity_row
from noiseppo.sampling.render_and_score import score_side

if TYPE_CHECKING:
    from noiseppo.backends.base import Backend
    from noiseppo.policy import Mode, NoisePolicy
    from noiseppo.rewards.base import Reward
    from noiseppo.sampling.render import LatentsFn, RenderSpec, Sample

Metrics = dict[str, np.ndarray]
"""metric -> one value per image: the reward, and the reward's numeric details."""


class PairedSides:
    """The prompts, the render specification and the standard side (rendered once, when first
    asked for) that every other side pairs with."""

    def __init__(self, backend: Backend, reward: Reward, prompts: list[str], spec: RenderSpec) -> None:
        self.backend, self.reward, self.prompts, self.spec = backend, reward, prompts, spec
        self._standard: tuple[Metrics, list[Sample]] | None = None

    def standard(self, progress: str | None = None) -> Metrics:
        """The frozen model's own noise, scored (once: it never changes)."""
        if self._standard is None:
            self._standard = score_side(self.backend, self.reward, self.prompts, self.spec, None, progress=progress)
        return self._standard[0]

    @property
    def standard_samples(self) -> list[Sample]:
        self.standard()
        assert self._standard is not None
        return self._standard[1]

    @property
    def clusters(self) -> np.ndarray:
        """Image k's prompt index, for every side."""
        return np.array([s.prompt_index for s in self.standard_samples])

    def side(
        self, latents_fn: LatentsFn | None, view: Backend | None = None, progress: str | None = None
    ) -> tuple[Metrics, list[Sample]]:
        """Another side from the same seeds: the latents ``latents_fn`` makes of each image's
        standard noise, rendered by ``view`` (a tuned copy of the model) or the model itself."""
        return score_side(view or self.backend, self.reward, self.prompts, self.spec, latents_fn, progress=progress)

    def row(self, metrics: Metrics, resamples: int = 2000) -> dict[str, float]:
        """``metrics`` against the standard side: ``noiseppo.evaluation.paired.paired_row``."""
        return paired_row(self.standard(), metrics, self.clusters, resamples)

    def specificity(
        self,
        policy: NoisePolicy,
        own: Metrics,
        resamples: int = 2000,
        mode: Mode = "sample",
        progress: str | None = None,
    ) -> dict[str, float]:
        """own - other and own - mirror of ``policy``, whose own side is ``own``
        (``noiseppo.evaluation.specificity``)."""
        sides = controls(self.backend, policy, self.reward, self.prompts, self.spec, mode, progress=progress)
        return specificity_row(own, self.clusters, sides, resamples)
