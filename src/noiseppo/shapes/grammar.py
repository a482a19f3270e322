"""The Shapes world's prompt grammar: vocabulary, parser and enumeration.

Exactly five lowercase templates (see docs/shapes.md):

    a {colour} {shape}
    two {colour} {shape}s
    three {colour} {shape}s
    a {c1} {s1} and a {c2} {s2}
    a {c1} {s1} {left of|right of|above|below} a {c2} {s2}

Two-object prompts must name two distinct colour-shape pairs. Words are separated by
whitespace; the canonical text (``ShapesPrompt.text``) uses single spaces.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

from noiseppo.errors import UserError

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (230, 200, 40),
}
BACKGROUND = (255, 255, 255)
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
COUNT_WORDS = {"a": 1, "two": 2, "three": 3}
TEMPLATES: tuple[str, ...] = ("single", "two", "three", "pair", "relation")

_PLURALS = {shape + "s": shape for shape in SHAPES}
_NUMBER_WORDS = {1: "a", 2: "two", 3: "three"}


class PromptError(UserError):
    """A prompt outside the Shapes grammar."""


@dataclass(frozen=True)
class Group:
    """``count`` objects of one colour and shape."""

    colour: str
    shape: str
    count: int = 1

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class ShapesPrompt:
    """A parsed prompt: one group (with a count) or two distinct single objects."""

    groups: tuple[Group, ...]
    relation: str | None = None

    @property
    def template(self) -> str:
        if len(self.groups) == 1:
            return ("single", "two", "three")[self.groups[0].count - 1]
        return "pair" if self.relation is None else "relation"

    @property
    def n_objects(self) -> int:
        return sum(g.count for g in self.groups)

    @property
    def text(self) -> str:
        if len(self.groups) == 1:
            g = self.groups[0]
            if g.count == 1:
                return f"a {g.name}"
            return f"{_NUMBER_WORDS[g.count]} {g.name}s"
        first, second = self.groups
        joiner = "and" if self.relation is None else self.relation
        return f"a {first.name} {joiner} a {second.name}"

    def __str__(self) -> str:
        return self.text


def _options(words: list[str]) -> str:
    quoted = [f"'{w}'" for w in words]
    return ", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0]


def parse(prompt: str) -> ShapesPrompt:
    """Parse ``prompt`` or raise ``PromptError`` naming the offending word and its position."""
    if not isinstance(prompt, str):
        raise PromptError(f"prompt must be a string, got {type(prompt).__name__}")
    return _parse(prompt)


@functools.lru_cache(maxsize=4096)
def _parse(prompt: str) -> ShapesPrompt:
    words = prompt.split()
    if not words:
        raise PromptError("prompt is empty; expected e.g. 'a red circle'")

    def fail(i: int, expected: str) -> PromptError:
        # i is 0-based; messages count words from 1 as a person would.
        if i >= len(words):
            return PromptError(f"prompt {prompt!r}: ends after word {len(words)}, expected {expected} as word {i + 1}")
        hint = " (prompts are lowercase)" if words[i] != words[i].lower() else ""
        return PromptError(f"prompt {prompt!r}: word {i + 1} '{words[i]}' is not {expected}{hint}")

    def word(i: int) -> str | None:
        return words[i] if i < len(words) else None

    colour_opts = "a colour (" + _options(list(COLOURS)) + ")"

    def colour_at(i: int) -> str:
        if word(i) not in COLOURS:
            raise fail(i, colour_opts)
        return words[i]

    def shape_at(i: int, plural: bool) -> str:
        w = word(i)
        if plural:
            if w in _PLURALS:
                return _PLURALS[w]
            if w in SHAPES:
                raise fail(i, f"a plural shape (use '{w}s' after '{words[0]}')")
            raise fail(i, "a plural shape (" + _options(list(_PLURALS)) + ")")
        if w in SHAPES:
            return w
        if w in _PLURALS:
            raise fail(i, f"a singular shape (use '{_PLURALS[w]}' after 'a')")
        raise fail(i, "a shape (" + _options(list(SHAPES)) + ")")

    def end_at(i: int) -> None:
        if i < len(words):
            raise PromptError(
                f"prompt {prompt!r}: word {i + 1} '{words[i]}' is unexpected, the prompt is complete after word {i}"
            )

    if word(0) not in COUNT_WORDS:
        raise fail(0, _options(list(COUNT_WORDS)))
    count = COUNT_WORDS[words[0]]
    colour = colour_at(1)
    shape = shape_at(2, plural=count > 1)
    first = Group(colour, shape, count)
    if count > 1 or len(words) == 3:
        end_at(3)
        return ShapesPrompt((first,))

    # Two-object templates: "and" or a relation, then "a {colour} {shape}".
    joiners = ["and", "left", "right", "above", "below"]
    if word(3) not in joiners:
        raise fail(3, "'and', 'left of', 'right of', 'above' or 'below'")
    relation: str | None = None if words[3] == "and" else words[3]
    i = 4
    if words[3] in ("left", "right"):
        if word(4) != "of":
            raise fail(4, "'of'")
        relation = f"{words[3]} of"
        i = 5
    if word(i) != "a":
        raise fail(i, "'a'")
    second = Group(colour_at(i + 1), shape_at(i + 2, plural=False))
    end_at(i + 3)
    if second == first:
        raise PromptError(
            f"prompt {prompt!r}: word {i + 3} '{words[i + 2]}' repeats '{first.name}'; "
            "the two objects must differ in colour or shape"
        )
    return ShapesPrompt((first, second), relation)


def all_prompts() -> list[ShapesPrompt]:
    """Every prompt of the grammar (696), in a fixed order."""
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    out = [ShapesPrompt((Group(c, s, n),)) for n in (1, 2, 3) for c, s in pairs]
    for (c1, s1), (c2, s2) in itertools.permutations(pairs, 2):
        a, b = Group(c1, s1), Group(c2, s2)
        out.append(ShapesPrompt((a, b)))
        out.extend(ShapesPrompt((a, b), rel) for rel in RELATIONS)
    return out
