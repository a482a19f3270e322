"""Per-prompt advantage normalisation.

A reward's advantage is its distance from its prompt's mean in units of the prompt's
standard deviation, so an easy prompt and a hard one push the policy equally. With
``buffer`` 0 the statistics are those of the prompt's group in this batch alone (GRPO's
choice). With ``buffer`` > 0 each prompt remembers its last ``buffer`` rewards across
iterations and, until it has ``min_count`` of them, uses the whole batch's statistics
(DDPO's per-prompt stat tracker). A group whose rewards are all equal has no signal:
its advantages are 0 and it is counted (``zero_spread``), not divided by zero.

With ``kind`` "rank" a group's advantages are instead its centred ranks, spread evenly
over [-0.5, 0.5] (ties share their mean rank): what evolution strategies use, blind to the
reward's scale and to a single outlier in a group.
"""

from __future__ import annotations

from collections import deque

import numpy as np
from scipy.stats import rankdata

EPS = 1e-6


class PerPromptStats:
    def __init__(self, buffer: int, min_count: int, kind: str = "zscore"):
        self.buffer, self.min_count, self.kind = buffer, min_count, kind
        self.history: dict[str, deque[float]] = {}

    def advantages(self, prompts: list[str], rewards: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
        """Advantages for ``rewards`` (one per prompt occurrence), after remembering them."""
        rewards = np.asarray(rewards, dtype=np.float64)
        batch_mean, batch_std = rewards.mean(), rewards.std()
        out = np.zeros_like(rewards)
        zero_spread = groups = 0
        for prompt in dict.fromkeys(prompts):
            idx = np.array([i for i, p in enumerate(prompts) if p == prompt])
            group = rewards[idx]
            if self.buffer == 0:
                mean, std = group.mean(), group.std()
            else:
                seen = self.history.setdefault(prompt, deque(maxlen=self.buffer))
                seen.extend(group.tolist())
                if len(seen) >= self.min_count:
                    mean, std = float(np.mean(seen)), float(np.std(seen))
                else:
                    mean, std = batch_mean, batch_std
            groups += 1
            if np.ptp(group) < EPS:
                zero_spread += 1  # no sample is better than another: nothing to learn from this group
                continue
            if self.kind == "rank":
                out[idx] = centred_ranks(group)
            else:
                out[idx] = (group - mean) / max(std, EPS)
        return out, {"zero_spread_groups": zero_spread / max(groups, 1)}

    def state_dict(self) -> dict:
        return {
            "buffer": self.buffer,
            "min_count": self.min_count,
            "history": {p: list(h) for p, h in self.history.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        self.buffer, self.min_count = state["buffer"], state["min_count"]
        self.history = {p: deque(h, maxlen=self.buffer) for p, h in state["history"].items()}


def centred_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks of ``values`` mapped linearly onto [-0.5, 0.5]; ties get their mean rank."""
    n = len(values)
    if n < 2:
        return np.zeros(n)
    return (rankdata(values) - 1) / (n - 1) - 0.5


def centre_noises(advantages: np.ndarray, noise_ids: np.ndarray, fraction: float) -> np.ndarray:
    """Subtract ``fraction`` of each noise's mean advantage over the prompts that shared it.

    After per-prompt centring (each prompt's mean is removed), this removes each noise's main
    effect too: at ``fraction`` 1, A = r - r̄(c) - r̄(ε) + r̄ on a complete prompts x noises grid.
    What is left is the interaction, how much better a noise suits its own prompt than the others.
    """
    advantages = np.asarray(advantages, dtype=np.float64)
    ids, inverse = np.unique(noise_ids, return_inverse=True)
    means = np.bincount(inverse, weights=advantages, minlength=len(ids)) / np.bincount(inverse, minlength=len(ids))
    return advantages - fraction * means[inverse]
