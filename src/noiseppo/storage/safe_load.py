"""Reading files without running them: JSON for metadata, safetensors for tensors, and
diffusers model folders built from the two; never pickle.

Every file the package loads goes through ``read_json``, ``load_tensors`` or
``load_pretrained``: a pickle (a ``torch.save`` file renamed ``.safetensors``, a pickle
named ``config.json``) is refused with one line naming it, and never run. Nothing here
calls ``torch.load`` or ``pickle``, and models are not loaded through diffusers'
``from_pretrained``, whose fallbacks read pickled ``.bin`` files. The exceptions are users'
own models (the ``diffusers`` backend's pipelines, ``clip_score``'s CLIP), loaded with
``use_safetensors=True``, which refuses ``.bin`` weights; tests/test_hostile_inputs.py
checks the source for any other call.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from noiseppo.errors import UserError

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
"""The weights file of a diffusers ``save_pretrained`` folder (next to its ``config.json``)."""
M = TypeVar("M")


def refused(path: Path, expected: str, reason: str) -> UserError:
    """The error for a file that is not ``expected``; a pickle is named as such.

    torch.save writes a zip archive holding a pickle ("PK"); pickle.dump and legacy
    torch files start with the protocol marker 0x80.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        head = b""
    if head.startswith((b"PK\x03\x04", b"\x80")):
        return UserError(f"{path}: is a pickle (e.g. from torch.save), not {expected}; noiseppo never unpickles files")
    return UserError(f"{path}: not {expected} ({reason})")


def read_json(path: str | Path) -> Any:
    """Metadata from a JSON file; anything else is refused without being run."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise refused(path, "a JSON file", "not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise refused(path, "a JSON file", f"line {e.lineno} column {e.colno}: {e.msg}") from None


def load_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file; anything else is refused without being run."""
    path = Path(path)
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise UserError(f"{path}: file not found (weights are read from safetensors only)") from None
    except (SafetensorError, OSError) as e:
        raise refused(path, "a safetensors file", str(e)) from None


def load_pretrained(cls: type[M], folder: str | Path, dtype: torch.dtype | None = None) -> M:
    """A diffusers model from a ``save_pretrained`` folder: ``config.json`` and safetensors only.

    The model is built from its config and given the tensors of ``load_tensors``, rather
    than through ``from_pretrained``, which falls back to pickled ``.bin`` files when the
    safetensors file is missing or the folder holds a shard index. A mismatch between the
    weights and the config raises ``RuntimeError`` for the caller to put in context.
    """
    folder = Path(folder)
    config = read_json(folder / "config.json")
    if not isinstance(config, dict):  # from_config would take anything else for a hub id
        raise UserError(f"{folder / 'config.json'}: expected a JSON object, got {type(config).__name__}")
    tensors = load_tensors(folder / WEIGHTS_NAME)
    try:
        with torch.random.fork_rng(devices=[]):  # the throwaway initialisation leaves the global RNG alone
            model = cls.from_config(config)  # type: ignore[attr-defined]
    except (TypeError, ValueError) as e:
        raise UserError(f"{folder / 'config.json'}: not a {cls.__name__} config ({e})") from None
    model.load_state_dict(tensors)  # strict: every weight present, every shape as configured
    if dtype is not None:  # nn.Module.to: diffusers' override warns on every dtype cast
        torch.nn.Module.to(model, dtype)
    return model.eval()
