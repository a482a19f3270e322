"""diffusers pipelines as backends: ``StableDiffusionPipeline`` (SD 1.x / 2.x, SD-Turbo) and
``StableDiffusionXLPipeline`` (SDXL, SDXL-Turbo).

The pipeline does the work; this module only fixes what the Backend contract needs:

- **Conditioning** comes from the pipeline's own ``encode_prompt``: the token states are
  its prompt embeddings, the mask is all True (the U-Net attends to every position,
  padding included), and the pooled vector is the mean of the token states over the mask
  (for SDXL too, whose own pooled text embedding has another width than its token states:
  the policy reads one width).
- **Latents** go in through ``latents=``. The policy's z is in N(0, I) units and the
  pipeline's ``prepare_latents`` multiplies given latents by ``scheduler.init_noise_sigma``
  itself, so z is passed as is (only moved to the pipeline's device and dtype).
- **Determinism**: every call gets a freshly seeded generator, so schedulers that draw
  noise while stepping (ancestral ones) repeat themselves and leave the global RNG alone.

The same ``encode_prompts`` and ``pipeline_latent_shape`` serve ``NoisePolicy.latents_for``
at inference, so a policy sees exactly the conditioning it was trained on.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from diffusers import DiffusionPipeline

from noiseppo.backends.base import SCHEDULERS, Conditioning, check_generate_args
from noiseppo.errors import UserError
from noiseppo.hub import load_error, quiet

if TYPE_CHECKING:
    from noiseppo.policy import Mode, NoisePolicy

MAX_STEPS = 1000
"""The training schedule's length bounds the step count."""


def supported() -> tuple[type[DiffusionPipeline], ...]:
    """The pipeline classes this backend drives."""
    with quiet():
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    return (StableDiffusionPipeline, StableDiffusionXLPipeline)


def _is_sdxl(pipe: DiffusionPipeline) -> bool:
    return hasattr(pipe, "text_encoder_2")


def load_pipeline(model: str, dtype: torch.dtype) -> DiffusionPipeline:
    """The pipeline at ``model`` (a local folder or a hub id), weights from safetensors only.

    ``use_safetensors=True`` makes diffusers (and transformers, for the text encoder)
    refuse a model that only has pickled ``.bin`` weights instead of unpickling them.
    """
    try:
        with quiet():
            pipe = DiffusionPipeline.from_pretrained(model, dtype=dtype, use_safetensors=True)
    except (OSError, ValueError) as e:
        raise load_error("the diffusers pipeline", model, e) from None
    if not isinstance(pipe, supported()):
        known = ", ".join(cls.__name__ for cls in supported())
        raise UserError(f"'{model}' is a {type(pipe).__name__}; the diffusers backend takes {known}")
    return pipe


def pipeline_latent_shape(pipe: DiffusionPipeline) -> tuple[int, int, int]:
    """(channels, height, width) of the pipeline's initial latents at its default image size."""
    size = pipe.unet.config.sample_size
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return (pipe.unet.config.in_channels, height, width)


@torch.no_grad()
def encode_prompts(pipe: DiffusionPipeline, prompts: Sequence[str]) -> Conditioning:
    """The pipeline's prompt embeddings as a Conditioning (see the module docstring)."""
    device = pipe._execution_device
    states = pipe.encode_prompt(
        prompt=list(prompts), device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
    )[0]  # SD: (embeds, negative); SDXL: (embeds, negative, pooled, negative pooled)
    mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
    weights = mask[..., None].to(states.dtype)
    pooled = (states * weights).sum(1) / weights.sum(1)
    return Conditioning(list(prompts), states, pooled, mask)


def policy_latents_for(
    policy: NoisePolicy,
    pipe: DiffusionPipeline,
    prompts: str | Sequence[str],
    generator: torch.Generator | None = None,
    seeds: Sequence[int] | None = None,
    mode: Mode = "sample",
) -> torch.Tensor:
    """``NoisePolicy.latents_for``: the policy's initial latents for ``pipe(prompts, latents=...)``.

    The standard noise ε is drawn as the pipeline draws its own in float32 (``randn_tensor``
    with ``generator``), so an untrained policy gives that call's images; or, with ``seeds``,
    by noiseppo's seed rule, so the latents pair with ``noiseppo sample --seed``. The result
    is on the pipeline's device, in its dtype.
    """
    from diffusers.utils.torch_utils import randn_tensor

    from noiseppo.sampling import standard_noise

    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    shape = pipeline_latent_shape(pipe)
    if shape != policy.latent_shape:
        raise UserError(f"the policy makes latents of shape {policy.latent_shape}, the pipeline takes {shape}")
    if seeds is not None and generator is not None:
        raise UserError("give a generator or seeds, not both")
    if seeds is not None:
        if len(seeds) != len(prompts):
            raise UserError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
        eps = standard_noise(shape, seeds)
    else:
        eps = randn_tensor((len(prompts), *shape), generator=generator, device=pipe._execution_device)
    conditioning = encode_prompts(pipe, prompts)
    return policy.latents_fn(mode)(conditioning, eps).to(pipe._execution_device, conditioning.token_states.dtype)


def _check_scheduler(name: str) -> None:
    if name != "default" and name not in SCHEDULERS:
        raise UserError(f"unknown scheduler '{name}' (known: {', '.join([*SCHEDULERS, 'default'])})")


class DiffusersBackend:
    """A frozen diffusers text-to-image pipeline behind the backend interface."""

    name = "diffusers"

    def __init__(self, pipe: DiffusionPipeline, scheduler: str = "default", device: str | torch.device = "cpu"):
        _check_scheduler(scheduler)
        if scheduler != "default":
            # The pipeline's own noise schedule and timestep spacing, another solver.
            pipe.scheduler = SCHEDULERS[scheduler].from_config(pipe.scheduler.config)
        pipe.to(device)
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                component.eval().requires_grad_(False)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.device = torch.device(device)
        self.dtype = pipe.unet.dtype
        self.latent_shape = pipeline_latent_shape(pipe)
        self.default_guidance = float(inspect.signature(type(pipe).__call__).parameters["guidance_scale"].default)

    @classmethod
    def load(
        cls,
        model: str,
        scheduler: str = "default",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> DiffusersBackend:
        _check_scheduler(scheduler)  # before a download, not after
        if dtype == torch.float16 and torch.device(device).type == "cpu":
            raise UserError("float16 pipelines do not run on the CPU in diffusers: use float32 or bfloat16 there")
        return cls(load_pipeline(model, dtype), scheduler, device)

    def encode(self, prompts: list[str]) -> Conditioning:
        return encode_prompts(self.pipe, prompts)

    @torch.no_grad()
    def generate(self, latents: torch.Tensor, conditioning: Conditioning, steps: int, guidance: float) -> torch.Tensor:
        """Images in [0, 1], (N, 3, H, W), float32, from initial latents ~ N(0, I) of ``latent_shape``."""
        check_generate_args(latents, len(conditioning), self.latent_shape, steps, guidance, MAX_STEPS)
        scale = self.pipe.vae_scale_factor
        if _is_sdxl(self.pipe):
            # SDXL's U-Net also reads text_embeds, which the Conditioning does not carry (its pooled
            # vector is the token mean, one width for the policy): the pipeline encodes the prompts
            # again, the same deterministic encoding as ``encode``.
            prompt = {"prompt": list(conditioning.prompts)}
        else:
            prompt = {"prompt_embeds": conditioning.token_states.to(self.device, self.dtype)}
        out = self.pipe(
            **prompt,
            latents=latents.to(self.device, self.dtype),
            height=self.latent_shape[1] * scale,
            width=self.latent_shape[2] * scale,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=torch.Generator(self.device).manual_seed(0),
            output_type="pt",
        )
        return out.images.float()
