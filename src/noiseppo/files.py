"""Writing outputs so that a failure never leaves anything half-written."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from noiseppo.errors import UserError


@contextlib.contextmanager
def new_output_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it to ``path`` only on success.

    ``path`` must not exist yet, or be an empty folder: outputs are never overwritten.
    On any error the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise UserError(f"{path}: output path exists and is not empty; choose a new one")
    if not path.parent.is_dir():
        raise UserError(f"{path.parent}: parent folder of the output does not exist")
    tmp = path.parent / f".{path.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            path.rmdir()  # empty, checked above
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
