"""The warning for using a policy at other settings than it was trained with.

A noise policy learns the initial latents that suit one sampler: one step count, one
guidance scale, one scheduler. At another one its gain shrinks or turns negative (the
shipped ``shapes-steps2`` evaluated at 8 steps costs correct-rate: README, "Results: the step
sweep"), so ``eval`` and ``sample`` say so in one line, and go on.
"""

from __future__ import annotations

from collections.abc import Sequence


def mismatch_warning(
    trained: dict, steps: Sequence[int], guidance: float, scheduler: str, default_guidance: float
) -> str | None:
    """One ``noiseppo: warning:`` line naming each setting that differs from the policy's training
    config ``trained`` (guidance None there: the backend's default), or None. Nothing to compare
    without a training config."""
    if not trained:
        return None
    differ = []
    trained_steps = trained.get("steps")
    other_steps = [s for s in steps if trained_steps is not None and s != trained_steps]
    if other_steps:
        differ.append(f"steps {', '.join(map(str, other_steps))} (trained at {trained_steps})")
    trained_guidance = float(default_guidance if trained.get("guidance") is None else trained["guidance"])
    if float(guidance) != trained_guidance:
        differ.append(f"guidance {float(guidance):g} (trained at {trained_guidance:g})")
    trained_scheduler = trained.get("scheduler") or "default"
    if scheduler != trained_scheduler:
        differ.append(f"scheduler {scheduler} (trained with {trained_scheduler})")
    if not differ:
        return None
    return (
        f"noiseppo: warning: the policy runs at {'; '.join(differ)}; a policy is tuned to the sampler it was "
        "trained with, its gain may shrink or turn negative"
    )
