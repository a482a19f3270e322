"""Rewards from other packages, installed as pyproject extras: ImageReward and HPSv2.

- ``imagereward``: ImageReward v1.0 (Xu et al. 2023, a BLIP model trained on human
  preferences between images), from the ``image-reward`` package (no extra: see below).
- ``hpsv2``: Human Preference Score v2.1 (Wu et al. 2023, an OpenCLIP ViT-H/14 trained on
  human preferences), from the ``hpsv2`` package: ``pip install 'noiseppo[hpsv2]'``.

Each image goes to its package as an 8-bit RGB PIL image, with its own prompt; the package
resizes it and runs on CUDA when there is one, else on the CPU. The packages download their
checkpoints from the Hugging Face hub on first use: ImageReward when the reward is built,
hpsv2 at its first batch. hpsv2 reads its checkpoint again on every call, so a batch goes to
it in one call per distinct prompt.

Both packages load ``.pt`` checkpoints with ``torch.load``, which unpickles. Under torch>=2.6,
``torch.load`` defaults to ``weights_only=True``, which loads tensors and plain containers and
refuses arbitrary objects. noiseppo does not call ``torch.load`` itself.

Both packages also pin or assume old dependencies. image-reward 1.5 imports
``apply_chunking_to_forward`` from ``transformers.modeling_utils``, which transformers 4.57 and
5 no longer have; transformers 4.55, which has it, needs huggingface-hub<1.0, and noiseppo's
diffusers>=0.42 needs huggingface-hub>=1.32. So next to noiseppo ``import ImageReward`` fails,
and the reward says so in one line; pyproject has no ``imagereward`` extra, since it would
install a package that cannot import. The wrapper is ready for a release that imports. hpsv2
1.2 pins protobuf<4 (pip then picks an older tensorboard) and pytest 7.2.0 (which the ``test``
extra refuses). Either can be served over HTTP from an environment of its own instead (README:
Reward server).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

import numpy as np
import torch
from PIL import Image

from noiseppo.errors import UserError, error_line
from noiseppo.images import to_pil
from noiseppo.storage.hub import load_error

IMAGEREWARD_MODEL = "ImageReward-v1.0"
HPS_VERSION = "v2.1"


INSTALL = {
    "imagereward": "pip install image-reward (its release 1.5 does not import next to transformers>=4.57)",
    "hpsv2": "pip install 'noiseppo[hpsv2]'",
}
"""What each reward's missing-package line tells the user to do."""


def _import(reward: str, package: str, module: str) -> ModuleType:
    """``module``, or one line: what to install, or why the installed package does not import."""
    server = "serve it over HTTP from an environment of its own (README: Reward server)"
    try:
        return importlib.import_module(module)
    except ImportError as e:
        if e.name == module.partition(".")[0]:
            raise UserError(f"reward '{reward}' needs the {package} package: {INSTALL[reward]}, or {server}") from None
        raise UserError(
            f"reward '{reward}': the {package} package is installed but importing {module} failed ({error_line(e)}); "
            f"it pins its own dependencies: {server}"
        ) from None


def _pil_images(images: torch.Tensor | np.ndarray) -> list[Image.Image]:
    return [to_pil(image) for image in torch.as_tensor(images).float().cpu()]


class ImageRewardScore:
    def __init__(self, model: str = IMAGEREWARD_MODEL):
        image_reward = _import("imagereward", "image-reward", "ImageReward")
        try:
            # It prints its progress to stdout, where `noiseppo score` writes its JSON lines.
            with contextlib.redirect_stdout(sys.stderr):
                self.model = image_reward.load(model)
        except Exception as e:  # the package's loader: the hub, the file, torch.load, building the model
            raise load_error("the ImageReward model", model, e) from e

    @torch.no_grad()  # its score() leaves autograd on
    def __call__(self, images: torch.Tensor | np.ndarray, prompts: Sequence[str]) -> torch.Tensor:
        # One image per call: its list form runs one image at a time too, and returns a bare
        # float instead of a list for a single image.
        scores = [float(self.model.score(p, image)) for image, p in zip(_pil_images(images), prompts, strict=True)]
        return torch.tensor(scores, dtype=torch.float32)


class HPSv2Score:
    def __init__(self, version: str = HPS_VERSION):
        self.hpsv2 = _import("hpsv2", "hpsv2", "hpsv2")
        # Its scoring code (OpenCLIP, torchvision, ...), which hpsv2.score imports on its first call.
        _import("hpsv2", "hpsv2", "hpsv2.img_score")
        self.version = version

    def __call__(self, images: torch.Tensor | np.ndarray, prompts: Sequence[str]) -> torch.Tensor:
        pil = _pil_images(images)
        prompts = list(prompts)
        scores = [0.0] * len(prompts)
        for prompt in dict.fromkeys(prompts):  # one call per distinct prompt: each call reads the checkpoint
            at = [k for k, p in enumerate(prompts) if p == prompt]
            with contextlib.redirect_stdout(sys.stderr):
                answer = self.hpsv2.score([pil[k] for k in at], prompt, hps_version=self.version)
            for k, score in zip(at, answer, strict=True):
                scores[k] = float(score)
        return torch.tensor(scores, dtype=torch.float32)
