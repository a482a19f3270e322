"""Run folders written before the run folder became one module (``noiseppo.storage.run_folder``)
still resume: each saved folder (``tests/fixtures/pre_change_runs``, its README says how it was made)
is copied and resumed to its end through the CLI. Each was killed after logging one row beyond its
newest checkpoint, so each resume also drops that row and writes it again; the numbers are those the
uninterrupted run logged with the code that wrote the folder."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from noiseppo.storage.checkpoint import latest_step, load_state
from tiny_models import tiny_sd_pipeline

FIXTURES = Path(__file__).parent / "fixtures" / "pre_change_runs"


def copied(name: str, tmp_path: Path) -> tuple[Path, list[dict]]:
    """A copy of the saved run folder ``name``, and its metrics rows as saved."""
    run = tmp_path / name
    shutil.copytree(FIXTURES / name, run)
    return run, rows(run)


def rows(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_noise_ppo_run_resumes_to_its_end(noiseppo, tmp_path: Path) -> None:
    run, saved = copied("noise_ppo", tmp_path)
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


def test_a_shapes_base_model_run_resumes_to_its_end(noiseppo, tmp_path: Path) -> None:
    run, saved = copied("shapes_base", tmp_path)
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


def test_a_diffusers_ddpo_run_resumes_to_its_end(noiseppo, tmp_path: Path) -> None:
    run, saved = copied("ddpo_diffusers", tmp_path)
    # The folder names the tiny pipeline and prompt file it was trained on by relative paths
    # (its README): made again here, the same bytes (seed 0), and pointed at.
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
