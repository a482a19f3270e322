"""Shared fixtures: the command line (``noiseppo``), and a batch of rendered Shapes scenes.

Every test drives the command line through the ``noiseppo`` fixture, one object with one
result type (``subprocess.CompletedProcess``):

- ``noiseppo(*args)`` runs the installed console script in a subprocess, as a user does. Use it
  where the process itself is under test: its exit status, a signal, an environment variable
  read at import (``HF_HUB_OFFLINE``), ``accelerate launch`` (``noiseppo.command``), or several
  commands at once (``noiseppo.many``).
- ``noiseppo.in_process(*args)`` calls the same entry point, ``noiseppo.cli.main``, in the test's
  own process and captures what it prints: no start-up of torch (2-4 s of CPU each), so use it
  for everything else. (``tests/test_hostile_inputs.py`` calls ``main`` itself, under
  ``capsys``, for its table.)
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings

from noiseppo.shapes.grammar import ShapesPrompt, all_prompts
from noiseppo.shapes.render import render_scene
from noiseppo.shapes.scene import SceneObject

# In CI the property tests draw the same examples every run, so a red build reproduces.
settings.register_profile("ci", derandomize=True, deadline=None)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

# The installed console script, as a user runs it (the package has no __main__).
NOISEPPO = Path(sys.executable).parent / "noiseppo"


class Cli:
    """``noiseppo ARGS``: in a subprocess (calling it), or in this process (``in_process``)."""

    path = NOISEPPO

    def command(self, *args: str | Path) -> list[str]:
        return [str(self.path), *(str(a) for a in args)]

    def __call__(
        self, *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """The installed console script in a subprocess; ``env`` replaces the environment."""
        return subprocess.run(self.command(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)

    @staticmethod
    def in_process(*args: str | Path) -> subprocess.CompletedProcess[str]:
        """``noiseppo.cli.main(ARGS)`` in this process, its stdout and stderr captured."""
        from noiseppo.cli import main

        argv = [str(a) for a in args]
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(argv)
        return subprocess.CompletedProcess(["noiseppo", *argv], code, out.getvalue(), err.getvalue())

    def many(
        self, commands: dict[str, list[str | Path]], then: Callable[[], dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        """Run independent commands concurrently (each start-up imports torch: seconds of CPU).

        ``then`` runs in this thread while they do; its results are merged into the answer.
        """
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
            futures = {name: pool.submit(self, *args) for name, args in commands.items()}
            results = then() if then is not None else {}
            return {**{name: f.result() for name, f in futures.items()}, **results}


@pytest.fixture(scope="session")
def noiseppo() -> Cli:
    assert NOISEPPO.exists(), f"console script not installed at {NOISEPPO}"
    return Cli()


@dataclass
class Scenes:
    """Rendered scenes: parsed prompts, uint8 images (N, 32, 32, 3) and ground-truth objects."""

    prompts: list[ShapesPrompt]
    images: np.ndarray
    truth: list[list[SceneObject]]

    @property
    def texts(self) -> list[str]:
        return [p.text for p in self.prompts]


def draw_scenes(n: int, seed: int) -> Scenes:
    """``n`` scenes with the template drawn uniformly (as benchmarks/shapes_verifier.py does),
    so the rare templates (counts, relations) get their share."""
    by_template: dict[str, list[ShapesPrompt]] = {}
    for p in all_prompts():
        by_template.setdefault(p.template, []).append(p)
    templates = sorted(by_template)
    rng = np.random.default_rng(seed)
    prompts = []
    for _ in range(n):
        pool = by_template[templates[rng.integers(len(templates))]]
        prompts.append(pool[rng.integers(len(pool))])
    rendered = [render_scene(p, int(rng.integers(2**63 - 1))) for p in prompts]
    return Scenes(prompts, np.stack([np.asarray(im) for im, _ in rendered]), [objs for _, objs in rendered])


@pytest.fixture(scope="session")
def scenes() -> Scenes:
    """500 scenes over all five templates (about 100 each)."""
    return draw_scenes(500, seed=1234)
