"""``noiseppo shapes train-base`` on a tiny model: the run folder, and an exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import noiseppo.training.shapes_base as train_base
from noiseppo.backends.shapes import ShapesBackend
from noiseppo.configs.train import ShapesModelTrainConfig
from noiseppo.errors import UserError

TINY = ["--batch", "4", "--dim", "32", "--depth", "1", "--text-dim", "16", "--eval-prompt-count", "2"]


def tiny_config(**overrides) -> ShapesModelTrainConfig:
    fields = dict(batch=4, dim=32, depth=1, text_dim=16, eval_prompt_count=2, warmup=2)
    return ShapesModelTrainConfig(**{**fields, **overrides})


def test_cli_two_steps_writes_the_documented_run_folder(noiseppo, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["shapes", "train-base", "--out", str(out), "--optimizer-steps", "2", "--eval-every", "2", *TINY]
    result = noiseppo.in_process(*args)
    assert result.returncode == 0, result.stderr
    # (The same folder again, without --resume, is refused: a row of docs/hostile_inputs.md.)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "config.json", "metrics.jsonl", "model", "snapshots"]
    assert sorted(p.name for p in (out / "model").iterdir()) == ["denoiser", "scheduler", "text_encoder"]
    assert [p.name for p in (out / "snapshots").iterdir()] == ["step-2"]
    config = json.loads((out / "config.json").read_text())
    assert config["optimizer_steps"] == 2 and config["dim"] == 32 and config["lr"] == ShapesModelTrainConfig.lr
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(0 < r["loss"] < 10 for r in rows)
    assert 0.0 <= rows[1]["eval_partial"] <= 1.0 and "eval_correct" not in rows[0]
    backend = ShapesBackend.from_pretrained(out / "model")
    assert backend.generate(torch.zeros(1, 3, 32, 32), backend.encode(["a red circle"]), 1, 1.0).shape == (1, 3, 32, 32)


def test_resume_without_a_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nothing to resume"):
        train_base.train_shapes_model(tiny_config(optimizer_steps=2), tmp_path / "empty", resume=True)


class SimulatedKill(Exception):
    pass


def test_a_killed_run_resumes_to_the_same_weights_and_metrics(tmp_path: Path, monkeypatch) -> None:
    config = tiny_config(optimizer_steps=4, checkpoint_every=2, eval_every=4)
    train_base.train_shapes_model(config, tmp_path / "straight")

    real_save = train_base.save_state

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise SimulatedKill  # the process dies right after the step-2 checkpoint

    monkeypatch.setattr(train_base, "save_state", save_then_die)
    with pytest.raises(SimulatedKill):
        train_base.train_shapes_model(config, tmp_path / "killed")
    monkeypatch.setattr(train_base, "save_state", real_save)
    # As if the kill came later: step 3 logged, and half of step 4's row, but no new checkpoint.
    with (tmp_path / "killed" / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "loss": 9.0}\n{"step": 4, "lo')
    train_base.train_shapes_model(config, tmp_path / "killed", resume=True)

    for part in ("denoiser", "text_encoder"):
        a = load_file(tmp_path / "straight" / "model" / part / "diffusion_pytorch_model.safetensors")
        b = load_file(tmp_path / "killed" / "model" / part / "diffusion_pytorch_model.safetensors")
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{part} weights differ after resume"

    def rows(run: str) -> list[dict]:
        lines = (tmp_path / run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if k != "elapsed_s"} for line in lines]

    assert [r["step"] for r in rows("killed")] == [1, 2, 3, 4]
    assert rows("killed") == rows("straight")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="device 'cuda' asked for, but CUDA is not available here"):
        train_base.train_shapes_model(tiny_config(optimizer_steps=2), tmp_path / "run", device="cuda")
    assert not (tmp_path / "run").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_training_sees_the_same_data_and_resumes_on_the_cpu(tmp_path: Path) -> None:
    config = tiny_config(optimizer_steps=4, checkpoint_every=2, eval_every=2)
    train_base.train_shapes_model(config, tmp_path / "cpu")
    gpu_config = tiny_config(optimizer_steps=2, checkpoint_every=2, eval_every=2)
    train_base.train_shapes_model(gpu_config, tmp_path / "gpu", device="cuda")

    def losses(run: str) -> list[float]:
        return [json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]

    # Same scenes, timesteps and noise on both devices: the first loss differs only by rounding.
    assert losses("gpu")[0] == pytest.approx(losses("cpu")[0], rel=1e-3)
    # A GPU run continues on the CPU (the device is not part of the saved config).
    config_file = tmp_path / "gpu" / "config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), "optimizer_steps": 4}))
    train_base.train_shapes_model(gpu_config, tmp_path / "gpu", resume=True, device="cpu")
    assert len(losses("gpu")) == 4
    backend = ShapesBackend.from_pretrained(tmp_path / "gpu" / "model")
    assert backend.generate(torch.zeros(1, 3, 32, 32), backend.encode(["a red circle"]), 2, 1.0).isfinite().all()


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        ({"batch": 0}, "--batch must be >= 1, got 0"),
        ({"checkpoint_every": 0}, "--checkpoint-every must be >= 1, got 0"),
        ({"optimizer_steps": 0}, "--optimizer-steps must be >= 1, got 0"),
        ({"eval_prompt_count": 0}, "--eval-prompt-count must be >= 1, got 0"),
        ({"warmup": -1}, "--warmup must be >= 0, got -1"),
        ({"depth": -1}, "--depth must be >= 0, got -1"),
        ({"dim": 48}, "--dim must be a multiple of 32 (dim/4 channels in 8 groups), got 48"),
        ({"text_dim": 2}, "--text-dim must be a multiple of 4 (the text encoder's attention heads), got 2"),
        ({"lr": 0.0}, "--lr must be a finite number > 0, got 0.0"),
        ({"weight_decay": float("nan")}, "--weight-decay must be a finite number >= 0, got nan"),
        ({"ema_decay": 1.0}, "--ema-decay must be in [0, 1), got 1.0"),
        ({"uncond_prob": -0.1}, "--uncond-prob must be in [0, 1), got -0.1"),
    ],
)
def test_settings_the_model_cannot_train_with_are_refused_before_the_folder(setting, line, tmp_path: Path) -> None:
    with pytest.raises(UserError) as refused:
        train_base.train_shapes_model(tiny_config(**setting), tmp_path / "run")
    assert str(refused.value) == line and not (tmp_path / "run").exists()


def test_the_smallest_widths_the_rules_allow_build_and_train(tmp_path: Path) -> None:
    train_base.validate(tiny_config(dim=32, text_dim=4, depth=0))  # the rules' edge: accepted ...
    model = train_base.train_shapes_model(tiny_config(dim=32, text_dim=4, depth=0, optimizer_steps=1), tmp_path / "r")
    assert (model / "denoiser" / "diffusion_pytorch_model.safetensors").is_file()  # ... and it trains
