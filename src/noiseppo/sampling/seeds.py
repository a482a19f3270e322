"""The seed rule that pairs images across commands.

Image ``j`` of prompt ``i`` in a command run with ``--seed s`` uses the seed
``sample_seed(s, i, j)``: the first 63 bits of ``numpy.random.SeedSequence([s, i, j])``.
The rule depends on nothing else (not on the number of prompts, the batch size or the
command), so two commands with the same prompts and ``--seed`` give images that pair
one-to-one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

EVAL_SEED = 0
"""Base seed of the periodic held-out evaluation (pairs with ``noiseppo sample --seed 0``)."""

# The streams: indices under which a command derives seeds that must never be those of an image
# (sample_seed(s, i, j) with i a prompt's index and j a sample's, both far below 2**40) nor each
# other's. One place, so that a new stream cannot take one already used (tests/test_regression.py).
TRAIN_STREAM = 2**40
"""Sample index under which Noise PPO draws each iteration's generator."""
BEST_OF_STREAM = 2**41
"""Prompt index under which best-of-N derives its candidates' base seeds."""
SEARCH_STREAM = 2**42
"""Prompt index under which the noise search derives each generation's base seed."""
DDPO_STREAM = 2**43
"""Sample index under which DDPO draws each iteration's generator (disjoint from Noise PPO's)."""
STREAMS = (TRAIN_STREAM, BEST_OF_STREAM, SEARCH_STREAM, DDPO_STREAM)


def sample_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The seed of sample ``sample_index`` of prompt ``prompt_index`` under ``seed``."""
    state = np.random.SeedSequence([seed, prompt_index, sample_index]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def standard_noise(shape: Sequence[int], seeds: Sequence[int]) -> torch.Tensor:
    """N(0, I) latents, one per seed, drawn on the CPU so every device sees the same noise."""
    import torch  # here, not above: the seed rule alone stays free of torch

    return torch.stack([torch.randn(*shape, generator=torch.Generator().manual_seed(s)) for s in seeds])
