"""Where a checkpoint folder's steps lie, with the standard library alone: the Ctrl-C line
(``noiseppo.cli``) looks here even when the interrupt cut an import of torch or safetensors short,
and a second import of those would fail."""

from __future__ import annotations

from pathlib import Path

STEP_PREFIX = "step-"


def step_folders(folder: Path) -> list[Path]:
    """Saved step folders, newest first (temporary ones start with a dot and are skipped)."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob(f"{STEP_PREFIX}*") if p.is_dir()), reverse=True)


def has_state(folder: str | Path) -> bool:
    """Whether ``folder`` holds at least one saved step (readable or not)."""
    return bool(step_folders(Path(folder)))
