"""What a prompt means: checking a list of objects against a parsed prompt.

The renderer's ground-truth objects and the verifier's detected objects go through the
same ``check``, so "the image satisfies the prompt" has one definition in the project.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from noiseppo.shapes.grammar import ShapesPrompt


@dataclass(frozen=True)
class SceneObject:
    """One object: colour, shape, centre (pixels, x right, y down) and bounding box.

    ``box`` is ``(x0, y0, x1, y1)`` with exclusive ``x1, y1``; ``area`` is in pixels.
    """

    colour: str
    shape: str
    cx: float
    cy: float
    box: tuple[int, int, int, int]
    area: float = 0.0

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass
class Verdict:
    """The verifier's answer for one (image, prompt) pair.

    ``constraints`` maps a readable constraint to whether it holds; ``correct`` is 1 only
    if all hold, ``partial`` is the fraction that hold.
    """

    prompt: str
    constraints: dict[str, bool]
    objects: list[SceneObject] = field(default_factory=list)

    @property
    def correct(self) -> int:
        return int(all(self.constraints.values()))

    @property
    def partial(self) -> float:
        return sum(self.constraints.values()) / len(self.constraints)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "correct": self.correct,
            "partial": round(self.partial, 4),
            "constraints": dict(self.constraints),
            "objects": [
                {k: (round(v, 2) if isinstance(v, float) else v) for k, v in asdict(o).items()} for o in self.objects
            ],
        }


_AXIS = {"left of": ("cx", 1), "right of": ("cx", -1), "above": ("cy", 1), "below": ("cy", -1)}


def check(prompt: ShapesPrompt, objects: Sequence[SceneObject]) -> Verdict:
    """Evaluate every constraint of ``prompt`` on ``objects``.

    Constraints, in order:
      * ``count: {colour} {shape} = n`` for each named group: exactly n such objects;
      * ``total objects = N``: nothing else in the scene (with the counts, no extras);
      * ``relation: ...`` for relation prompts: both objects found exactly once and the
        first one's centre strictly on the named side of the second's.
    """
    found = Counter(o.name for o in objects)
    constraints: dict[str, bool] = {}
    for g in prompt.groups:
        constraints[f"count: {g.name} = {g.count}"] = found[g.name] == g.count
    constraints[f"total objects = {prompt.n_objects}"] = len(objects) == prompt.n_objects
    if prompt.relation is not None:
        first, second = prompt.groups
        holds = False
        if found[first.name] == 1 and found[second.name] == 1:
            a = next(o for o in objects if o.name == first.name)
            b = next(o for o in objects if o.name == second.name)
            attr, sign = _AXIS[prompt.relation]
            holds = sign * (getattr(b, attr) - getattr(a, attr)) > 0
        constraints[f"relation: {first.name} {prompt.relation} {second.name}"] = holds
    return Verdict(prompt.text, constraints, list(objects))
