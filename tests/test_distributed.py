"""Data-parallel training under ``accelerate launch``: two CPU processes (gloo) against one."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import noiseppo
from noiseppo.storage.checkpoint import load_state

ACCELERATE = Path(sys.executable).parent / "accelerate"
# Two chunks of 2 images per rank: each rank scores its first chunk while it renders its second.
TINY = ["--preset", "tiny", "iterations=3", "eval_prompts=", "threads=1", "render_batch=2"]


def launch(noiseppo, *args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``accelerate launch`` of the real console script on 2 CPU processes (torchrun, gloo)."""
    cmd = [str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", "0"]
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(cmd + noiseppo.command(*args), capture_output=True, text=True, timeout=300, env=environment)


SRC = Path(noiseppo.__file__).parent
"""The package the subprocesses import (PYTHONPATH or the editable install): its frames are ours."""


def project_frames(stderr: str) -> list[str]:
    """The traceback frames in ``stderr`` from noiseppo's own source files, by the package's absolute
    path: a clone's folder may itself be named noiseppo, and then .venv's frames hold "/noiseppo/" too."""
    ours = {f'File "{SRC}{os.sep}', f'File "{SRC.resolve()}{os.sep}'}
    return [line for line in stderr.splitlines() if any(prefix in line for prefix in ours)]


def test_project_frames_are_the_packages_not_a_folder_named_noiseppo() -> None:
    venv = '  File "/home/me/noiseppo/.venv/lib/python3.12/site-packages/accelerate/commands/launch.py", line 1'
    own = f'  File "{SRC / "training" / "trainer.py"}", line 2, in train'
    assert project_frames(f"Traceback (most recent call last):\n{venv}\n{own}\n") == [own]


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_processes(noiseppo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run of TINY on 2 processes."""
    run = tmp_path_factory.mktemp("two") / "run"
    two = launch(noiseppo, "train", *TINY, "--out", run)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "2 processes render 4 images each" in two.stdout
    return run


def test_two_processes_train_like_one(noiseppo, two_processes: Path, tmp_path: Path) -> None:
    # One process with the same global batch and seeds; it renders in the same batches of 2.
    one = noiseppo("train", *TINY, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr

    # After every update both ranks held the very same policy (a fingerprint of every weight).
    assert [r["rank_param_spread"] for r in rows(two_processes)] == [0.0, 0.0, 0.0]
    a, _ = load_state(two_processes / "checkpoint")
    b, meta = load_state(tmp_path / "one" / "checkpoint")
    assert meta["iteration"] == 3 and a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    assert a["policy.cell_weight"].abs().sum() > 0, "the policy moved"
    for r2, r1 in zip(rows(two_processes), rows(tmp_path / "one"), strict=True):
        assert r2["reward_mean"] == r1["reward_mean"], "the two processes scored the same batch"
        assert r2["policy_kl"] == pytest.approx(r1["policy_kl"], rel=1e-4, abs=1e-9)


FAILING_REWARD = """
import os, torch

def reward(images, prompts):
    if os.environ.get("RANK") == "1":
        raise RuntimeError("the reward model on this host ran out of memory")
    return torch.zeros(len(images))
"""


def test_one_failing_rank_stops_every_rank_with_its_message(noiseppo, tmp_path: Path) -> None:
    (tmp_path / "flaky_reward.py").write_text(FAILING_REWARD)
    start = time.time()
    env = {"PYTHONPATH": str(tmp_path)}
    result = launch(noiseppo, "train", *TINY, "--reward", "flaky_reward:reward", "--out", tmp_path / "run", env=env)
    assert time.time() - start < 120, "the healthy rank waited for the failed one"
    assert result.returncode != 0
    message = (
        "noiseppo: error: process 1: reward 'flaky_reward:reward', training iteration 1: the reward raised "
        "RuntimeError: the reward model on this host ran out of memory"
    )
    assert result.stderr.count(message) == 2, result.stderr[-3000:]  # both ranks stop with the same line
    # No traceback out of noiseppo itself (torchrun reports the failed child with its own).
    assert project_frames(result.stderr) == [], result.stderr[-3000:]
    state, meta = load_state(tmp_path / "run" / "checkpoint")  # rank 0 had written iteration 0
    assert meta["iteration"] == 0


KILLED_REWARD = """
import os, signal, time
from noiseppo.rewards import get_reward

shapes, calls = get_reward("shapes"), 0

def reward(images, prompts):
    global calls
    calls += 1
    once = not os.path.exists(os.environ["KILLED_AT"])  # not again in the resumed run
    if os.environ.get("RANK") == "1" and calls == 3 and once:  # iteration 2 (2 chunks each), after checkpoint 1
        open(os.environ["KILLED_AT"], "w").write(str(time.time()))
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer does: no handler, no goodbye
    return shapes(images, prompts)
"""


def test_a_killed_rank_stops_the_job_and_resume_is_bit_identical(noiseppo, two_processes: Path, tmp_path: Path) -> None:
    """torchrun's agent watches its workers: when one dies it stops the others and names the
    dead one, long before the process group's time-out (dist_timeout, 1800 s)."""
    (tmp_path / "killed_reward.py").write_text(KILLED_REWARD)
    env = {"PYTHONPATH": str(tmp_path), "KILLED_AT": str(tmp_path / "killed_at")}
    run = tmp_path / "run"
    result = launch(noiseppo, "train", *TINY, "--reward", "killed_reward:reward", "--out", run, env=env)
    stopped = time.time() - float((tmp_path / "killed_at").read_text())
    print(f"the job stopped {stopped:.1f} s after the SIGKILL")
    assert result.returncode != 0 and stopped < 60, stopped
    assert re.search(r"rank\s*: 1 \(local_rank: 1\)\s+exitcode\s*: -9 .*\(SIGKILL\)", result.stderr), result.stderr[
        -3000:
    ]
    assert load_state(run / "checkpoint")[1]["iteration"] == 1

    resumed = launch(noiseppo, "train", "--resume", run, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    mine, theirs = load_state(run / "checkpoint"), load_state(two_processes / "checkpoint")
    assert mine[1]["iteration"] == theirs[1]["iteration"] == 3
    assert all(torch.equal(mine[0][k], theirs[0][k]) for k in theirs[0]), "bit-identical to the uninterrupted run"
    assert [r["reward_mean"] for r in rows(run)] == [r["reward_mean"] for r in rows(two_processes)]
