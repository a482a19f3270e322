"""The real-size architectures of benchmarks/random_pipelines.py: parameter counts at full size (on
the meta device, no memory), and the builder's pipelines, shrunk, through the backends and the CLI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from random_pipelines import ARCHITECTURES, CLIP_EOS, component, save_pickscore, save_pipeline  # noqa: E402

# Published parameter counts: the models' safetensors headers as diffusers and transformers load them
# (SD 2.1's UNet 865,910,724; SDXL's 2,567,463,684; FLUX.1-schnell's transformer, which has no guidance
# embedder, 11,891,178,560, FLUX.1-dev's 11,901,408,320; T5 v1.1 XXL's encoder 4,762,310,656).
# SD 2.x reads OpenCLIP-H's text tower at its penultimate layer: 23 of 24 layers, 340.4 M (the whole
# tower, 354.0 M, is PickScore's). PickScore v1 (CLIP ViT-H/14): 986.1 M.
PUBLISHED = {
    ("sd-turbo", "unet"): 865_910_724,
    ("sd-turbo", "text_encoder"): 340_387_840,
    ("sd-turbo", "vae"): 83_653_863,
    ("sdxl-turbo", "unet"): 2_567_463_684,
    ("sdxl-turbo", "text_encoder"): 123_060_480,
    ("sdxl-turbo", "text_encoder_2"): 694_659_840,
    ("sdxl-turbo", "vae"): 83_653_863,
    ("flux-schnell", "transformer"): 11_891_178_560,
    ("flux-schnell", "text_encoder"): 123_060_480,
    ("flux-schnell", "text_encoder_2"): 4_762_310_656,
    ("flux-schnell", "vae"): 83_819_683,
    ("pickscore", "model"): 986_109_441,
}


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize(("model", "name"), list(PUBLISHED))
def test_full_size_parameter_counts(model, name):
    with torch.device("meta"):
        built = component(model, name, full_depth=True)
    assert abs(count(built) - PUBLISHED[model, name]) <= 0.01 * PUBLISHED[model, name]


def test_flux_reduced_depth_is_what_its_json_says():
    reduced = json.loads((ARCHITECTURES / "flux-schnell" / "reduced_depth.json").read_text())
    with torch.device("meta"):
        transformer = component("flux-schnell", "transformer")
        t5 = component("flux-schnell", "text_encoder_2")
    assert (len(transformer.transformer_blocks), len(transformer.single_transformer_blocks)) == (1, 2)
    assert reduced["transformer"] == {"num_layers": 1, "num_single_layers": 2}
    assert len(t5.encoder.block) == 2
    # Real widths: the blocks are the full model's blocks, so each costs what it costs there.
    assert transformer.inner_dim == 3072 and t5.config.d_model == 4096 and t5.config.d_ff == 10240
    # Per block: 19 double + 38 single at full depth, the rest (embedders, final layer) shared.
    with torch.device("meta"):
        full = component("flux-schnell", "transformer", full_depth=True)
    double, single = count(full.transformer_blocks[0]), count(full.single_transformer_blocks[0])
    assert count(full) - count(transformer) == 18 * double + 36 * single


# Shrunk widths, so that a pipeline of every family builds, saves and renders in a second; the
# tokenizers, schedulers, vocabulary sizes and maximum lengths stay the real ones.
CLIP_TINY = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
VAE_TINY = {"block_out_channels": [8, 8, 8, 8], "norm_num_groups": 4, "layers_per_block": 1}
UNET_TINY = {"norm_num_groups": 4, "attention_head_dim": 2, "layers_per_block": 1}
TINY = {
    "sd-turbo": {
        "unet": UNET_TINY | {"block_out_channels": [8, 8, 16, 16], "cross_attention_dim": 16},
        "text_encoder": CLIP_TINY,
        "vae": VAE_TINY,
    },
    "sdxl-turbo": {
        "unet": UNET_TINY
        | {
            "block_out_channels": [8, 16, 16],
            "transformer_layers_per_block": [1, 1, 1],
            "cross_attention_dim": 32,
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + 8,
        },
        "text_encoder": CLIP_TINY,
        "text_encoder_2": CLIP_TINY | {"projection_dim": 8},
        "vae": VAE_TINY,
    },
    "flux-schnell": {
        "transformer": {
            "num_attention_heads": 2, "attention_head_dim": 16, "axes_dims_rope": [4, 6, 6],
            "joint_attention_dim": 24, "pooled_projection_dim": 16,
        },
        "text_encoder": CLIP_TINY,
        "text_encoder_2": {"d_model": 24, "d_kv": 8, "d_ff": 32, "num_heads": 2, "num_layers": 1},
        "vae": VAE_TINY,
    },
}  # fmt: skip
BACKEND = {"sd-turbo": "diffusers", "sdxl-turbo": "diffusers", "flux-schnell": "flux"}


@pytest.mark.parametrize("model", list(TINY))
def test_builder_pipeline_loads_through_the_backend_and_renders(model, tmp_path):
    from noiseppo.backends import get_backend

    folder = save_pipeline(model, tmp_path, resolution=64, overrides=TINY[model])
    backend = get_backend(BACKEND[model], str(folder), "default", "cpu", "float32")
    channels = 16 if model == "flux-schnell" else 4
    assert backend.latent_shape == (channels, 8, 8)
    pipe = backend.pipe
    assert pipe.tokenizer.model_max_length == 77 and pipe.tokenizer.eos_token_id == CLIP_EOS
    assert pipe.text_encoder.config.vocab_size == 49408
    if model == "flux-schnell":
        assert pipe.text_encoder_2.config.vocab_size == 32128 and not pipe.transformer.config.guidance_embeds
    cond = backend.encode(["a photo of a cat", "a red bicycle"])
    tokens = 256 if model == "flux-schnell" else 77  # schnell's T5 length; CLIP's 77
    assert cond.token_states.shape[:2] == (2, tokens)
    images = backend.generate(torch.randn(2, *backend.latent_shape), cond, 1, backend.default_guidance)
    assert images.shape == (2, 3, 64, 64) and torch.isfinite(images).all()
    assert images.std() > 0  # random weights draw noise, not a constant


def test_sd_turbo_trains_through_the_cli_with_a_random_pickscore(noiseppo, tmp_path):
    """The benchmark's path at a tiny width: ``noiseppo train --model FOLDER --reward pickscore@FOLDER``."""
    model = save_pipeline("sd-turbo", tmp_path, resolution=64, overrides=TINY["sd-turbo"])
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    reward = save_pickscore(
        tmp_path,
        overrides={"projection_dim": 8, "text_config": CLIP_TINY, "vision_config": vision | {"patch_size": 32}},
    )
    run = tmp_path / "run"
    result = noiseppo.in_process(
        "train", "--preset", "tiny", "--backend", "diffusers", "--model", model, "--reward", f"pickscore@{reward}",
        "--prompts", "animals", "--steps", "1", "--iterations", "1", "guidance=1", "eval_prompts=", "--out", run,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in rows if "reward_mean" in r] == [1]
    assert (run / "policy").is_dir()
