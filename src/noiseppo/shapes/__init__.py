"""The Shapes world: a tiny compositional text-to-image domain with an exact verifier.

See docs/shapes.md for the specification (the benchmark's contract).
"""

from noiseppo.shapes.grammar import COLOURS, RELATIONS, SHAPES, PromptError, ShapesPrompt, all_prompts, parse
from noiseppo.shapes.render import ShapesDataset, render, render_scene
from noiseppo.shapes.scene import SceneObject, Verdict, check
from noiseppo.shapes.verifier import detect, verify

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
