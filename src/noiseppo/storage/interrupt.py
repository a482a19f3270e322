"""Ctrl-C: one line, exit status 130, and whatever can continue, kept.

A ``KeyboardInterrupt`` may land anywhere, also half way through an iteration's update. So
``train`` and ``ddpo`` take a ``Snapshot`` of their state before each iteration (small: the policy
or the tuned weights, the optimizer, the advantage statistics) and, when interrupted, put it back
and checkpoint it (``noiseppo.storage.run_folder.RunFolder.iteration``): the checkpoint is that of
the last *finished* iteration, and ``--resume`` repeats nothing twice and skips nothing.
``shapes train-base``, whose steps take a fraction of a second, finishes the step it is in
instead (``deferred_sigint``). ``sample`` and ``eval`` write into a
temporary folder (``noiseppo.storage.files.new_output_dir``), which an interrupt removes.
"""

from __future__ import annotations

import contextlib
import copy
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

EXIT_STATUS = 130
"""128 + SIGINT, what a shell reports for a command stopped by Ctrl-C."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with the one line that says what was kept and how to continue. A
    ``KeyboardInterrupt`` still, so that no ``except Exception`` swallows it."""


class Snapshot:
    """Deep copies of ``state_dict()`` of some objects (a module, an optimizer, statistics)."""

    def __init__(self, **objects: Any):
        self.objects = objects
        self.states = {name: copy.deepcopy(obj.state_dict()) for name, obj in objects.items()}

    def restore(self) -> None:
        for name, obj in self.objects.items():
            obj.load_state_dict(self.states[name])


@contextlib.contextmanager
def deferred_sigint() -> Iterator[Callable[[], bool]]:
    """Within the block, a first Ctrl-C only raises a flag, which the yielded function reads at
    the next safe point (``shapes train-base``: the end of an optimizer step, a fraction of a
    second); a second Ctrl-C interrupts at once, as usual. Outside the main thread (where
    signal handlers cannot be set), Ctrl-C is left as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    asked = False

    def handler(signum: int, frame: object) -> None:
        nonlocal asked
        if asked:
            raise KeyboardInterrupt
        asked = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: asked
    finally:
        signal.signal(signal.SIGINT, previous)
