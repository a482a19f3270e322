"""The LAION aesthetic score: a small head on normalised CLIP ViT-L/14 image embeddings.

``aesthetic@HEAD.safetensors`` reads the head from a safetensors file, and
``aesthetic@HEAD.safetensors@CLIP`` pairs it with another CLIP model (a hub id or a folder).
Two heads are understood, by their tensor names:

- ``weight`` (1, D) and ``bias`` (1): LAION-Aesthetics v1's linear head
  (``sa_0_4_vit_l_14_linear.pth``);
- ``layers.{0,2,4,6,7}.*``: the MLP of the improved aesthetic predictor (v2,
  ``sac+logos+ava1-l14-linearMSE.pth``), DDPO's aesthetic reward.

LAION publishes both as pickled ``.pth`` files, which noiseppo never opens. Convert one
once, in an environment you trust (``weights_only=True`` loads tensors and nothing else)::

    import torch, safetensors.torch
    safetensors.torch.save_file(torch.load("HEAD.pth", weights_only=True), "HEAD.safetensors")
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from noiseppo.errors import UserError, error_line
from noiseppo.rewards.clip import DEFAULT_MODEL, Clip
from noiseppo.storage.safe_load import load_tensors


def _head(tensors: dict[str, torch.Tensor], path: str) -> nn.Module:
    if set(tensors) == {"weight", "bias"}:
        head = nn.Linear(tensors["weight"].shape[1], 1)
    elif "layers.0.weight" in tensors:  # v2: dropouts at 1, 3 and 5 hold no weights
        width = tensors["layers.0.weight"].shape[1]
        head = nn.Sequential(
            nn.Linear(width, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )
        tensors = {k.removeprefix("layers."): v for k, v in tensors.items()}
    else:
        raise UserError(f"{path}: not a LAION aesthetic head (tensors {', '.join(sorted(tensors)[:4])}, ...)")
    try:
        head.load_state_dict(tensors)
    except RuntimeError as e:
        raise UserError(f"{path}: not a LAION aesthetic head ({error_line(e)})") from None
    return head.eval().requires_grad_(False)


class Aesthetic:
    def __init__(self, spec: str | None = None):
        if not spec:
            raise UserError(
                "the aesthetic reward needs its head: aesthetic@HEAD.safetensors (see noiseppo.rewards.aesthetic)"
            )
        head_path, _, clip_model = spec.partition("@")
        self.head = _head(load_tensors(head_path), head_path)
        self.clip = Clip(clip_model or DEFAULT_MODEL)
        reads, makes = next(self.head.parameters()).shape[1], self.clip.model.config.projection_dim
        if reads != makes:
            raise UserError(f"{head_path}: the head reads {reads}-wide embeddings, the CLIP model makes {makes}")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor | np.ndarray, prompts: Sequence[str]) -> torch.Tensor:
        embeds = self.clip.image_embeds(images)
        return self.head.to(embeds.device)(embeds).squeeze(-1).float().cpu()
