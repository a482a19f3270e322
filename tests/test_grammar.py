"""The prompt grammar (five templates, every rejection) and the train/test split."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from noiseppo.errors import UserError
from noiseppo.shapes import splits
from noiseppo.shapes.grammar import COLOURS, RELATIONS, SHAPES, Group, PromptError, ShapesPrompt, all_prompts, parse

ALL = all_prompts()
VOCABULARY = {"a", "two", "three", "and", "left", "right", "of", "above", "below", *COLOURS, *SHAPES}
VOCABULARY |= {s + "s" for s in SHAPES}

# --------------------------------------------------------------------------- templates


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a red circle", ShapesPrompt((Group("red", "circle", 1),))),
        ("two green squares", ShapesPrompt((Group("green", "square", 2),))),
        ("three blue triangles", ShapesPrompt((Group("blue", "triangle", 3),))),
        (
            "a yellow square and a red triangle",
            ShapesPrompt((Group("yellow", "square"), Group("red", "triangle"))),
        ),
        (
            "a red circle left of a blue square",
            ShapesPrompt((Group("red", "circle"), Group("blue", "square")), "left of"),
        ),
        (
            "a red circle right of a red square",
            ShapesPrompt((Group("red", "circle"), Group("red", "square")), "right of"),
        ),
        (
            "a green triangle above a blue triangle",
            ShapesPrompt((Group("green", "triangle"), Group("blue", "triangle")), "above"),
        ),
        (
            "a yellow circle below a green circle",
            ShapesPrompt((Group("yellow", "circle"), Group("green", "circle")), "below"),
        ),
    ],
)
def test_each_template_parses_and_round_trips(text, expected):
    parsed = parse(text)
    assert parsed == expected
    assert parsed.text == text
    assert str(parsed) == text
    assert parse(parsed.text) == parsed


@pytest.mark.parametrize(
    ("text", "template", "n_objects"),
    [
        ("a red circle", "single", 1),
        ("two red circles", "two", 2),
        ("three red circles", "three", 3),
        ("a red circle and a blue square", "pair", 2),
        ("a red circle above a blue square", "relation", 2),
    ],
)
def test_template_and_object_count(text, template, n_objects):
    assert parse(text).template == template
    assert parse(text).n_objects == n_objects


def test_whitespace_is_not_significant_and_text_is_canonical():
    parsed = parse("  a\tred \n circle   left  of a\tblue   square ")
    assert parsed == parse("a red circle left of a blue square")
    assert parsed.text == "a red circle left of a blue square"


def test_all_prompts_has_696_unique_prompts_in_five_templates():
    texts = [p.text for p in ALL]
    assert len(texts) == 696
    assert len(set(texts)) == 696
    assert len(set(ALL)) == 696
    # 12 colour-shape pairs: 12 of each count template; 12 * 11 ordered pairs with "and" and each relation.
    assert Counter(p.template for p in ALL) == {"single": 12, "two": 12, "three": 12, "pair": 132, "relation": 528}
    assert Counter(p.relation for p in ALL if p.template == "relation") == {r: 132 for r in RELATIONS}
    assert all(p.groups[0] != p.groups[1] for p in ALL if len(p.groups) == 2)


def test_every_enumerated_prompt_round_trips():
    for p in ALL:
        assert parse(p.text) == p, p.text


@given(prompt=st.sampled_from(ALL), seps=st.lists(st.sampled_from([" ", "  ", "\t", " \n "]), min_size=9, max_size=9))
def test_property_round_trip_with_any_whitespace(prompt, seps):
    words = prompt.text.split(" ")
    spaced = seps[0] + "".join(w + s for w, s in zip(words, seps[1:], strict=False))
    assert parse(spaced) == prompt
    assert parse(spaced).text == prompt.text


# --------------------------------------------------------------------------- rejections


def rejection(text: str) -> str:
    with pytest.raises(PromptError) as info:
        parse(text)
    assert isinstance(info.value, UserError)  # so the CLI reports it as one line, exit 2
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("text", ["", "   ", "\t\n"])
def test_empty_prompt(text):
    assert rejection(text) == "prompt is empty; expected e.g. 'a red circle'"


# (prompt, the 1-based word position named, the offending word, a phrase the message must hold)
REJECTIONS = [
    ("the red circle", 1, "the", "is not 'a', 'two' or 'three'"),
    ("one red circle", 1, "one", "is not 'a', 'two' or 'three'"),
    ("a purple circle", 2, "purple", "is not a colour ('red', 'green', 'blue' or 'yellow')"),
    ("a red hexagon", 3, "hexagon", "is not a shape ('circle', 'square' or 'triangle')"),
    ("two red circle", 3, "circle", "use 'circles' after 'two'"),
    ("three blue square", 3, "square", "use 'squares' after 'three'"),
    ("two red hexagons", 3, "hexagons", "is not a plural shape ('circles', 'squares' or 'triangles')"),
    ("a red circles", 3, "circles", "use 'circle' after 'a'"),
    ("a red circle and a blue squares", 7, "squares", "use 'square' after 'a'"),
    ("a red circle please", 4, "please", "is not 'and', 'left of', 'right of', 'above' or 'below'"),
    ("a red circle or a blue square", 4, "or", "is not 'and', 'left of', 'right of', 'above' or 'below'"),
    ("a red circle beside a blue square", 4, "beside", "is not 'and'"),
    ("two red circles now", 4, "now", "is unexpected, the prompt is complete after word 3"),
    ("three red circles and a blue square", 4, "and", "is unexpected, the prompt is complete after word 3"),
    ("a red circle and a blue square too", 8, "too", "is unexpected, the prompt is complete after word 7"),
    ("a red circle left of a blue square too", 9, "too", "is unexpected, the prompt is complete after word 8"),
    ("a red circle left a blue square", 5, "a", "is not 'of'"),
    ("a red circle right to a blue square", 5, "to", "is not 'of'"),
    ("a red circle and blue square", 5, "blue", "is not 'a'"),
    ("a red circle above the blue square", 5, "the", "is not 'a'"),
    ("a red circle left of blue square", 6, "blue", "is not 'a'"),
    ("a red circle and two blue squares", 5, "two", "is not 'a'"),
    ("a red circle and a red circle", 7, "circle", "repeats 'red circle'; the two objects must differ"),
    ("a blue square below a blue square", 7, "square", "repeats 'blue square'"),
    ("a red circle left of a red circle", 8, "circle", "repeats 'red circle'"),
    ("a red circle and a pink square", 6, "pink", "is not a colour"),
    ("a red circle and a red blob", 7, "blob", "is not a shape"),
]


@pytest.mark.parametrize(("text", "position", "word", "phrase"), REJECTIONS)
def test_rejection_names_word_and_position(text, position, word, phrase):
    message = rejection(text)
    assert message.startswith(f"prompt '{text}': word {position} '{word}' ")
    assert phrase in message


# (prompt, words it has, the word expected next)
ENDS_EARLY = [
    ("a", 1, "a colour ('red', 'green', 'blue' or 'yellow') as word 2"),
    ("two", 1, "a colour"),
    ("a red", 2, "a shape ('circle', 'square' or 'triangle') as word 3"),
    ("three green", 2, "a plural shape ('circles', 'squares' or 'triangles') as word 3"),
    ("a red circle left", 4, "'of' as word 5"),
    ("a red circle and", 4, "'a' as word 5"),
    ("a red circle right of", 5, "'a' as word 6"),
    ("a red circle and a", 5, "a colour ('red', 'green', 'blue' or 'yellow') as word 6"),
    ("a red circle above a blue", 6, "a shape ('circle', 'square' or 'triangle') as word 7"),
    ("a red circle left of a blue", 7, "a shape"),
]


@pytest.mark.parametrize(("text", "n_words", "expected"), ENDS_EARLY)
def test_prompt_that_ends_early_names_where(text, n_words, expected):
    message = rejection(text)
    assert message.startswith(f"prompt '{text}': ends after word {n_words}, expected ")
    assert expected in message


@pytest.mark.parametrize(
    ("text", "position", "word"),
    [
        ("A red circle", 1, "A"),
        ("TWO red circles", 1, "TWO"),
        ("a Red circle", 2, "Red"),
        ("a red Circle", 3, "Circle"),
        ("two red Circles", 3, "Circles"),
        ("a red circle And a blue square", 4, "And"),
        ("a red circle left OF a blue square", 5, "OF"),
        ("a red circle and a blue Square", 7, "Square"),
    ],
)
def test_uppercase_gets_a_lowercase_hint(text, position, word):
    message = rejection(text)
    assert message.startswith(f"prompt '{text}': word {position} '{word}' is not ")
    assert message.endswith(" (prompts are lowercase)")


def test_lowercase_mistakes_get_no_case_hint():
    assert "lowercase" not in rejection("a purple circle")


def test_non_string_prompt():
    with pytest.raises(PromptError, match="prompt must be a string, got int"):
        parse(3)


# Words that are in no template at any position.
junk_words = st.text(alphabet="bcdfghjkmnpqrstvwxz", min_size=1, max_size=8).filter(lambda w: w not in VOCABULARY)


@given(prompt=st.sampled_from(ALL), data=st.data(), junk=junk_words)
def test_property_replacing_a_word_is_rejected_at_that_word(prompt, data, junk):
    words = prompt.text.split()
    i = data.draw(st.integers(0, len(words) - 1), label="position")
    words[i] = junk
    text = " ".join(words)
    message = rejection(text)
    assert message.startswith(f"prompt '{text}': word {i + 1} '{junk}' is not ")


@given(prompt=st.sampled_from(ALL), data=st.data())
def test_property_capitalising_a_word_is_rejected_at_that_word_with_a_hint(prompt, data):
    words = prompt.text.split()
    i = data.draw(st.integers(0, len(words) - 1), label="position")
    words[i] = words[i].upper()
    text = " ".join(words)
    message = rejection(text)
    assert message.startswith(f"prompt '{text}': word {i + 1} '{words[i]}' is not ")
    assert message.endswith("(prompts are lowercase)")


@given(prompt=st.sampled_from(ALL), junk=junk_words)
def test_property_a_trailing_word_is_rejected_at_its_position(prompt, junk):
    n = len(prompt.text.split())
    text = f"{prompt.text} {junk}"
    assert re.match(rf"prompt '{re.escape(text)}': word {n + 1} '{junk}' is ", rejection(text))


@given(prompt=st.sampled_from(ALL), data=st.data())
def test_property_dropping_a_word_is_rejected_with_a_position(prompt, data):
    words = prompt.text.split()
    i = data.draw(st.integers(0, len(words) - 1), label="dropped")
    text = " ".join(words[:i] + words[i + 1 :])
    message = rejection(text)
    # The first word the parser cannot accept is the one that moved into the gap (or the end).
    if i == len(words) - 1:
        assert f"ends after word {len(words) - 1}, expected " in message
        assert f"as word {len(words)}" in message
    else:
        assert re.search(rf"word {i + 1} '{re.escape(words[i + 1])}' is ", message), message


# --------------------------------------------------------------------------- split

TRAIN = splits.train_prompts()
TEST = splits.test_prompts()


def combination(p: ShapesPrompt):
    """What the split holds out: the unordered object pair, or (colour, shape, count)."""
    if len(p.groups) == 1:
        g = p.groups[0]
        return (g.colour, g.shape, g.count)
    return frozenset((g.colour, g.shape) for g in p.groups)


def test_split_sizes_disjoint_and_complete():
    assert len(TRAIN) == 548
    assert len(TEST) == 148
    assert len(set(TRAIN)) == 548 and len(set(TEST)) == 148
    assert not set(TRAIN) & set(TEST)
    assert set(TRAIN) | set(TEST) == {p.text for p in ALL}
    # In the fixed order of all_prompts(): a set never depends on hashing or a random generator.
    assert TRAIN == [p.text for p in ALL if not splits.is_held_out(p)]
    assert TEST == [p.text for p in ALL if splits.is_held_out(p)]


def test_split_holds_out_14_pairs_and_8_groups_with_every_prompt_using_them():
    assert len(splits.HELD_OUT_PAIRS) == 14 and all(len(pair) == 2 for pair in splits.HELD_OUT_PAIRS)
    assert len(splits.HELD_OUT_GROUPS) == 8
    test = [parse(t) for t in TEST]
    assert Counter(p.template for p in test) == {"single": 3, "two": 2, "three": 3, "pair": 28, "relation": 112}
    # A held-out pair comes with "and" and all four relations, in both orders: 2 * 5 = 10 prompts.
    assert Counter(combination(p) for p in test if len(p.groups) == 2) == {pair: 10 for pair in splits.HELD_OUT_PAIRS}
    assert {combination(p) for p in test if len(p.groups) == 1} == splits.HELD_OUT_GROUPS


def test_no_test_combination_occurs_in_train():
    train_combinations = {combination(parse(t)) for t in TRAIN}
    for t in TEST:
        assert combination(parse(t)) not in train_combinations, t


def test_every_colour_shape_binding_appears_in_train():
    bindings = {(g.colour, g.shape) for t in TRAIN for g in parse(t).groups}
    assert bindings == {(c, s) for c in COLOURS for s in SHAPES}
    # Each binding also appears in train as one object next to another (the test pairs' building blocks).
    in_pairs = {(g.colour, g.shape) for t in TRAIN for g in parse(t).groups if len(parse(t).groups) == 2}
    assert in_pairs == bindings


def test_the_documented_split_lists_match_the_code():
    doc = (Path(__file__).parents[1] / "docs" / "shapes.md").read_text()
    pairs = re.findall(r"(\w+) (\w+) \+ (\w+) (\w+)", doc)
    assert {frozenset([(c1, s1), (c2, s2)]) for c1, s1, c2, s2 in pairs} == splits.HELD_OUT_PAIRS
    assert len(pairs) == 14
    groups = re.search(r"Held-out groups: (.*?)\.\n", doc, re.S).group(1)
    named = {combination(parse(p)) for p in re.findall(r"`([a-z ]+)`", groups)}
    assert named == splits.HELD_OUT_GROUPS
