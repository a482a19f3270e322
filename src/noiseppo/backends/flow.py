"""Flow-matching pipelines as backends: ``StableDiffusion3Pipeline`` (``sd3``: SD3, SD3.5
medium, large and turbo) and ``FluxPipeline`` (``flux``: FLUX.1-dev, FLUX.1-schnell).

Both sample with the pipeline's own ``FlowMatchEulerDiscreteScheduler``, and both take the
initial noise unscaled: a flow runs from x_1 = ε ~ N(0, I) to the data, the scheduler has no
``init_noise_sigma`` (neither pipeline scales given latents), and the VAE's ``scaling_factor``
and ``shift_factor`` are applied only when the final latents are decoded. So the policy's z, in N(0, I) units, is the
pipeline's own noise, in the model's unpacked latent shape (16 x H/8 x W/8 for both):

- **SD3** takes z as is (its ``prepare_latents`` returns given latents unchanged);
- **FLUX** takes its latents packed, 2x2 patches as tokens, (N, H/16 * W/16, 64): the backend
  packs z with the pipeline's own ``_pack_latents``, which its ``prepare_latents`` applies
  to the noise it draws itself.

What the policy reads (its ``token_dim`` and ``pooled_dim`` are the two widths):

- **SD3**: the CLIP-L and CLIP-G token states side by side (77 x 2048: their hidden widths,
  768 + 1280), the mask all True (the transformer attends to every position), and the
  pipeline's own pooled vector, CLIP-L's and CLIP-G's projections side by side (768 + 1280 =
  2048 in the released models, the same width as the token states by coincidence; nothing in
  the architecture ties them). Not T5: SD3 runs without it (``text_encoder_3=None``, a common
  way to save its 9.5 GB), and its T5 states are then zeros; the CLIP states are there in
  every SD3 variant, and 77 tokens 2048 wide keep the policy's input projection at half the
  cost of T5's.
- **FLUX**: the T5 token states (512 x 4096 for FLUX.1-dev, 256 x 4096 for -schnell), its
  only token input, the mask True on the prompt's real tokens (T5 pads with states that are
  not zero, and the pipeline does not mask them); and the pipeline's own pooled vector,
  CLIP-L's (768 wide), which the transformer reads as its whole-prompt input. (Before the
  policy read two widths, FLUX's pooled vector was the T5 states' mean over the mask: a FLUX
  policy saved then reads a 4096-wide pooled vector and is refused with both widths named.)

So an SD3 policy reads 2048-wide token states and a FLUX policy 4096-wide ones, and a policy
of one family is refused by the other (the latent shapes match at 1024 x 1024).

Guidance follows each model: SD3's ``guidance`` is classifier-free guidance (above 1 the
pipeline runs a negative pass); FLUX.1-dev's is the distilled guidance the transformer
reads as an input (one pass, not CFG); a FLUX transformer without that input
(``guidance_embeds`` false: FLUX.1-schnell) takes guidance 0 and refuses any other.
T5 reads at most 256 tokens for SD3 and FLUX.1-schnell (diffusers' Flux page: schnell's
``max_sequence_length`` "cannot be more than 256") and 512 for FLUX.1-dev, the pipelines'
defaults otherwise; ``generate`` lets the pipeline encode the prompts itself, as
``pipe(prompts, latents=z, max_sequence_length=...)`` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from noiseppo.backends.base import Conditioning
from noiseppo.backends.pipeline import PipelineBackend, call_default
from noiseppo.errors import UserError


class FlowBackend(PipelineBackend):
    """A flow-matching transformer pipeline: the pipeline's own scheduler, no other."""

    denoiser = "transformer"

    @classmethod
    def scheduler_class(cls, name: str) -> type[SchedulerMixin]:
        """Always one line: no other scheduler than the pipeline's own applies."""
        # ddim, euler and dpm step a diffusion model's noise prediction; a flow model predicts a velocity.
        raise UserError(
            f"scheduler '{name}' does not apply to the flow-matching {cls.name} backend: it takes only "
            "'default' (the pipeline's own FlowMatchEulerDiscreteScheduler)"
        )


class SD3Backend(FlowBackend):
    """A frozen ``StableDiffusion3Pipeline``: CLIP conditioning for the policy, CFG for the model."""

    name = "sd3"
    pipeline_classes = ("StableDiffusion3Pipeline",)

    @staticmethod
    def pipeline_latent_shape(pipe: DiffusionPipeline) -> tuple[int, int, int]:
        """``transformer.in_channels`` x its ``sample_size``: the pipeline's default image size."""
        size = pipe.transformer.config.sample_size
        return (pipe.transformer.config.in_channels, size, size)

    @staticmethod
    def conditioning_widths(pipe: DiffusionPipeline) -> tuple[int, int]:
        """CLIP-L's and CLIP-G's hidden widths side by side (768 + 1280 = 2048), and their projection
        widths side by side (768 + 1280 = 2048 too in the released models)."""
        clip_l, clip_g = pipe.text_encoder.config, pipe.text_encoder_2.config
        return clip_l.hidden_size + clip_g.hidden_size, clip_l.projection_dim + clip_g.projection_dim

    @staticmethod
    @torch.no_grad()
    def encode_prompts(pipe: DiffusionPipeline, prompts: Sequence[str]) -> Conditioning:
        """The CLIP part of the pipeline's prompt embeddings and its pooled vector (module docstring)."""
        states, _, pooled, _ = pipe.encode_prompt(
            prompt=list(prompts),
            prompt_2=None,
            prompt_3=None,
            device=pipe._execution_device,
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
            max_sequence_length=call_default(pipe, "max_sequence_length"),
        )
        # prompt_embeds is [CLIP-L | CLIP-G, zero-padded to T5's width] then T5, along the sequence.
        clip = states[:, : pipe.tokenizer_max_length, : SD3Backend.conditioning_widths(pipe)[0]]
        mask = torch.ones(clip.shape[:2], dtype=torch.bool, device=clip.device)
        return Conditioning(list(prompts), clip, pooled, mask)


class FluxBackend(FlowBackend):
    """A frozen ``FluxPipeline``: T5 conditioning for the policy, packed latents, distilled guidance."""

    name = "flux"
    pipeline_classes = ("FluxPipeline",)

    @staticmethod
    def conditioning_widths(pipe: DiffusionPipeline) -> tuple[int, int]:
        """T5's width (4096) and CLIP-L's (768), whose pooled output is the pipeline's pooled vector."""
        return pipe.text_encoder_2.config.d_model, pipe.text_encoder.config.hidden_size

    @staticmethod
    def pipeline_latent_shape(pipe: DiffusionPipeline) -> tuple[int, int, int]:
        """16 x H/8 x W/8 at the VAE's ``sample_size``, the model's native resolution.

        FluxPipeline has no size in its config (its default, 128 latent pixels a side, is
        written in its code); the VAE's ``sample_size`` is 1024 for FLUX.1-dev and -schnell,
        the same 1024 x 1024, and follows a model folder that is made for another size.
        """
        size = pipe.vae.config.sample_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        step = 2 * pipe.vae_scale_factor  # 2x2 packing: even latent sides, as prepare_latents rounds them
        return (pipe.transformer.config.in_channels // 4, 2 * (height // step), 2 * (width // step))

    @staticmethod
    def max_sequence_length(pipe: DiffusionPipeline) -> int:
        """T5's token count: the pipeline's default (512) for FLUX.1-dev, 256 for a transformer
        without a guidance input (FLUX.1-schnell, which diffusers' Flux page limits to 256)."""
        return call_default(pipe, "max_sequence_length") if pipe.transformer.config.guidance_embeds else 256

    @staticmethod
    @torch.no_grad()
    def encode_prompts(pipe: DiffusionPipeline, prompts: Sequence[str]) -> Conditioning:
        """The pipeline's T5 states, masked to the prompts' tokens, and its pooled CLIP-L vector (module docstring)."""
        length = FluxBackend.max_sequence_length(pipe)
        states, pooled, _ = pipe.encode_prompt(
            prompt=list(prompts),
            prompt_2=None,
            device=pipe._execution_device,
            num_images_per_prompt=1,
            max_sequence_length=length,
        )
        tokens = pipe.tokenizer_2(
            list(prompts), padding="max_length", max_length=length, truncation=True, return_tensors="pt"
        )  # as _get_t5_prompt_embeds tokenizes: the same positions
        mask = tokens.attention_mask.to(states.device, torch.bool)
        return Conditioning(list(prompts), states, pooled, mask)

    def prompt_inputs(self, conditioning: Conditioning) -> dict[str, Any]:
        """The prompts, and T5's token count for this model."""
        return {"prompt": list(conditioning.prompts), "max_sequence_length": self.max_sequence_length(self.pipe)}

    @staticmethod
    def pipeline_latents(pipe: DiffusionPipeline, z: torch.Tensor) -> torch.Tensor:
        """z packed into 2x2 patches, (N, H/2 * W/2, 4C), as ``prepare_latents`` packs its own noise."""
        n, channels, height, width = z.shape
        return pipe._pack_latents(z, n, channels, height, width)

    @staticmethod
    def pipeline_default_guidance(pipe: DiffusionPipeline) -> float:
        """The pipeline's default (3.5) where the transformer reads guidance; else 0, the only value."""
        return float(call_default(pipe, "guidance_scale")) if pipe.transformer.config.guidance_embeds else 0.0

    def check_guidance(self, guidance: float) -> None:
        """Refuse guidance other than 0 for a transformer without a guidance input."""
        if guidance != 0 and not self.pipe.transformer.config.guidance_embeds:
            raise UserError(
                f"guidance {guidance} asked for, but this FLUX model has no guidance input (guidance_embeds "
                "is false, as for FLUX.1-schnell): use guidance 0"
            )
