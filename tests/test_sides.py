"""The one paired evaluation (``noiseppo.evaluation.sides.PairedSides``): the standard side is
rendered once, every side pairs with it image by image, and its rows and controls are those of
the functions it composes, recomputed here from rendered images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import noiseppo.evaluation.sides as sides_module
from noiseppo.backends import get_backend
from noiseppo.configs.presets import resolve
from noiseppo.evaluation.paired import paired_row
from noiseppo.evaluation.sides import PairedSides
from noiseppo.evaluation.specificity import controls, specificity_row
from noiseppo.policy import NoisePolicy
from noiseppo.rewards import get_reward
from noiseppo.sampling.render import RenderSpec
from noiseppo.sampling.seeds import sample_seed, standard_noise

PROMPTS = ["a red circle left of a blue square", "two green triangles"]


@pytest.fixture(scope="module")
def backend():
    return get_backend("shapes", None, "ddim")


def test_the_standard_side_is_the_seed_rules_noise_rendered_once(backend, monkeypatch) -> None:
    reward, spec = get_reward("shapes"), RenderSpec(4, 1.0, 2, 3, 64)
    calls = []
    real = sides_module.score_side
    monkeypatch.setattr(sides_module, "score_side", lambda *a, **k: calls.append(a[4]) or real(*a, **k))
    sides = PairedSides(backend, reward, PROMPTS, spec)
    first = sides.standard()
    assert sides.standard() is first and calls == [None]  # rendered once, whatever asks again
    assert sides.clusters.tolist() == [0, 0, 1, 1]
    # Image j of prompt i is the standard noise of sample_seed(seed, i, j), rendered with prompt i.
    texts = [p for p in PROMPTS for _ in range(2)]
    noise = standard_noise(backend.latent_shape, [sample_seed(3, i, j) for i in range(2) for j in range(2)])
    with torch.no_grad():
        images = backend.generate(noise, backend.encode(texts), 4, 1.0)
    assert first["reward"].tolist() == pytest.approx([float(r) for r in reward(images, texts)])


def test_a_side_pairs_with_standard_and_the_untrained_policy_is_standard(backend) -> None:
    reward, spec = get_reward("shapes"), RenderSpec(4, 1.0, 2, 0, 64)
    sides = PairedSides(backend, reward, PROMPTS, spec)
    untrained = NoisePolicy.for_config(backend, resolve("tiny"))
    metrics, samples = sides.side(untrained.noise_to_latents("sample"))
    assert [s.prompt_index for s in samples] == sides.clusters.tolist()
    for key, values in sides.standard().items():  # N(0, I) bit for bit: the same images, the same scores
        assert np.array_equal(values, metrics[key]), key
    row = sides.row(metrics)
    assert row == paired_row(sides.standard(), metrics, sides.clusters)
    assert row["eval_pairs"] == 4 and row["eval_delta_reward_ci95_low"] == row["eval_delta_reward_ci95_high"] == 0


def test_specificity_is_the_controls_row(backend) -> None:
    reward, spec = get_reward("shapes"), RenderSpec(4, 1.0, 2, 0, 64)
    policy = NoisePolicy.for_config(backend, resolve("tiny"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    sides = PairedSides(backend, reward, PROMPTS, spec)
    own = sides.side(policy.noise_to_latents("sample"))[0]
    expected = specificity_row(own, sides.clusters, controls(backend, policy, reward, PROMPTS, spec), 500)
    found = sides.specificity(policy, own, 500)
    assert found == expected and found["other_pairs"] == 4 and found["mirror_pairs"] == 2
