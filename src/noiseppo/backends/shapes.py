"""The embedded Shapes model as a backend: offline, CPU-friendly, pixel-space.

The model folder holds ``text_encoder/``, ``denoiser/`` (diffusers ``save_pretrained``
layout: config.json + safetensors) and ``scheduler/scheduler_config.json`` (the training
noise schedule). Sampling uses diffusers schedulers built from that config with
``timestep_spacing="trailing"``, so even one step starts from the last training
timestep, where the input is pure noise.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from noiseppo.backends.base import Conditioning, check_generate_args, named_scheduler
from noiseppo.errors import UserError, error_line
from noiseppo.shapes.grammar import parse
from noiseppo.shapes.model import ShapesDenoiser, ShapesTextEncoder
from noiseppo.storage.safe_load import load_pretrained, read_json

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "weights" / "shapes-base"
MAX_STEPS = 50
DEFAULT_GUIDANCE = 1.0
"""The shipped model's best guidance at 50 steps (README: the guidance sweep)."""


def make_scheduler(name: str, train_config: dict) -> SchedulerMixin:
    """A sampling scheduler of kind ``name`` over the model's training noise schedule;
    ``default`` is DDIM, which the model was evaluated and shipped with."""
    name = "ddim" if name == "default" else name
    return named_scheduler(name).from_config(train_config, timestep_spacing="trailing")


class ShapesBackend:
    """The frozen Shapes model behind the backend interface."""

    name = "shapes"
    default_guidance = DEFAULT_GUIDANCE

    def __init__(
        self,
        text_encoder: ShapesTextEncoder,
        denoiser: ShapesDenoiser,
        train_scheduler_config: dict,
        scheduler: str = "default",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        for module in (text_encoder, denoiser):
            module.to(device).eval().requires_grad_(False)
            if module.dtype != dtype:
                module.to(dtype)
        self.text_encoder, self.denoiser = text_encoder, denoiser
        self.train_scheduler_config = dict(train_scheduler_config)
        make_scheduler(scheduler, self.train_scheduler_config)  # refuse an unknown name now, not mid-run
        self.scheduler_name = scheduler
        self.device = torch.device(device)
        self.dtype = dtype
        size = denoiser.config.image_size
        self.latent_shape = (denoiser.config.channels, size, size)
        # The pooled vector is the first (BOS) token's state: one width for both.
        self.token_dim = self.pooled_dim = text_encoder.config.dim

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path = DEFAULT_MODEL,
        scheduler: str = "default",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> ShapesBackend:
        path = Path(path)
        parts = [path / "text_encoder", path / "denoiser", path / "scheduler" / "scheduler_config.json"]
        missing = [str(p) for p in parts if not p.exists()]
        if missing:
            raise UserError(f"{path}: not a Shapes model folder (missing {', '.join(missing)})")
        try:
            text_encoder = load_pretrained(ShapesTextEncoder, path / "text_encoder", dtype)
            denoiser = load_pretrained(ShapesDenoiser, path / "denoiser", dtype)
        except (UserError, OSError, ValueError, RuntimeError) as e:
            raise UserError(f"{path}: cannot load the Shapes model weights ({error_line(e)})") from None
        config = read_json(path / "scheduler" / "scheduler_config.json")  # what DDPMScheduler.load_config reads
        return cls(text_encoder, denoiser, config, scheduler, device, dtype)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> Conditioning:
        texts = [parse(p).text for p in prompts]  # a clear error for prompts outside the grammar
        states, pooled, mask = self.text_encoder.encode(texts)
        return Conditioning(texts, states, pooled, mask)

    @torch.no_grad()
    def generate(self, latents: torch.Tensor, conditioning: Conditioning, steps: int, guidance: float) -> torch.Tensor:
        """Images in [0, 1], (N, 3, H, W), from initial latents ~ N(0, I) of ``latent_shape``."""
        n = len(conditioning)
        check_generate_args(latents, n, self.latent_shape, steps, guidance, MAX_STEPS)

        # A fresh scheduler per call: multistep solvers keep state between steps.
        scheduler = make_scheduler(self.scheduler_name, self.train_scheduler_config)
        scheduler.set_timesteps(steps, device=self.device)
        # The sampler state stays in float32; only the network runs in ``dtype``.
        # Contiguous: the same values in another memory layout would take other conv kernels.
        x = latents.to(self.device, torch.float32).contiguous() * scheduler.init_noise_sigma
        states, pooled, mask = conditioning.token_states, conditioning.pooled, conditioning.mask
        if guidance != 1.0:
            # Unconditional first, conditional second, in one batch.
            uncond = self.text_encoder.encode([""] * n)
            states, pooled, mask = (torch.cat([u, c]) for u, c in zip(uncond, (states, pooled, mask), strict=True))
        for t in scheduler.timesteps:
            model_in = scheduler.scale_model_input(x, t).to(self.dtype)
            if guidance != 1.0:
                both = self.denoiser(torch.cat([model_in, model_in]), t, states, pooled, mask).float()
                uncond, cond = both.chunk(2)
                out = uncond + guidance * (cond - uncond)
            else:
                out = self.denoiser(model_in, t, states, pooled, mask).float()
            x = scheduler.step(out, t, x).prev_sample
        return ((x + 1) / 2).clamp(0, 1)
