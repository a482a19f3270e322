"""The repository holds no run output, and its scripts answer ``--help`` without writing anything.

A run was once committed whole (checkpoints, TensorBoard events, a report) because a script took
its first argument as its output folder, so ``--help`` became one.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Where files that look like run output belong: the shipped weights and the docs' figures.
SHIPPED = ("src/noiseppo/weights/", "docs/")
RUN_OUTPUT = ("events.out.tfevents*", "metrics.jsonl", "report.html", "*.safetensors")


def run_output(paths: list[str]) -> list[str]:
    """The paths among ``paths`` (relative, ``/``-separated) that are a run's output: a file in a
    ``checkpoint/`` folder, TensorBoard events, metrics, a report or weights, outside ``SHIPPED``."""
    found = []
    for path in paths:
        if path.startswith(SHIPPED):
            continue
        parts = PurePosixPath(path).parts
        if "checkpoint" in parts[:-1] or any(fnmatch.fnmatch(parts[-1], p) for p in RUN_OUTPUT):
            found.append(path)
    return found


def test_run_output_is_recognised() -> None:
    committed = [  # what the accidental commit held, in part
        "--help/run/checkpoint/latest.json",
        "--help/run/checkpoint/step-00000002/state.json",
        "--help/run/metrics.jsonl",
        "--help/run/policy/diffusion_pytorch_model.safetensors",
        "--help/run/tb/events.out.tfevents.1733.host.1.0",
        "runs/x/report.html",
    ]
    source = [
        "src/noiseppo/storage/checkpoint.py",
        "tests/test_checkpoint.py",
        "src/noiseppo/report/templates/report.html.j2",
        "src/noiseppo/weights/policies/shapes-steps4/diffusion_pytorch_model.safetensors",
        "docs/report.html",
    ]
    assert run_output(committed + source) == committed


def test_git_tracks_no_run_output() -> None:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listed = subprocess.run([git, "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True)
    tracked = [p for p in listed.stdout.decode().split("\0") if p]
    assert tracked, "git ls-files listed nothing"
    assert run_output(tracked) == [], "run output is tracked by git; git rm it"
