"""The backend registry: frozen generators behind one small interface (see ``base``).

Importing this module imports neither torch nor diffusers (``noiseppo list backends`` and
``--help`` stay fast): the builders import them, and ``DTYPES``, ``Backend`` and
``Conditioning`` are resolved on first use (``__getattr__`` below).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from noiseppo.errors import UserError
from noiseppo.names import unknown_name

if TYPE_CHECKING:
    import torch

    from noiseppo.backends.base import Backend

DTYPE_NAMES = ("float32", "float16", "bfloat16")
"""What ``--dtype`` takes; ``DTYPES`` maps them to torch dtypes."""


def __getattr__(name: str) -> Any:
    """The names that need torch, imported on first use (PEP 562)."""
    if name == "DTYPES":
        import torch

        return {key: getattr(torch, key) for key in DTYPE_NAMES}
    if name in ("Backend", "Conditioning"):
        from noiseppo.backends import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _shapes(model: str | None, scheduler: str, device: str, dtype: torch.dtype) -> Backend:
    from noiseppo.backends.shapes import DEFAULT_MODEL, ShapesBackend
    from noiseppo.storage.local_paths import checked_model

    return ShapesBackend.from_pretrained(checked_model(model or "") or DEFAULT_MODEL, scheduler, device, dtype)


def _pipeline(name: str, example: str) -> Callable[..., Backend]:
    """The builder of the diffusers-pipeline backend ``name``; ``example`` is a hub id it takes."""

    def build(model: str | None, scheduler: str, device: str, dtype: torch.dtype) -> Backend:
        from noiseppo.backends.plugin import load_backend, pipeline_backends

        if not model:
            raise UserError(f"the {name} backend needs --model: a hub id (e.g. {example}) or a local folder")
        backend = next(b for b in pipeline_backends() if b.name == name)
        return load_backend(backend, model, scheduler, device, dtype)

    return build


BACKENDS: dict[str, tuple[Callable[..., Backend], str]] = {
    "shapes": (
        _shapes,
        "the embedded Shapes model (a pixel-space U-Net with a transformer bottleneck, v-prediction), offline",
    ),
    "diffusers": (
        _pipeline("diffusers", "stabilityai/sd-turbo"),
        "a diffusers SD 1.x/2.x or SDXL pipeline (SD-Turbo, SDXL-Turbo) from --model",
    ),
    "sd3": (
        _pipeline("sd3", "stabilityai/stable-diffusion-3.5-medium"),
        "a diffusers StableDiffusion3Pipeline (SD3, SD3.5 medium/large/turbo) from --model",
    ),
    "flux": (
        _pipeline("flux", "black-forest-labs/FLUX.1-schnell"),
        "a diffusers FluxPipeline (FLUX.1-dev, FLUX.1-schnell) from --model",
    ),
}


def get_backend(
    name: str, model: str | None = None, scheduler: str = "default", device: str = "cpu", dtype: str = "float32"
) -> Backend:
    """Build the registered backend ``name``; ``model`` is a folder or hub id (backend default if None)."""
    if name not in BACKENDS:
        raise unknown_name("backend", name, BACKENDS)
    if dtype not in DTYPE_NAMES:
        raise unknown_name("dtype", dtype, DTYPE_NAMES)
    checked_device(device)
    import torch

    return BACKENDS[name][0](model, scheduler, device, getattr(torch, dtype))


def checked_device(device: str) -> torch.device:
    """``device`` as a torch device, or one line: not a device, or a GPU this machine lacks."""
    import torch

    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device '{device}' (e.g. cpu, cuda, cuda:1)") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{device}' asked for, but CUDA is not available here")
    return torch_device


__all__ = ["BACKENDS", "DTYPES", "Backend", "Conditioning", "checked_device", "get_backend"]
