"""The policies shipped in the package, and the training config a policy came with.

Kept apart from ``noiseppo.policy`` so that ``noiseppo list policies`` and the CLI's
look-ups of a policy's training settings import neither torch nor diffusers.
"""

from __future__ import annotations

from pathlib import Path

from noiseppo.names import natural_key

SHIPPED_POLICIES = Path(__file__).resolve().parents[1] / "weights" / "policies"


def shipped_policies() -> dict[str, str]:
    """Name → one-line description of each policy shipped in the package, steps2 before steps16."""
    found = {}
    for folder in sorted(SHIPPED_POLICIES.glob("*/"), key=lambda f: natural_key(f.name)):
        info = folder / "README.txt"
        found[folder.name] = info.read_text().splitlines()[0] if info.exists() else ""
    return found


def training_config(name_or_path: str | Path) -> dict | None:
    """The training config a policy came with (backend, model, steps, ...), if it has one."""
    import yaml

    path = Path(name_or_path)
    for candidate in (
        path / "config.yaml",
        path / "train_config.yaml",
        SHIPPED_POLICIES / str(name_or_path) / "train_config.yaml",
    ):
        if candidate.is_file():
            return yaml.safe_load(candidate.read_text())
    return None
