"""The repository holds no run output, and its scripts answer ``--help`` without writing anything.

A run was once committed whole (checkpoints, TensorBoard events, a report) because a script took
its first argument as its output folder, so ``--help`` became one.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*ROOT.glob("experiments/*.py"), *ROOT.glob("benchmarks/*.py"), *ROOT.glob("benchmarks/*.sh")])

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
        "tests/fixtures/pre_change_runs/noise_ppo/checkpoint/step-00000002/state.safetensors",
        "tests/fixtures/pre_change_runs/noise_ppo/metrics.jsonl",
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


def test_every_script_answers_help_and_writes_nothing(tmp_path: Path) -> None:
    """Each script under experiments/ and benchmarks/, run with ``--help`` from an empty folder:
    exit 0, a usage line, and nothing written there or in the repository. The scripts parse their
    arguments before they import torch, so this takes about a second for all of them."""
    names = [s.name for s in SCRIPTS]
    assert "behaviour_fingerprint.py" in names and "cuda_checks.sh" in names and len(names) >= 20
    git = shutil.which("git") if (ROOT / ".git").exists() else None

    def status() -> str:
        if git is None:
            return ""
        return subprocess.run([git, "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout

    def run(script: Path) -> subprocess.CompletedProcess:
        cwd = tmp_path / script.stem
        cwd.mkdir()
        command = ["bash", str(script)] if script.suffix == ".sh" else [sys.executable, str(script)]
        paths = [str(ROOT / "src"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        return subprocess.run([*command, "--help"], cwd=cwd, capture_output=True, text=True, timeout=120, env=env)

    before = status()
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = dict(zip(names, pool.map(run, SCRIPTS), strict=True))
    for name, result in results.items():
        assert result.returncode == 0, (name, result.stderr[-500:])
        assert result.stdout.lower().startswith("usage:"), (name, result.stdout[:200])
    assert [p.name for p in tmp_path.glob("*/*")] == [], "a script wrote into its working folder on --help"
    assert status() == before, "a script changed the repository on --help"
