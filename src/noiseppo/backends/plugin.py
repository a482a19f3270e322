"""Every pipeline backend, and what needs to know them all: loading one (a pipeline of
another backend's class is refused with the backend that takes it), and finding the backend
that drives a given pipeline (``NoisePolicy.latents_for``).

``pipeline`` holds what the backends share and knows none of them; ``diffusers`` and
``flow`` subclass it; this module lists them. So the imports run one way.
"""

from __future__ import annotations

import torch
from diffusers import DiffusionPipeline

from noiseppo.backends.pipeline import PipelineBackend
from noiseppo.errors import UserError
from noiseppo.storage.hub import load_error, quiet
from noiseppo.storage.local_paths import checked_model


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
    model = checked_model(model)  # a mistyped folder: "no such model folder", not the hub's rules for repo ids
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
