"""Calling a reward and checking what it gives back: the one path every score takes.

Training, evaluation, ``noiseppo score``, the weighted sum and the reward server all score
through here, so a reward that breaks the contract (images of another shape than it reads,
the wrong number of scores, an infinite score, a crash) stops with the same one line
wherever it is used. The registry (``noiseppo.rewards``) re-exports ``score_batch`` and
``score_with_details``; modules of this package import them from here, since the registry
imports them back (``weighted``, ``http``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from noiseppo.errors import UserError, first_line

if TYPE_CHECKING:
    import torch

    from noiseppo.rewards.base import Reward


class RewardError(UserError):
    """A reward that broke its contract or failed; ``reward_phase`` says which reward and where."""


@contextlib.contextmanager
def reward_phase(name: str, phase: str) -> Iterator[None]:
    """Name the reward and the phase ("training iteration 3", "held-out pass after iteration 20")
    in the one line of a reward failure raised inside: the same message says where it happened."""
    try:
        yield
    except RewardError as e:
        raise UserError(f"reward '{name}', {phase}: {e}") from e


def check_images(reward: Reward, images: Any, n: int) -> None:
    """Refuse a batch that breaks the backend contract, (N, 3, H, W), before a reward misreads it."""
    shape = tuple(getattr(images, "shape", ()))
    size = getattr(reward, "image_size", None)  # (height, width) a reward insists on, if any
    if len(shape) != 4 or shape[0] != n or shape[1] != 3 or (size is not None and shape[2:] != tuple(size)):
        wanted = f"({n}, 3, {size[0]}, {size[1]})" if size is not None else f"({n}, 3, H, W)"
        raise UserError(f"the backend made images of shape {shape}, the reward reads {wanted}")


def reward_failure(e: Exception) -> RewardError:
    """The one line for a reward that raised something other than a ``UserError``."""
    line = first_line(e)
    reason = f": {line}" if line else ""
    return RewardError(f"the reward raised {e.__class__.__name__}{reason}")


def _call(fn: Callable, images: Any, prompts: Sequence[str]) -> Any:
    """Call the reward; its failure (a crashed model, a dropped connection) stops the run with one line."""
    try:
        return fn(images, prompts)
    except RewardError:
        raise
    except UserError as e:  # the reward's own one line (a server that refused): the same line, as a reward's
        raise RewardError(str(e)) from e
    except Exception as e:
        raise reward_failure(e) from e


def checked_scores(raw: Any, n: int) -> torch.Tensor:
    """What a reward returned for ``n`` images as N float32 scores on the CPU, or one line saying
    why not (not numbers, another count, an infinite score). NaN passes: "no score"."""
    import torch

    try:
        scores = torch.as_tensor(raw, dtype=torch.float32).detach().cpu().flatten()
    except (TypeError, ValueError, RuntimeError) as e:
        raise RewardError(f"the reward returned something that is not a list of numbers ({e})") from None
    if scores.numel() != n:
        raise RewardError(f"the reward returned {scores.numel()} scores for {n} images")
    if torch.isinf(scores).any():
        raise RewardError("the reward returned an infinite score")
    return scores


def score_batch(reward: Reward, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
    """The reward's scores, checked: one float (or NaN) per image, nothing else."""
    check_images(reward, images, len(prompts))
    return checked_scores(_call(reward, images, prompts), len(prompts))


def score_with_details(
    reward: Reward, images: torch.Tensor, prompts: Sequence[str]
) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """Checked scores and the numeric per-image fields of ``reward.details`` (for Shapes:
    correct, partial; {} for a reward without details), in one pass where the reward allows."""
    combined = getattr(reward, "score_with_details", None)
    if combined is not None:
        check_images(reward, images, len(prompts))
        raw, fields = _call(combined, images, prompts)
        return checked_scores(raw, len(prompts)), fields
    scores = score_batch(reward, images, prompts)
    details = getattr(reward, "details", None)
    if details is None:
        return scores, {}
    rows = _call(details, images, prompts)
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)] if rows else []
    return scores, {k: [float(row[k]) for row in rows] for k in keys}
