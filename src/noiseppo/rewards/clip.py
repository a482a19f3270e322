"""CLIP score and PickScore: how well an image matches its prompt, by a transformers ``CLIPModel``.

``clip_score``: ``100 * max(cos(image embedding, prompt embedding), 0)``, torchmetrics'
``CLIPScore`` per image, with openai/clip-vit-large-patch14. ``pickscore``: PickScore v1
(Kirstain et al. 2023, a CLIP-H fine-tuned on Pick-a-Pic preferences),
``exp(logit_scale) * cos(image embedding, prompt embedding)`` as its README computes it,
about 20-23 for good images. ``clip_score@MODEL`` and ``pickscore@MODEL`` take any CLIP
model, a hub id or a local ``save_pretrained`` folder (weights from safetensors only). The
model runs where the images are, in float32.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

DEFAULT_MODEL = "openai/clip-vit-large-patch14"
PICKSCORE_MODEL = "yuvalkirstain/PickScore_v1"  # model.safetensors and its own processor files


class Clip:
    """A frozen CLIP model and its processor; the images' device is where it runs."""

    def __init__(self, model: str = DEFAULT_MODEL):
        from noiseppo.storage.hub import load_error, quiet

        try:
            with quiet():
                from transformers import CLIPModel, CLIPProcessor

                self.model = CLIPModel.from_pretrained(model, use_safetensors=True).eval().requires_grad_(False)
                # Tokenizer and image-processor settings: JSON and text files, no weights.
                self.processor = CLIPProcessor.from_pretrained(model)
        except (OSError, ValueError) as e:
            raise load_error("the CLIP model", model, e) from None

    def inputs(self, images: torch.Tensor | np.ndarray, prompts: Sequence[str] | None = None) -> dict:
        """The model's inputs for float images in [0, 1] (and prompts), on the images' device."""
        images = torch.as_tensor(images).float()
        self.model.to(images.device)
        text = {"text": list(prompts), "padding": True, "truncation": True} if prompts is not None else {}
        batch = self.processor(images=list(images.cpu()), do_rescale=False, return_tensors="pt", **text)
        return batch.to(images.device)

    @torch.no_grad()
    def image_embeds(self, images: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Projected image embeddings, normalised to unit length."""
        out = self.model.get_image_features(**self.inputs(images))
        features = out if isinstance(out, torch.Tensor) else out.pooler_output  # transformers 4 / 5
        return features / features.norm(dim=-1, keepdim=True)


class ClipScore(Clip):
    @torch.no_grad()
    def __call__(self, images: torch.Tensor | np.ndarray, prompts: Sequence[str]) -> torch.Tensor:
        out = self.model(**self.inputs(images, prompts))  # image_embeds and text_embeds come normalised
        return (100 * (out.image_embeds * out.text_embeds).sum(-1).clamp(min=0)).float().cpu()


class PickScore(Clip):
    def __init__(self, model: str = PICKSCORE_MODEL):
        super().__init__(model)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor | np.ndarray, prompts: Sequence[str]) -> torch.Tensor:
        out = self.model(**self.inputs(images, prompts))  # image_embeds and text_embeds come normalised
        cosine = (out.image_embeds * out.text_embeds).sum(-1)
        return (self.model.logit_scale.exp() * cosine).float().cpu()
