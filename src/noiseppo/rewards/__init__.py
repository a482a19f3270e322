"""The reward registry: ``reward(images, prompts) -> scores``.

A reward takes a batch of images (float tensor in [0, 1], shape (N, 3, H, W)) and one
prompt per image, and returns a float tensor of N scores, higher is better. It may be a
black box: nothing is differentiated through it. A reward may also offer
``details(images, prompts) -> list[dict]`` with per-image diagnostics (the Shapes
verifier's per-constraint breakdown), which ``noiseppo score`` prints.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from noiseppo.errors import UserError
from noiseppo.names import unknown_name
from noiseppo.rewards.base import Reward


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


def reward_form(name: str) -> str:
    """Which form of reward ``name`` is ("registered", "weighted", "http", "with-model" or
    "function"), or the one-line refusal: what ``get_reward`` dispatches on, and all that
    ``check_reward_name`` needs."""
    from noiseppo.rewards.weighted import is_weighted

    if name in REWARDS:
        return "registered"
    if is_weighted(name):
        return "weighted"
    if name.startswith(("http://", "https://")):
        return "http"
    base, at, model = name.partition("@")
    if at and base in TAKES_MODEL:
        if not model:
            raise UserError(f"reward '{name}': give a model after '@' (a hub id or a folder)")
        return "with-model"
    if ":" in name:
        return "function"
    raise unknown_name("reward", name, REWARDS, f"or {REWARD_FORMS}")


def get_reward(name: str) -> Reward:
    """The reward ``name``: a registry entry, a weighted sum of rewards (``rewards.weighted``),
    a reward server's URL (``rewards.http``), or a user's ``module:function`` (``rewards.function``)."""
    form = reward_form(name)
    if form == "registered":
        return REWARDS[name][0]()
    if form == "weighted":
        from noiseppo.rewards.weighted import WeightedSum

        return WeightedSum(name, get_reward)
    if form == "http":
        from noiseppo.rewards.http import HttpReward

        return HttpReward(name)
    if form == "with-model":
        base, _, model = name.partition("@")
        return REWARDS[base][0](model)
    from noiseppo.rewards.function import load_function

    return load_function(name)


def check_reward_name(name: str) -> None:
    """``get_reward``'s refusals of a name (each term of a weighted sum too), without building
    the reward: no torch, no model, so ``noiseppo train`` answers a typo at once. A
    ``module:function`` is checked when it is imported, with the reward."""
    if reward_form(name) == "weighted":
        from noiseppo.rewards.weighted import WeightedSum

        WeightedSum(name, check_reward_name)
