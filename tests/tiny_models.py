"""Tiny random-weight models built offline, saved the way users' models are (safetensors)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

PROMPT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,!'"


def tiny_clip_tokenizer(folder: Path, max_length: int = 16):
    """A CLIP tokenizer over single characters, from a vocab.json and merges.txt written here."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in PROMPT_CHARS:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), model_max_length=max_length
    )


def tiny_clip_text_config(**extra):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=2 + 2 * len(PROMPT_CHARS), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1, **extra,
    )  # fmt: skip


def tiny_sd_pipeline(folder: Path, seed: int = 0) -> Path:
    """A StableDiffusionPipeline of a few thousand random weights (16x16 images, 4x8x8 latents)
    saved with ``save_pretrained`` to ``folder``: what ``--model PATH`` loads."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    )  # fmt: skip
    vae = tiny_vae()
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        set_alpha_to_one=False, steps_offset=1,
    )  # fmt: skip
    pipe = StableDiffusionPipeline(
        vae=vae, text_encoder=CLIPTextModel(tiny_clip_text_config()), tokenizer=tiny_clip_tokenizer(folder / "_vocab"),
        unet=unet, scheduler=scheduler, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )  # fmt: skip
    pipe.save_pretrained(folder / "pipeline", safe_serialization=True)
    return folder / "pipeline"


def tiny_vae(latent_channels: int = 4, **flow):
    """A random AutoencoderKL: 16x16 RGB images to 4x8x8 latents (SD's factor of 8 would need more blocks);
    ``flow`` sets the flow models' extras (16 channels, scaling and shift factors, no quant convs)."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 8), in_channels=3, out_channels=3, latent_channels=latent_channels, norm_num_groups=4,
        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=16,
        **flow,
    )  # fmt: skip


def tiny_clip(folder: Path, seed: int = 0) -> Path:
    """A random CLIPModel (32x32 images, 8-dim projections) and its CLIPProcessor, saved to ``folder``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPVisionConfig

    torch.manual_seed(seed)
    vision = CLIPVisionConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32, patch_size=8
    )
    config = CLIPConfig(text_config=tiny_clip_text_config().to_dict(), vision_config=vision.to_dict(), projection_dim=8)
    CLIPModel(config).save_pretrained(folder / "clip")
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    CLIPProcessor(image_processor=images, tokenizer=tiny_clip_tokenizer(folder / "_vocab")).save_pretrained(
        folder / "clip"
    )
    return folder / "clip"


def tiny_sdxl_pipeline(folder: Path, seed: int = 0) -> Path:
    """A StableDiffusionXLPipeline of random weights, two text encoders (16 wide each, so 32-wide
    token states and an 8-wide pooled embedding), Euler, 16x16 images; saved to ``folder``."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=4, use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, projection_class_embeddings_input_dim=6 * 8 + 8,
    )  # fmt: skip
    vae = tiny_vae()
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1, timestep_spacing="leading"
    )
    tokenizer = tiny_clip_tokenizer(folder / "_vocab")
    pipe = StableDiffusionXLPipeline(
        vae=vae, unet=unet, scheduler=scheduler, tokenizer=tokenizer, tokenizer_2=tokenizer,
        text_encoder=CLIPTextModel(tiny_clip_text_config()),
        text_encoder_2=CLIPTextModelWithProjection(tiny_clip_text_config(projection_dim=8)),
    )  # fmt: skip
    pipe.save_pretrained(folder / "pipeline", safe_serialization=True)
    return folder / "pipeline"


def tiny_t5(d_model: int):
    """A random T5 encoder ``d_model`` wide and a T5 tokenizer over single characters (a Unigram
    vocabulary written here: the real ones are downloads)."""
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(c, -2.0) for c in PROMPT_CHARS] + [("\u2581" + c, -1.5) for c in PROMPT_CHARS]
    tokenizer = T5TokenizerFast(vocab=pieces, extra_ids=0)
    config = T5Config(
        vocab_size=len(pieces), d_model=d_model, d_kv=8, d_ff=32, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1,
        decoder_start_token_id=0,
    )  # fmt: skip
    return T5EncoderModel(config), tokenizer


def tiny_sd3_pipeline(folder: Path, seed: int = 0, projection_dim: int = 16) -> Path:
    """A StableDiffusion3Pipeline of random weights: CLIP-L and CLIP-G 16 wide each (so 32-wide CLIP
    token states), each projected to ``projection_dim`` (so a pooled vector twice that wide: 32 by
    default, as wide as the token states; another ``projection_dim`` makes the two widths differ, as
    nothing in SD3's architecture forbids), a T5 32 wide, 16x16 images, 16x8x8 latents; saved to ``folder``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(seed)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=1, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16,
        pooled_projection_dim=2 * projection_dim, pos_embed_max_size=8,
    )  # fmt: skip
    t5, t5_tokenizer = tiny_t5(d_model=32)
    tokenizer = tiny_clip_tokenizer(folder / "_vocab")
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=tiny_vae(16, scaling_factor=1.5305, shift_factor=0.0609, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModelWithProjection(tiny_clip_text_config(projection_dim=projection_dim)),
        text_encoder_2=CLIPTextModelWithProjection(tiny_clip_text_config(projection_dim=projection_dim)),
        tokenizer=tokenizer, tokenizer_2=tokenizer,
        text_encoder_3=t5, tokenizer_3=t5_tokenizer,
    )  # fmt: skip
    pipe.save_pretrained(folder / "pipeline", safe_serialization=True)
    return folder / "pipeline"


def tiny_flux_pipeline(folder: Path, guidance_embeds: bool = True, seed: int = 0) -> Path:
    """A FluxPipeline of random weights: a CLIP-L 16 wide (pooled), a T5 24 wide (tokens), 16x16
    images (the VAE's sample_size), 16x8x8 latents packed into 16 tokens of 64; with a guidance input
    (FLUX.1-dev's distilled guidance) or without (FLUX.1-schnell); saved to ``folder``."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=24, pooled_projection_dim=16, guidance_embeds=guidance_embeds,
        axes_dims_rope=(4, 6, 6),
    )  # fmt: skip
    # FLUX.1-dev's schedule shifts with the image size; FLUX.1-schnell's does not.
    scheduler = (
        FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15)
        if guidance_embeds
        else FlowMatchEulerDiscreteScheduler(shift=1.0)
    )
    t5, t5_tokenizer = tiny_t5(d_model=24)
    pipe = FluxPipeline(
        transformer=transformer, scheduler=scheduler,
        vae=tiny_vae(16, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False),
        text_encoder=CLIPTextModel(tiny_clip_text_config()), tokenizer=tiny_clip_tokenizer(folder / "_vocab"),
        text_encoder_2=t5, tokenizer_2=t5_tokenizer,
    )  # fmt: skip
    pipe.save_pretrained(folder / "pipeline", safe_serialization=True)
    return folder / "pipeline"
