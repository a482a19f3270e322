"""Property-based tests (hypothesis) of the two text parsers a user feeds directly.

The prompt grammar: every scene the grammar can describe survives text → parse, and any
other string is either a prompt or a ``UserError``, never another exception.
(tests/test_grammar.py covers whitespace and one-word edits of enumerated prompts.)

``key=value`` config overrides (``noiseppo.configs.presets``): every field takes any value of its
type exactly or refuses it by name, a resolved config survives its own ``config.yaml``,
and a wrong type or an unknown key is a ``UserError`` that names the key.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from noiseppo.configs.presets import resolve, to_yaml
from noiseppo.configs.train import TrainConfig
from noiseppo.errors import UserError
from noiseppo.shapes.grammar import COLOURS, RELATIONS, SHAPES, Group, ShapesPrompt, all_prompts, parse

FEW = settings(max_examples=50)

# --------------------------------------------------------------------------- prompt grammar

colour_shapes = st.tuples(st.sampled_from(list(COLOURS)), st.sampled_from(SHAPES))


@st.composite
def scenes(draw: st.DrawFn) -> ShapesPrompt:
    """A scene the grammar can describe, built from its parts rather than drawn from all_prompts()."""
    if draw(st.booleans()):
        colour, shape = draw(colour_shapes)
        return ShapesPrompt((Group(colour, shape, draw(st.integers(1, 3))),))
    first, second = draw(st.lists(colour_shapes, min_size=2, max_size=2, unique=True))
    return ShapesPrompt((Group(*first), Group(*second)), draw(st.sampled_from([None, *RELATIONS])))


@FEW
@given(scene=scenes())
def test_property_scene_to_text_to_scene(scene: ShapesPrompt) -> None:
    assert parse(scene.text) == scene
    assert parse(scene.text).text == scene.text
    assert scene in set(all_prompts())  # the enumeration misses no scene


WORDS = ["a", "two", "three", "and", "left", "right", "of", "above", "below", *COLOURS, *SHAPES]
WORDS += [s + "s" for s in SHAPES] + ["Red", "circles.", "", "purple"]
garbage = st.one_of(
    st.text(max_size=60),  # any unicode, control characters and all
    st.lists(st.sampled_from(WORDS), max_size=10).map(" ".join),  # reaches the parser's later states
    st.lists(st.sampled_from(WORDS), max_size=10).map("\t\n ".join),
)


@FEW
@given(text=garbage)
def test_property_any_string_parses_or_is_a_one_line_user_error(text: str) -> None:
    try:
        prompt = parse(text)
    except UserError as e:
        assert "\n" not in str(e) and str(e).startswith("prompt")
    else:
        assert prompt.text == " ".join(text.split())  # only the spacing was not canonical
        assert parse(prompt.text) == prompt


@FEW
@given(value=st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text(max_size=5), max_size=3)))
def test_property_a_prompt_that_is_not_a_string_is_a_user_error(value: Any) -> None:
    with pytest.raises(UserError, match="prompt must be a string"):
        parse(value)


# --------------------------------------------------------------------------- key=value overrides

HINTS = get_type_hints(TrainConfig)
OPTIONAL = {key for key, kind in HINTS.items() if type(None) in get_args(kind)}
"""Fields whose None means "the backend's default" (``guidance``): written none or null."""
KINDS: dict[str, type] = {
    key: next(k for k in get_args(kind) if k is not type(None)) if key in OPTIONAL else kind
    for key, kind in HINTS.items()
}
FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]


def typed_values(kind: type) -> st.SearchStrategy[Any]:
    """Any value of ``kind``: the ones validate() accepts and the ones it refuses."""
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.one_of(st.integers(-3, 64), st.integers(-(10**12), 10**12))
    if kind is float:
        return st.one_of(st.floats(allow_nan=False), st.floats(0, 1), st.integers(-100, 100).map(float))
    return st.one_of(st.text(max_size=20), st.sampled_from(["sum", "mean", "0.10", "010", "yes", "null", "~", "#"]))


@st.composite
def as_text(draw: st.DrawFn, value: Any) -> str:
    """``value`` the way a user might type it after ``key=``."""
    if value is None:
        return draw(st.sampled_from(["none", "None", "null", "NULL"]))
    if isinstance(value, bool):
        return draw(st.sampled_from([str(value), str(value).lower(), str(value).upper()]))
    if isinstance(value, float) and value.is_integer() and draw(st.booleans()):
        return str(int(value))  # lr=1 for 1.0
    return repr(value) if isinstance(value, float) else str(value)


@FEW
@given(key=st.sampled_from(FIELDS), data=st.data())
def test_property_an_override_is_taken_exactly_or_refused_by_name(key: str, data: st.DataObject) -> None:
    value = data.draw(typed_values(KINDS[key]), label="value")
    if key in OPTIONAL and data.draw(st.booleans(), label="none"):
        value = None
    text = data.draw(as_text(value), label="text")
    try:
        config = resolve("tiny", overrides=[f"{key}={text}"])
    except UserError as e:  # validate() refused the value: the message says which setting
        assert str(e).startswith("config:") and key in str(e), str(e)
    else:
        assert getattr(config, key) == value and type(getattr(config, key)) is type(value)


@FEW
@given(key=st.sampled_from(FIELDS), data=st.data())
def test_property_a_resolved_config_survives_its_config_yaml(
    key: str, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """What --resume reads back (RUN_DIR/config.yaml) is the config that was saved."""
    value = data.draw(typed_values(KINDS[key]), label="value")
    try:
        config = resolve("tiny", overrides=[f"{key}={data.draw(as_text(value))}"])
    except UserError:
        return
    path = tmp_path_factory.getbasetemp() / "config.yaml"
    path.write_text(to_yaml(config))
    assert resolve(config_file=str(path)) == config


def wrong_text(kind: type, optional: bool = False) -> st.SearchStrategy[str]:
    """Text that is no value of ``kind`` (str takes any text, so it has none), nor "none" or
    "null" for an ``optional`` field."""

    def is_wrong(text: str) -> bool:
        if optional and text.lower() in ("none", "null"):
            return False
        if kind is bool:
            return text.lower() not in ("true", "false")
        try:
            number = kind(text)
        except (ValueError, OverflowError):
            return True
        return kind is float and math.isnan(number)  # NaN is refused too

    return st.one_of(st.text(max_size=12), st.sampled_from(["", "nan", "2.5", "1e3", "[1, 2]", "yes", "0x10"])).filter(
        is_wrong
    )


@FEW
@given(key=st.sampled_from([k for k in FIELDS if KINDS[k] is not str]), data=st.data())
def test_property_a_value_of_the_wrong_type_names_the_key(key: str, data: st.DataObject) -> None:
    text = data.draw(wrong_text(KINDS[key], key in OPTIONAL), label="text")
    with pytest.raises(UserError, match=rf"^override: '{key}' must be an? {KINDS[key].__name__}"):
        resolve("tiny", overrides=[f"{key}={text}"])


@FEW
@given(key=st.sampled_from(FIELDS), value=st.one_of(st.none(), st.lists(st.integers(), max_size=2), st.just({"a": 1})))
def test_property_a_config_file_value_of_the_wrong_type_names_the_file_and_key(
    key: str, value: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assume(not (value is None and key in OPTIONAL))  # null there is "the backend's default"
    path = tmp_path_factory.getbasetemp() / "wrong.yaml"
    path.write_text(yaml.safe_dump({key: value}))
    with pytest.raises(UserError, match=rf"wrong.yaml: '{key}' must be an? "):
        resolve("tiny", config_file=str(path))


def suggestion_is_valid(message: str) -> None:
    hint = re.search(r"did you mean '([^']*)'\?", message)
    assert hint is None or hint.group(1) in FIELDS, message


@FEW
@given(key=st.one_of(st.from_regex(r"[a-z][a-z_]{0,24}", fullmatch=True), st.text(max_size=12)))
def test_property_an_unknown_key_is_refused_with_a_valid_suggestion(
    key: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    if "=" in key or key.strip() in FIELDS:
        return
    with pytest.raises(UserError, match="^override: unknown config key ") as override:
        resolve("tiny", overrides=[f"{key}=1"])
    suggestion_is_valid(str(override.value))

    if key != key.strip() or not key.isidentifier():
        return  # a YAML key keeps its spaces and may not be a plain word
    path: Path = tmp_path_factory.getbasetemp() / "unknown.yaml"
    path.write_text(yaml.safe_dump({key: 1}))
    with pytest.raises(UserError, match=f"unknown.yaml: unknown config key '{key}'") as in_file:
        resolve("tiny", config_file=str(path))
    suggestion_is_valid(str(in_file.value))


@FEW
@given(key=st.sampled_from(FIELDS))
def test_property_a_mistyped_key_gets_the_right_suggestion(key: str) -> None:
    """Drop one letter of a real key: the suggestion is that key (or an equally close one)."""
    if len(key) < 5:
        return
    typo = key[:2] + key[3:]
    if typo in FIELDS:
        return
    with pytest.raises(UserError) as e:
        resolve("tiny", overrides=[f"{typo}=1"])
    assert "did you mean '" in str(e.value), str(e.value)
    suggestion_is_valid(str(e.value))
