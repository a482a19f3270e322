"""Random-weight diffusers pipelines in the real models' architectures, built offline.

    python benchmarks/random_pipelines.py sd-turbo OUT_DIR [--dtype float32] [--resolution 512]
    python benchmarks/random_pipelines.py pickscore OUT_DIR

The architectures are the public configs' values, written down in ``benchmarks/architectures/
<model>/`` (one JSON per component). A forward or backward pass costs the same whatever the
weights' values, so random weights measure cost honestly; the images are noise.

- ``sd-turbo``: the SD 2.1 UNet, the OpenCLIP-H text encoder (23 layers), the SD VAE, Euler;
- ``sdxl-turbo``: the SDXL UNet, CLIP-L and OpenCLIP-bigG text encoders, the SDXL VAE, Euler ancestral;
- ``flux-schnell``: FLUX.1-schnell at its real widths; by default at the reduced depth of
  ``flux-schnell/reduced_depth.json`` (1 of 19 double-stream blocks, 2 of 38 single-stream
  blocks, 2 of T5-XXL's 24 layers), since the full model does not fit in 24 GiB;
- ``pickscore``: a CLIP ViT-H/14 ``CLIPModel`` and its processor, what ``pickscore@FOLDER`` loads.

The tokenizers need no download: a BPE (CLIP) or Unigram (T5) vocabulary over single
characters is written in code. CLIP's special tokens keep their real ids (49406, 49407: the
text model finds the end of the prompt as the largest id, as with the real vocabulary), the
embedding tables keep the real vocabulary sizes, and the maximum lengths stay 77 (CLIP) and
512 (T5, of which FLUX.1-schnell reads 256). The saved folder is what ``noiseppo train
--backend diffusers|flux --model FOLDER`` loads, through the real ``from_pretrained``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

ARCHITECTURES = Path(__file__).resolve().parent / "architectures"
PIPELINES = {
    "sd-turbo": "StableDiffusionPipeline",
    "sdxl-turbo": "StableDiffusionXLPipeline",
    "flux-schnell": "FluxPipeline",
}
MODELS = (*PIPELINES, "pickscore")
NATIVE_RESOLUTION = {"sd-turbo": 512, "sdxl-turbo": 512, "flux-schnell": 1024}
"""The image size each model is made for (SDXL-Turbo's card: 512 x 512; its UNet also runs SDXL's 1024)."""

PROMPT_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.,'"
TRANSFORMERS_CONFIGS = {
    "CLIPTextModel": "CLIPTextConfig",
    "CLIPTextModelWithProjection": "CLIPTextConfig",
    "CLIPModel": "CLIPConfig",
    "T5EncoderModel": "T5Config",
}
"""The transformers components and their config classes (the others are diffusers models)."""
CLIP_BOS, CLIP_EOS = 49406, 49407
"""CLIP's start and end tokens, the two last ids of its 49,408-entry vocabulary."""


def architecture(model: str, component: str, full_depth: bool = False) -> dict[str, Any]:
    """A component's config: its JSON without the ``_`` keys, with ``reduced_depth.json`` applied
    unless ``full_depth`` (FLUX only has one)."""
    path = ARCHITECTURES / model / f"{component}.json"
    values = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    reduced = ARCHITECTURES / model / "reduced_depth.json"
    if reduced.exists() and not full_depth:
        values.update(json.loads(reduced.read_text()).get(component, {}))
    return values


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build parameters directly in ``dtype``: an SDXL UNet built in float32 and then cast would
    hold 10 GB for a moment."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def clip_tokenizer(folder: Path, pad_token: str, model_max_length: int = 77):
    """A CLIPTokenizer over single characters, written to ``folder`` (the real vocabulary is a
    download). Ids 0-255 are characters, 256-511 word-final characters, 49406-49407 the specials."""
    from transformers import CLIPTokenizer

    chars = ["!", *PROMPT_CHARS]
    vocab = {c: i for i, c in enumerate(chars)} | {c + "</w>": 256 + i for i, c in enumerate(chars)}
    vocab |= {"<|startoftext|>": CLIP_BOS, "<|endoftext|>": CLIP_EOS}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        vocab=str(folder / "vocab.json"), merges=str(folder / "merges.txt"), pad_token=pad_token,
        model_max_length=model_max_length,
    )  # fmt: skip


def t5_tokenizer(model_max_length: int = 512):
    """A T5 tokenizer over single characters: a Unigram vocabulary with T5's pad, end and unknown ids (0, 1, 2)."""
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    pieces += [(c, -2.0) for c in PROMPT_CHARS] + [("\u2581" + c, -1.5) for c in PROMPT_CHARS]
    return T5TokenizerFast(vocab=pieces, extra_ids=0, model_max_length=model_max_length)


def component(model: str, name: str, full_depth: bool = False, overrides: dict[str, Any] | None = None):
    """One model component from its architecture JSON (and ``overrides``), random weights in the
    current default dtype and device (``with torch.device("meta")`` builds it without memory)."""
    import diffusers
    import transformers

    config = architecture(model, name, full_depth) | (overrides or {})
    cls_name = json.loads((ARCHITECTURES / model / f"{name}.json").read_text())["_class_name"]
    if cls_name in TRANSFORMERS_CONFIGS:
        return getattr(transformers, cls_name)(getattr(transformers, TRANSFORMERS_CONFIGS[cls_name])(**config))
    return getattr(diffusers, cls_name).from_config(config)


def build_pipeline(
    model: str,
    folder: Path,
    dtype: torch.dtype = torch.float32,
    resolution: int | None = None,
    full_depth: bool = False,
    overrides: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
):
    """A random-weight pipeline of ``model`` (sd-turbo, sdxl-turbo, flux-schnell) in ``dtype``, whose
    default image size is ``resolution`` (the model's native one if None). ``folder`` receives the
    tokenizers' vocabulary files. ``overrides`` (component -> config keys) shrinks a model for tests."""
    import diffusers

    if model not in PIPELINES:
        raise ValueError(f"unknown model '{model}' (one of {', '.join(PIPELINES)})")
    resolution = resolution or NATIVE_RESOLUTION[model]
    overrides = dict(overrides or {})
    factor = 16 if model == "flux-schnell" else 8  # FLUX packs 2x2 latent patches
    if resolution % factor:
        raise ValueError(f"resolution {resolution} is not a multiple of {factor} for {model}")
    # The backends take the default image size from the config: the UNet's sample_size (latent
    # pixels) for SD and SDXL, the VAE's (image pixels) for FLUX.
    if model == "flux-schnell":
        overrides["vae"] = {"sample_size": resolution} | overrides.get("vae", {})
    else:
        overrides["unet"] = {"sample_size": resolution // 8} | overrides.get("unet", {})
    components: dict[str, Any] = {}
    torch.manual_seed(seed)
    with default_dtype(dtype):
        for path in sorted((ARCHITECTURES / model).glob("*.json")):
            name = path.stem
            if name.startswith("tokenizer") or name in ("scheduler", "reduced_depth"):
                continue
            components[name] = component(model, name, full_depth, overrides.get(name))
    scheduler_config = architecture(model, "scheduler")
    scheduler_cls = json.loads((ARCHITECTURES / model / "scheduler.json").read_text())["_class_name"]
    components["scheduler"] = getattr(diffusers, scheduler_cls).from_config(scheduler_config)
    for name in ("tokenizer", "tokenizer_2"):
        path = ARCHITECTURES / model / f"{name}.json"
        if path.exists():
            spec = json.loads(path.read_text())
            if spec["_class_name"] == "T5TokenizerFast":
                components[name] = t5_tokenizer(spec["model_max_length"])
            else:
                components[name] = clip_tokenizer(folder / f"_{name}", spec["pad_token"], spec["model_max_length"])
    if model == "sd-turbo":
        components |= {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    return getattr(diffusers, PIPELINES[model])(**components)


def save_pipeline(model: str, folder: Path, **build: Any) -> Path:
    """``build_pipeline`` saved with ``save_pretrained`` (safetensors) to ``folder/pipeline``: the
    folder ``--model`` takes."""
    pipe = build_pipeline(model, folder, **build)
    pipe.save_pretrained(folder / "pipeline", safe_serialization=True)
    return folder / "pipeline"


def save_pickscore(folder: Path, overrides: dict[str, Any] | None = None, seed: int = 0) -> Path:
    """A random CLIP ViT-H/14 (PickScore v1's architecture) and its processor, saved to
    ``folder/pickscore``: what ``--reward pickscore@FOLDER`` loads (float32, as the reward runs)."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    spec = json.loads((ARCHITECTURES / "pickscore" / "processor.json").read_text())
    torch.manual_seed(seed)
    component("pickscore", "model", overrides=overrides).save_pretrained(folder / "pickscore")
    size = spec["image_size"]
    images = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    tokenizer = clip_tokenizer(folder / "_pickscore_vocab", spec["pad_token"], spec["model_max_length"])
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder / "pickscore")
    return folder / "pickscore"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=MODELS)
    ap.add_argument("out", type=Path)
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--resolution", type=int, default=None, help="default image size (the model's native one)")
    ap.add_argument("--full-depth", action="store_true", help="FLUX: all 19 + 38 blocks and 24 T5 layers")
    args = ap.parse_args()
    if args.model == "pickscore":
        print(save_pickscore(args.out))
    else:
        dtype = getattr(torch, args.dtype)
        print(save_pipeline(args.model, args.out, dtype=dtype, resolution=args.resolution, full_depth=args.full_depth))


if __name__ == "__main__":
    main()
