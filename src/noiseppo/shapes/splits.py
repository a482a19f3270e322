"""The ``shapes-train`` / ``shapes-test`` split: test prompts hold unseen combinations.

Two-object prompts are split by their *unordered object pair*: the 14 pairs below (of 66)
are held out, together with every prompt that uses them ("and", all four relations,
both orders). One-group prompts are split by (colour, shape, count): the 8 below (of 36)
are held out. No prompt of ``shapes-test`` therefore names a combination that occurs in
``shapes-train``, while every single colour-shape binding still appears in training.
The lists were drawn once with a seeded shuffle chosen for balance and are frozen here,
so the split never depends on a library's random number generator.
"""

from __future__ import annotations

from noiseppo.shapes.grammar import ShapesPrompt, all_prompts

HELD_OUT_PAIRS: frozenset[frozenset[tuple[str, str]]] = frozenset(
    frozenset(pair)
    for pair in [
        (("red", "circle"), ("green", "triangle")),
        (("red", "circle"), ("yellow", "circle")),
        (("red", "square"), ("green", "circle")),
        (("red", "square"), ("green", "square")),
        (("red", "square"), ("blue", "circle")),
        (("red", "triangle"), ("blue", "square")),
        (("red", "triangle"), ("yellow", "triangle")),
        (("green", "circle"), ("green", "square")),
        (("green", "circle"), ("yellow", "square")),
        (("green", "triangle"), ("blue", "circle")),
        (("blue", "circle"), ("blue", "triangle")),
        (("blue", "square"), ("blue", "triangle")),
        (("yellow", "circle"), ("yellow", "square")),
        (("yellow", "square"), ("yellow", "triangle")),
    ]
)

HELD_OUT_GROUPS: frozenset[tuple[str, str, int]] = frozenset(
    [
        ("green", "square", 1),
        ("green", "triangle", 1),
        ("yellow", "square", 1),
        ("red", "circle", 2),
        ("blue", "square", 2),
        ("blue", "circle", 3),
        ("blue", "triangle", 3),
        ("yellow", "square", 3),
    ]
)


def is_held_out(prompt: ShapesPrompt) -> bool:
    """True if ``prompt`` belongs to ``shapes-test``."""
    if len(prompt.groups) == 1:
        g = prompt.groups[0]
        return (g.colour, g.shape, g.count) in HELD_OUT_GROUPS
    pair = frozenset((g.colour, g.shape) for g in prompt.groups)
    return pair in HELD_OUT_PAIRS


def train_prompts() -> list[str]:
    """``shapes-train``: the 548 prompts that name no held-out combination."""
    return [p.text for p in all_prompts() if not is_held_out(p)]


def test_prompts() -> list[str]:
    """``shapes-test``: the 148 prompts that name a held-out combination."""
    return [p.text for p in all_prompts() if is_held_out(p)]
