"""Config dataclasses as command-line flags, with each field's docstring as its ``--help``.

A field is documented by the string literal right below it, as in cleanrl's ``Args``.
Python drops those strings at run time, so they are read back from the source with
``ast``. Booleans become ``--flag/--no-flag`` (never ``type=bool``, which reads "False"
as true).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import re
import textwrap
from typing import Any, TypeVar, get_args, get_type_hints

T = TypeVar("T")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass ``cls``, as plain text for ``--help`` (RST
    ````literal```` markup dropped: the terminal shows it verbatim)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for node, following in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = re.sub(r"``(.+?)``", r"\1", " ".join(following.value.value.split()))
    return docs


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = ()) -> None:
    """One ``--field-name`` flag per field of ``cls``; defaults stay in the dataclass."""
    hints = get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.replace("_", "-")
        help_text = f"{docs.get(f.name, '')} (default: {f.default})".replace("%", "%%")
        kind = hints[f.name]
        if type(None) in get_args(kind):  # ``float | None``: a flag left out keeps None (a default elsewhere)
            kind = next(k for k in get_args(kind) if k is not type(None))
        if kind is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            metavar = kind.__name__.upper()
            parser.add_argument(flag, dest=f.name, type=kind, default=None, metavar=metavar, help=help_text)


def dataclass_from_args(cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``cls`` from the flags that were given; the others keep their defaults."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}
    return cls(**{**given, **overrides})
