"""Prompt-specificity (own - other, own - mirror), the prompt-blind control, the shared-noise
rollout and its two-way centring, and the readouts' exact identity at initialisation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import noiseppo.training.trainer as train_module
from noiseppo.backends import get_backend
from noiseppo.configs.presets import resolve
from noiseppo.evaluation.evaluate import diversity
from noiseppo.evaluation.specificity import controls, other_prompts, specificity_row
from noiseppo.policy import READOUTS, NoisePolicy
from noiseppo.prompts import load_prompts, mirror_prompt
from noiseppo.rewards import get_reward
from noiseppo.sampling.render import RenderSpec
from noiseppo.sampling.render_and_score import score_side
from noiseppo.shapes.render import render
from noiseppo.training.advantages import centre_noises, centred_ranks

RELATIONS = [p for p in load_prompts("shapes-test") if mirror_prompt(p)][::7]  # 16 relation prompts


@pytest.fixture(scope="module")
def backend():
    return get_backend("shapes", None, "ddim")


def randomised(policy: NoisePolicy, seed: int = 0, scale: float = 0.3) -> NoisePolicy:
    """Every parameter random: the readouts start at zero, so μ would otherwise be 0."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return policy


class ScenePolicy(NoisePolicy):
    """A policy built to depend on its prompt: its mean is the prompt's own target scene (pixels in
    [-1, 1], the Shapes model's latent space), scaled down, so the frozen model is nudged to draw it."""

    def _forward(self, conditioning):
        scenes = [torch.from_numpy(np.asarray(render(p, seed=0), dtype=np.float32)) for p in conditioning.prompts]
        mean = 0.8 * (torch.stack(scenes).permute(0, 3, 1, 2) / 127.5 - 1)
        return mean, torch.zeros_like(mean)


def spec(backend, policy, prompts, seeds=2):
    reward = get_reward("shapes")
    spec = RenderSpec(4, 1.0, seeds, 0, 64)
    own, samples = score_side(backend, reward, prompts, spec, policy.noise_to_latents("sample"))
    clusters = np.array([s.prompt_index for s in samples])
    return specificity_row(own, clusters, controls(backend, policy, reward, prompts, spec), 500)


def test_a_policy_that_ignores_its_prompt_has_no_specificity_exactly(backend) -> None:
    policy = randomised(NoisePolicy(latent_shape=backend.latent_shape, prompt_blind=True, readout="cell"))
    cond = backend.encode(RELATIONS[:2])
    assert not torch.equal(policy(cond)[0][0], torch.zeros(backend.latent_shape))  # it does move the noise
    assert torch.equal(policy(cond)[0][0], policy(cond)[0][1])  # the same for both prompts
    row = spec(backend, policy, RELATIONS[:6])
    assert row["other_pairs"] == 12 and row["mirror_pairs"] == 12
    for side in ("other", "mirror"):
        for metric in ("reward", "correct", "partial"):
            assert row[f"own_minus_{side}_{metric}"] == 0.0
            assert row[f"own_minus_{side}_{metric}_ci95_low"] == row[f"own_minus_{side}_{metric}_ci95_high"] == 0.0


def test_a_policy_built_to_depend_on_its_prompt_has_specificity_above_0(backend) -> None:
    policy = ScenePolicy(latent_shape=backend.latent_shape)
    row = spec(backend, policy, RELATIONS)
    # Its own scene makes the right picture far more often than another prompt's or the mirror's.
    assert row["own_minus_other_correct"] > 0.2 and row["own_minus_other_correct_ci95_low"] > 0
    assert row["own_minus_mirror_correct"] > 0.1 and row["own_minus_mirror_correct_ci95_low"] > 0


def test_controls_pair_with_the_own_side_image_for_image(backend) -> None:
    """The mirror side renders only relation prompts, yet with the seeds of their place in the list."""
    prompts = ["a red circle", RELATIONS[0], "two blue squares", RELATIONS[1]]
    policy = NoisePolicy(latent_shape=backend.latent_shape)  # untrained: every side is standard noise
    reward = get_reward("shapes")
    own, _ = score_side(backend, reward, prompts, RenderSpec(4, 1.0, 2, 0, 64), None)
    sides = controls(backend, policy, reward, prompts, RenderSpec(4, 1.0, 2, 0, 64))
    assert list(sides["mirror"].rows) == [2, 3, 6, 7]
    for side in sides.values():
        np.testing.assert_array_equal(side.metrics["reward"], own["reward"][side.rows])


def test_other_prompts_are_a_seeded_derangement_and_mirrors_swap_the_relation() -> None:
    prompts = load_prompts("shapes-test")
    others = other_prompts(prompts, seed=3)
    assert sorted(others) == sorted(prompts) and all(a != b for a, b in zip(prompts, others, strict=True))
    assert others == other_prompts(prompts, seed=3) != other_prompts(prompts, seed=4)
    assert other_prompts(["a red circle", "a red circle"]) == []
    assert mirror_prompt("a red circle left of a blue square") == "a red circle right of a blue square"
    assert mirror_prompt("a red circle below a blue square") == "a red circle above a blue square"
    assert mirror_prompt("a red circle and a blue square") is None


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("blind", [False, True])
def test_every_untrained_policy_reproduces_standard_noise_bit_for_bit(backend, readout: str, blind: bool) -> None:
    torch.manual_seed(0)
    cond = backend.encode(["a red circle", RELATIONS[0], "three yellow squares"])
    tokens = cond.token_states.shape[1]  # only the position readout reads it
    policy = NoisePolicy(
        latent_shape=backend.latent_shape, readout=readout, prompt_blind=blind, learn_sigma=True, tokens=tokens
    )
    if readout == "position":  # its whitening is fitted to prompts before training starts
        policy.fit_token_statistics(backend.encode(RELATIONS))
    eps = torch.randn(3, *backend.latent_shape)
    assert torch.equal(policy.sample(cond, eps), eps)
    assert torch.equal(policy.noise_to_latents("mean")(cond, eps), torch.zeros_like(eps))


def test_the_token_readout_depends_on_the_prompt_and_on_word_order(backend) -> None:
    policy = randomised(NoisePolicy(latent_shape=backend.latent_shape, readout="token"))
    prompt = "a red circle left of a blue square"
    mean = policy(backend.encode([prompt, mirror_prompt(prompt), "a blue square left of a red circle"]))[0]
    assert not torch.allclose(mean[0], mean[1]) and not torch.allclose(mean[0], mean[2])


def test_two_way_centring_leaves_only_the_interaction() -> None:
    rng = np.random.default_rng(0)
    prompts, noises = 5, 6
    r = rng.normal(size=(prompts, noises))
    ranks = np.stack([centred_ranks(row) for row in r])
    out = centre_noises(ranks.reshape(-1), np.tile(np.arange(noises), prompts), 1.0).reshape(prompts, noises)
    expected = ranks - ranks.mean(1, keepdims=True) - ranks.mean(0, keepdims=True) + ranks.mean()
    np.testing.assert_allclose(out, expected, atol=1e-12)
    np.testing.assert_allclose(out.sum(0), 0, atol=1e-12)  # no noise is good for every prompt any more
    half = centre_noises(ranks.reshape(-1), np.tile(np.arange(noises), prompts), 0.5).reshape(prompts, noises)
    np.testing.assert_allclose(half.sum(0), ranks.sum(0) / 2, atol=1e-12)


def test_shared_noise_gives_every_prompt_the_same_noises_and_centring_cancels_the_generic_gradient() -> None:
    overrides = ["eval_prompts=", "shared_noise=true", "noise_centring=1", "prompts_per_iteration=3"]
    config = resolve("tiny", overrides=overrides)
    trainer = train_module.Trainer(config)
    rollout, _ = trainer.rollout(train_module.iteration_generator(config, 0))
    groups = rollout.latents.view(3, config.samples_per_prompt, -1)
    assert torch.equal(groups[0], groups[1]) and torch.equal(groups[0], groups[2])
    assert torch.equal(groups[0, 2:], -groups[0, :2])  # still antithetic
    adv = rollout.advantages.view(3, -1)
    assert adv.abs().sum() > 0 and torch.allclose(adv.sum(0), torch.zeros(config.samples_per_prompt), atol=1e-6)
    # So the batch's gradient with respect to a prompt-independent shift (what cell_bias carries) is 0.
    eps = groups[0].double()
    generic = (adv.double()[:, :, None] * eps[None]).sum((0, 1))
    assert generic.abs().max() < 1e-4


def test_diversity_is_zero_for_identical_images_and_grows_with_spread() -> None:
    same = [torch.full((3, 4, 4), 0.5)] * 4
    assert diversity(same, np.array([0, 0, 1, 1])) == 0.0
    spread = [torch.zeros(3, 4, 4), torch.ones(3, 4, 4), torch.zeros(3, 4, 4), torch.full((3, 4, 4), 0.5)]
    assert diversity(spread, np.array([0, 0, 1, 1])) == pytest.approx((1.0 + 0.5) / 2)


def test_train_reports_specificity_in_its_held_out_table(noiseppo, tmp_path: Path) -> None:
    prompts = tmp_path / "held_out.txt"
    prompts.write_text("a red circle\na red circle left of a blue square\na green square above a yellow circle\n")
    run = tmp_path / "run"
    args = ["--preset", "tiny", "--out", run, f"eval_prompts={prompts}", "eval_specificity=true", "threads=1"]
    done = noiseppo.in_process("train", *args, "shared_noise=true", "noise_centring=1", "readout=token")
    assert done.returncode == 0, done.stderr
    assert "own-other" in done.stdout and "own-mirror" in done.stdout
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["eval_other_pairs"] == 3 and last["eval_mirror_pairs"] == 2
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert first["eval_correct"] == first["eval_standard_correct"] and "eval_other_pairs" not in first  # untrained
