"""The set-up of the commands that render with a frozen model (sample, eval, golden, search): the
policy, the settings it was trained with, the reward, the backend, the checks, the guidance and the
mismatch warning, in one order, so that each mistake is answered before the slow steps after it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from noiseppo.backends.base import Backend
    from noiseppo.policy import NoisePolicy
    from noiseppo.rewards.base import Reward


@dataclass
class SetUp:
    """What a command that renders works with, once every input has been checked."""

    backend: Backend
    guidance: float
    """The guidance scale to render at: --guidance, else the policy's, else the backend's default."""
    policy: NoisePolicy | None
    """The --policy, checked against the backend (None: standard noise)."""
    trained: dict
    """The policy's training config ({} without a policy or a saved config)."""
    reward: Reward | None
    """The reward, where one was asked for (``args.reward`` holds its name)."""
    steps: list[int]
    """The step counts to render at: ``args.steps`` (one, or the list a command parsed), else the
    policy's training steps, else the default config's."""


def set_up(args: argparse.Namespace, prompts: Sequence[str], reward: bool = False, warn: bool = False) -> SetUp:
    """Load ``args.policy`` (if the command has one and it was given) and fill in the backend
    settings it was trained with; with ``reward``, load ``args.reward`` (default: the policy's
    training reward); build the backend, check the policy against it, encode ``prompts`` (a bad
    prompt is refused before any work or writing) and resolve the guidance; with ``warn``, warn on
    stderr where the step counts, the guidance or the scheduler differ from the policy's training."""
    from noiseppo.backends import get_backend
    from noiseppo.backends.base import resolve_guidance

    policy = None
    if getattr(args, "policy", None):  # search has no --policy
        from noiseppo.policy import load_policy

        policy = load_policy(args.policy)
    trained = backend_defaults_from_policy(args)
    steps = list(args.steps) if isinstance(args.steps, list) else [int(args.steps)]
    loaded = None
    if reward:  # before the backend: a mistyped reward is answered before the model loads
        from noiseppo.configs.train import TrainConfig
        from noiseppo.rewards import get_reward

        args.reward = args.reward or trained.get("reward") or TrainConfig.reward
        loaded = get_reward(args.reward)
    backend = get_backend(args.backend, args.model, args.scheduler, args.device, args.dtype)
    if policy is not None:
        from noiseppo.policy import check_policy

        check_policy(policy, backend)
    backend.encode(list(dict.fromkeys(prompts)))  # refuse bad prompts before any work or writing
    guidance = resolve_guidance(backend, args.guidance)
    if warn:
        warn_if_mismatched(trained, steps, guidance, args.scheduler, backend.default_guidance)
    return SetUp(backend, guidance, policy, trained, loaded, steps)


def backend_defaults_from_policy(args: argparse.Namespace) -> dict:
    """Backend settings a policy was trained with fill in the flags the user left out;
    returns that training config ({} without a policy or a saved config)."""
    from noiseppo.configs.train import TrainConfig
    from noiseppo.storage.shipped import training_config

    policy = getattr(args, "policy", None)  # search has no --policy
    trained = (training_config(policy) if policy else None) or {}
    defaults = TrainConfig()  # what a run trained without these settings used
    for key in ("backend", "model", "scheduler", "steps"):
        if getattr(args, key) is None:
            setattr(args, key, trained.get(key) or getattr(defaults, key) or None)
    if args.guidance is None and trained.get("guidance") is not None:  # None: the backend's default
        args.guidance = float(trained["guidance"])
    return trained


def warn_if_mismatched(trained: dict, steps: list[int], guidance: float, scheduler: str, default: float) -> None:
    from noiseppo.evaluation.mismatch import mismatch_warning

    warning = mismatch_warning(trained, steps, guidance, scheduler, default)
    if warning:
        print(warning, file=sys.stderr)
