"""The reward registry: ``reward(images, prompts) -> scores``.

A reward takes a batch of images (float tensor in [0, 1], shape (N, 3, H, W)) and one
prompt per image, and returns a float tensor of N scores, higher is better. It may be a
black box: nothing is differentiated through it. A reward may also offer
``details(images, prompts) -> list[dict]`` with per-image diagnostics (the Shapes
verifier's per-constraint breakdown), which ``noiseppo score`` prints.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

from noiseppo.errors import UserError
from noiseppo.names import unknown_name

if TYPE_CHECKING:
    import torch


class Reward(Protocol):
    def __call__(self, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor: ...


def _ours(module: str, name: str) -> Reward:
    """A reward of this package, imported only when asked for (``score`` stays light)."""
    return getattr(importlib.import_module(f"noiseppo.rewards.{module}"), name)


REWARDS: dict[str, tuple[Callable[[], Reward], str]] = {
    "shapes": (
        lambda: _ours("shapes", "ShapesReward")("partial"),
        "Shapes verifier, fraction of the prompt's constraints met (0-1)",
    ),
    "shapes-correct": (
        lambda: _ours("shapes", "ShapesReward")("correct"),
        "Shapes verifier, 1 if every constraint of the prompt holds, else 0",
    ),
    "jpeg_compressibility": (
        lambda: _ours("jpeg", "jpeg_compressibility"),
        "minus the JPEG size (quality 95) in kB, DDPO's task",
    ),
    "jpeg_incompressibility": (
        lambda: _ours("jpeg", "jpeg_incompressibility"),
        "the JPEG size (quality 95) in kB, DDPO's task",
    ),
    "clip_score": (
        lambda model=None: _ours("clip", "ClipScore")(*([model] if model else [])),
        "100 x cosine of CLIP image and prompt embeddings (clip_score@MODEL: another CLIP)",
    ),
    "pickscore": (
        lambda model=None: _ours("clip", "PickScore")(*([model] if model else [])),
        "PickScore v1, exp(logit_scale) x cosine of its CLIP-H embeddings, ~20-23 for good images (pickscore@MODEL)",
    ),
    "aesthetic": (
        lambda spec=None: _ours("aesthetic", "Aesthetic")(spec),
        "LAION aesthetic head on CLIP ViT-L/14: aesthetic@HEAD.safetensors[@CLIP]",
    ),
    "imagereward": (
        lambda: _ours("extras", "ImageRewardScore")(),
        "ImageReward v1.0 (BLIP, human preferences); needs the image-reward package",
    ),
    "hpsv2": (
        lambda: _ours("extras", "HPSv2Score")(),
        "HPS v2.1 (OpenCLIP ViT-H/14, human preferences); needs pip install 'noiseppo[hpsv2]'",
    ),
}
TAKES_MODEL = {"clip_score", "pickscore", "aesthetic"}
"""Registry entries that also read ``NAME@MODEL``: a hub id or a local folder."""


REWARD_FORMS = "module:function, http://HOST:PORT/PATH, or a weighted sum like 0.5*NAME+1.0*NAME"
"""The reward names that are not registry entries (see ``get_reward``)."""


def get_reward(name: str) -> Reward:
    """The reward ``name``: a registry entry, a weighted sum of rewards (``rewards.weighted``),
    a reward server's URL (``rewards.http``), or a user's ``module:function`` (``rewards.function``)."""
    if name in REWARDS:
        return REWARDS[name][0]()
    from noiseppo.rewards.weighted import WeightedSum, is_weighted

    if is_weighted(name):
        return WeightedSum(name, get_reward)
    if name.startswith(("http://", "https://")):
        from noiseppo.rewards.http import HttpReward

        return HttpReward(name)
    base, at, model = name.partition("@")
    if at and base in TAKES_MODEL:
        if not model:
            raise UserError(f"reward '{name}': give a model after '@' (a hub id or a folder)")
        return REWARDS[base][0](model)
    if ":" in name:
        from noiseppo.rewards.function import load_function

        return load_function(name)
    raise unknown_name("reward", name, REWARDS, f"or {REWARD_FORMS}")


def _checked_images(reward: Reward, images, n: int) -> None:
    """Refuse a batch that breaks the backend contract, (N, 3, H, W), before a reward misreads it."""
    shape = tuple(getattr(images, "shape", ()))
    size = getattr(reward, "image_size", None)  # (height, width) a reward insists on, if any
    if len(shape) != 4 or shape[0] != n or shape[1] != 3 or (size is not None and shape[2:] != tuple(size)):
        wanted = f"({n}, 3, {size[0]}, {size[1]})" if size is not None else f"({n}, 3, H, W)"
        raise UserError(f"the backend made images of shape {shape}, the reward reads {wanted}")


def reward_failure(e: Exception) -> UserError:
    """The one line for a reward that raised something other than a ``UserError``."""
    reason = f": {str(e).strip().splitlines()[0]}" if str(e).strip() else ""
    return UserError(f"the reward raised {e.__class__.__name__}{reason}")


def _call(fn: Callable, images, prompts: Sequence[str]):
    """Call the reward; its failure (a crashed model, a dropped connection) stops the run with one line."""
    try:
        return fn(images, prompts)
    except UserError:
        raise
    except Exception as e:
        raise reward_failure(e) from e


def _checked(raw, n: int) -> torch.Tensor:
    import torch

    try:
        scores = torch.as_tensor(raw, dtype=torch.float32).detach().cpu().flatten()
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"the reward returned something that is not a list of numbers ({e})") from None
    if scores.numel() != n:
        raise UserError(f"the reward returned {scores.numel()} scores for {n} images")
    if torch.isinf(scores).any():
        raise UserError("the reward returned an infinite score")
    return scores


def score_batch(reward: Reward, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
    """The reward's scores, checked: one float (or NaN) per image, nothing else."""
    _checked_images(reward, images, len(prompts))
    return _checked(_call(reward, images, prompts), len(prompts))


def score_with_details(
    reward: Reward, images: torch.Tensor, prompts: Sequence[str]
) -> tuple[torch.Tensor, dict[str, list[float]]]:
    """Checked scores and the numeric per-image fields of ``reward.details`` (for Shapes:
    correct, partial; {} for a reward without details), in one pass where the reward allows."""
    combined = getattr(reward, "score_with_details", None)
    if combined is not None:
        _checked_images(reward, images, len(prompts))
        raw, fields = _call(combined, images, prompts)
        return _checked(raw, len(prompts)), fields
    scores = score_batch(reward, images, prompts)
    details = getattr(reward, "details", None)
    if details is None:
        return scores, {}
    rows = _call(details, images, prompts)
    keys = [k for k, v in rows[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)] if rows else []
    return scores, {k: [float(row[k]) for row in rows] for k in keys}
