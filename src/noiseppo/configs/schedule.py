"""What a training config schedules over a run: each iteration's learning rate, and the batch
arithmetic (prompts x samples, minibatches, epochs, renders) that training prints at start-up
and the report shows.

Here rather than in ``train``: extending a run (``extend``) and the report read them too, and
``train`` imports both of those.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from noiseppo.configs.train import TrainConfig


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """The learning rate of iteration ``iteration`` (0-based) under ``config.lr_schedule``."""
    if config.lr_schedule == "constant":
        return config.lr
    progress = iteration / config.iterations  # the last iteration still takes a step
    floor = config.lr * config.lr_final
    return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def minibatch_size(cfg: TrainConfig) -> int:
    """Samples per PPO minibatch: ``cfg.minibatch``, or the whole iteration's batch when it is 0."""
    return cfg.minibatch or cfg.prompts_per_iteration * cfg.samples_per_prompt


def one_update_per_rollout(cfg: TrainConfig) -> bool:
    """One PPO step per iteration (1 epoch, the whole batch): the gradient is taken at ratio 1,
    before the policy has moved, so clipfrac and the approximate KL are 0 by construction."""
    return cfg.epochs == 1 and minibatch_size(cfg) == cfg.prompts_per_iteration * cfg.samples_per_prompt


def batch_arithmetic(cfg: TrainConfig, guidance: float | None, world: int = 1) -> str:
    """The batch line printed at start-up (and shown in the report)."""
    batch, minibatch = cfg.prompts_per_iteration * cfg.samples_per_prompt, minibatch_size(cfg)
    return (
        f"batch: {cfg.prompts_per_iteration} prompts x {cfg.samples_per_prompt} samples = {batch} images per "
        f"iteration, {batch // minibatch} minibatches of {minibatch} x {cfg.epochs} epochs; "
        f"{cfg.iterations} iterations = {batch * cfg.iterations} images at {cfg.steps} steps"
        + (f", guidance {guidance}" if guidance is not None else "")
        + (f"; {world} processes render {batch // world} images each" if world > 1 else "")
        + ("; one update per rollout: clipfrac and kl are 0 by construction" if one_update_per_rollout(cfg) else "")
    )
