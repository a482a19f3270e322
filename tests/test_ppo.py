"""The PPO loss, the update's first step, and per-prompt advantages."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noiseppo.backends import get_backend
from noiseppo.configs.train import TrainConfig
from noiseppo.policy import NoisePolicy, gaussian_log_prob
from noiseppo.training.advantages import PerPromptStats
from noiseppo.training.ppo import Rollout, ppo_loss, ppo_update


def test_clipped_surrogate_clips_exactly_where_ppo_says() -> None:
    clip = 0.2
    # (advantage, ratio): positive advantages are clipped above 1+ε, negative ones below 1-ε.
    cases = [(1.0, 1.5, True), (1.0, 0.5, False), (-1.0, 0.5, True), (-1.0, 1.5, False), (1.0, 1.1, False)]
    for advantage, ratio, clipped in cases:
        new = torch.tensor([np.log(ratio)], requires_grad=True)
        loss, stats = ppo_loss(new, torch.zeros(1), torch.tensor([advantage]), clip)
        loss.backward()
        expected = -advantage * (min(max(ratio, 1 - clip), 1 + clip) if clipped else ratio)
        assert float(loss.detach()) == pytest.approx(expected)
        assert (float(new.grad.abs()) == 0.0) == clipped, (advantage, ratio)
        assert float(stats["clipfrac"]) == (1.0 if abs(ratio - 1) > clip else 0.0)
    # The k3 estimate of KL is zero at ratio 1 and positive elsewhere.
    _, stats = ppo_loss(torch.zeros(3), torch.zeros(3), torch.ones(3), clip)
    assert float(stats["approx_kl"]) == 0.0
    _, stats = ppo_loss(torch.tensor([0.3, -0.3]), torch.zeros(2), torch.ones(2), clip)
    assert float(stats["approx_kl"]) > 0.0


@pytest.mark.parametrize("logprob", ["sum", "mean"])
def test_first_minibatch_has_ratio_one_and_no_clipping(logprob: str) -> None:
    backend = get_backend("shapes", None, "ddim")
    torch.manual_seed(0)
    policy = NoisePolicy(latent_shape=backend.latent_shape, learn_sigma=True, readout="shared")
    with torch.no_grad():  # a non-zero starting policy, so ratio 1 is not trivial
        policy.head.weight.normal_(0, 0.2)
    prompts = ["a red circle", "a blue square"] * 4
    cond = backend.encode(prompts)
    with torch.no_grad():
        mean, log_sigma = policy(cond)
        z = mean + log_sigma.exp() * torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
        old = gaussian_log_prob(z, mean, log_sigma, logprob)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 0.1, -0.1])
    rollout = Rollout(cond, z, old, advantages, mean, log_sigma)
    config = TrainConfig(logprob=logprob, epochs=1, minibatch=8, lr=1e-2, target_kl=0.0)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr)
    before = [p.detach().clone() for p in policy.parameters()]
    stats = ppo_update(policy, optimizer, rollout, config, torch.Generator().manual_seed(0))
    assert stats["minibatch_steps"] == 1
    assert stats["ratio_max"] == 1.0 and stats["clipfrac"] == 0.0 and stats["approx_kl"] == 0.0
    assert stats["policy_kl"] == 0.0
    assert any(not torch.equal(a, b) for a, b in zip(before, policy.parameters(), strict=True)), "no update"


def test_update_stops_early_at_the_target_kl() -> None:
    backend = get_backend("shapes", None, "ddim")
    torch.manual_seed(0)
    policy = NoisePolicy(latent_shape=backend.latent_shape)
    prompts = ["a red circle", "a blue square"] * 8
    cond = backend.encode(prompts)
    z = torch.randn(len(prompts), *backend.latent_shape, generator=torch.Generator().manual_seed(1))
    zeros = torch.zeros_like(z)
    rollout = Rollout(cond, z, gaussian_log_prob(z, zeros, zeros, "mean"), torch.randn(16), zeros, zeros)
    config = TrainConfig(logprob="mean", epochs=50, minibatch=4, lr=3e-2, target_kl=1e-4)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr)
    stats = ppo_update(policy, optimizer, rollout, config, torch.Generator().manual_seed(0))
    assert stats["stopped_early"] == 1.0
    assert stats["minibatch_steps"] < 200
    assert stats["policy_kl_last"] > 1e-4


def test_minibatches_are_whole_prompt_groups(monkeypatch) -> None:
    backend = get_backend("shapes", None, "ddim")
    policy = NoisePolicy(latent_shape=backend.latent_shape)
    prompts = ["a red circle", "a blue square", "two green triangles", "a yellow circle"] * 4  # interleaved
    cond = backend.encode(prompts)
    z = torch.randn(len(prompts), *backend.latent_shape, generator=torch.Generator().manual_seed(1))
    zeros = torch.zeros_like(z)
    rollout = Rollout(cond, z, gaussian_log_prob(z, zeros, zeros, "mean"), torch.randn(16), zeros, zeros)
    seen: list[list[str]] = []
    forward = NoisePolicy._forward
    monkeypatch.setattr(NoisePolicy, "_forward", lambda self, c: seen.append(c.prompts) or forward(self, c))
    config = TrainConfig(logprob="mean", epochs=3, minibatch=8, target_kl=0.0)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr)
    stats = ppo_update(policy, optimizer, rollout, config, torch.Generator().manual_seed(0))
    assert stats["minibatch_steps"] == 6
    # Each minibatch holds two whole groups of 4, and the policy runs once per distinct prompt;
    # the last pass measures the whole update (update_kl), once per distinct prompt too.
    assert [len(s) for s in seen] == [2] * 6 + [4]
    assert len({tuple(sorted(s)) for s in seen}) > 1, "the groups are shuffled between minibatches"


def test_per_prompt_advantages() -> None:
    stats = PerPromptStats(buffer=8, min_count=4)
    prompts = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    rewards = np.array([0, 1, 0, 1, 0.5, 0.5, 0.5, 0.5, 0.2, 0.4, 0.6, 0.8])
    adv, info = stats.advantages(prompts, rewards)
    np.testing.assert_allclose(adv[:4], [-1, 1, -1, 1])  # its own mean 0.5 and std 0.5
    assert np.all(adv[4:8] == 0) and info["zero_spread_groups"] == pytest.approx(1 / 3)
    np.testing.assert_allclose(adv[8:].mean(), 0, atol=1e-12)
    np.testing.assert_allclose(adv[8:].std(), 1)

    # Below min_count a prompt is normalised by the batch: 2 rewards of 'd', 2 of 'e'.
    fresh = PerPromptStats(buffer=8, min_count=4)
    adv, _ = fresh.advantages(["d", "d", "e", "e"], np.array([0.0, 1.0, 0.0, 0.5]))
    batch = np.array([0.0, 1.0, 0.0, 0.5])
    np.testing.assert_allclose(adv, (batch - batch.mean()) / batch.std())

    # The remembered rewards survive a round trip through the checkpoint's JSON.
    copy = PerPromptStats(1, 1)
    copy.load_state_dict(stats.state_dict())
    more = np.array([1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(copy.advantages(["a"] * 4, more)[0], stats.advantages(["a"] * 4, more)[0])

    # buffer 0: each group by its own statistics, nothing remembered (GRPO's normalisation).
    grpo = PerPromptStats(buffer=0, min_count=16)
    adv, _ = grpo.advantages(["d", "d", "e", "e"], np.array([0.0, 1.0, 0.0, 0.5]))
    np.testing.assert_allclose(adv, [-1, 1, -1, 1])
    assert grpo.state_dict()["history"] == {}
