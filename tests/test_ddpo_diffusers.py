"""DDPO with LoRA on a diffusers StableDiffusionPipeline (issue 27, part 3), on the tiny random pipeline."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline
from safetensors.torch import load_file

import noiseppo.baselines.ddpo_diffusers as ddpo_diffusers_module
from noiseppo.backends import get_backend
from noiseppo.baselines.ddpo import ddpo_settings, sample_trajectories
from noiseppo.baselines.ddpo_diffusers import DiffusersDDPO
from noiseppo.configs.baselines import DDPOConfig
from noiseppo.storage.checkpoint import load_state
from tiny_models import tiny_sd_pipeline

PROMPTS = ["a red cat", "two dogs", "a blue car"]  # within the tiny CLIP's 16 tokens


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sd_pipeline(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def prompts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "p.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path


def settings(prompts: Path, *extra: str, **fields) -> tuple[DDPOConfig, object]:
    """The tiny preset on the pipeline: 2 iterations x 2 prompts x 4 samples at 2 steps, JPEG reward."""
    config = DDPOConfig(preset="tiny", threads=1, **fields)
    overrides = ("backend=diffusers", f"prompts={prompts}", "reward=jpeg_compressibility", "steps=2", *extra)
    return config, ddpo_settings(config, overrides)


def ddpo(tiny_sd: Path, prompts: Path, *extra: str, **fields) -> DiffusersDDPO:
    config, cfg = settings(prompts, *extra, **fields)
    return DiffusersDDPO(get_backend("diffusers", str(tiny_sd)), config, cfg)


def digest(folder: Path) -> dict[str, str]:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.parametrize("guidance", ["guidance=7.5", "guidance=1.0"])
def test_the_sampler_at_eta_0_is_the_pipelines_own_ddim_with_and_without_guidance(
    tiny_sd: Path, prompts: Path, guidance: str
) -> None:
    tuner = ddpo(tiny_sd, prompts, guidance, "eval_prompts=")
    assert type(tuner.backend.pipe.scheduler).__name__ == "DDIMScheduler"  # the tiny pipeline's own sampler
    latents = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    cond = tuner.encode(PROMPTS)
    traj = sample_trajectories(
        lambda x, t: tuner.predict(x, t, cond), tuner.scheduler, latents, 0.0, torch.Generator().manual_seed(2)
    )
    with torch.no_grad():
        ours = tuner.images(traj.xs[:, -1])
    theirs = tuner.backend.generate(latents, cond, 2, tuner.guidance)  # StableDiffusionPipeline.__call__
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    assert traj.xs.shape == (3, 3, 4, 8, 8) and not traj.log_probs.any()  # η = 0: deterministic, no log-prob


def test_training_moves_only_the_lora_weights_and_an_untrained_lora_is_the_base_model(
    tiny_sd: Path, prompts: Path
) -> None:
    tuner = ddpo(tiny_sd, prompts, f"eval_prompts={prompts}", "eval_seeds=2")
    unet = tuner.unet
    names = {n for n, p in unet.named_parameters() if p.requires_grad}
    assert names and all(".lora_A." in n or ".lora_B." in n for n in names)
    targets = ("to_q", "to_k", "to_v", "to_out.0")  # the default --lora-targets, each adapted
    assert all(any(f".{t}.lora_" in n for n in names) for t in targets)
    base = {n: p.detach().clone() for n, p in unet.named_parameters() if n not in names}
    lora = {n: p.detach().clone() for n, p in unet.named_parameters() if n in names}
    assert all(not v.any() for n, v in lora.items() if ".lora_B." in n)  # B = 0: the adapters add nothing yet
    # The held-out pass before training: the same images on both sides, so every pair's difference is 0.
    untrained = tuner.evaluate()
    assert untrained["eval_pairs"] == 6 and untrained["eval_reward"] == untrained["eval_standard_reward"]

    rows = [tuner.step() for _ in range(2)]
    assert [r["iteration"] for r in rows] == [1, 2] and all(r["grad_norm"] > 0 for r in rows)
    assert rows[0]["first_ratio_dev"] < 1e-5  # the first ratio of an iteration, before any step, is 1
    assert rows[0]["trajectory_bytes_per_sample"] == 3 * 4 * 8 * 8 * 4 + 2 * 4  # x_T, x_1, x_0 and 2 log-probs
    after = dict(unet.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in base.items()), "a base weight of the U-Net moved"
    assert all(not torch.equal(after[n], v) for n, v in lora.items()), "a LoRA weight did not move"
    trained = tuner.evaluate()
    assert trained["eval_reward"] != trained["eval_standard_reward"]
    assert trained["eval_standard_reward"] == untrained["eval_standard_reward"]  # the same standard side


def test_cli_trains_two_iterations_and_resume_is_exact(noiseppo, tiny_sd: Path, prompts: Path, tmp_path: Path) -> None:
    before = digest(tiny_sd)
    base = ["ddpo", "--preset", "tiny", "--backend", "diffusers", "--model", tiny_sd, "--threads", "1", "--no-eval"]
    task = [f"prompts={prompts}", "reward=jpeg_compressibility", "steps=2"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    done = noiseppo.in_process(*base, *task, "--out", whole)
    assert done.returncode == 0, done.stderr
    assert "LoRA rank 4" in done.stdout and f"LoRA weights written to {whole / 'lora'}" in done.stdout
    assert digest(tiny_sd) == before  # the model folder is only read
    folder = ["checkpoint", "config.json", "ddpo.json", "lora", "metrics.jsonl"]
    assert sorted(p.name for p in whole.iterdir()) == folder
    rows = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2]
    summary = json.loads((whole / "ddpo.json").read_text())
    assert summary["renders"] == 16 and summary["stochastic_steps"] == 2  # set_alpha_to_one=False: no final step
    assert summary["trajectory_bytes_per_sample"] == 3080 and summary["lora_parameters"] > 0
    saved = json.loads((whole / "config.json").read_text())
    assert saved["ddpo"]["lr"] == 1e-4 and saved["preset"]["backend"] == "diffusers"

    # 1 iteration, then --resume to 2: the same LoRA weights, optimizer state and rows, bit for bit.
    done = noiseppo.in_process(*base, *task, "--iterations", "1", "--out", part)
    assert done.returncode == 0, done.stderr
    assert load_state(part / "checkpoint")[1]["iteration"] == 1
    done = noiseppo.in_process("ddpo", "--resume", part, "--iterations", "2")
    assert done.returncode == 0, done.stderr
    a, b = load_state(whole / "checkpoint")[0], load_state(part / "checkpoint")[0]
    assert a.keys() == b.keys() and any(k.startswith("optimizer.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a), "LoRA or optimizer differ after the resume"
    lora_a = load_file(whole / "lora" / "pytorch_lora_weights.safetensors")
    lora_b = load_file(part / "lora" / "pytorch_lora_weights.safetensors")
    assert lora_a.keys() == lora_b.keys() and all(torch.equal(lora_a[k], lora_b[k]) for k in lora_a)
    timeless = [{k: v for k, v in r.items() if "time" not in k} for r in rows]
    resumed = [json.loads(line) for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in r.items() if "time" not in k} for r in resumed] == timeless
    assert json.loads((part / "config.json").read_text())["preset"]["iterations"] == 2

    # RUN/lora is what diffusers users load: the same images as the run's own tuned pipeline.
    pipe = DiffusionPipeline.from_pretrained(tiny_sd, use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    latents = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    kwargs = {"prompt": PROMPTS[:2], "num_inference_steps": 2, "output_type": "pt", "height": 16, "width": 16}
    plain = pipe(latents=latents, **kwargs).images
    pipe.load_lora_weights(whole / "lora")
    loaded = pipe(latents=latents, **kwargs).images
    config, cfg = settings(prompts, "eval_prompts=")
    tuned = DiffusersDDPO(get_backend("diffusers", str(tiny_sd)), config, cfg)
    tuned.load(whole)
    ours = tuned.backend.generate(latents, tuned.encode(PROMPTS[:2]), 2, 7.5)
    assert torch.allclose(loaded, ours, atol=1e-5) and not torch.allclose(plain, ours, atol=1e-5)


def test_ctrl_c_checkpoints_the_last_finished_iteration_and_resume_ends_as_one_run(
    noiseppo, tiny_sd: Path, prompts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C after iteration 2's update: the LoRA weights, optimizer and statistics of iteration 1
    are put back and checkpointed; ``--resume`` ends bit for bit as the uninterrupted run."""
    base = ["ddpo", "--preset", "tiny", "--backend", "diffusers", "--model", tiny_sd, "--threads", "1", "--no-eval"]
    task = [f"prompts={prompts}", "reward=jpeg_compressibility", "steps=2"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    assert noiseppo.in_process(*base, *task, "--out", whole).returncode == 0
    real = ddpo_diffusers_module.ddpo_iteration

    def interrupted_after_the_update(*args, **kwargs):
        got = real(*args, **kwargs)
        if args[-1] == 1:  # iteration 2 (counted from 0 here): updated, not yet logged
            raise KeyboardInterrupt
        return got

    monkeypatch.setattr(ddpo_diffusers_module, "ddpo_iteration", interrupted_after_the_update)
    stopped = noiseppo.in_process(*base, *task, "--out", part)
    assert stopped.returncode == 130
    assert stopped.stderr.strip() == (
        f"noiseppo: interrupted at iteration 1 of 2 (checkpoint saved); `noiseppo ddpo --resume {part}` continues"
    )
    assert load_state(part / "checkpoint")[1]["iteration"] == 1
    assert len((part / "metrics.jsonl").read_text().splitlines()) == 1
    monkeypatch.setattr(ddpo_diffusers_module, "ddpo_iteration", real)
    done = noiseppo.in_process("ddpo", "--resume", part)
    assert done.returncode == 0, done.stderr
    a, b = load_state(whole / "checkpoint")[0], load_state(part / "checkpoint")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), "LoRA or optimizer differ"

    def timeless(run: Path) -> list[dict]:
        lines = (run / "metrics.jsonl").read_text().splitlines()
        return [{k: v for k, v in json.loads(line).items() if "time" not in k} for line in lines]

    assert [r["iteration"] for r in timeless(part)] == [1, 2] and timeless(part) == timeless(whole)
