"""The update's direction, pinned: a sign flip anywhere in the loss fails one of these.

On a fixed rollout, a latent with a positive advantage gains log-probability and the mean
moves toward it; one with a negative advantage loses it; the KL penalty pulls the mean to
0; and a bandit whose reward is a fixed direction in latent space is learned.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from noiseppo.backends import get_backend
from noiseppo.configs.train import TrainConfig
from noiseppo.policy import NoisePolicy, gaussian_log_prob
from noiseppo.training.advantages import PerPromptStats, centred_ranks
from noiseppo.training.ppo import Rollout, ppo_update

PROMPTS = ["a red circle", "a blue square"]


@pytest.fixture(scope="module")
def backend():
    return get_backend("shapes", None, "ddim")


def _rollout(
    policy: NoisePolicy, backend, advantages: torch.Tensor, logprob: str, seed: int = 0, antithetic: bool = False
) -> Rollout:
    k = len(advantages) // len(PROMPTS)
    cond = backend.encode([p for p in PROMPTS for _ in range(k)])
    with torch.no_grad():
        mean, log_sigma = policy(cond)
        eps = torch.randn(mean.shape, generator=torch.Generator().manual_seed(seed))
        if antithetic:  # as the trainer draws them: each prompt's second half mirrors its first
            groups = eps.view(len(PROMPTS), k, -1)
            groups[:, k // 2 :] = -groups[:, : k // 2]
        z = mean + log_sigma.exp() * eps
        old = gaussian_log_prob(z, mean, log_sigma, logprob)
    return Rollout(cond, z, old, advantages, mean, log_sigma)


def _log_prob(policy: NoisePolicy, rollout: Rollout, logprob: str) -> torch.Tensor:
    with torch.no_grad():
        mean, log_sigma = policy(rollout.conditioning)
        return gaussian_log_prob(rollout.latents, mean, log_sigma, logprob)


@pytest.mark.parametrize("logprob", ["sum", "mean"])
@pytest.mark.parametrize("query_std", [0.02, 1.0])
def test_positive_advantage_gains_probability_and_pulls_the_mean(backend, logprob: str, query_std: float) -> None:
    torch.manual_seed(0)
    policy = NoisePolicy(latent_shape=backend.latent_shape, query_std=query_std, readout="shared")
    with torch.no_grad():  # a trained-looking policy: every layer gets a gradient
        policy.head.weight.normal_(0, 0.05)
    # The first prompt has one good sample (+1), the second one bad sample (-1); the rest are neutral.
    advantages = torch.tensor([1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0])
    rollout = _rollout(policy, backend, advantages, logprob)
    before = _log_prob(policy, rollout, logprob)
    config = TrainConfig(logprob=logprob, epochs=1, minibatch=8, target_kl=0.0, kl_coef=0.0)
    # Plain SGD with a small step follows the loss's gradient itself, which is what is pinned here.
    optimizer = torch.optim.SGD(policy.parameters(), lr=1e-5 if logprob == "sum" else 3e-2)
    ppo_update(policy, optimizer, rollout, config, torch.Generator().manual_seed(0))
    after = _log_prob(policy, rollout, logprob)
    good, bad = 0, 4
    assert after[good] > before[good] and after[bad] < before[bad], (before, after)
    with torch.no_grad():
        moved = policy(rollout.conditioning)[0] - rollout.old_mean
    assert (moved[good] * (rollout.latents[good] - rollout.old_mean[good])).sum() > 0  # μ toward the good z
    assert (moved[bad] * (rollout.latents[bad] - rollout.old_mean[bad])).sum() < 0  # and away from the bad one


def test_kl_penalty_pulls_the_mean_toward_zero(backend) -> None:
    torch.manual_seed(0)
    policy = NoisePolicy(latent_shape=backend.latent_shape, query_std=1.0, readout="shared")
    with torch.no_grad():  # a policy away from N(0, I)
        policy.head.weight.normal_(0, 0.2)
        policy.head.bias.fill_(0.3)
    rollout = _rollout(policy, backend, torch.zeros(8), "mean")  # no reward signal at all
    config = TrainConfig(logprob="mean", epochs=5, minibatch=8, lr=1e-3, target_kl=0.0, kl_coef=1.0)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    before = rollout.old_mean.pow(2).mean()
    ppo_update(policy, optimizer, rollout, config, torch.Generator().manual_seed(0))
    with torch.no_grad():
        after = policy(rollout.conditioning)[0].pow(2).mean()
    assert after < 0.9 * before, (before, after)

    # Without the penalty and without advantages, nothing moves.
    still = NoisePolicy(latent_shape=backend.latent_shape, query_std=1.0, readout="shared")
    still.load_state_dict(policy.state_dict())
    config = TrainConfig(logprob="mean", epochs=2, minibatch=8, lr=1e-3, target_kl=0.0, kl_coef=0.0)
    rollout = _rollout(still, backend, torch.zeros(8), "mean")
    optimizer = torch.optim.AdamW(still.parameters(), lr=config.lr, weight_decay=0.0)
    ppo_update(still, optimizer, rollout, config, torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(still(rollout.conditioning)[0], rollout.old_mean)


def test_advantages_rank_higher_rewards_higher() -> None:
    rewards = np.array([0.2, 0.9, 0.5, 0.5, 0.1, 0.7])
    np.testing.assert_allclose(centred_ranks(rewards), [-0.3, 0.5, 0.0, 0.0, -0.5, 0.3])
    for kind in ("zscore", "rank"):
        adv, _ = PerPromptStats(0, 16, kind).advantages(["p"] * 6, rewards)
        assert np.array_equal(np.argsort(adv, kind="stable"), np.argsort(rewards, kind="stable")), kind
        assert adv.sum() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("advantages", ["zscore", "rank"])
def test_a_linear_bandit_is_learned(backend, advantages: str) -> None:
    """Rollout, advantages and update together climb the reward -‖z - target‖² with no model:
    the learned mean closes most of its distance to the target, on both prompts."""
    torch.manual_seed(0)
    policy = NoisePolicy(latent_shape=backend.latent_shape, grid=4, query_std=1.0, readout="cell")
    coarse = 0.5 * torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    target = torch.nn.functional.interpolate(coarse, size=backend.latent_shape[1:], mode="bilinear")[0]
    config = TrainConfig(logprob="mean", epochs=1, minibatch=16, lr=3e-3, target_kl=0.0, kl_coef=0.0)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, weight_decay=0.0)
    stats = PerPromptStats(0, 16, advantages)
    prompts = [p for p in PROMPTS for _ in range(8)]
    for it in range(30):
        rollout = _rollout(policy, backend, torch.zeros(16), "mean", seed=it, antithetic=True)
        reward = -(rollout.latents - target).pow(2).flatten(1).sum(1).numpy()
        adv, _ = stats.advantages(prompts, reward)
        rollout.advantages = torch.as_tensor(adv, dtype=torch.float32)
        ppo_update(policy, optimizer, rollout, config, torch.Generator().manual_seed(it))
    with torch.no_grad():
        mean = policy(backend.encode(PROMPTS))[0]
    distance = (mean - target).flatten(1).norm(dim=1) / target.norm()
    assert torch.all(distance < 0.6), distance
