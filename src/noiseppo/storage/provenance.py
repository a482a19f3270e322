"""Where a run came from: the git revision of the code and when it started (``RUN_DIR/run.json``)."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from noiseppo import __version__
from noiseppo.storage.files import write_atomically

SOURCE = Path(__file__).resolve().parents[3]  # the checkout holding src/noiseppo, in an editable install
RUN_INFO = "run.json"


def git_revision(root: Path = SOURCE) -> str | None:
    """The commit noiseppo runs from, with "+dirty" when tracked files differ from it; None
    outside a git checkout (an installed wheel) or without git."""
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if head.returncode:
            return None
        changed = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if changed.stdout.strip() else "")


def write_run_info(run: Path) -> None:
    """``run.json``: the revision, noiseppo's version and the start time, written atomically."""
    info = {
        "git_revision": git_revision(),
        "noiseppo_version": __version__,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    write_atomically(run / RUN_INFO, json.dumps(info, indent=1) + "\n")
