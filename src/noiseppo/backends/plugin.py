"""Every pipeline backend, and what needs to know them all: loading one (a pipeline of
another backend's class is refused with the backend that takes it), and the
``NoisePolicy.latents_for`` plug-in, which finds the backend that drives a given pipeline.

``pipeline`` holds what the backends share and knows none of them; ``diffusers`` and
``flow`` subclass it; this module lists them. So the imports run one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from diffusers import DiffusionPipeline

from noiseppo.backends.pipeline import PipelineBackend, check_width, encode_all
from noiseppo.errors import UserError
from noiseppo.hub import load_error, quiet

if TYPE_CHECKING:
    from noiseppo.policy import Mode, NoisePolicy


def pipeline_backends() -> list[type[PipelineBackend]]:
    """Every pipeline backend, in the order ``latents_for`` tries them."""
    from noiseppo.backends.diffusers import DiffusersBackend
    from noiseppo.backends.flow import FluxBackend, SD3Backend

    return [DiffusersBackend, SD3Backend, FluxBackend]


def load_backend(
    backend: type[PipelineBackend],
    model: str,
    scheduler: str = "default",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> PipelineBackend:
    """The ``backend`` of the pipeline at ``model`` (a local folder or a hub id)."""
    if scheduler != "default":
        backend.scheduler_class(scheduler)  # before a download, not after
    if dtype == torch.float16 and torch.device(device).type == "cpu":
        raise UserError("float16 pipelines do not run on the CPU in diffusers: use float32 or bfloat16 there")
    return backend(load_pipeline(model, dtype, backend), scheduler, device)


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


def latents_for_pipeline(
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

    from noiseppo.seeds import standard_noise

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
    z = policy.noise_to_latents(mode)(conditioning, eps).to(device, dtype)
    return backend.pipeline_latents(pipe, z)
