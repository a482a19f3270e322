"""Named prompt sets and loaders for a user's own prompt files.

``load_prompts(name_or_path)`` takes a registered name (``noiseppo list prompts``) or a
file:

* ``.txt``: one prompt per line; blank lines and lines starting with ``#`` are skipped;
* ``.jsonl``: one JSON object per line with a string field ``"prompt"`` (other fields
  are ignored), or one JSON string per line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from noiseppo.errors import UserError
from noiseppo.names import unknown_name
from noiseppo.shapes import splits

SHIPPED = Path(__file__).resolve().parent / "prompt_sets"
"""Small prompt sets for real models, written for this project (no download at run time)."""


def _shipped(name: str) -> Callable[[], list[str]]:
    path = SHIPPED / f"{name}.txt"
    return lambda: _read_txt(path, path.read_text(encoding="utf-8"))


PROMPT_SETS: dict[str, tuple[Callable[[], list[str]], str]] = {
    "shapes-train": (splits.train_prompts, "Shapes world, 548 prompts for training"),
    "shapes-test": (splits.test_prompts, "Shapes world, 148 held-out prompts naming unseen combinations"),
    "animals": (_shipped("animals"), "45 everyday animals, 'a photo of a cat' (real models)"),
    "counting": (_shipped("counting"), "24 prompts of two to five everyday objects (real models)"),
    "colour-binding": (_shipped("colour-binding"), "24 prompts of two objects in two colours, both ways (real models)"),
}


def _read_txt(path: Path, text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _read_jsonl(path: Path, text: str) -> list[str]:
    prompts = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{number}: not valid JSON ({e.msg})") from None
        if isinstance(item, dict):
            item = item.get("prompt")
        if not isinstance(item, str) or not item.strip():
            raise UserError(f'{path}:{number}: expected a JSON string or an object with a string "prompt" field')
        prompts.append(item.strip())
    return prompts


_READERS = {".txt": _read_txt, ".jsonl": _read_jsonl}


def load_prompts(name_or_path: str) -> list[str]:
    """The prompts of a named set or of a ``.txt`` / ``.jsonl`` file, in order."""
    if name_or_path in PROMPT_SETS:
        return PROMPT_SETS[name_or_path][0]()
    path = Path(name_or_path)
    if path.suffix not in _READERS:
        if not path.exists():
            raise unknown_name("prompt set", name_or_path, PROMPT_SETS, "or give a .txt or .jsonl file")
        raise UserError(f"{path}: unsupported prompt file type '{path.suffix}' (use .txt or .jsonl)")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: prompt file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read prompt file ({e})") from None
    prompts = _READERS[path.suffix](path, text)
    if not prompts:
        raise UserError(f"{path}: no prompts in file")
    return prompts


_MIRRORED = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
_RELATION = re.compile(r"\b(left of|right of|above|below)\b")


def mirror_prompt(prompt: str) -> str | None:
    """The prompt with its spatial relation reversed ("a red circle left of a blue square" ->
    "... right of ..."): the same objects, the opposite layout. None for a prompt with no
    relation, or with several (whose mirror is ambiguous)."""
    found = _RELATION.findall(prompt)
    if len(found) != 1:
        return None
    return _RELATION.sub(lambda m: _MIRRORED[m.group(1)], prompt)


def prompt_groups(name_or_path: str, prompts: list[str]) -> list[str] | None:
    """Each prompt's group, for a per-group table of the held-out gain: a ``.jsonl`` file's
    ``"group"`` field where every line has one, else the Shapes template ("single", "two",
    "three", "pair", "relation") where every prompt is in the Shapes grammar; else None."""
    from noiseppo.shapes.grammar import PromptError, parse

    path = Path(name_or_path)
    if name_or_path not in PROMPT_SETS and path.suffix == ".jsonl":  # read and checked by load_prompts already
        items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        groups = [item.get("group") if isinstance(item, dict) else None for item in items]
        if all(isinstance(g, str) and g for g in groups):
            return groups
    try:
        return [parse(prompt).template for prompt in prompts]
    except PromptError:
        return None
