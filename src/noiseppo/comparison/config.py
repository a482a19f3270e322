"""Settings of ``noiseppo compare`` and every check made on them before anything loads (light:
no torch, so that a mistake answers in well under a second)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from noiseppo.comparison.methods import KINDS, Method, check_backend, parse_methods
from noiseppo.errors import UserError

if TYPE_CHECKING:
    from noiseppo.configs.train import TrainConfig

SEARCH_CURVE = (32, 64, 128, 256, 512)
SHAPES_REWARDS = ("shapes", "shapes-correct")
"""The Shapes verifier's rewards: they read the embedded model's images and the Shapes grammar only."""


@dataclass
class CompareConfig:
    """Settings of ``noiseppo compare``: which methods, on which model, prompts, seeds and reward."""

    methods: str = "standard"
    """Comma-separated methods (``noiseppo.comparison.methods``), one row each, in this order."""
    prompts: str = ""
    """Held-out prompts every method is scored on: a prompt set or a .txt/.jsonl file of free text;
    empty: shapes-test on the Shapes backend (another backend needs its own)."""
    seeds: int = 4
    """Images per held-out prompt, paired across methods (image j of prompt i: ``noiseppo sample``'s seed rule)."""
    seed: int = 0
    """Base seed of the held-out images' noise."""
    steps: int = 4
    """Sampling steps of the frozen model, for every method (the trained ones train at it too)."""
    reward: str = ""
    """The reward every method optimises, picks with and is scored by; empty: the Shapes verifier
    (``shapes``) on the Shapes backend (another backend needs its own)."""
    preset: str = "shapes"
    """The Noise PPO preset the trained methods train with (noise-ppo, noise-ppo-blind, DDPO's
    budget, golden-top-K's training prompts), with ``overrides``."""
    backend: str = "shapes"
    """The frozen model's backend: shapes, diffusers, sd3 or flux (``noiseppo list backends``)."""
    model: str = ""
    """The backend's model folder or hub id; empty: the backend's default (Shapes: the shipped model)."""
    device: str = "cpu"
    """Torch device of the model and of every method."""
    dtype: str = "float32"
    """float32, float16 or bfloat16: the model's weights."""
    threads: int = 0
    """Torch CPU threads; 0: torch's default."""
    iterations: int = 0
    """Noise PPO's iterations, and plain ddpo's; 0: the preset's."""
    search_curve: tuple[int, ...] = SEARCH_CURVE
    """Renders per prompt at which ``search@B`` is also evaluated (fresh seeds)."""
    bootstrap: int = 10_000
    """Cluster-bootstrap resamples of every interval (over prompts)."""
    golden_noises: int = 64
    """Shared noises golden-top-K chooses its K from."""
    overrides: tuple[str, ...] = ()
    """``KEY=VALUE`` preset overrides for the methods trained here, e.g. ``prompts=FILE`` (their
    training prompts) or ``samples_per_prompt=4``; ``eval_prompts``, ``eval_seeds``, ``reward``,
    ``steps``, ``backend``, ``model``, ``device``, ``dtype`` and ``iterations`` are this config's own fields."""


ALIASES = {
    "eval_prompts": "prompts",
    "eval_seeds": "seeds",
    **{k: k for k in ("reward", "steps", "backend", "model", "device", "dtype", "iterations")},
}
"""Preset keys that name a ``CompareConfig`` field: ``KEY=VALUE`` sets the field."""
FLAGS = {"prompts": "--prompts", "seeds": "--seeds"}


def compare_config(given: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> CompareConfig:
    """A ``CompareConfig`` from the flags that were given (None: left out) and ``KEY=VALUE``
    overrides; an override that names a field (``ALIASES``) sets it, and naming one twice is refused."""
    from noiseppo.configs.presets import config_value

    fields = {f.name for f in dataclasses.fields(CompareConfig)}
    values = {k: v for k, v in given.items() if k in fields - {"overrides"} and v is not None}
    rest = []
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if sep and key in ALIASES:
            field = ALIASES[key]
            if field in values:
                flag = FLAGS.get(field, f"--{field}")
                raise UserError(f"'{item}': give the {field} once, as {flag} or as {key}=")
            values[field] = config_value(key, value, "override")
        else:
            rest.append(item)
    return CompareConfig(**values, overrides=tuple(rest))


@dataclass
class Plan:
    """A checked ``CompareConfig``: its methods, its held-out prompts and reward resolved, and the
    training config of the methods trained here (which also gives the held-out render's guidance
    and batch)."""

    config: CompareConfig
    methods: list[Method]
    train: TrainConfig


def training_overrides(c: CompareConfig, *extra: str) -> list[str]:
    """The preset overrides of a method trained here: the user's, then this run's model, reward,
    steps and held-out prompts and seeds (what the trained policy is evaluated on), then ``extra``."""
    own = {"reward": c.reward, "steps": c.steps, "eval_prompts": c.prompts, "eval_seeds": c.seeds}
    if c.backend != "shapes" or c.model:
        own.update(backend=c.backend, model=c.model, device=c.device, dtype=c.dtype)
    if c.iterations:
        own["iterations"] = c.iterations
    if c.threads:
        own["threads"] = c.threads
    return [*c.overrides, *(f"{k}={v}" for k, v in own.items()), *extra]


def prepare(config: CompareConfig) -> Plan:
    """Check ``config`` before anything loads: every refusal is one line naming what is wrong."""
    from noiseppo.backends import BACKENDS
    from noiseppo.configs.presets import resolve
    from noiseppo.names import unknown_name
    from noiseppo.prompts import load_prompts
    from noiseppo.rewards import check_reward_name

    if config.backend not in BACKENDS:
        raise unknown_name("backend", config.backend, BACKENDS)
    methods = parse_methods(config.methods)  # an unknown method: refused before anything runs
    for m in methods:
        if m.kind == "golden" and int(m.arg) > config.golden_noises:
            raise UserError(f"--methods: '{m.name}' picks more noises than --golden-noises {config.golden_noises}")
    check_backend(methods, config.backend)
    shapes = config.backend == "shapes"
    if not shapes:  # the defaults are the Shapes world's: another model needs its own prompts and reward
        if not config.prompts:
            raise UserError(f"--backend {config.backend}: give the held-out prompts, --prompts FILE (or eval_prompts=)")
        if not config.reward:
            raise UserError(f"--backend {config.backend}: give the reward, --reward NAME (or module:function)")
        if config.reward in SHAPES_REWARDS:
            raise UserError(
                f"--reward {config.reward} is the Shapes verifier, which reads only the embedded Shapes model's "
                f"images: give --backend {config.backend} a reward of its own (noiseppo list rewards, module:function)"
            )
    config = dataclasses.replace(config, prompts=config.prompts or "shapes-test", reward=config.reward or "shapes")
    check_reward_name(config.reward)
    load_prompts(config.prompts)
    plan = Plan(config, methods, resolve(config.preset, overrides=training_overrides(config)))  # "did you mean"
    own_prompts = any(o.partition("=")[0].strip() == "prompts" for o in config.overrides)
    for m in methods:
        if KINDS[m.kind].trains and not shapes and not own_prompts:
            raise UserError(
                f"--methods: '{m.name}' trains on the preset's prompts '{plan.train.prompts}', Shapes prompts: give "
                f"--backend {config.backend} training prompts of its own, prompts=FILE"
            )
    if any(KINDS[m.kind].trains for m in methods):
        load_prompts(plan.train.prompts)
    return plan
