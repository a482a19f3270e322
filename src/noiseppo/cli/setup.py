"""The set-up of the commands that render with a frozen model: the policy, the settings it was trained
with, the backend, the checks, the guidance and the mismatch warning."""

from __future__ import annotations

import argparse
import sys


def backend_defaults_from_policy(args: argparse.Namespace) -> dict:
    """Backend settings a policy was trained with fill in the flags the user left out;
    returns that training config ({} without a policy or a saved config)."""
    from noiseppo.configs.train import TrainConfig
    from noiseppo.storage.shipped import training_config

    trained = (training_config(args.policy) if args.policy else None) or {}
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
