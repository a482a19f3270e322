"""Crash-safe checkpoints: the pointer, retention, checksums, and SIGKILL at any instant."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from noiseppo.errors import UserError
from noiseppo.storage.checkpoint import has_state, latest_step, load_state, save_state


def state(step: int) -> dict[str, torch.Tensor]:
    return {"w": torch.full((64, 64), float(step)), "b": torch.arange(step + 1, dtype=torch.float32)}


def test_steps_pointer_and_retention(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    assert not has_state(folder) and latest_step(folder) is None
    for step in (0, 10, 20, 30):
        save_state(folder, state(step), {"iteration": step}, step, keep=2)
    assert sorted(p.name for p in folder.iterdir()) == ["latest.json", "step-00000020", "step-00000030"]
    assert latest_step(folder) == 30
    tensors, meta = load_state(folder)
    assert meta["iteration"] == 30 and meta["step"] == 30 and len(meta["sha256"]) == 64
    assert all(torch.equal(tensors[k], v) for k, v in state(30).items())


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "missing", "no pointer"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(tmp_path: Path, damage: str, capsys) -> None:
    folder = tmp_path / "checkpoint"
    for step in (1, 2):
        save_state(folder, state(step), {"iteration": step}, step)
    weights = folder / "step-00000002" / "state.safetensors"
    data = weights.read_bytes()
    if damage == "truncated":
        weights.write_bytes(data[: len(data) // 2])
    elif damage == "flipped byte":  # still a valid safetensors file: only the checksum can tell
        weights.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        assert load_file(weights)["w"].shape == (64, 64)
    elif damage == "missing":
        weights.unlink()
    else:
        (folder / "latest.json").unlink()
    tensors, meta = load_state(folder)
    expected = 2 if damage == "no pointer" else 1
    assert meta["iteration"] == expected and torch.equal(tensors["w"], state(expected)["w"])
    warning = capsys.readouterr().err
    if damage == "no pointer":
        assert warning == ""
    else:
        assert warning.startswith("noiseppo: warning: ") and "resuming from step-00000001" in warning
        assert warning.count("\n") == 1


def test_no_verifiable_checkpoint_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "checkpoint"
    save_state(folder, state(1), {"iteration": 1}, 1)
    (folder / "step-00000001" / "state.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match=r"step-00000001/state.safetensors: not a safetensors file \(SHA-256"):
        load_state(folder)


# For K = 1, 2, ...: a forked child writes step 1, then steps 2 and 3 (3 prunes step 1)
# with a SIGKILL at the K-th filesystem event of those writes (every fsync, rename and
# deletion, the tensor file and its checksum), until a child finishes. The script imports
# torch once; each folder is then loaded by the test.
KILLER = r"""
import json, os, shutil, signal, sys
import torch
import noiseppo.storage.checkpoint as ckpt

root = sys.argv[1]
def state(step):
    return {"w": torch.full((64, 64), float(step)), "b": torch.arange(step + 1, dtype=torch.float32)}
events = 0
def dying(fn):
    def wrapped(*args, **kwargs):
        global events
        events += 1
        if events == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)
    return wrapped
kill_at = 0
ckpt.save_state(root + "/warm", state(1), {"iteration": 1}, 1)  # imports done before forking
while True:
    kill_at += 1
    folder = f"{root}/kill{kill_at}"
    pid = os.fork()
    if pid == 0:
        ckpt.save_state(folder, state(1), {"iteration": 1}, 1, keep=2)
        os.fsync, os.replace, shutil.rmtree = dying(os.fsync), dying(os.replace), dying(shutil.rmtree)
        ckpt.save_file, ckpt._sha256 = dying(ckpt.save_file), dying(ckpt._sha256)
        for step in (2, 3):
            ckpt.save_state(folder, state(step), {"iteration": step}, step, keep=2)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    print(json.dumps({"folder": folder, "killed": killed}), flush=True)
    if not killed:
        break
"""


def test_sigkill_at_any_point_of_a_checkpoint_write_leaves_a_readable_checkpoint(tmp_path: Path) -> None:
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    runs = [json.loads(line) for line in done.stdout.splitlines()]
    assert [r["killed"] for r in runs] == [True] * (len(runs) - 1) + [False], "each child dies until one finishes"
    assert len(runs) > 10, "the write has fewer kill points than expected"
    survived = []
    for run in runs:
        tensors, meta = load_state(run["folder"])
        step = meta["iteration"]
        assert all(torch.equal(tensors[k], v) for k, v in state(step).items()), run
        survived.append(step)
    assert survived[0] == 1 and survived[-1] == 3 and set(survived) == {1, 2, 3}, survived


def test_a_run_killed_mid_iteration_resumes_bit_identically(noiseppo, tmp_path: Path) -> None:
    args = ["--preset", "tiny", "iterations=6", "eval_prompts=", "threads=1"]
    straight = noiseppo("train", *args, "--out", tmp_path / "straight")
    assert straight.returncode == 0, straight.stderr

    killed = tmp_path / "killed"
    cmd = noiseppo.command("train", *args, "--out", killed)
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while (latest_step(killed / "checkpoint") or 0) < 3 and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)  # somewhere in iteration 4 (or its bookkeeping)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert 3 <= latest_step(killed / "checkpoint") < 6

    resumed = noiseppo("train", "--resume", killed)
    assert resumed.returncode == 0, resumed.stderr
    a, _ = load_state(tmp_path / "straight" / "checkpoint")
    b, meta = load_state(killed / "checkpoint")
    assert meta["iteration"] == 6 and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "policy or optimizer differ after the kill and resume"

    def rows(run: Path) -> list[dict]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        timing = ("time_", "samples_per")
        return [{k: v for k, v in json.loads(line).items() if not k.startswith(timing)} for line in lines]

    assert [r["iteration"] for r in rows(killed)] == [1, 2, 3, 4, 5, 6]
    assert rows(killed) == rows(tmp_path / "straight")


CRASHING_REWARD = """
import os
from noiseppo.rewards import get_reward

shapes, seen = get_reward("shapes"), 0

def reward(images, prompts):
    global seen
    if "CRASH_AFTER" in os.environ:  # armed: the images scored so far, and a crash past that many
        seen += len(prompts)
        if seen > int(os.environ["CRASH_AFTER"]):
            raise RuntimeError("the reward model ran out of memory")
    return shapes(images, prompts)
"""


def test_a_reward_that_fails_mid_run_keeps_the_last_finished_iteration(
    noiseppo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A function reward crashes in iteration 4 with checkpoint_every 10 (the last checkpoint: 0): the run
    checkpoints iteration 3, says how to resume, and the resumed run's metrics are an uninterrupted run's."""
    from noiseppo.errors import DEBUG_ENV

    (tmp_path / "crashing_reward.py").write_text(CRASHING_REWARD)
    monkeypatch.chdir(tmp_path)  # where module:function rewards are imported from
    monkeypatch.setenv(DEBUG_ENV, "0")  # restored after --debug sets it
    monkeypatch.setenv("CRASH_AFTER", "24")  # 3 iterations of 2 prompts x 4 samples
    args = ["--preset", "tiny", "iterations=6", "checkpoint_every=10", "eval_prompts=", "threads=1"]
    try:
        crashed = noiseppo.in_process("train", *args, "--reward", "crashing_reward:reward", "--out", "run", "--debug")
        monkeypatch.delenv("CRASH_AFTER")
        monkeypatch.setenv(DEBUG_ENV, "0")
        straight = noiseppo.in_process("train", *args, "--reward", "crashing_reward:reward", "--out", "straight")
        assert straight.returncode == 0, straight.stderr
        assert crashed.returncode == 2, crashed.stderr
        lines = [line for line in crashed.stderr.replace("\r", "\n").splitlines() if line.strip()]
        assert lines[-1] == (
            "noiseppo: error: reward 'crashing_reward:reward', training iteration 4: the reward raised RuntimeError: "
            "the reward model ran out of memory; checkpoint of iteration 3 saved: `noiseppo train --resume run` "
            "continues"
        )
        # --debug: the reward's own traceback first, down to its raise.
        assert "Traceback (most recent call last)" in crashed.stderr
        assert 'crashing_reward.py", line 12, in reward' in crashed.stderr
        assert load_state(tmp_path / "run" / "checkpoint")[1]["iteration"] == 3

        resumed = noiseppo.in_process("train", "--resume", "run")
        assert resumed.returncode == 0, resumed.stderr
    finally:
        sys.modules.pop("crashing_reward", None)

    def rows(run: Path) -> list[dict]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        timing = ("time_", "samples_per")
        return [{k: v for k, v in json.loads(line).items() if not k.startswith(timing)} for line in lines]

    assert [r["iteration"] for r in rows(tmp_path / "run")] == [1, 2, 3, 4, 5, 6]
    assert rows(tmp_path / "run") == rows(tmp_path / "straight")
