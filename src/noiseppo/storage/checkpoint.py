"""Training state on disk: safetensors for tensors, JSON for everything else, never pickle.

A checkpoint folder holds one sub-folder per saved step, ``step-00000010/`` with
``state.safetensors`` and ``state.json`` (which records the SHA-256 of the tensors), and
``latest.json``, the pointer to the newest one. A crash at any instant leaves a readable
checkpoint:

1. the step folder is written under a temporary name, flushed, then renamed into place;
2. only then is ``latest.json`` replaced (temporary file, flush, rename);
3. only then are step folders beyond the newest ``keep`` deleted.

Loading follows the pointer and verifies the checksum. If that checkpoint is missing or
corrupt (a truncated copy, a bad disk), the newest older step folder that verifies is
used instead, and a warning line says so; if none verifies, loading refuses with one
line. A run resumed from an older step repeats the steps after it exactly. Every file is read
through ``noiseppo.storage.safe_load``, so a pickle is refused and never run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from noiseppo.errors import UserError
from noiseppo.storage.files import replaced_folder, write_failure
from noiseppo.storage.safe_load import load_tensors, read_json, refused
from noiseppo.storage.steps import STEP_PREFIX, step_folders
from noiseppo.storage.steps import has_state as has_state  # where the callers look for it


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


LATEST = "latest.json"


def save_state(
    folder: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any], step: int, keep: int = 2
) -> None:
    """Write checkpoint ``step`` into ``folder`` crash-safely and keep the newest ``keep``."""
    folder = Path(folder)
    name = f"{STEP_PREFIX}{step:08d}"
    try:
        with replaced_folder(folder / name) as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp / "state.safetensors"))
            digest = _sha256(tmp / "state.safetensors")
            (tmp / "state.json").write_text(json.dumps({**meta, "step": step, "sha256": digest}, indent=1))
    except UserError as e:  # a failed write (a full disk): say what survives
        reason = write_failure(e.__cause__) if e.__cause__ is not None else None
        if reason is None:
            raise
        raise UserError(f"{folder}: cannot write step {step} ({reason}); the earlier checkpoints are kept") from e
    pointer = folder / f".{LATEST}.tmp-{os.getpid()}"
    try:
        with open(pointer, "w") as f:
            json.dump({"step": step, "folder": name}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(pointer, folder / LATEST)
    except OSError as e:
        pointer.unlink(missing_ok=True)
        reason = e.strerror or str(e)
        raise UserError(f"{folder}: cannot write step {step} ({reason}); the earlier checkpoints are kept") from e
    # Prune among steps up to this one: a later step left by a killed run is rewritten in time.
    for old in [p for p in step_folders(folder) if p.name <= name][keep:]:
        shutil.rmtree(old, ignore_errors=True)


def latest_step(folder: str | Path) -> int | None:
    """The step ``latest.json`` points to (None if there is none); cheap, nothing verified."""
    try:
        return int(read_json(Path(folder) / LATEST)["step"])
    except (UserError, KeyError, TypeError, ValueError):
        return None


def load_state(folder: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The newest checkpoint of ``folder`` that verifies (see the module docstring)."""
    folder = Path(folder)
    candidates = step_folders(folder)
    try:
        pointed = folder / read_json(folder / LATEST)["folder"]
        candidates = [pointed] + [c for c in candidates if c != pointed]
    except (UserError, KeyError, TypeError):
        pass  # no readable pointer: fall back to the step folders themselves
    if not candidates:
        raise UserError(f"{folder}: no checkpoint in it")
    problems = []
    for candidate in candidates:
        try:
            state = _verified(candidate)
        except UserError as e:
            problems.append(str(e))
            continue
        if problems:
            print(f"noiseppo: warning: {problems[0]}; resuming from {candidate.name}", file=sys.stderr)
        return state
    older = " (and no older checkpoint verifies)" if len(candidates) > 1 else ""
    raise UserError(f"{problems[0]}{older}")


def save_training(
    folder: Path,
    name: str,
    weights: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    stats: Any,
    iteration: int,
    keep: int,
    **meta: Any,
) -> None:
    """A trainer's checkpoint of ``iteration``: its ``weights`` (keys ``{name}.*``), the optimizer,
    the advantage statistics (``stats.state_dict()``) and the trainer's own ``meta``."""
    tensors = {f"{name}.{k}": v for k, v in weights.items()}
    opt_tensors, opt_meta = optimizer_to_tensors(optimizer)
    tensors.update(opt_tensors)
    state = {"iteration": iteration, "optimizer": opt_meta, "advantage_stats": stats.state_dict(), **meta}
    save_state(folder, tensors, state, iteration, keep)


def load_training(
    folder: Path,
    name: str,
    load_weights: Callable[[dict[str, torch.Tensor]], Any],
    optimizer: torch.optim.Optimizer,
    stats: Any,
    meta_keys: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Restore what ``save_training`` wrote (the newest checkpoint that verifies): the weights
    through ``load_weights``, the optimizer and the statistics; returns the metadata, which holds
    ``iteration`` and ``meta_keys``. A checkpoint of another configuration is refused in one line."""
    tensors, meta = load_state(folder)
    try:
        load_weights({k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{name}.")})
        optimizer_from_tensors(optimizer, tensors, meta["optimizer"])
        stats.load_state_dict(meta["advantage_stats"])
        for key in ("iteration", *meta_keys):
            float(meta[key])
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        raise UserError(f"{folder}: does not match this run's config ({e.__class__.__name__})") from None
    return meta


def _verified(step_folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    meta = read_json(step_folder / "state.json")
    if not isinstance(meta, dict) or "sha256" not in meta:
        raise UserError(f"{step_folder / 'state.json'}: not a noiseppo checkpoint (no checksum)")
    weights = step_folder / "state.safetensors"
    if not weights.is_file():
        raise UserError(f"{weights}: file not found")
    if _sha256(weights) != meta["sha256"]:  # a pickle is named as such, and never read
        raise refused(weights, "a safetensors file", "SHA-256 does not match state.json")
    return load_tensors(weights), meta


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
