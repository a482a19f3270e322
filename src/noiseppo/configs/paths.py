"""Local paths in a run's config made absolute, so that a run folder works from any folder.

``noiseppo train`` records in ``config.yaml`` the absolute path of every local file or folder
the run reads (the model folder, a ``path/to/file.py:function`` reward, prompt files), which
``--resume``, ``eval``, ``report`` and ``compare policy:RUN`` read back from wherever they run.
What the user typed is kept beside them, as a comment line of ``config.yaml``
(``given_comment``): the config itself stays a plain ``TrainConfig``. Names that are not local
paths (hub ids, registered rewards and prompt sets, URLs) are kept as they are.

Imports neither torch nor diffusers.
"""

from __future__ import annotations

import dataclasses
import os

from noiseppo.configs.train import TrainConfig
from noiseppo.storage.local_paths import absolute, local_model

PATH_KEYS = ("model", "reward", "prompts", "eval_prompts")
"""The ``TrainConfig`` fields that may name local files."""


def local_prompts(name: str) -> str:
    """A prompt file's absolute path; a registered prompt set (or "": none) as it is."""
    from noiseppo.prompts import PROMPT_SETS

    return name if not name or name in PROMPT_SETS else absolute(name)


def local_reward(name: str) -> str:
    """The reward ``name`` with its local files as absolute paths (a ``path/to/file.py:function``,
    a ``NAME@FOLDER`` model, each term of a weighted sum), so that it means the same from any
    folder; other names as they are. A ``module:function`` stays a module name (imported from the
    current folder or the ``PYTHONPATH``, as Python would)."""
    from noiseppo.rewards import reward_form

    form = reward_form(name)
    if form == "weighted":
        from noiseppo.rewards.weighted import WEIGHT

        terms = []
        for text in name.split("+"):
            match = WEIGHT.match(text)
            terms.append(f"{match[1]}*{local_reward(match[2])}" if match else local_reward(text.strip()))
        made = "+".join(terms)
        # A folder whose absolute path holds '+' or '*' would split differently: keep the name given.
        return made if (made.count("+"), made.count("*")) == (name.count("+"), name.count("*")) else name
    if form == "with-model":  # clip_score@FOLDER, aesthetic@HEAD.safetensors@CLIP: the parts found here
        base, *parts = name.split("@")
        return "@".join([base, *(absolute(p) if os.path.exists(os.path.expanduser(p)) else p for p in parts)])
    if form == "function":
        module, _, attr = name.rpartition(":")
        if module.endswith(".py"):
            return f"{absolute(module)}:{attr}"
    return name


def with_absolute_paths(config: TrainConfig) -> TrainConfig:
    """``config`` with its local model folder, reward files and prompt files as absolute paths."""
    return dataclasses.replace(
        config,
        model=local_model(config.model),
        reward=local_reward(config.reward),
        prompts=local_prompts(config.prompts),
        eval_prompts=local_prompts(config.eval_prompts),
    )


def given_comment(typed: TrainConfig, recorded: TrainConfig) -> str:
    """The ``config.yaml`` comment line that keeps what the user typed where a path was made
    absolute ("" where none was), and the folder it was typed in."""
    changed = [f"{k}={getattr(typed, k)}" for k in PATH_KEYS if getattr(typed, k) != getattr(recorded, k)]
    if not changed:
        return ""
    return f"# given as {', '.join(changed)} in {os.getcwd()}\n"
