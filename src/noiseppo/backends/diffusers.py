"""diffusers pipelines as backends: ``StableDiffusionPipeline`` (SD 1.x / 2.x, SD-Turbo) and
``StableDiffusionXLPipeline`` (SDXL, SDXL-Turbo). What all pipeline backends share (freezing,
rendering) is in ``noiseppo.backends.pipeline``; loading and the ``latents_for`` plug-in are in
``noiseppo.backends.plugin``.

- **Conditioning** comes from the pipeline's own ``encode_prompt``: the token states are
  its prompt embeddings (768 wide for SD 1.x, 1024 for SD 2.x, 2048 for SDXL), the mask is
  all True (the U-Net attends to every position, padding included). The pooled vector is
  what the U-Net reads of the whole prompt: SDXL's own pooled text embedding (CLIP-G's
  projection, 1280 wide, the U-Net's ``text_embeds``); SD 1.x/2.x has none, so there it is
  the mean of the token states over the mask, as wide as they are. (Before the policy read
  two widths, SDXL's pooled vector was that mean too: an SDXL policy saved then reads a
  2048-wide pooled vector and is refused with both widths named; train it again.)
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
    def conditioning_widths(pipe: DiffusionPipeline) -> tuple[int, int]:
        """The prompt embeddings' width (the U-Net's ``cross_attention_dim``), and SDXL's pooled text
        embedding's (CLIP-G's ``projection_dim``) or, for SD, the token states' again."""
        tokens = pipe.unet.config.cross_attention_dim
        return (tokens, pipe.text_encoder_2.config.projection_dim) if _is_sdxl(pipe) else (tokens, tokens)

    @staticmethod
    @torch.no_grad()
    def encode_prompts(pipe: DiffusionPipeline, prompts: Sequence[str]) -> Conditioning:
        """The pipeline's prompt embeddings, an all-True mask, and SDXL's pooled embedding or, for SD,
        the embeddings' mean (module docstring)."""
        device = pipe._execution_device
        encoded = pipe.encode_prompt(
            prompt=list(prompts), device=device, num_images_per_prompt=1, do_classifier_free_guidance=False
        )  # SD: (embeds, negative); SDXL: (embeds, negative, pooled, negative pooled)
        states = encoded[0]
        mask = torch.ones(states.shape[:2], dtype=torch.bool, device=states.device)
        pooled = encoded[2] if _is_sdxl(pipe) else masked_mean(states, mask)
        return Conditioning(list(prompts), states, pooled, mask)

    def prompt_inputs(self, conditioning: Conditioning) -> dict[str, Any]:
        """The encoded prompt embeddings, and for SDXL its pooled embedding (the U-Net's ``text_embeds``)."""
        inputs = {"prompt_embeds": conditioning.token_states.to(self.device, self.dtype)}
        if _is_sdxl(self.pipe):
            inputs["pooled_prompt_embeds"] = conditioning.pooled.to(self.device, self.dtype)
        return inputs
