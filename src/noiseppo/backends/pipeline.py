"""What every diffusers-pipeline backend shares: loading, freezing, rendering, and the
``NoisePolicy.latents_for`` plug-in.

A pipeline backend (``diffusers`` for SD and SDXL, ``sd3``, ``flux``) is a ``PipelineBackend``
subclass. It names the pipeline classes it drives and says, in a few static methods that read
only the pipeline, what the policy sees of it (``pipeline_latent_shape``, ``encode_prompts``,
``conditioning_width``) and how the policy's latents go in (``pipeline_latents``). The backend
and the plug-in call the same methods, so a policy sees at inference exactly the conditioning
it was trained on, and its latents go in where the pipeline would have drawn its own noise.

The pipeline does the work; the base class only fixes what the Backend contract needs:

- the pipeline is frozen (eval, no gradients) and its progress bar is off;
- every ``generate`` gets a freshly seeded generator, so schedulers that draw noise while
  stepping repeat themselves and leave the global RNG alone;
- images come back as float32 tensors in [0, 1] at the size the latent shape implies.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from noiseppo.backends.base import Conditioning, check_generate_args
from noiseppo.errors import UserError
from noiseppo.hub import load_error, quiet

if TYPE_CHECKING:
    from noiseppo.policy import Mode, NoisePolicy

MAX_STEPS = 1000
"""The training schedule's length bounds the step count."""

ENCODE_BATCH = 64
"""Prompts per text-encoder pass: training encodes every prompt once at start-up, and a T5-XXL
on hundreds of prompts at once would need tens of GB for its attention alone."""


def masked_mean(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The mean of token states (N, L, D) over the positions where ``mask`` (N, L) is True."""
    weights = mask[..., None].to(states.dtype)
    return (states * weights).sum(1) / weights.sum(1)


def call_default(pipe: DiffusionPipeline, argument: str) -> Any:
    """The default of ``argument`` in the pipeline's ``__call__``: what ``pipe(prompt)`` uses."""
    return inspect.signature(type(pipe).__call__).parameters[argument].default


def pipeline_backends() -> list[type[PipelineBackend]]:
    """Every pipeline backend, in the order ``latents_for`` tries them."""
    from noiseppo.backends.diffusers import DiffusersBackend
    from noiseppo.backends.flow import FluxBackend, SD3Backend

    return [DiffusersBackend, SD3Backend, FluxBackend]


class PipelineBackend:
    """A frozen diffusers text-to-image pipeline behind the backend interface (see the module docstring)."""

    name: ClassVar[str]
    pipeline_classes: ClassVar[tuple[str, ...]]
    """Names of the diffusers pipeline classes this backend drives."""
    denoiser: ClassVar[str]
    """The pipeline's denoising component (``unet`` or ``transformer``): its dtype is the pipeline's."""
    conditioning: ClassVar[str]
    """What the policy reads, in a few words, for messages."""

    def __init__(self, pipe: DiffusionPipeline, scheduler: str = "default", device: str | torch.device = "cpu"):
        if scheduler != "default":
            # The pipeline's own noise schedule and timestep spacing, another solver.
            pipe.scheduler = self.scheduler_class(scheduler).from_config(pipe.scheduler.config)
        pipe.to(device)
        for component in pipe.components.values():
            if isinstance(component, torch.nn.Module):
                component.eval().requires_grad_(False)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.device = torch.device(device)
        self.dtype = getattr(pipe, self.denoiser).dtype
        self.latent_shape = self.pipeline_latent_shape(pipe)
        self.cond_dim = self.conditioning_width(pipe)
        self.default_guidance = self.pipeline_default_guidance(pipe)

    # -- what a subclass says about its pipelines ------------------------------------------
    @classmethod
    def scheduler_class(cls, name: str) -> type[SchedulerMixin]:
        """The scheduler ``--scheduler name`` selects (``default``: keep the pipeline's), or one line."""
        raise NotImplementedError

    @staticmethod
    def pipeline_latent_shape(pipe: DiffusionPipeline) -> tuple[int, int, int]:
        """(channels, height, width) of the initial latents the policy makes for ``pipe``."""
        raise NotImplementedError

    @staticmethod
    def conditioning_width(pipe: DiffusionPipeline) -> int:
        """The width of the token states and pooled vector ``encode_prompts`` gives."""
        raise NotImplementedError

    @staticmethod
    def encode_prompts(pipe: DiffusionPipeline, prompts: Sequence[str]) -> Conditioning:
        """What the policy reads of ``prompts`` (at most ``ENCODE_BATCH`` of them)."""
        raise NotImplementedError

    @staticmethod
    def pipeline_latents(pipe: DiffusionPipeline, z: torch.Tensor) -> torch.Tensor:
        """The policy's latents z (N, C, H, W) as ``pipe(latents=...)`` takes them."""
        return z

    @staticmethod
    def pipeline_default_guidance(pipe: DiffusionPipeline) -> float:
        """The guidance ``pipe(prompt)`` renders with."""
        return float(call_default(pipe, "guidance_scale"))

    def check_guidance(self, guidance: float) -> None:
        """Refuse a guidance scale the model does not take (beyond ``guidance >= 0``)."""

    def prompt_inputs(self, conditioning: Conditioning) -> dict[str, Any]:
        """The prompt arguments of the pipeline call that renders ``conditioning``."""
        return {"prompt": list(conditioning.prompts)}

    # -- the Backend interface -------------------------------------------------------------
    @classmethod
    def load(
        cls,
        model: str,
        scheduler: str = "default",
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> PipelineBackend:
        """The backend of the pipeline at ``model`` (a local folder or a hub id)."""
        if scheduler != "default":
            cls.scheduler_class(scheduler)  # before a download, not after
        if dtype == torch.float16 and torch.device(device).type == "cpu":
            raise UserError("float16 pipelines do not run on the CPU in diffusers: use float32 or bfloat16 there")
        return cls(load_pipeline(model, dtype, cls), scheduler, device)

    def encode(self, prompts: list[str]) -> Conditioning:
        """The conditioning the policy reads (``encode_prompts``, ``ENCODE_BATCH`` prompts at a time)."""
        return encode_all(type(self), self.pipe, prompts)

    @torch.no_grad()
    def generate(self, latents: torch.Tensor, conditioning: Conditioning, steps: int, guidance: float) -> torch.Tensor:
        """Images in [0, 1], (N, 3, H, W), float32, from initial latents ~ N(0, I) of ``latent_shape``."""
        check_generate_args(latents, len(conditioning), self.latent_shape, steps, guidance, MAX_STEPS)
        self.check_guidance(guidance)
        scale = self.pipe.vae_scale_factor
        out = self.pipe(
            **self.prompt_inputs(conditioning),
            latents=self.pipeline_latents(self.pipe, latents.to(self.device, self.dtype)),
            height=self.latent_shape[1] * scale,
            width=self.latent_shape[2] * scale,
            num_inference_steps=steps,
            guidance_scale=guidance,
            generator=torch.Generator(self.device).manual_seed(0),
            output_type="pt",
        )
        return out.images.float()


def encode_all(backend: type[PipelineBackend], pipe: DiffusionPipeline, prompts: Sequence[str]) -> Conditioning:
    """``backend.encode_prompts`` over any number of prompts, ``ENCODE_BATCH`` at a time."""
    prompts = list(prompts)
    chunks = [backend.encode_prompts(pipe, prompts[i : i + ENCODE_BATCH]) for i in range(0, len(prompts), ENCODE_BATCH)]
    if len(chunks) == 1:
        return chunks[0]
    return Conditioning(
        prompts,
        torch.cat([c.token_states for c in chunks]),
        torch.cat([c.pooled for c in chunks]),
        torch.cat([c.mask for c in chunks]),
    )


def load_pipeline(model: str, dtype: torch.dtype, backend: type[PipelineBackend]) -> DiffusionPipeline:
    """The pipeline at ``model`` (a local folder or a hub id), weights from safetensors only, if
    ``backend`` drives its class; else one line naming the class and the backend that takes it.

    ``use_safetensors=True`` makes diffusers (and transformers, for the text encoders)
    refuse a model that only has pickled ``.bin`` weights instead of unpickling them.
    """
    try:
        with quiet():
            pipe = DiffusionPipeline.from_pretrained(model, dtype=dtype, use_safetensors=True)
    except (OSError, ValueError) as e:
        raise load_error(f"the {backend.name} pipeline", model, e) from None
    found = type(pipe).__name__
    if found not in backend.pipeline_classes:
        message = f"'{model}' is a {found}; the {backend.name} backend takes {', '.join(backend.pipeline_classes)}"
        other = [b.name for b in pipeline_backends() if found in b.pipeline_classes]
        raise UserError(message + (f" (for a {found} use --backend {other[0]})" if other else ""))
    return pipe


def backend_for(pipe: DiffusionPipeline) -> type[PipelineBackend]:
    """The pipeline backend that drives ``pipe``'s class, or one line naming the classes that work."""
    for backend in pipeline_backends():
        if type(pipe).__name__ in backend.pipeline_classes:
            return backend
    known = ", ".join(name for backend in pipeline_backends() for name in backend.pipeline_classes)
    raise UserError(f"latents_for takes a {known}, or a noiseppo backend (get_backend), got a {type(pipe).__name__}")


def check_width(policy: NoisePolicy, width: int, conditioning: str) -> None:
    """Refuse a policy that reads conditioning of another width than the backend gives: one trained
    for another model (for SD3 and FLUX, which share a latent shape, another family)."""
    if policy.config.cond_dim != width:
        raise UserError(
            f"the policy reads conditioning of width {policy.config.cond_dim}, the backend gives {width} "
            f"({conditioning}): the policy was trained for another model"
        )


def policy_latents_for(
    policy: NoisePolicy,
    pipe: DiffusionPipeline,
    prompts: str | Sequence[str],
    generator: torch.Generator | None = None,
    seeds: Sequence[int] | None = None,
    mode: Mode = "sample",
) -> torch.Tensor:
    """``NoisePolicy.latents_for``: the policy's initial latents for ``pipe(prompts, latents=...)``.

    The standard noise ε is drawn as the pipeline draws its own (``randn_tensor`` with
    ``generator``, in the dtype of its prompt embeddings), so an untrained policy gives that
    call's images; or, with ``seeds``, by noiseppo's seed rule, so the latents pair with
    ``noiseppo sample --seed``. The result is on the pipeline's device, in its dtype, in the
    layout the pipeline takes (packed for FLUX).
    """
    from diffusers.utils.torch_utils import randn_tensor

    from noiseppo.sampling import standard_noise

    backend = backend_for(pipe)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    shape = backend.pipeline_latent_shape(pipe)
    if shape != policy.latent_shape:
        raise UserError(f"the policy makes latents of shape {policy.latent_shape}, the pipeline takes {shape}")
    check_width(policy, backend.conditioning_width(pipe), backend.conditioning)
    if seeds is not None and generator is not None:
        raise UserError("give a generator or seeds, not both")
    if seeds is not None and len(seeds) != len(prompts):
        raise UserError(f"got {len(prompts)} prompts but {len(seeds)} seeds")
    conditioning = encode_all(backend, pipe, prompts)
    device, dtype = pipe._execution_device, conditioning.token_states.dtype
    if seeds is not None:
        eps = standard_noise(shape, seeds)
    else:
        eps = randn_tensor((len(prompts), *shape), generator=generator, device=device, dtype=dtype)
    z = policy.latents_fn(mode)(conditioning, eps).to(device, dtype)
    return backend.pipeline_latents(pipe, z)
