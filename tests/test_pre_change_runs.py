"""Run folders written before the run folder became one module (``noiseppo.storage.run_folder``)
still resume. Each folder is written by the code of ``BEFORE`` (the last commit before the change,
taken from this repository's git history: run output is never committed) as users run it, through
its CLI, and killed as by ``kill -9`` right after its third row was logged and before that row's
checkpoint: so metrics.jsonl holds one row more than the newest checkpoint, which a resume must
drop and write again. Each is then resumed to its end by today's CLI; the numbers are those the
uninterrupted run logged with the code that wrote the folder.

| folder | trainer | command of ``BEFORE`` | killed | checkpoint | rows |
|---|---|---|---|---|---|
| noise_ppo | ``noiseppo train`` | ``NOISE_PPO`` | after ``RunLog.finish_iteration`` of iteration 3 | 2 | 1-3 |
| shapes_base | ``noiseppo shapes train-base`` | ``SHAPES_BASE`` | as step 4 began (``_to_tensor``) | 2 | 1-3 |
| ddpo_diffusers | ``noiseppo ddpo`` | ``DDPO_DIFFUSERS`` | in ``DiffusersDDPO.save``, iteration 3 | 2 | 1-3 |

The diffusers DDPO trains on ``tiny_models.tiny_sd_pipeline`` (seed 0) and three prompts, named
by relative paths, as a user's run folder may. The Shapes DDPO had no run folder to resume before
the change (it ran in one go), so it has no test here. Without that history (a shallow clone, no
git) these tests skip, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from noiseppo.storage.checkpoint import latest_step, load_state
from tiny_models import tiny_sd_pipeline

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "932c9b3c4f5a00a19d6d11bf374cfa721b8c23d8"
"""The last commit before the run folder became one module."""

# Each script runs the CLI of BEFORE (on PYTHONPATH) with one function patched to die as kill -9 would.
CHECK = "import noiseppo, os, sys\nif not noiseppo.__file__.startswith(sys.argv[2]): sys.exit(3)\n"
NOISE_PPO = ["train", "--preset", "tiny", "--out", "noise_ppo", "eval_prompts=", "threads=1", "iterations=4"]
NOISE_PPO += ["checkpoint_every=2", "keep_checkpoints=1", "width=16", "grid=4"]
SHAPES_BASE = ["shapes", "train-base", "--out", "shapes_base", "--optimizer-steps", "4", "--checkpoint-every", "2"]
SHAPES_BASE += ["--eval-every", "4", "--batch", "4", "--dim", "32", "--depth", "0", "--text-dim", "8"]
SHAPES_BASE += ["--eval-prompt-count", "2", "--warmup", "2", "--threads", "1"]
DDPO_DIFFUSERS = ["ddpo", "--preset", "tiny", "--backend", "diffusers", "--model", "ddwork/tiny_sd/pipeline"]
DDPO_DIFFUSERS += ["--threads", "1", "--no-eval", "prompts=ddwork/prompts.txt", "reward=jpeg_compressibility"]
DDPO_DIFFUSERS += ["steps=2", "checkpoint_every=2", "keep_checkpoints=1", "--iterations", "3"]
DDPO_DIFFUSERS += ["--out", "ddpo_diffusers"]
KILLS = {
    "noise_ppo": (
        "from noiseppo.training import trainer\n"
        "finish = trainer.RunLog.finish_iteration\n"
        "def killed(self, row):\n"
        "    evaluated = finish(self, row)\n"
        "    if self.trainer.iteration == 3: os._exit(9)\n"
        "    return evaluated\n"
        "trainer.RunLog.finish_iteration = killed\n",
        NOISE_PPO,
    ),
    "shapes_base": (
        "import noiseppo.train_shapes as base\n"
        "to_tensor, calls = base._to_tensor, []\n"
        "def killed(images):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 4: os._exit(9)\n"
        "    return to_tensor(images)\n"
        "base._to_tensor = killed\n",
        SHAPES_BASE,
    ),
    "ddpo_diffusers": (
        "from noiseppo.baselines import ddpo_diffusers as ddpo\n"
        "save = ddpo.DiffusersDDPO.save\n"
        "def killed(self, run, keep=2):\n"
        "    if self.iteration == 3: os._exit(9)\n"
        "    return save(self, run, keep)\n"
        "ddpo.DiffusersDDPO.save = killed\n",
        DDPO_DIFFUSERS,
    ),
}


@pytest.fixture(scope="module")
def pre_change(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the three run folders, written and killed by the code of BEFORE."""
    found = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{BEFORE}^{{commit}}"], capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"needs commit {BEFORE[:7]} in this repository's git history (a shallow clone has none)")
    old, runs = tmp_path_factory.mktemp("before"), tmp_path_factory.mktemp("pre_change_runs")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE, "src"], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive.stdout, check=True)
    tiny_sd_pipeline(runs / "ddwork" / "tiny_sd")
    (runs / "ddwork" / "prompts.txt").write_text("a red cat\ntwo dogs\na blue car\n")
    env = {**os.environ, "PYTHONPATH": str(old / "src")}
    started = {}
    for name, (kill, args) in KILLS.items():
        script = f"{CHECK}{kill}from noiseppo import cli\nsys.exit(cli.main({args!r}))"
        started[name] = subprocess.Popen(
            [sys.executable, "-c", script, name, str(old)], cwd=runs, env=env, stderr=subprocess.PIPE, text=True
        )
    for name, process in started.items():
        err = process.communicate()[1]
        assert process.returncode == 9, f"{name}: exit {process.returncode}\n{err}"  # killed where planned
    return runs


def copied(name: str, pre_change: Path, tmp_path: Path) -> tuple[Path, list[dict]]:
    """A copy of the pre-change run folder ``name``, and its metrics rows as written."""
    run = tmp_path / name
    shutil.copytree(pre_change / name, run)
    return run, rows(run)


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_noise_ppo_run_resumes_to_its_end(noiseppo, pre_change: Path, tmp_path: Path) -> None:
    run, saved = copied("noise_ppo", pre_change, tmp_path)
    assert [r["iteration"] for r in saved] == [1, 2, 3] and latest_step(run / "checkpoint") == 2
    result = noiseppo.in_process("train", "--resume", run)
    assert result.returncode == 0, result.stderr
    resumed = rows(run)
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4]
    assert resumed[:2] == saved[:2]  # the rows up to the checkpoint, as they were; row 3 written again
    # The uninterrupted run's rewards (1/32ths and 1/96ths of the images correct).
    assert [r["reward_mean"] for r in resumed[2:]] == [0.40625, 0.5729166865348816]
    assert resumed[2]["time_wall"] > saved[1]["time_wall"]  # the wall clock goes on from the kept row's
    assert latest_step(run / "checkpoint") == 4 and load_state(run / "checkpoint")[1]["iteration"] == 4
    assert [p.name for p in (run / "checkpoint").glob("step-*")] == ["step-00000004"]  # keep_checkpoints=1
    assert (run / "policy" / "config.json").is_file()


def test_a_shapes_base_model_run_resumes_to_its_end(noiseppo, pre_change: Path, tmp_path: Path) -> None:
    run, saved = copied("shapes_base", pre_change, tmp_path)
    assert [r["step"] for r in saved] == [1, 2, 3] and latest_step(run / "checkpoint") == 2
    result = noiseppo.in_process("shapes", "train-base", "--out", run, "--resume")
    assert result.returncode == 0, result.stderr
    assert "resumed at step 2" in result.stdout
    resumed = rows(run)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4]
    assert resumed[:2] == saved[:2]
    # The uninterrupted run's losses (float rounding may differ between processes: a relative 1e-5).
    assert [r["loss"] for r in resumed[2:]] == pytest.approx([0.9423122406005859, 0.9501309990882874], rel=1e-5)
    assert [r["lr"] for r in resumed[2:]] == [0.0005, 0.000275]
    assert resumed[3]["eval_partial"] == 0.0 and "eval_partial" not in resumed[2]  # --eval-every 4
    assert load_state(run / "checkpoint")[1]["step"] == 4
    assert sorted(p.name for p in (run / "model").iterdir()) == ["denoiser", "scheduler", "text_encoder"]
    assert [p.name for p in (run / "snapshots").iterdir()] == ["step-4"]


def test_a_diffusers_ddpo_run_resumes_to_its_end(noiseppo, pre_change: Path, tmp_path: Path) -> None:
    run, saved = copied("ddpo_diffusers", pre_change, tmp_path)
    # The folder names the tiny pipeline and prompt file it was trained on by relative paths (the
    # module docstring): made again here, the same bytes (seed 0), and pointed at.
    model = tiny_sd_pipeline(tmp_path / "tiny_sd")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cat\ntwo dogs\na blue car\n")
    settings = json.loads((run / "config.json").read_text())
    assert settings["model"] == "ddwork/tiny_sd/pipeline" and settings["preset"]["prompts"] == "ddwork/prompts.txt"
    settings["model"], settings["preset"]["prompts"] = str(model), str(prompts)
    (run / "config.json").write_text(json.dumps(settings, indent=1))
    assert [r["iteration"] for r in saved] == [1, 2, 3] and latest_step(run / "checkpoint") == 2

    result = noiseppo.in_process("ddpo", "--resume", run)
    assert result.returncode == 0, result.stderr
    resumed = rows(run)
    assert [r["iteration"] for r in resumed] == [1, 2, 3]
    assert resumed[:2] == saved[:2]
    assert resumed[2]["reward_mean"] == pytest.approx(-0.8612500429153442, abs=1e-6)
    assert resumed[2]["clipfrac"] == 0.25
    assert resumed[2]["train_time_s"] > saved[1]["train_time_s"]  # the training clock restored from the checkpoint
    assert load_state(run / "checkpoint")[1]["iteration"] == 3
    assert json.loads((run / "ddpo.json").read_text())["iterations"] == 3
    assert (run / "lora" / "pytorch_lora_weights.safetensors").is_file()
