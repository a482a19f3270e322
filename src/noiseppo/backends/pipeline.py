"""What every diffusers-pipeline backend shares: freezing, rendering, and the static methods
the ``NoisePolicy.latents_for`` plug-in (``noiseppo.backends.plugin``) calls.

A pipeline backend (``diffusers`` for SD and SDXL, ``sd3``, ``flux``) is a ``PipelineBackend``
subclass. It names the pipeline classes it drives and says, in a few static methods that read
only the pipeline, what the policy sees of it (``pipeline_latent_shape``, ``encode_prompts``,
``conditioning_widths``) and how the policy's latents go in (``pipeline_latents``). The backend
and the plug-in (``plugin``, which lists the backends and loads them) call the same methods, so
a policy sees at inference exactly the conditioning it was trained on, and its latents go in
where the pipeline would have drawn its own noise.

The pipeline does the work; the base class only fixes what the Backend contract needs:

- the pipeline is frozen (eval, no gradients) and its progress bar is off;
- every ``generate`` gets a freshly seeded generator, so schedulers that draw noise while
  stepping repeat themselves and leave the global RNG alone;
- images come back as float32 tensors in [0, 1] at the size the latent shape implies.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from noiseppo.backends.base import Conditioning, check_generate_args

MAX_STEPS = 1000
"""The training schedule's length bounds the step count."""

ENCODE_BATCH = 8
"""Prompts per text-encoder pass: training encodes every prompt once at start-up, and T5-XXL's
activations grow with the batch (64 prompts of FLUX's 256 tokens: a start-up peak 1.45x
sampling's RSS at real widths, benchmarks/real_sizes.py; 8 keep it near a render's)."""


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of token states (N, L, D) over the positions where ``mask`` (N, L) is True."""
    weights = mask[..., None].to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1)


def call_default(pipe: DiffusionPipeline, argument: str) -> Any:
    """The default of ``argument`` in the pipeline's ``__call__``: what ``pipe(prompt)`` uses."""
    return inspect.signature(type(pipe).__call__).parameters[argument].default


class PipelineBackend:
    """A frozen diffusers text-to-image pipeline behind the backend interface (see the module docstring)."""

    name: ClassVar[str]
    pipeline_classes: ClassVar[tuple[str, ...]]
    """Names of the diffusers pipeline classes this backend drives."""
    denoiser: ClassVar[str]
    """The pipeline's denoising component (``unet`` or ``transformer``): its dtype is the pipeline's."""

    def __init__(self, pipe: DiffusionPipeline, scheduler: str = "default", device: str | torch.device = "cpu"):
        if scheduler != "default":
            # The pipeline's own noise schedule and timestep spacing, another solver.
            pipe.scheduler = self.scheduler_class(scheduler).from_config(pipe.scheduler.config)
        pipe.to(device)
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                component.eval().requires_grad_(False)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.device = torch.device(device)
        self.dtype = getattr(pipe, self.denoiser).dtype
        self.latent_shape = self.pipeline_latent_shape(pipe)
        self.token_dim, self.pooled_dim = self.conditioning_widths(pipe)
        self.default_guidance = self.pipeline_default_guidance(pipe)

    # -- what a subclass says about its pipelines ------------------------------------------
    @classmethod
    def scheduler_class(cls, name: str) -> type[SchedulerMixin]:
        """The scheduler ``--scheduler name`` selects (``default``: keep the pipeline's), or one line."""
        raise NotImplementedError

    @staticmethod
    def pipeline_latent_shape(pipe: DiffusionPipeline) -> tuple[int, int, int]:
        """(channels, height, width) of the initial latents the policy makes for ``pipe``."""
        raise NotImplementedError

    @staticmethod
    def conditioning_widths(pipe: DiffusionPipeline) -> tuple[int, int]:
        """The widths of the token states and of the pooled vector ``encode_prompts`` gives."""
        raise NotImplementedError

    @staticmethod
    def encode_prompts(pipe: DiffusionPipeline, prompts: Sequence[str]) -> Conditioning:
        """What the policy reads of ``prompts`` (at most ``ENCODE_BATCH`` of them)."""
        raise NotImplementedError

    @staticmethod
    def pipeline_latents(pipe: DiffusionPipeline, z: torch.Tensor) -> torch.Tensor:
        """The policy's latents z (N, C, H, W) as ``pipe(latents=...)`` takes them."""
        return z

    @staticmethod
    def pipeline_default_guidance(pipe: DiffusionPipeline) -> float:
        """The guidance ``pipe(prompt)`` renders with."""
        return float(call_default(pipe, "guidance_scale"))

    def check_guidance(self, guidance: float) -> None:
        """Refuse a guidance scale the model does not take (beyond ``guidance >= 0``)."""

    def prompt_inputs(self, conditioning: Conditioning) -> dict[str, Any]:
        """The prompt arguments of the pipeline call that renders ``conditioning``."""
        return {"prompt": list(conditioning.prompts)}

    # -- the Backend interface -------------------------------------------------------------
    def encode(self, prompts: list[str]) -> Conditioning:
        """The conditioning the policy reads (``encode_prompts``, ``ENCODE_BATCH`` prompts at a time)."""
        return encode_all(type(self), self.pipe, prompts)

    @torch.no_grad()
    def generate(self, latents: torch.Tensor, conditioning: Conditioning, steps: int, guidance: float) -> torch.Tensor:
        """Images in [0, 1], (N, 3, H, W), float32, from initial latents ~ N(0, I) of ``latent_shape``."""
        check_generate_args(latents, len(conditioning), self.latent_shape, steps, guidance, MAX_STEPS)
        self.check_guidance(guidance)
        scale = self.pipe.vae_scale_factor
        out = self.pipe(
            **self.prompt_inputs(conditioning),
            latents=self.pipeline_latents(self.pipe, latents.to(self.device, self.dtype)),
            height=self.latent_shape[1] * scale,
            width=self.latent_shape[2] * scale,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=torch.Generator(self.device).manual_seed(0),
            output_type="pt",
        )
        return out.images.float()


def encode_all(backend: type[PipelineBackend], pipe: DiffusionPipeline, prompts: Sequence[str]) -> Conditioning:
    """``backend.encode_prompts`` over any number of prompts, ``ENCODE_BATCH`` at a time."""
    prompts = list(prompts)
    chunks = [backend.encode_prompts(pipe, prompts[i : i + ENCODE_BATCH]) for i in range(0, len(prompts), ENCODE_BATCH)]
    if len(chunks) == 1:
        return chunks[0]
    return Conditioning(
        prompts,
        torch.cat([c.token_states for c in chunks]),
        torch.cat([c.pooled for c in chunks]),
        torch.cat([c.mask for c in chunks]),
    )
