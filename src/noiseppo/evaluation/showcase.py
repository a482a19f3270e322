"""A fixed handful of held-out prompts drawn with standard noise and with a policy, on the same seeds.

What the run report's side-by-side grid and TensorBoard's sample images show. The prompts are
spread evenly over the held-out set and the seeds follow the held-out evaluation's rule
(``sample_seed(EVAL_SEED, i, j)`` for sample j of held-out prompt i), so every image here is one
the held-out evaluation scored, and the standard one is what ``noiseppo sample --seed 0`` draws.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from noiseppo.backends.base import Backend
from noiseppo.evaluation.grid import Block, Cell
from noiseppo.images import to_pil
from noiseppo.policy import NoisePolicy
from noiseppo.rewards.base import Reward
from noiseppo.rewards.scoring import score_with_details
from noiseppo.sampling.render import RenderSpec, encode_distinct
from noiseppo.sampling.seeds import sample_seed, standard_noise

PROMPTS = 6
"""Held-out prompts shown."""
SEEDS = 2
"""Seeds per prompt shown (the ``seeds`` of the callers' ``RenderSpec``)."""


def spread(prompts: Sequence[str], n: int = PROMPTS) -> list[int]:
    """Indices of ``n`` prompts spread evenly over ``prompts`` (all of them if there are fewer)."""
    if len(prompts) <= n:
        return list(range(len(prompts)))
    return [round(k * (len(prompts) - 1) / (n - 1)) for k in range(n)] if n > 1 else [0]


@torch.no_grad()
def side_by_side(
    backend: Backend,
    policy: NoisePolicy,
    reward: Reward,
    prompts: Sequence[str],
    spec: RenderSpec,
    n_prompts: int = PROMPTS,
) -> list[Block]:
    """One block per chosen prompt: for each of its ``spec.seeds`` seeds, the standard image then the
    policy's, each with the reward's verdict (Shapes: correct, and the partial score; otherwise the
    reward). The few images render in one pass per side: ``spec.batch`` and ``spec.overlap`` are unused."""
    jobs = [(i, j, sample_seed(spec.seed, i, j)) for i in spread(prompts, n_prompts) for j in range(spec.seeds)]
    texts = [prompts[i] for i, _, _ in jobs]
    conditioning = encode_distinct(backend, texts)
    eps = standard_noise(backend.latent_shape, [s for *_, s in jobs])
    sides = {"standard": eps, "policy": policy.noise_to_latents("sample")(conditioning, eps)}
    cells: dict[str, list[Cell]] = {}
    for side, latents in sides.items():
        images = backend.generate(latents, conditioning, spec.steps, spec.guidance).cpu()
        scores, details = score_with_details(reward, images, texts)
        correct, partial = details.get("correct"), details.get("partial", scores.tolist())
        cells[side] = [
            Cell(to_pil(image), side, None if correct is None else bool(correct[k]), float(partial[k]))
            for k, image in enumerate(images)
        ]
    blocks: list[Block] = []
    for k, (i, j, _) in enumerate(jobs):
        if j == 0:
            blocks.append(Block(prompts[i], []))
        blocks[-1].cells += [cells["standard"][k], cells["policy"][k]]
    return blocks
