"""``noiseppo train`` end to end on the tiny preset: the run folder and exact resume.

Bad input is tested in one place: tests/test_hostile_inputs.py."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import noiseppo.training.trainer as train_module
from noiseppo.configs.presets import resolve
from noiseppo.errors import UserError
from noiseppo.rewards import REWARDS
from noiseppo.storage.checkpoint import load_state

EVAL_PROMPTS = ["a red circle", "two blue squares", "a green triangle left of a yellow square"]


@pytest.fixture
def eval_file(tmp_path: Path) -> Path:
    path = tmp_path / "eval_prompts.txt"
    path.write_text("\n".join(EVAL_PROMPTS) + "\n")
    return path


def test_cli_two_iterations_write_the_documented_run_folder(noiseppo, tmp_path: Path, eval_file: Path) -> None:
    run = tmp_path / "run"
    result = noiseppo("train", "--preset", "tiny", "--out", run, f"eval_prompts={eval_file}", "threads=1")
    assert result.returncode == 0, result.stderr
    assert "2 prompts x 4 samples = 8 images per iteration, 2 minibatches of 4 x 2 epochs" in result.stdout
    # The untrained policy's held-out pass in one short line, and no JSON anywhere on stdout.
    first = next(line for line in result.stdout.splitlines() if line.startswith("held-out at iteration 0"))
    assert len(first) < 300 and "correct" in first, first
    assert not [line for line in result.stdout.splitlines() if line.lstrip().startswith(("{", "["))], result.stdout
    # The held-out table: both sides, the paired difference and its 95% interval, per metric.
    table = result.stdout[result.stdout.index(f"held-out {eval_file}") :].splitlines()
    assert f"1 seed(s) per prompt ({len(EVAL_PROMPTS)} pairs)" in table[0] and "95% CI" in table[1]
    correct = next(line for line in table if line.startswith("correct")).split()
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])  # the table prints the last pass
    expected = [
        last["eval_standard_correct"],
        last["eval_correct"],
        last["eval_correct"] - last["eval_standard_correct"],
    ]
    assert correct[1:4] == [f"{expected[0]:.3f}", f"{expected[1]:.3f}", f"{expected[2]:+.3f}"]
    ci = f"[{last['eval_delta_correct_ci95_low']:+.3f}, {last['eval_delta_correct_ci95_high']:+.3f}]"
    assert " ".join(correct[4:6]) == ci
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoint", "config.yaml", "metrics.jsonl", "policy", "report.html", "run.json", "tb"
    ]  # fmt: skip
    # Iterations 0, 1 and 2 were checkpointed; the newest two are kept, behind the pointer.
    assert sorted(p.name for p in (run / "checkpoint").iterdir()) == ["latest.json", "step-00000001", "step-00000002"]
    newest = run / "checkpoint" / "step-00000002"
    assert sorted(p.name for p in newest.iterdir()) == ["state.json", "state.safetensors"]
    assert sorted(p.name for p in (run / "policy").iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "tb").iterdir())

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["iterations"] == 2 and config["steps"] == 4 and config["eval_prompts"] == str(eval_file)
    assert load_state(run / "checkpoint")[1]["iteration"] == 2

    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    # Iteration 0 is the untrained policy: exactly the frozen model's noise, so equal scores.
    assert rows[0]["eval_correct"] == rows[0]["eval_standard_correct"]
    for key in ("reward_mean", "reward_std", "train_correct", "approx_kl", "clipfrac", "policy_kl", "mu_rms"):
        assert key in rows[1] and key in rows[2], key
    for key in ("sigma_mean", "samples_per_s", "time_sampling", "time_reward", "time_update"):
        assert key in rows[2], key
    assert 0.0 <= rows[1]["reward_mean"] <= 1.0 and rows[1]["sigma_mean"] == 1.0
    assert rows[2]["mu_rms"] > 0, "two PPO iterations must move the mean"
    assert "eval_correct" in rows[2] and "eval_correct" not in rows[1]

    weights = load_file(run / "policy" / "diffusion_pytorch_model.safetensors")
    assert weights["cell_weight"].abs().sum() > 0


class SimulatedKill(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_policy(tmp_path: Path, eval_file: Path, monkeypatch) -> None:
    # DDPO's tracker on, so its remembered rewards must survive the resume too.
    overrides = ["iterations=4", f"eval_prompts={eval_file}", "eval_every=2", "adv_buffer=32", "adv_min_count=4"]
    overrides.append("advantages=zscore")  # the tracker normalises z-scores; ranks need no memory
    overrides.append("lr_schedule=cosine")  # the learning rate is a function of the iteration: resumed exactly
    config = resolve("tiny", overrides=overrides)
    train_module.train(config, tmp_path / "straight", quiet=True)

    real_save = train_module.save_training
    calls = []

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:  # iteration 0, 1, then die right after iteration 2's checkpoint
            raise SimulatedKill

    monkeypatch.setattr(train_module, "save_training", save_then_die)
    with pytest.raises(SimulatedKill):
        train_module.train(config, tmp_path / "killed", quiet=True)
    monkeypatch.setattr(train_module, "save_training", real_save)
    with (tmp_path / "killed" / "metrics.jsonl").open("a") as f:  # a row cut short by the kill
        f.write('{"iteration": 3, "rew')
    train_module.train(None, tmp_path / "killed", resume=True, quiet=True)

    a, _ = load_state(tmp_path / "straight" / "checkpoint")
    b, state = load_state(tmp_path / "killed" / "checkpoint")
    assert a.keys() == b.keys() and any(k.startswith("optimizer.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), "policy or optimizer differ after resume"
    assert a["policy.cell_weight"].abs().sum() > 0

    def rows(run: str) -> list[dict]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [
            {k: v for k, v in json.loads(line).items() if not k.startswith(("time_", "samples_per"))} for line in lines
        ]

    assert [r["iteration"] for r in rows("killed")] == [0, 1, 2, 3, 4]
    assert rows("killed") == rows("straight")
    assert state["iteration"] == 4 and state["advantage_stats"]["history"]


def _reward_returning(values):
    class Fixed:
        def __call__(self, images, prompts):
            return torch.tensor(values(len(prompts)), dtype=torch.float32)

    return Fixed


def test_nan_rewards_below_the_threshold_are_dropped_and_counted(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(REWARDS, "holey", (_reward_returning(lambda n: [float("nan")] + [0.0, 1.0] * 3 + [1.0]), ""))
    config = resolve("tiny", overrides=["reward=holey", "eval_prompts=", "max_nan_fraction=0.2", "iterations=1"])
    train_module.train(config, tmp_path / "run", quiet=True)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["nan_rewards"] == 1.0 and row["reward_mean"] == pytest.approx(4 / 7)


def test_clipfrac_is_the_share_of_ratios_outside_the_clip_range(tmp_path: Path) -> None:
    """The tiny preset's 2 epochs x 2 minibatches: the first minibatch is scored by the policy
    that drew it (ratio 1, never clipped); after one step, every ratio is further than 1e-5 from 1."""
    config = resolve("tiny", overrides=["eval_prompts=", "iterations=1", "clip_range=1e-5"])
    train_module.train(config, tmp_path / "run", quiet=True)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["iteration"] == 1 and row["clipfrac"] == 0.75


def test_presets_resolve_and_validate() -> None:
    config = resolve()
    assert config.backend == "shapes" and config.steps == 4
    assert resolve("tiny", overrides=["lr=1e-2", "learn_sigma=true"]).learn_sigma is True
    with pytest.raises(UserError, match="'iterations' must be >= 1"):
        resolve("tiny", overrides=["iterations=0"])


def test_cosine_learning_rate_falls_from_lr_toward_lr_final() -> None:
    config = resolve("tiny", overrides=["lr=1e-3", "lr_schedule=cosine", "lr_final=0.1", "iterations=4"])
    rates = [train_module.learning_rate(config, i) for i in range(4)]
    assert rates[0] == pytest.approx(1e-3) and rates[2] == pytest.approx(1e-4 + 0.9e-3 * 0.5)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False)) and rates[-1] > 1e-4
    constant = resolve("tiny", overrides=["lr=1e-3"])
    assert {train_module.learning_rate(constant, i) for i in range(4)} == {1e-3}


def test_antithetic_noises_come_in_mirrored_pairs() -> None:
    config = resolve("tiny", overrides=["eval_prompts=", "antithetic=true", "samples_per_prompt=4"])
    trainer = train_module.Trainer(config)  # untrained policy: the latents are the noises
    rollout, _ = trainer.rollout(train_module.iteration_generator(config, 0))
    groups = rollout.latents.view(config.prompts_per_iteration, 4, -1)
    assert torch.equal(groups[:, 2:], -groups[:, :2])
    assert not torch.equal(groups[:, 0], groups[:, 1])
    with pytest.raises(UserError, match="antithetic needs an even samples_per_prompt"):
        resolve("tiny", overrides=["antithetic=true", "samples_per_prompt=3", "minibatch=3"])


def test_a_prompt_file_smaller_than_the_batch_is_drawn_with_replacement(noiseppo, tmp_path: Path) -> None:
    from noiseppo.sampling.render import draw_prompt_ids

    g = torch.Generator().manual_seed(0)
    enough = draw_prompt_ids(10, 4, g)
    assert len(set(enough.tolist())) == 4  # without replacement when the file has enough
    assert torch.equal(enough, torch.randperm(10, generator=torch.Generator().manual_seed(0))[:4])  # as before
    few = draw_prompt_ids(2, 16, torch.Generator().manual_seed(0))
    assert len(few) == 16 and set(few.tolist()) == {0, 1}
    (tmp_path / "two.txt").write_text("a red circle\ntwo blue squares\n")
    args = ["train", "--preset", "tiny", "--prompts", tmp_path / "two.txt", "prompts_per_iteration=4", "minibatch=0"]
    done = noiseppo.in_process(*args, "eval_prompts=", "threads=1", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert "has 2, fewer than prompts_per_iteration 4: each iteration draws 4 with replacement" in done.stdout
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]


def test_the_bar_counts_training_iterations_only_and_hides_what_is_0_by_construction(
    noiseppo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A held-out pass of 2 s after every iteration stays out of the bar's rate; with one update per
    rollout (1 epoch, the whole batch) clip and kl are 0 by construction: the bar leaves them out."""

    def slow_pass(self) -> dict:
        time.sleep(2.0)
        return {}

    monkeypatch.setattr(train_module.Trainer, "evaluate", slow_pass)
    args = ["--preset", "tiny", "eval_prompts=", "iterations=3", "eval_every=1", "epochs=1", "minibatch=0"]
    done = noiseppo.in_process("train", *args, "threads=1", "--out", tmp_path / "run")
    assert done.returncode == 0, done.stderr
    assert "one update per rollout: clipfrac and kl are 0 by construction" in done.stdout
    bars = [
        line for line in done.stderr.replace("\r", "\n").splitlines() if line.startswith("noise ppo") and "/3 [" in line
    ]
    assert bars and "reward=" in bars[-1] and not [b for b in bars if "clip=" in b or "kl=" in b], bars
    rate = re.search(r"([\d.]+)(s/it|it/s)", bars[-1])
    seconds = float(rate[1]) if rate[2] == "s/it" else 1 / float(rate[1])
    assert seconds < 2.0, bars[-1]  # with the passes it would be above 2 s per iteration
