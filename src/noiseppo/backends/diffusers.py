"""diffusers pipelines as backends: ``StableDiffusionPipeline`` (SD 1.x / 2.x, SD-Turbo) and
``StableDiffusionXLPipeline`` (SDXL, SDXL-Turbo). What all pipeline backends share (freezing,
rendering) is in ``noiseppo.backends.pipeline``; loading and the ``latents_for`` plug-in are in
``noiseppo.backends.plugin``.

- **Conditioning** comes from the pipeline's own ``encode_prompt``: the token states are
  its prompt embeddings, the mask is all True (the U-Net attends to every position,
  padding included), and the pooled vector is the mean of the token states over the mask
  (for SDXL too, whose own pooled text embedding has another width than its token states:
  the policy reads one width).
- **Latents** go in through ``latents=``. The policy's z is in N(0, I) units and the
  pipeline's ``prepare_latents`` multiplies given latents by ``scheduler.init_noise_sigma``
  itself, so z is passed as is (only moved to the pipeline's device and dtype).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from noiseppo.backends.base import Conditioning, named_scheduler
from noiseppo.backends.pipeline import PipelineBackend, masked_mean


def _is_sdxl(pipe: DiffusionPipeline) -> bool:
    return hasattr(pipe, "text_encoder_2")


class DiffusersBackend(PipelineBackend):
    """A frozen SD or SDXL pipeline behind the backend interface."""

    name = "diffusers"
    pipeline_classes = ("StableDiffusionPipeline", "StableDiffusionXLPipeline")
    denoiser = "unet"
    conditioning = "the pipeline's prompt embeddings"

    @classmethod
    def scheduler_class(cls, name: str) -> type[SchedulerMixin]:
        """ddim, euler or dpm, on the pipeline's own schedule config."""
        return named_scheduler(name)

    @staticmethod
    def pipeline_latent_shape(pipe: DiffusionPipeline) -> tuple[int, int, int]:
        """``unet.in_channels`` x its ``sample_size``: the pipeline's default image size."""
        size = pipe.unet.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return (pipe.unet.config.in_channels, height, width)

    @staticmethod
    def conditioning_width(pipe: DiffusionPipeline) -> int:
        """The width of the prompt embeddings the U-Net reads (768 for SD 1.x, 2048 for SDXL)."""
        return pipe.unet.config.cross_attention_dim

    @staticmethod
    @torch.no_grad()
    def encode_prompts(pipe: DiffusionPipeline, prompts: Sequence[str]) -> Conditioning:
        """The pipeline's prompt embeddings, an all-True mask and their mean (module docstring)."""
        device = pipe._execution_device
        states = pipe.encode_prompt(
            prompt=list(prompts), device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )[0]  # SD: (embeds, negative); SDXL: (embeds, negative, pooled, negative pooled)
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        return Conditioning(list(prompts), states, masked_mean(states, mask), mask)

    def prompt_inputs(self, conditioning: Conditioning) -> dict[str, Any]:
        """SD: the encoded prompt embeddings; SDXL: the prompts (see below)."""
        if _is_sdxl(self.pipe):
            # SDXL's U-Net also reads text_embeds, which the Conditioning does not carry (its pooled
            # vector is the token mean, one width for the policy): the pipeline encodes the prompts
            # again, the same deterministic encoding as ``encode``.
            return {"prompt": list(conditioning.prompts)}
        return {"prompt_embeds": conditioning.token_states.to(self.device, self.dtype)}
