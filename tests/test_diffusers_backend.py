"""The diffusers backend on tiny random SD and SDXL pipelines saved to temporary folders and
loaded through ``--model PATH``, as a user's model would be; the latents_for plug-in."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from diffusers import DiffusionPipeline

from noiseppo.backends import get_backend
from noiseppo.backends.diffusers import DiffusersBackend
from noiseppo.errors import UserError
from noiseppo.policy import NoisePolicy, latents_for_seeds
from noiseppo.sampling.seeds import standard_noise
from tiny_models import tiny_sd_pipeline, tiny_sdxl_pipeline

PROMPTS = ["a red cat", "two dogs", "a blue car on a road"]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sd_pipeline(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="module")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sdxl_pipeline(tmp_path_factory.mktemp("tiny_sdxl"))


@pytest.fixture(scope="module")
def backend(tiny_sd: Path) -> DiffusersBackend:
    return get_backend("diffusers", str(tiny_sd), "default")


def users_pipeline(path: Path) -> DiffusionPipeline:
    """The pipeline as a user loads it for inference. Frozen: on the CPU, weights that require
    grad take other kernels even under no_grad (differences of 2e-7 in this model)."""
    pipe = DiffusionPipeline.from_pretrained(path, use_safetensors=True)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_backend_reads_the_pipeline(backend: DiffusersBackend) -> None:
    assert backend.latent_shape == (4, 8, 8)  # unet.in_channels, sample_size
    assert backend.default_guidance == 7.5  # StableDiffusionPipeline.__call__'s own default
    assert (backend.token_dim, backend.pooled_dim) == (16, 16)  # SD has no pooled vector: the token states' mean
    cond = backend.encode(PROMPTS)
    assert cond.token_states.shape == (3, 16, 16) and cond.pooled.shape == (3, 16) and cond.mask.all()
    assert torch.allclose(cond.pooled, cond.token_states.mean(1))
    assert not any(p.requires_grad for p in backend.pipe.unet.parameters())


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_the_untrained_policy_gives_the_pipelines_own_images(backend: DiffusersBackend, tiny_sd, guidance) -> None:
    policy = NoisePolicy.for_backend(backend)
    cond = backend.encode(PROMPTS)
    eps = standard_noise(backend.latent_shape, [0, 1, 2])
    z = policy.noise_to_latents()(cond, eps)
    assert torch.equal(z, eps)
    images = backend.generate(z, cond, 3, guidance)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    own = users_pipeline(tiny_sd)(
        PROMPTS, latents=eps, num_inference_steps=3, guidance_scale=guidance, output_type="pt"
    )
    assert torch.equal(images, own.images)
    assert torch.equal(backend.generate(z, cond, 3, guidance), images), "generate must be deterministic"


def test_schedulers_and_bad_settings(tiny_sd: Path, backend: DiffusersBackend) -> None:
    euler = get_backend("diffusers", str(tiny_sd), "euler")
    assert type(euler.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert euler.pipe.scheduler.config.beta_schedule == "scaled_linear"  # the pipeline's own schedule
    assert type(backend.pipe.scheduler).__name__ == "DDIMScheduler"
    with pytest.raises(UserError, match=r"unknown scheduler 'heun' \(known: ddim, euler, dpm, default\)"):
        get_backend("diffusers", str(tiny_sd), "heun")
    with pytest.raises(UserError, match="float16 pipelines do not run on the CPU"):
        get_backend("diffusers", str(tiny_sd), dtype="float16")
    with pytest.raises(UserError, match="the diffusers backend needs --model"):
        get_backend("diffusers")
    with pytest.raises(UserError, match="no file named model_index.json"):
        get_backend("diffusers", str(tiny_sd / "unet"))
    with pytest.raises(UserError, match=r"latents must have shape \(1, 4, 8, 8\)"):
        backend.generate(torch.zeros(1, 4, 16, 16), backend.encode(PROMPTS[:1]), 2, 1.0)


def test_pickled_weights_are_never_loaded(tiny_sd: Path, tmp_path: Path) -> None:
    """A model with only a .bin (pickle) U-Net is refused: use_safetensors=True."""
    import shutil

    copy = tmp_path / "bin_only"
    shutil.copytree(tiny_sd, copy)
    (copy / "unet" / "diffusion_pytorch_model.safetensors").rename(copy / "unet" / "diffusion_pytorch_model.bin")
    with pytest.raises(UserError, match="cannot load the diffusers pipeline"):
        get_backend("diffusers", str(copy))


def test_cli_trains_and_samples_on_the_pipeline(noiseppo, tiny_sd: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    run = tmp_path / "run"
    done = noiseppo.in_process(
        *["train", "--preset", "tiny", "--backend", "diffusers", "--model", str(tiny_sd), "--prompts", str(prompts),
         "--reward", "jpeg_compressibility", "--steps", "2", "--out", str(run), "eval_prompts=", "threads=1"]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {"checkpoint", "config.yaml", "metrics.jsonl", "policy"} <= {p.name for p in run.iterdir()}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 2 and rows[-1]["reward_mean"] < 0  # minus kB
    assert json.loads((run / "policy" / "config.json").read_text())["latent_shape"] == [4, 8, 8]

    out = tmp_path / "samples"
    done = noiseppo.in_process("sample", "--policy", run, "--prompt", "a red cat", "--n", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["steps"] == 2  # backend, model and steps from the policy's run
    assert rows[0]["guidance"] == 7.5  # the run's guidance 0: the pipeline's default
    assert sorted(p.name for p in (out / "images").iterdir()) == ["0000.png", "0001.png"]


def test_an_unknown_model_offline_is_one_line(noiseppo, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    args = ["sample", "--backend", "diffusers", "--model", "noiseppo-test/no-such-model", "--prompt", "a cat"]
    result = noiseppo(*args, "--out", tmp_path / "out", env=env)  # a process: the hub reads the setting at import
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "noiseppo: error: model 'noiseppo-test/no-such-model' is neither a local folder nor in the Hugging Face "
        "cache, and the hub cannot be reached (offline?): download it first or give a local folder"
    ]
    assert not (tmp_path / "out").exists()


def test_the_plug_in_gives_a_real_pipeline_the_policys_latents(backend: DiffusersBackend, tiny_sd: Path) -> None:
    pipe = users_pipeline(tiny_sd)
    untrained = NoisePolicy.for_backend(backend)
    # Untrained, with a generator: exactly the images the pipeline draws for itself.
    latents = untrained.latents_for(pipe, PROMPTS, generator=torch.Generator().manual_seed(7))
    mine = pipe(PROMPTS, latents=latents, num_inference_steps=2, output_type="pt").images
    own = pipe(PROMPTS, generator=torch.Generator().manual_seed(7), num_inference_steps=2, output_type="pt").images
    assert torch.equal(mine, own)

    # Trained (a random head), with seeds: the latents and images of training and `noiseppo sample`.
    torch.manual_seed(0)
    policy = NoisePolicy.for_backend(backend, readout="shared")
    torch.nn.init.normal_(policy.head.weight, std=0.5)
    latents = policy.latents_for(pipe, PROMPTS, seeds=[0, 1, 2])
    expected = latents_for_seeds(policy, backend, PROMPTS, [0, 1, 2])
    assert torch.equal(latents, expected) and not torch.equal(latents, standard_noise((4, 8, 8), [0, 1, 2]))
    images = pipe(PROMPTS, latents=latents, num_inference_steps=2, guidance_scale=1.0, output_type="pt").images
    assert torch.equal(images, backend.generate(expected, backend.encode(PROMPTS), 2, 1.0))
    assert policy.latents_for(pipe, "a red cat", seeds=[0]).shape == (1, 4, 8, 8)

    with pytest.raises(UserError, match=r"for latents of shape \(3, 32, 32\), .* has latents of shape \(4, 8, 8\)"):
        NoisePolicy().latents_for(pipe, PROMPTS)
    with pytest.raises(UserError, match="give a generator or seeds, not both"):
        policy.latents_for(pipe, PROMPTS, generator=torch.Generator(), seeds=[0, 1, 2])
    with pytest.raises(UserError, match="token states 64 wide and pooled vectors 64 wide; the StableDiffusionPipel"):
        NoisePolicy(latent_shape=(4, 8, 8)).latents_for(pipe, PROMPTS)


def test_sdxl(noiseppo, tiny_sdxl: Path, tmp_path: Path) -> None:
    """Two text encoders, Euler, the U-Net's extra pooled and size inputs: the pipeline's own images.
    The policy reads token states (32 wide) and SDXL's own pooled embedding (8 wide) at their widths."""
    backend = get_backend("diffusers", str(tiny_sdxl), "default")
    assert type(backend.pipe).__name__ == "StableDiffusionXLPipeline" and backend.default_guidance == 5.0
    assert (backend.token_dim, backend.pooled_dim) == (32, 8)
    cond = backend.encode(PROMPTS)
    assert cond.token_states.shape == (3, 16, 32) and cond.pooled.shape == (3, 8)
    own = backend.pipe.encode_prompt(PROMPTS, do_classifier_free_guidance=False)
    assert torch.equal(cond.token_states, own[0]) and torch.equal(cond.pooled, own[2])  # the U-Net's text_embeds
    policy = NoisePolicy.for_backend(backend)
    eps = standard_noise(backend.latent_shape, [0, 1, 2])
    pipe = users_pipeline(tiny_sdxl)
    for guidance in (1.0, 3.0):
        images = backend.generate(policy.noise_to_latents()(cond, eps), cond, 2, guidance)
        own = pipe(PROMPTS, latents=eps, num_inference_steps=2, guidance_scale=guidance, output_type="pt").images
        assert torch.equal(images, own)
    latents = policy.latents_for(pipe, PROMPTS, generator=torch.Generator().manual_seed(3))
    mine = pipe(PROMPTS, latents=latents, num_inference_steps=2, output_type="pt").images
    own = pipe(PROMPTS, generator=torch.Generator().manual_seed(3), num_inference_steps=2, output_type="pt").images
    assert torch.equal(mine, own)

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    done = noiseppo.in_process(
        *["train", "--preset", "tiny", "--backend", "diffusers", "--model", str(tiny_sdxl), "--prompts", str(prompts),
         "--reward", "jpeg_incompressibility", "--steps", "2", "--out", str(tmp_path / "run"), "guidance=1.5",
         "eval_prompts=", "threads=1"]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 2 and rows[-1]["reward_mean"] > 0 and rows[-1]["approx_kl"] > 0  # it updated
    # No scheduler given: the pipeline keeps its own (a run on a Turbo model keeps its Euler).
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["scheduler"] == "default"
    config = json.loads((tmp_path / "run" / "policy" / "config.json").read_text())
    assert (config["token_dim"], config["pooled_dim"]) == (32, 8)
    done = noiseppo.in_process(
        *["sample", "--policy", str(tmp_path / "run"), "--prompt", "a cat", "--n", "1", "--out", str(tmp_path / "s")]
    )
    assert done.returncode == 0, done.stderr
    row = json.loads((tmp_path / "s" / "samples.jsonl").read_text())
    assert row["guidance"] == 1.5 and row["steps"] == 2  # the run's own settings
    done = noiseppo.in_process(
        *["eval", "--policy", str(tmp_path / "run"), "--prompts", str(prompts), "--seeds", "2", "--bootstrap", "200",
          "--out", str(tmp_path / "eval")]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["guidance"] == 1.5 and [r["steps"] for r in report["results"]] == [2]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_in_half_precision(tiny_sd: Path, backend: DiffusersBackend, dtype: str) -> None:
    """Device placement and half precision: images near float32 CPU's, latents_for in the pipeline's dtype."""
    from noiseppo.backends import DTYPES

    gpu = get_backend("diffusers", str(tiny_sd), "default", "cuda", dtype)
    assert gpu.pipe.unet.device.type == "cuda" and gpu.pipe.unet.dtype == DTYPES[dtype]
    cond = gpu.encode(PROMPTS)
    assert cond.token_states.device.type == "cuda"
    eps = standard_noise(gpu.latent_shape, [0, 1, 2])
    images = gpu.generate(eps, cond, 3, 3.0)
    assert images.device.type == "cuda" and images.dtype == torch.float32
    reference = backend.generate(eps, backend.encode(PROMPTS), 3, 3.0)
    assert (images.cpu() - reference).abs().max() < 0.1, "half precision strays far from float32"
    policy = NoisePolicy.for_backend(gpu).to("cuda")
    latents = policy.latents_for(gpu.pipe, PROMPTS, generator=torch.Generator("cuda").manual_seed(0))
    assert latents.device.type == "cuda" and latents.dtype == DTYPES[dtype]
    assert gpu.pipe(PROMPTS, latents=latents, num_inference_steps=2, output_type="pt").images.shape == (3, 3, 16, 16)
