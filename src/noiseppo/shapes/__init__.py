"""The Shapes world: a tiny compositional text-to-image domain with an exact verifier.

See docs/shapes.md for the specification (the benchmark's contract).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "grammar": ("COLOURS", "RELATIONS", "SHAPES", "PromptError", "ShapesPrompt", "all_prompts", "parse"),
    "render": ("ShapesDataset", "render", "render_scene"),
    "scene": ("SceneObject", "Verdict", "check"),
    "verifier": ("detect", "verify"),
}
"""Submodule → the names this package re-exports from it. They are imported on first use
(PEP 562), so reading the grammar or the prompt splits does not import numpy and PIL
(``noiseppo list prompts`` stays fast)."""


def __getattr__(name: str) -> Any:
    for module, names in _EXPORTS.items():
        if name in names:
            return getattr(importlib.import_module(f"noiseppo.shapes.{module}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "COLOURS",
    "RELATIONS",
    "SHAPES",
    "PromptError",
    "SceneObject",
    "ShapesDataset",
    "ShapesPrompt",
    "Verdict",
    "all_prompts",
    "check",
    "detect",
    "parse",
    "render",
    "render_scene",
    "verify",
]
