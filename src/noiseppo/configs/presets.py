"""Resolving a ``TrainConfig``: dataclass defaults < preset < ``--config`` file < ``key=value``.

Presets are YAML files shipped in ``noiseppo/configs/`` (``noiseppo list presets``). A
YAML file holds a flat mapping of ``TrainConfig`` fields; an unknown key (with the nearest
valid one suggested), a value of the wrong type or a malformed file is refused with the
file and key named. A ``key=value`` override is plain text converted by the field's type,
never parsed as YAML: ``model=0.10`` stays the string "0.10" and ``iterations=010`` is 10.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, get_args, get_type_hints

import yaml

from noiseppo.configs.schedule import minibatch_size
from noiseppo.configs.train import READOUTS, TrainConfig
from noiseppo.errors import UserError
from noiseppo.names import closest, unknown_name

PRESETS_DIR = Path(__file__).resolve().parent  # the YAML files lie beside this module
DEFAULT_PRESET = "shapes"
SHAPES_SETS = ("shapes-train", "shapes-test")
ALIASES = {
    "learning_rate": "lr",
    "num_iterations": "iterations",
    "batch_size": "prompts_per_iteration",
    "num_steps": "steps",
    "guidance_scale": "guidance",
    "clip_epsilon": "clip_range",
}
"""Other libraries' names for config keys: a typo of one is answered with the key it means."""
"""The Shapes world's prompt sets, the defaults of ``prompts`` and ``eval_prompts``."""


def presets() -> dict[str, str]:
    """Preset name → its description (the YAML file's first comment line)."""
    found = {}
    for path in sorted(PRESETS_DIR.glob("*.yaml")):
        lines = path.read_text().splitlines()
        found[path.stem] = lines[0].lstrip("# ").strip() if lines else ""
    return found


def config_value(key: str, value: Any, where: str) -> Any:
    """``value`` (from YAML, an override ``key=value`` or a flag: ``where`` says which, for the
    message) as the type of the ``TrainConfig`` field ``key``, or one line naming the bad key or value."""
    kinds = get_type_hints(TrainConfig)
    if key not in kinds:
        close = closest(key, kinds) or ALIASES.get(closest(key, ALIASES) or "")
        hint = f"did you mean '{close}'?" if close else "see 'noiseppo train --help'"
        raise UserError(f"{where}: unknown config key '{key}' ({hint})")
    kind = kinds[key]
    if type(None) in get_args(kind):  # ``float | None``: None means "the backend's default"
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        kind = next(k for k in get_args(kind) if k is not type(None))
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
    elif kind is int and not isinstance(value, bool):
        try:
            if isinstance(value, str) or float(value) == int(value):
                return int(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
            pass
    elif kind is float and not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
        else:
            if math.isnan(number):  # NaN passes every bound check in validate() and poisons the loss
                raise UserError(f"{where}: '{key}' must be a float other than NaN, got {value!r}")
            return number
    elif kind is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return str(value)
    article = "an" if kind.__name__[0] in "aeiou" else "a"
    raise UserError(f"{where}: '{key}' must be {article} {kind.__name__}, got {value!r}")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text()
        data = yaml.safe_load(text)
    except FileNotFoundError:
        raise UserError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read the config ({e.__class__.__name__})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        # An error at the end of the stream (an unclosed bracket) is marked on the empty line
        # after the last newline: name the file's last line instead.
        line = f":{min(mark.line + 1, max(1, len(text.splitlines())))}" if mark is not None else ""
        problem = getattr(e, "problem", None) or "malformed YAML"
        raise UserError(f"{path}{line}: malformed YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return {str(k): config_value(str(k), v, str(path)) for k, v in data.items()}


def resolve(
    preset: str = DEFAULT_PRESET,
    config_file: str | None = None,
    overrides: list[str] = (),  # type: ignore[assignment]
    flags: dict[str, Any] | None = None,
) -> TrainConfig:
    """The config of a run, each layer overriding the one before it."""
    if preset not in presets():
        raise unknown_name("preset", preset, presets())
    values = _read_yaml(PRESETS_DIR / f"{preset}.yaml")
    given: dict[str, Any] = _read_yaml(Path(config_file)) if config_file else {}  # what the user chose
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"'{item}': overrides are written key=value")
        given[key.strip()] = config_value(key.strip(), value, "override")
    given.update({k: config_value(k, v, "flag") for k, v in (flags or {}).items() if v is not None})
    values.update(given)
    if values.get("backend", TrainConfig.backend) != "shapes" and "eval_prompts" not in given:
        # The presets' held-out sets are Shapes prompts: through another model they would only
        # waste renders. Without the user's own eval_prompts there is no held-out pass (train says so).
        values["eval_prompts"] = ""
    config = TrainConfig(**values)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Refuse settings that cannot run, before anything is loaded or written."""
    positive = ["steps", "iterations", "prompts_per_iteration", "samples_per_prompt", "render_batch", "epochs"]
    positive += ["grid", "width", "checkpoint_every", "keep_checkpoints", "eval_seeds"]
    for key in positive:
        if getattr(config, key) < 1:
            raise UserError(f"config: '{key}' must be >= 1, got {getattr(config, key)}")
    batch = config.prompts_per_iteration * config.samples_per_prompt
    if config.minibatch < 0:
        raise UserError(f"config: 'minibatch' must be >= 0 (0: the whole batch), got {config.minibatch}")
    if batch % minibatch_size(config):
        raise UserError(
            f"config: minibatch {config.minibatch} does not divide the batch of {batch} samples "
            f"(prompts_per_iteration {config.prompts_per_iteration} x samples_per_prompt {config.samples_per_prompt})"
        )
    if config.antithetic and config.samples_per_prompt % 2:
        raise UserError(f"config: antithetic needs an even samples_per_prompt, got {config.samples_per_prompt}")
    if config.backend != "shapes" and config.eval_prompts in SHAPES_SETS:  # the default would only waste renders
        raise UserError(
            f"config: eval_prompts '{config.eval_prompts}' is a Shapes world prompt set, but the backend is "
            f"'{config.backend}': give eval_prompts=FILE (held-out prompts for your model) or eval_prompts= "
            "(no held-out pass)"
        )
    if config.noise_centring and not config.shared_noise:
        raise UserError("config: noise_centring needs shared_noise (a noise's mean is over the prompts sharing it)")
    if not 0 <= config.noise_centring <= 1:
        raise UserError(f"config: noise_centring must be in [0, 1], got {config.noise_centring}")
    if config.lr_schedule not in ("constant", "cosine"):
        raise UserError(f"config: lr_schedule must be 'constant' or 'cosine', got '{config.lr_schedule}'")
    if not 0 <= config.adam_beta1 < 1:
        raise UserError(f"config: adam_beta1 must be in [0, 1), got {config.adam_beta1}")
    if not 0 <= config.lr_final <= 1:
        raise UserError(f"config: lr_final must be in [0, 1], got {config.lr_final}")
    if config.readout not in READOUTS:
        known = ", ".join(f"'{r}'" for r in READOUTS[:-1]) + f" or '{READOUTS[-1]}'"
        raise UserError(f"config: readout must be {known}, got '{config.readout}'")
    if config.advantages not in ("zscore", "rank"):
        raise UserError(f"config: advantages must be 'zscore' or 'rank', got '{config.advantages}'")
    if config.advantages == "rank" and config.adv_buffer:
        raise UserError("config: advantages 'rank' ranks each prompt's group alone; it needs adv_buffer 0")
    if not 0 < config.query_std < math.inf:
        raise UserError(f"config: 'query_std' must be a finite number > 0, got {config.query_std}")
    if config.logprob not in ("sum", "mean"):
        raise UserError(f"config: logprob must be 'sum' or 'mean', got '{config.logprob}'")
    for key in ("lr", "clip_range", "dist_timeout"):
        if not 0 < getattr(config, key) < math.inf:
            raise UserError(f"config: '{key}' must be a finite number > 0, got {getattr(config, key)}")
    if config.guidance is not None and config.guidance < 0:  # None: the backend's default
        raise UserError(f"config: 'guidance' must be >= 0, got {config.guidance}")
    non_negative = ["target_kl", "kl_coef", "weight_decay", "eval_every", "threads"]
    for key in non_negative + ["adv_buffer", "adv_min_count"]:
        if getattr(config, key) < 0:
            raise UserError(f"config: '{key}' must be >= 0, got {getattr(config, key)}")
    if not 0 <= config.max_nan_fraction < 1:
        raise UserError(f"config: max_nan_fraction must be in [0, 1), got {config.max_nan_fraction}")


def to_yaml(config: TrainConfig) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
