"""Training state on disk: safetensors for tensors, JSON for everything else, never pickle.

A checkpoint is a folder with ``state.safetensors`` and ``state.json``. It is written to a
temporary folder and renamed into place, so a crash leaves either the old checkpoint or
the new one, never half of one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from noiseppo.errors import UserError
from noiseppo.files import replaced_folder


def optimizer_to_tensors(optimizer: torch.optim.Optimizer, prefix: str = "optimizer") -> tuple[dict, dict]:
    """Split ``optimizer.state_dict()`` into named tensors and JSON-able metadata."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entries in state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{prefix}.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict, prefix: str = "optimizer"
) -> None:
    """Inverse of ``optimizer_to_tensors``: load the state into ``optimizer``."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        if name.startswith(prefix + "."):
            index, key = name[len(prefix) + 1 :].split(".", 1)
            state.setdefault(int(index), {})[key] = value
    for index, entries in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_state(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Write a checkpoint folder atomically (temporary folder, then rename)."""
    with replaced_folder(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
        (tmp / "state.json").write_text(json.dumps(meta, indent=1))


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a checkpoint folder written by ``save_state``."""
    path = Path(path)
    try:
        meta = json.loads((path / "state.json").read_text())
        tensors = load_file(str(path / "state.safetensors"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: not a readable checkpoint ({e.__class__.__name__}: {e})") from None
    return tensors, meta
