"""The PPO update of the noise policy, in one place.

The problem is a one-step contextual bandit: the context is the prompt, the action is
the initial latent z, the reward comes from a black box after the frozen model renders
z. A rollout therefore stores only (prompt, z, log π_old(z|c), advantage): no sampling
trajectory, no gradients through the diffusion model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from noiseppo.backends.base import Conditioning
from noiseppo.configs.schedule import minibatch_size
from noiseppo.configs.train import TrainConfig
from noiseppo.policy import NoisePolicy, gaussian_kl, gaussian_kl_to_prior, gaussian_log_prob
from noiseppo.training.distributed import Ranks


@dataclass
class Rollout:
    """What one iteration keeps of its samples: never images or trajectories."""

    conditioning: Conditioning
    latents: torch.Tensor  # (N, *latent_shape), the actions
    old_logprob: torch.Tensor  # (N,), log π_old(z|c) under config.logprob
    advantages: torch.Tensor  # (N,)
    old_mean: torch.Tensor  # (N, *latent_shape): π_old's parameters, for the exact KL(π_old ‖ π_new)
    old_log_sigma: torch.Tensor

    def __len__(self) -> int:
        return len(self.latents)

    def take(self, index: torch.Tensor) -> Rollout:
        return Rollout(
            self.conditioning.select(index),
            self.latents[index],
            self.old_logprob[index],
            self.advantages[index],
            self.old_mean[index],
            self.old_log_sigma[index],
        )


def ppo_loss(
    new_logprob: torch.Tensor, old_logprob: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate loss, with the ratio statistics PPO practitioners watch."""
    logratio = new_logprob - old_logprob
    ratio = torch.exp(logratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    loss = torch.max(unclipped, clipped).mean()
    with torch.no_grad():
        stats = {
            # Schulman's k3 estimator of KL(old || new): unbiased and never negative.
            "approx_kl": ((ratio - 1) - logratio).mean(),
            "clipfrac": ((ratio - 1).abs() > clip_range).float().mean(),
            "ratio_max": ratio.max(),
        }
    return loss, stats


def ppo_update(
    policy: NoisePolicy,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    config: TrainConfig,
    generator: torch.Generator,
    ranks: Ranks | None = None,
) -> dict[str, float]:
    """``config.epochs`` passes of minibatch PPO over one rollout; returns mean statistics.

    With several processes (``ranks``), every rank holds the whole rollout, takes its even
    share of each minibatch, and the gradients and statistics are averaged over the ranks:
    the same step as one process on the whole minibatch.
    """
    history: dict[str, list[float]] = {}
    stopped_early = 0.0
    # Minibatches are made of whole prompt groups, shuffled: the policy then runs once per
    # distinct prompt of a minibatch (minibatch / samples_per_prompt of them), not per sample.
    groups: dict[str, list[int]] = {}
    for i, prompt in enumerate(rollout.conditioning.prompts):
        groups.setdefault(prompt, []).append(i)
    members = list(groups.values())
    for _epoch in range(config.epochs):
        shuffled = torch.randperm(len(members), generator=generator).tolist()
        order = torch.tensor([i for g in shuffled for i in members[g]])
        size = minibatch_size(config)
        for start in range(0, len(rollout), size):
            index = order[start : start + size]
            if ranks is not None and ranks.world > 1:  # even shares (uneven only after dropped NaNs)
                index = torch.tensor_split(index, ranks.world)[ranks.rank]
            mb = rollout.take(index)
            mean, log_sigma = policy(mb.conditioning)
            new_logprob = gaussian_log_prob(mb.latents, mean, log_sigma, config.logprob)
            pg_loss, stats = ppo_loss(new_logprob, mb.old_logprob, mb.advantages, config.clip_range)
            kl_prior = gaussian_kl_to_prior(mean, log_sigma, config.logprob).mean()
            with torch.no_grad():  # how far the policy has moved, exactly, per latent dimension
                stats["policy_kl"] = gaussian_kl(mb.old_mean, mb.old_log_sigma, mean, log_sigma).mean()
            loss = pg_loss + config.kl_coef * kl_prior

            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            row = {"pg_loss": pg_loss, "kl_prior": kl_prior, **stats}
            if ranks is not None and ranks.world > 1:  # the whole minibatch's gradient and statistics
                ranks.average_gradients(policy.parameters())
                means = ranks.mean(torch.stack([v.detach().float() for v in row.values()]))
                row = dict(zip(row, means, strict=True))
                row["ratio_max"] = ranks.max(stats["ratio_max"].detach())
            row["grad_norm"] = torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()

            for key, value in row.items():
                history.setdefault(key, []).append(float(value.detach()) if torch.is_tensor(value) else float(value))
            # Early stop on the trust region, measured by the exact Gaussian KL per dimension:
            # it means the same under either logprob convention, unlike approx_kl.
            if config.target_kl > 0 and float(row["policy_kl"]) > config.target_kl:
                stopped_early = 1.0
                break
        if stopped_early:
            break
    out = {key: float(np.mean(values)) for key, values in history.items()}
    out["policy_kl_last"] = history["policy_kl"][-1]
    with torch.no_grad():  # the whole iteration's move, per latent dimension (policy_kl is before each step)
        mean, log_sigma = policy(rollout.conditioning)
        out["update_kl"] = float(gaussian_kl(rollout.old_mean, rollout.old_log_sigma, mean, log_sigma).mean())
    out["minibatch_steps"] = float(len(history["approx_kl"]))
    out["stopped_early"] = stopped_early
    return out
