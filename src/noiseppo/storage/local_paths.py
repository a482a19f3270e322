"""Local paths as the user types them: a model folder told apart from a hub id, and made absolute.

Imports neither torch nor diffusers: ``noiseppo train`` answers a mistyped model folder at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from noiseppo.errors import UserError


def absolute(path: str) -> str:
    """``path`` as an absolute path (``~`` expanded, ``..`` folded, symbolic links kept)."""
    return os.path.abspath(os.path.expanduser(path))


def looks_like_path(model: str) -> bool:
    """Whether ``model`` can only be a local folder, not a hub id: it starts with ``./``, ``../``,
    ``/`` or ``~``, or its parent folder exists (``models/my-sd`` beside a ``models/`` folder)."""
    if model.startswith(("./", "../", "/", "~")) or model in (".", ".."):
        return True
    parent = Path(model).parent
    return str(parent) != "." and parent.is_dir()


def checked_model(model: str) -> str:
    """``model`` as the backends take it (``~`` expanded): a path-like name with nothing there is
    refused here, rather than sent to the hub, whose answer is about the rules of repo ids."""
    found = os.path.expanduser(model)
    if model and not os.path.exists(found) and looks_like_path(model):
        where = f" (looked for {absolute(model)})" if absolute(model) != model else ""
        raise UserError(f"no such model folder: {model}{where}")
    return found if os.path.exists(found) else model


def local_model(model: str) -> str:
    """``checked_model``, a local folder as its absolute path (what a run's config records)."""
    found = checked_model(model)
    return absolute(found) if found and os.path.exists(found) else found
