"""Writing outputs so that a failure never leaves anything half-written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError

from noiseppo.errors import UserError


def occupied(path: Path) -> bool:
    """Whether something stands at ``path``: a file, or a folder with anything in it. An empty
    folder is free (a user may make the output folder first)."""
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


def check_free(path: Path, taken: str) -> None:
    """Refuse an output ``path`` that something stands at: a file is called one (not "a folder that
    is not empty"); a folder with anything in it gets ``taken``, the caller's line."""
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: is a file, not a folder; give a folder that does not exist yet or is empty")
    if occupied(path):
        raise UserError(f"{path}: {taken}")


def check_parent(path: Path) -> None:
    """Refuse an output whose missing parent folders cannot be made because a file is in the way;
    the folders themselves are made when the output is written (``mkdir -p``), not before."""
    for ancestor in path.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise UserError(f"{ancestor}: is a file, so the output {path} cannot be made below it")
            return


@contextlib.contextmanager
def new_output_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; rename it to ``path`` only on success.

    ``path`` must not exist yet, or be an empty folder: outputs are never overwritten.
    On any error the temporary folder is removed and ``path`` is left as it was.
    """
    path = Path(path)
    check_free(path, "output path exists and is not empty; choose a new one")
    check_parent(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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


def write_failure(error: BaseException) -> str | None:
    """Why a write failed, if ``error`` is a failed write (a full disk, a read-only folder).

    safetensors reports its own failed writes as ``SafetensorError("... I/O error ...")``,
    not as ``OSError``; any other SafetensorError is a bug and keeps its traceback.
    """
    if isinstance(error, OSError):
        return error.strerror or str(error)
    if isinstance(error, SafetensorError) and "I/O error" in str(error):
        return str(error)
    return None


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file renamed over it: a crash, a full disk or
    a reader at the wrong moment sees the old file or the new one, never half of one."""
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def replaced_folder(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` (if any) only once the block succeeds.

    Files are flushed before the rename, so a crash leaves the old folder or the new
    one. (Between the two renames there is an instant where ``path`` is missing; readers
    that must never see that look for the ``.old-*`` sibling.) A failed write (a full
    disk) becomes a ``UserError`` and leaves the old folder as it was.
    """
    path = Path(path)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    old = path.parent / f".{path.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, SafetensorError) as e:
        reason = write_failure(e)
        if reason is None:
            raise
        if old.exists() and not path.exists():  # failed between the two renames
            os.replace(old, path)
        kept = f"the previous {path.name} is kept" if path.exists() else "nothing was written"
        raise UserError(f"{path}: cannot write ({reason}); {kept}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def truncate_jsonl(path: Path, key: str, last: int) -> None:
    """Keep the rows whose ``key`` is at most ``last``: a killed run may have logged work it must redo.

    A row cut short by the kill (not valid JSON) is dropped too.
    """
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)[key] <= last:
                kept.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    path.write_text("".join(line + "\n" for line in kept))
