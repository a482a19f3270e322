"""Prompt sets and the loaders for a user's own prompt files."""

from __future__ import annotations

import json
import re

import pytest

from noiseppo.errors import UserError
from noiseppo.prompts import PROMPT_SETS, load_prompts
from noiseppo.shapes import splits


def test_named_sets():
    assert list(PROMPT_SETS) == ["shapes-train", "shapes-test", "animals", "counting", "colour-binding"]
    assert load_prompts("shapes-train") == splits.train_prompts()
    assert load_prompts("shapes-test") == splits.test_prompts()
    assert len(load_prompts("shapes-train")) == 548
    assert len(load_prompts("shapes-test")) == 148
    assert load_prompts("shapes-test")[:2] == ["a green square", "a green triangle"]


@pytest.mark.parametrize(("name", "count"), [("animals", 45), ("counting", 24), ("colour-binding", 24)])
def test_the_sets_for_real_models_ship_with_the_package(name: str, count: int) -> None:
    prompts = load_prompts(name)
    assert len(prompts) == count == len(set(prompts)) and all(p == p.strip() and p for p in prompts)
    assert load_prompts("animals")[0] == "a photo of a cat" and "a blue cube and a red sphere" in load_prompts(
        "colour-binding"
    )


def test_txt_skips_blank_lines_and_comments(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text(
        "# my prompts\n\na red circle\n  two blue squares  \n\t\n   # indented comment\nthree green triangles\n"
    )
    assert load_prompts(str(path)) == ["a red circle", "two blue squares", "three green triangles"]


def test_txt_keeps_order_and_duplicates_and_does_not_parse(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("a red circle\r\na red circle\r\nnot a shapes prompt\r\n")
    # Loading is not checking: the command that uses the prompts parses them.
    assert load_prompts(str(path)) == ["a red circle", "a red circle", "not a shapes prompt"]


def test_jsonl_objects_and_plain_strings(tmp_path):
    path = tmp_path / "mine.jsonl"
    lines = [
        json.dumps({"prompt": "a red circle", "id": 7, "tags": ["x"]}),
        "",
        json.dumps("two blue squares"),
        json.dumps({"prompt": "  a green triangle above a yellow circle  "}),
    ]
    path.write_text("\n".join(lines) + "\n")
    assert load_prompts(str(path)) == ["a red circle", "two blue squares", "a green triangle above a yellow circle"]


def user_error(name_or_path) -> str:
    with pytest.raises(UserError) as info:
        load_prompts(str(name_or_path))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_jsonl_bad_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "a red circle"}\n\n{"prompt": "a blue square"\n')
    assert re.fullmatch(re.escape(f"{path}:3: not valid JSON (") + r".+\)", user_error(path))


@pytest.mark.parametrize(
    "line",
    [
        '{"text": "a red circle"}',  # no "prompt" field
        '{"prompt": 3}',  # not a string
        '{"prompt": "   "}',  # blank
        "42",
        "null",
        '["a red circle"]',
        '""',
    ],
)
def test_jsonl_missing_or_bad_field_names_file_and_line(tmp_path, line):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps("a red circle") + "\n" + line + "\n")
    assert user_error(path) == f'{path}:2: expected a JSON string or an object with a string "prompt" field'


@pytest.mark.parametrize(("name", "text"), [("empty.txt", ""), ("comments.txt", "# nothing\n\n"), ("e.jsonl", "\n\n")])
def test_empty_file(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    assert user_error(path) == f"{path}: no prompts in file"


@pytest.mark.parametrize("name", ["missing.txt", "missing.jsonl"])
def test_missing_file(tmp_path, name):
    assert user_error(tmp_path / name) == f"{tmp_path / name}: prompt file not found"


def test_unknown_extension(tmp_path):
    path = tmp_path / "prompts.csv"
    path.write_text("a red circle\n")
    assert user_error(path) == f"{path}: unsupported prompt file type '.csv' (use .txt or .jsonl)"


def test_unknown_set_name():
    assert user_error("shapes-dev") == (
        "unknown prompt set 'shapes-dev' (did you mean 'shapes-test'? known: shapes-train, shapes-test, animals, "
        "counting, colour-binding; or give a .txt or .jsonl file)"
    )


def test_undecodable_file(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("a red circle \xe9\n".encode("latin-1"))
    assert user_error(path).startswith(f"{path}: cannot read prompt file (")


def test_a_folder_is_not_a_prompt_file(tmp_path):
    folder = tmp_path / "prompts.txt"
    folder.mkdir()
    assert user_error(folder).startswith(f"{folder}: cannot read prompt file (")
