"""Looking a name up in a registry: the one line that refuses an unknown name.

Every registry (presets, prompt sets, shipped policies, rewards, backends, schedulers,
dtypes) and the config keys answer a typo the same way: the nearest known name, if one
is close, then the list of every known name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

from noiseppo.errors import UserError


def closest(name: str, known: Iterable[str]) -> str | None:
    """The known name nearest to ``name`` (difflib's ratio of at least 0.6), or None."""
    matches = difflib.get_close_matches(name, list(known), n=1)
    return matches[0] if matches else None


def unknown_name(kind: str, name: str, known: Iterable[str], more: str = "") -> UserError:
    """``unknown KIND 'NAME' (did you mean 'X'? known: A, B; MORE)``: raise what this returns.

    ``more`` names what else the lookup accepts (a file, a URL, ...).
    """
    known = list(known)
    guess = closest(name, known)
    hint = f"did you mean '{guess}'? " if guess is not None else ""
    listing = ", ".join(known) or "none"
    return UserError(f"unknown {kind} '{name}' ({hint}known: {listing}{'; ' + more if more else ''})")


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders the numbers inside names by value: steps2 before steps16."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]
