"""Pinned results: what the shipped files give on a fixed draw, so that a change anywhere in
the sampler, the seed rule, the policy or the verifier shows up as a changed number.

As diffusers' pipeline tests do, exact output values on a fixed seed (per-image channel means,
which depend on every pixel), with a tolerance for other CPUs' float rounding; and the shipped
4-step policy's gain over standard noise on a fixed set of held-out prompts, as counts of
correct images, which rounding cannot move.
"""

from __future__ import annotations

import torch

from noiseppo.backends import get_backend
from noiseppo.policy import load_policy
from noiseppo.rewards import get_reward
from noiseppo.sampling.seeds import standard_noise
from noiseppo.shapes import splits

PROMPTS = splits.test_prompts()[::2]  # 74 held-out prompts (never trained on), one seed each
SEEDS = list(range(len(PROMPTS)))


def render(latents: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    backend = get_backend("shapes")
    with torch.no_grad():
        return backend.generate(latents, backend.encode(prompts), 4, 1.0)


def test_the_shapes_model_gives_its_pinned_images_on_a_fixed_seed() -> None:
    backend, policy = get_backend("shapes"), load_policy("shapes-steps4")
    prompts = PROMPTS[:3]
    assert prompts == ["a green square", "a yellow square", "two blue squares"]
    standard = render(standard_noise(backend.latent_shape, [0, 1, 2]), prompts).mean(dim=(2, 3)).flatten()
    learned = render(policy.backend_latents(backend, prompts, seeds=[0, 1, 2]), prompts).mean(dim=(2, 3)).flatten()
    expected_standard = [0.949188, 0.97687, 0.952275, 0.988258, 0.982297, 0.936242, 0.857311, 0.88694, 0.972166]
    expected_learned = [0.945706, 0.976224, 0.946388, 0.984872, 0.977418, 0.91222, 0.856615, 0.885942, 0.969282]
    assert torch.allclose(standard, torch.tensor(expected_standard), atol=1e-4), standard.tolist()
    assert torch.allclose(learned, torch.tensor(expected_learned), atol=1e-4), learned.tolist()


def test_the_shipped_4_step_policy_beats_standard_noise_on_a_fixed_draw() -> None:
    backend, policy, correct = get_backend("shapes"), load_policy("shapes-steps4"), get_reward("shapes-correct")
    standard = correct(render(standard_noise(backend.latent_shape, SEEDS), PROMPTS), PROMPTS)
    learned = correct(render(policy.backend_latents(backend, PROMPTS, seeds=SEEDS), PROMPTS), PROMPTS)
    # 74 pairs: 20 correct with standard noise, 28 with the policy's (Δ +0.108); the whole
    # held-out set's figure, 592 pairs, is +0.123 [+0.076, +0.171] (README).
    assert (int(sum(standard)), int(sum(learned))) == (20, 28)


def test_the_seed_streams_are_distinct_and_beyond_every_prompt_and_sample_index() -> None:
    from noiseppo.baselines import best_of_n, ddpo, search
    from noiseppo.sampling.seeds import STREAMS
    from noiseppo.training import trainer

    assert len(set(STREAMS)) == len(STREAMS) and min(STREAMS) >= 2**40
    # Each command takes its stream from noiseppo.sampling.seeds, none keeps a copy of its own.
    uses = (trainer.TRAIN_STREAM, best_of_n.BEST_OF_STREAM, search.SEARCH_STREAM, ddpo.DDPO_STREAM)
    assert uses == STREAMS
