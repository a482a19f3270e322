"""The flow-matching backends (sd3, flux) on tiny random StableDiffusion3 and FLUX pipelines,
saved to temporary folders and loaded through ``--model PATH`` as a user's model would be;
the latents_for plug-in on the same pipelines."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from diffusers import DiffusionPipeline
from diffusers.utils.torch_utils import randn_tensor

from noiseppo.backends import get_backend
from noiseppo.backends.flow import FluxBackend, SD3Backend
from noiseppo.errors import UserError
from noiseppo.policy import NoisePolicy, check_policy, latents_for_seeds
from noiseppo.sampling.seeds import standard_noise
from tiny_models import tiny_flux_pipeline, tiny_sd3_pipeline

PROMPTS = ["a red cat", "two dogs", "a blue car"]  # within the tiny CLIP's 16 tokens
SHAPE = (16, 8, 8)  # 16 channels for both families; 16x16 images with the tiny VAE's factor of 2
SIZE = {"height": 16, "width": 16}  # FluxPipeline's own default is 128 latent pixels a side, written in its code


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny models are launch-bound: more threads only contend with the rest of the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_sd3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sd3_pipeline(tmp_path_factory.mktemp("tiny_sd3"))


@pytest.fixture(scope="module")
def tiny_sd3_wide_pooled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CLIP encoders 16 wide projected to 32: 32-wide token states, a 64-wide pooled vector."""
    return tiny_sd3_pipeline(tmp_path_factory.mktemp("tiny_sd3_wide_pooled"), projection_dim=32)


@pytest.fixture(scope="module")
def tiny_flux(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FLUX.1-dev-like: the transformer reads distilled guidance."""
    return tiny_flux_pipeline(tmp_path_factory.mktemp("tiny_flux"))


@pytest.fixture(scope="module")
def tiny_schnell(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """FLUX.1-schnell-like: no guidance input."""
    return tiny_flux_pipeline(tmp_path_factory.mktemp("tiny_schnell"), guidance_embeds=False)


@pytest.fixture(scope="module")
def models(
    tiny_sd3: Path, tiny_sd3_wide_pooled: Path, tiny_flux: Path, tiny_schnell: Path
) -> dict[str, tuple[str, Path]]:
    return {
        "sd3": ("sd3", tiny_sd3),
        "sd3-wide-pooled": ("sd3", tiny_sd3_wide_pooled),
        "flux-dev": ("flux", tiny_flux),
        "flux-schnell": ("flux", tiny_schnell),
    }


WIDTHS = {"sd3": (32, 32), "sd3-wide-pooled": (32, 64), "flux-dev": (24, 16), "flux-schnell": (24, 16)}
"""Each tiny model's token-state and pooled-vector widths."""


def users_pipeline(path: Path) -> DiffusionPipeline:
    """The pipeline as a user loads it for inference, frozen as the backend holds it (on the CPU,
    weights that require grad take other kernels even under no_grad)."""
    pipe = DiffusionPipeline.from_pretrained(path, use_safetensors=True)
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            component.requires_grad_(False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_the_backends_read_the_pipelines(models) -> None:
    sd3 = get_backend(*models["sd3"])
    assert isinstance(sd3, SD3Backend) and sd3.latent_shape == SHAPE  # transformer.in_channels x sample_size
    assert sd3.default_guidance == 7.0  # the pipeline's own default
    assert (sd3.token_dim, sd3.pooled_dim) == (32, 32)  # CLIP-L + CLIP-G: hidden widths, projection widths
    cond = sd3.encode(PROMPTS)
    assert cond.token_states.shape == (3, 16, 32) and cond.pooled.shape == (3, 32) and cond.mask.all()
    own = sd3.pipe.encode_prompt(PROMPTS, None, None, do_classifier_free_guidance=False)
    assert torch.equal(cond.pooled, own[2]) and torch.equal(cond.token_states, own[0][:, :16, :32])
    assert own[0].shape == (3, 16 + 256, 32)  # the T5 states after the CLIP ones, which the policy leaves
    wide = get_backend(*models["sd3-wide-pooled"])  # the CLIP projections (2 x 32) wider than their states (2 x 16)
    assert (wide.token_dim, wide.pooled_dim) == (32, 64)
    cond = wide.encode(PROMPTS)
    assert cond.token_states.shape == (3, 16, 32) and cond.pooled.shape == (3, 64)
    own = wide.pipe.encode_prompt(PROMPTS, None, None, do_classifier_free_guidance=False)
    assert torch.equal(cond.pooled, own[2]) and torch.equal(cond.token_states, own[0][:, :16, :32])

    flux = get_backend(*models["flux-dev"])
    assert isinstance(flux, FluxBackend) and flux.latent_shape == SHAPE
    assert (flux.token_dim, flux.pooled_dim) == (24, 16)  # T5, CLIP-L
    assert flux.default_guidance == 3.5
    cond = flux.encode(PROMPTS)
    assert cond.token_states.shape == (3, 512, 24) and cond.pooled.shape == (3, 16)  # T5, max_sequence_length 512
    lengths = [len(flux.pipe.tokenizer_2(p).input_ids) for p in PROMPTS]  # the prompt's tokens and </s>
    assert cond.mask.sum(1).tolist() == lengths and not cond.mask[:, max(lengths) :].any()
    own = flux.pipe.encode_prompt(PROMPTS, None, max_sequence_length=512)
    assert torch.equal(cond.token_states, own[0]) and torch.equal(cond.pooled, own[1])  # CLIP-L's pooled output
    schnell = get_backend(*models["flux-schnell"])
    assert schnell.default_guidance == 0.0 and schnell.encode(PROMPTS).token_states.shape == (3, 256, 24)

    for backend in (sd3, flux):
        assert type(backend.pipe.scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"
        assert not any(p.requires_grad for p in backend.pipe.transformer.parameters())


def test_sd3_conditioning_needs_no_t5(models) -> None:
    """SD3 runs without its T5 (``text_encoder_3=None``, 9.5 GB saved): the policy reads the same
    conditioning, and latents_for works on such a pipeline."""
    backend = get_backend(*models["sd3"])
    no_t5 = {"text_encoder_3": None, "tokenizer_3": None}
    pipe = DiffusionPipeline.from_pretrained(models["sd3"][1], use_safetensors=True, **no_t5)
    pipe.set_progress_bar_config(disable=True)
    with_t5, without = backend.encode(PROMPTS), SD3Backend.encode_prompts(pipe, PROMPTS)
    assert torch.equal(with_t5.token_states, without.token_states) and torch.equal(with_t5.pooled, without.pooled)
    latents = NoisePolicy.for_backend(backend).latents_for(pipe, PROMPTS, seeds=[0, 1, 2])
    assert torch.equal(latents, standard_noise(SHAPE, [0, 1, 2]))


def test_an_unknown_model_offline_is_one_line(noiseppo, tmp_path: Path) -> None:
    """The diffusers backend's line: every pipeline backend loads through ``plugin.load_pipeline``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    args = ["sample", "--backend", "flux", "--model", "noiseppo-test/no-such-model", "--prompt", "a cat"]
    result = noiseppo(*args, "--out", tmp_path / "out", env=env)  # a process: the hub reads the setting at import
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "noiseppo: error: model 'noiseppo-test/no-such-model' is neither a local folder nor in the Hugging Face "
        "cache, and the hub cannot be reached (offline?): download it first or give a local folder"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("model", "guidance"),
    [("sd3", 1.0), ("sd3", 4.0), ("sd3-wide-pooled", 4.0), ("flux-dev", 3.5), ("flux-schnell", 0)],
)
def test_the_untrained_policy_gives_the_pipelines_own_images(models, model: str, guidance: float) -> None:
    """ε drawn as the pipeline draws its own noise from a seeded generator; the backend, given the
    untrained policy's latents, renders exactly the images of ``pipe(prompts, generator=g)``. For
    FLUX that proves the packing too: the pipeline packs what it draws itself."""
    name, path = models[model]
    backend = get_backend(name, str(path))
    policy = NoisePolicy.for_backend(backend)
    cond = backend.encode(PROMPTS)
    eps = randn_tensor((3, *SHAPE), generator=torch.Generator().manual_seed(7))
    z = policy.noise_to_latents()(cond, eps)
    assert torch.equal(z, eps)
    images = backend.generate(z, cond, 2, guidance)
    assert images.shape == (3, 3, 16, 16) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    schnell = {"max_sequence_length": 256} if model == "flux-schnell" else {}  # as its model card calls it
    own = users_pipeline(path)(
        PROMPTS, generator=torch.Generator().manual_seed(7), num_inference_steps=2, guidance_scale=guidance,
        output_type="pt", **SIZE, **schnell,
    ).images  # fmt: skip
    assert torch.equal(images, own)
    assert torch.equal(backend.generate(z, cond, 2, guidance), images), "generate must be deterministic"


@pytest.mark.parametrize("model", ["sd3", "flux-dev"])
def test_latents_for_gives_a_real_pipeline_the_policys_latents(models, model: str) -> None:
    name, path = models[model]
    pipe, backend = users_pipeline(path), get_backend(name, str(path))
    untrained = NoisePolicy.for_backend(backend)
    # Untrained, with a generator: exactly the images the pipeline draws for itself.
    latents = untrained.latents_for(pipe, PROMPTS, generator=torch.Generator().manual_seed(3))
    assert latents.shape == ((3, 16, 64) if name == "flux" else (3, *SHAPE))  # FLUX: 4x4 tokens of 2x2x16
    mine = pipe(PROMPTS, latents=latents, num_inference_steps=2, output_type="pt", **SIZE).images
    own = pipe(PROMPTS, generator=torch.Generator().manual_seed(3), num_inference_steps=2, output_type="pt", **SIZE)
    assert torch.equal(mine, own.images)

    # Trained (a random head), with seeds: the latents and images of training and `noiseppo sample`.
    torch.manual_seed(0)
    policy = NoisePolicy.for_backend(backend, readout="shared")
    torch.nn.init.normal_(policy.head.weight, std=0.5)
    latents = policy.latents_for(pipe, PROMPTS, seeds=[0, 1, 2])
    expected = latents_for_seeds(policy, backend, PROMPTS, [0, 1, 2])
    assert not torch.equal(expected, standard_noise(SHAPE, [0, 1, 2]))
    assert torch.equal(latents, backend.pipeline_latents(pipe, expected))
    images = pipe(PROMPTS, latents=latents, num_inference_steps=2, output_type="pt", **SIZE).images
    assert torch.equal(images, backend.generate(expected, backend.encode(PROMPTS), 2, backend.default_guidance))


def test_bad_settings_get_one_line(models, tmp_path: Path) -> None:
    for name in ("sd3", "flux"):  # refused before any model is looked for
        with pytest.raises(UserError, match=f"scheduler 'ddim' does not apply to the flow-matching {name} backend"):
            get_backend(name, str(tmp_path / "no-such-model"), "ddim")
        with pytest.raises(UserError, match=f"the {name} backend needs --model"):
            get_backend(name)
    with pytest.raises(UserError, match="is a FluxPipeline; the sd3 backend takes StableDiffusion3Pipeline "):
        get_backend("sd3", str(models["flux-dev"][1]))
    with pytest.raises(UserError, match=r"is a StableDiffusion3Pipeline; .* \(for a StableDiffusion3Pipeline use"):
        get_backend("diffusers", str(models["sd3"][1]))

    schnell = get_backend(*models["flux-schnell"])
    cond = schnell.encode(PROMPTS[:1])
    with pytest.raises(UserError, match="guidance 3.5 asked for, but this FLUX model has no guidance input"):
        schnell.generate(torch.zeros(1, *SHAPE), cond, 1, 3.5)
    with pytest.raises(UserError, match=r"latents must have shape \(1, 16, 8, 8\)"):
        schnell.generate(torch.zeros(1, 16, 64), cond, 1, 0.0)  # packed latents are the pipeline's business

    # A policy of the other family: the same latent shape, other conditioning widths.
    pipe = users_pipeline(models["sd3"][1])
    flux_policy = NoisePolicy(latent_shape=SHAPE, token_dim=24, pooled_dim=16)
    with pytest.raises(UserError) as refused:
        flux_policy.latents_for(pipe, PROMPTS)
    assert str(refused.value) == (
        "the policy is for latents of shape (16, 8, 8), token states 24 wide and pooled vectors 16 wide; the "
        "StableDiffusion3Pipeline has latents of shape (16, 8, 8), token states 32 wide and pooled vectors 32 wide"
    )
    # Only the pooled width differs: refused as well, by the backend and the plug-in alike.
    wide = get_backend(*models["sd3-wide-pooled"])
    with pytest.raises(UserError, match="pooled vectors 32 wide; backend 'sd3' has .* pooled vectors 64 wide$"):
        check_policy(NoisePolicy(latent_shape=SHAPE, token_dim=32, pooled_dim=32), wide)
    with pytest.raises(UserError, match="pooled vectors 32 wide; the StableDiffusion3Pipeline has .* 64 wide$"):
        NoisePolicy(latent_shape=SHAPE, token_dim=32, pooled_dim=32).latents_for(wide.pipe, PROMPTS)
    with pytest.raises(
        UserError, match=r"for latents of shape \(4, 8, 8\), .*; the StableDiffusion3Pipeline has latents"
    ):
        NoisePolicy(latent_shape=(4, 8, 8), token_dim=32, pooled_dim=32).latents_for(pipe, PROMPTS)
    with pytest.raises(UserError, match="^latents_for takes a diffusers pipeline, got a SimpleNamespace$"):
        NoisePolicy(latent_shape=SHAPE, token_dim=32, pooled_dim=32).latents_for(SimpleNamespace(), PROMPTS)


@pytest.mark.parametrize(
    ("model", "steps", "guidance"), [("sd3", 2, 2.0), ("sd3-wide-pooled", 2, 2.0), ("flux-schnell", 4, 0.0)]
)
def test_cli_trains_samples_and_evaluates(noiseppo, models, model: str, steps: int, guidance: float, tmp_path: Path):
    """``noiseppo train`` for 2 iterations through --model PATH, then ``sample`` and ``eval`` on the
    run, which take backend, model, steps and guidance from its config.yaml. The policy reads each
    model's two widths (equal for ``sd3``, the pooled vector the wider for ``sd3-wide-pooled``, the
    token states for FLUX)."""
    name, path = models[model]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    run = tmp_path / "run"
    done = noiseppo.in_process(
        *["train", "--preset", "tiny", "--backend", name, "--model", str(path), "--prompts", str(prompts),
         "--reward", "jpeg_compressibility", "--steps", str(steps), "--out", str(run), f"guidance={guidance}",
         "eval_prompts=", "threads=1"]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["iteration"] == 2 and rows[-1]["reward_mean"] < 0  # minus kB
    config = json.loads((run / "policy" / "config.json").read_text())
    assert config["latent_shape"] == list(SHAPE) and (config["token_dim"], config["pooled_dim"]) == WIDTHS[model]

    out = tmp_path / "samples"
    done = noiseppo.in_process("sample", "--policy", run, "--prompt", "a red cat", "--n", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and rows[0]["steps"] == steps and rows[0]["guidance"] == guidance

    done = noiseppo.in_process(
        *["eval", "--policy", str(run), "--prompts", str(prompts), "--seeds", "2", "--bootstrap", "200",
         "--out", str(tmp_path / "eval")]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["backend"] == name and report["reward"] == "jpeg_compressibility"
    assert report["guidance"] == guidance and [r["steps"] for r in report["results"]] == [steps]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("model", ["sd3", "flux-dev"])
def test_cuda_in_bfloat16(models, model: str) -> None:
    """Device placement and bfloat16: images near float32 CPU's; latents_for draws ε as the pipeline
    does (on its device, in its dtype), so an untrained policy's latents are the pipeline's own noise."""
    name, path = models[model]
    gpu, cpu = get_backend(name, str(path), "default", "cuda", "bfloat16"), get_backend(name, str(path))
    assert gpu.pipe.transformer.device.type == "cuda" and gpu.pipe.transformer.dtype == torch.bfloat16
    cond = gpu.encode(PROMPTS)
    assert cond.token_states.device.type == "cuda" and cond.token_states.dtype == torch.bfloat16
    eps = standard_noise(SHAPE, [0, 1, 2])
    images = gpu.generate(eps, cond, 2, gpu.default_guidance)
    assert images.device.type == "cuda" and images.dtype == torch.float32
    reference = cpu.generate(eps, cpu.encode(PROMPTS), 2, cpu.default_guidance)
    assert (images.cpu() - reference).abs().max() < 0.1, "bfloat16 strays far from float32"

    policy = NoisePolicy.for_backend(gpu).to("cuda")
    latents = policy.latents_for(gpu.pipe, PROMPTS, generator=torch.Generator("cuda").manual_seed(0))
    assert latents.device.type == "cuda" and latents.dtype == torch.bfloat16
    noise = randn_tensor((3, *SHAPE), generator=torch.Generator("cuda").manual_seed(0), device=latents.device,
                         dtype=torch.bfloat16)  # fmt: skip
    assert torch.equal(latents, gpu.pipeline_latents(gpu.pipe, noise))
    out = gpu.pipe(PROMPTS, latents=latents, num_inference_steps=2, output_type="pt", **SIZE).images
    assert out.shape == (3, 3, 16, 16) and torch.isfinite(out).all()
