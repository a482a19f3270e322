"""A training run's folder on disk, the same for every trainer: ``noiseppo train`` (Noise PPO),
``noiseppo ddpo`` (on Shapes and on a diffusers pipeline) and ``noiseppo shapes train-base``.

    config.yaml or config.json   the run's settings, what --resume reads (``noiseppo train`` writes
                                 YAML, the others JSON: each trainer serialises its own, so that the
                                 folders written before this module still resume)
    metrics.jsonl                one JSON row per iteration (train-base: per optimizer step)
    checkpoint/                  ``noiseppo.storage.checkpoint``'s step folders, the newest ``keep``

What every trainer does with it, here once (four copies of it had drifted apart):

- **open**: a new run refuses a folder with anything in it (an empty one is taken) and one below a
  file, before anything is written (``refuse_taken``); ``write_config`` makes the folder and writes
  the settings atomically.
- **resume**: ``refuse_unresumable`` wants the settings and a checkpoint; once the checkpoint is
  loaded, ``resumed_at`` drops the rows logged after it (work a killed run must redo, and a row the
  kill cut short) and sets the wall clock to go on from the last kept row's.
- **append**: ``append`` writes a row with null for a non-finite value (JSON has no NaN); a failed
  write (a full disk) is one line, since the checkpoint holds the run and --resume writes the rows again.
- **checkpoint cadence**: ``checkpoint_due``: every ``every`` iterations, and the last one. The
  retention is ``save_state``'s ``keep`` (the config's ``keep_checkpoints``).
- **Ctrl-C** ends with one line naming the resume command and exit status 130 (``interrupted``).
  An iteration of minutes is undone instead of finished: ``iteration`` puts back the state of the
  last finished one and checkpoints it, so --resume repeats nothing twice and skips nothing; a step
  of a fraction of a second finishes first (``noiseppo.storage.interrupt.deferred_sigint``).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from noiseppo.errors import UserError
from noiseppo.storage.files import check_free, check_parent, truncate_jsonl, write_atomically
from noiseppo.storage.interrupt import Interrupted, Snapshot
from noiseppo.storage.safe_load import read_json
from noiseppo.storage.steps import has_state

METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint"


def checkpoint_due(done: int, every: int, last: int) -> bool:
    """Whether iteration ``done`` (counted from 1) is checkpointed: every ``every``, and the last."""
    return done % every == 0 or done == last


class WallClock:
    """The run's real wall time: this session's seconds since the clock was made, plus those of the
    sessions before it (a resumed run), read back from ``key`` of the last row metrics.jsonl keeps.
    The rows' own times leave out start-up and writing; this does not."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.start, self.before = time.monotonic(), 0.0

    def resume(self, metrics: Path) -> None:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        self.before = float(json.loads(lines[-1]).get(self.key) or 0.0) if lines else 0.0

    def __call__(self) -> float:
        return self.before + time.monotonic() - self.start


class RunFolder:
    """The run folder ``path`` with its settings in ``config_name``; ``resume_command`` is the command
    that continues it (named in the Ctrl-C line and in a failure's); ``clock_key`` the rows' wall-time key."""

    def __init__(self, path: str | Path, config_name: str, resume_command: str, clock_key: str = "time_wall"):
        self.path = Path(path)
        self.config = self.path / config_name
        self.metrics = self.path / METRICS
        self.checkpoints = self.path / CHECKPOINT
        self.resume_command = resume_command
        self.clock = WallClock(clock_key)

    # -- open and resume ----------------------------------------------------------------------
    def refuse_taken(self, taken: str) -> None:
        """A new run: refuse a folder with anything in it (``taken``: the line that says so) and one
        below a file. Missing parent folders are made with the run's own (``runs/`` need not exist)."""
        check_free(self.path, taken)
        check_parent(self.path)

    def refuse_unresumable(self, missing: str, checkpoint: bool = True) -> None:
        """A resume: refuse a folder without the settings (or, ``checkpoint``, a checkpoint step)."""
        if not self.config.is_file() or (checkpoint and not has_state(self.checkpoints)):
            raise UserError(f"{self.path}: {missing}")

    def write_config(self, text: str) -> None:
        """Write the settings (serialised by the trainer) atomically; makes the folder."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_atomically(self.config, text)

    def read_json_config(self) -> Any:
        """The settings of a run that keeps them as JSON (never unpickled: ``safe_load.read_json``)."""
        return read_json(self.config)

    def resumed_at(self, key: str, done: int) -> None:
        """After the checkpoint of ``done`` is loaded (or a new run's first is written): keep the rows
        whose ``key`` is at most ``done``, and go on from the last kept row's wall time."""
        truncate_jsonl(self.metrics, key, done)
        self.clock.resume(self.metrics)

    # -- metrics ------------------------------------------------------------------------------
    def append(self, row: dict[str, Any]) -> dict[str, Any]:
        """Append ``row`` to metrics.jsonl, a non-finite number as null; returns the row as written."""
        finite = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
        try:
            with self.metrics.open("a") as f:
                f.write(json.dumps(finite, allow_nan=False) + "\n")
        except OSError as e:  # a full disk: the checkpoint holds the run, --resume rewrites the rows
            raise UserError(f"{self.metrics}: cannot write ({e.strerror or e}); resume once there is room") from e
        return finite

    # -- Ctrl-C -------------------------------------------------------------------------------
    def interrupted(self, unit: str, done: int, total: int) -> Interrupted:
        """The Ctrl-C line once ``done`` of ``total`` (iterations, steps) are checkpointed."""
        return Interrupted(
            f"interrupted at {unit} {done} of {total} (checkpoint saved); `{self.resume_command}` continues"
        )

    @contextlib.contextmanager
    def iteration(
        self, trainer: Resumable, total: int, writes: bool = True, **state: Any
    ) -> Iterator[Callable[[], None]]:
        """One iteration of ``trainer``, which counts whole or not at all.

        ``state``: what the iteration changes beside ``trainer.iteration`` (objects with
        ``state_dict``: a module, an optimizer, advantage statistics), snapshotted first. The block
        calls the yielded function once its row is logged (and checkpointed, if due). A Ctrl-C in
        the block puts the snapshot back if the iteration had not finished, checkpoints the last
        finished one and raises ``Interrupted``; a ``UserError`` (a reward or a backend that broke,
        a full disk) does the same, without writing a checkpoint the newest one holds already, and
        adds what it kept and the resume command to the line. ``writes``: this process writes the
        run (rank 0 of several)."""
        at, kept, finished = trainer.iteration, None, False

        def finish() -> None:
            nonlocal finished
            finished = True

        def keep_last_finished(only_if_newer: bool = False) -> bool:
            if kept is not None and not finished:
                kept.restore()
                trainer.iteration = at
            if not writes or (only_if_newer and trainer.saved_at == trainer.iteration):
                return False
            trainer.save(self.path)
            return True

        try:
            kept = Snapshot(**state)
            yield finish
        except KeyboardInterrupt:  # anywhere in the iteration: keep the last finished one
            keep_last_finished()
            raise self.interrupted("iteration", trainer.iteration, total) from None
        except UserError as e:  # the same, once the cause is fixed
            saved = keep_last_finished(only_if_newer=True)
            if not writes:  # rank 0 says what it kept
                raise
            kept_line = (
                f"checkpoint of iteration {trainer.iteration} saved"
                if saved
                else f"no iteration finished after the checkpoint of iteration {trainer.iteration}"
            )
            raise UserError(f"{e}; {kept_line}: `{self.resume_command}` continues") from e


class Resumable(Protocol):
    """A trainer whose iterations ``RunFolder.iteration`` guards."""

    iteration: int
    """Iterations done."""
    saved_at: int | None
    """The iteration of the checkpoint its state was last saved to or loaded from."""

    def save(self, run: Path) -> None:
        """Checkpoint the state (the iteration included) into ``run``'s checkpoint folder."""
        ...
