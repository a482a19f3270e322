"""The backend registry: frozen generators behind one small interface (see ``base``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from noiseppo.backends.base import Backend, Conditioning
from noiseppo.errors import UserError

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _shapes(model: str | None, scheduler: str, device: str, dtype: torch.dtype) -> Backend:
    from noiseppo.backends.shapes import DEFAULT_MODEL, ShapesBackend

    return ShapesBackend.from_pretrained(model or DEFAULT_MODEL, scheduler, device, dtype)


def _diffusers(model: str | None, scheduler: str, device: str, dtype: torch.dtype) -> Backend:
    from noiseppo.backends.diffusers import DiffusersBackend

    if not model:
        raise UserError("the diffusers backend needs --model: a hub id (e.g. stabilityai/sd-turbo) or a local folder")
    return DiffusersBackend.load(model, scheduler, device, dtype)


BACKENDS: dict[str, tuple[Callable[..., Backend], str]] = {
    "shapes": (_shapes, "the embedded Shapes model (pixel-space DiT, v-prediction), offline"),
    "diffusers": (_diffusers, "a diffusers SD 1.x/2.x or SDXL pipeline (SD-Turbo, SDXL-Turbo) from --model"),
}


def get_backend(
    name: str, model: str | None = None, scheduler: str = "default", device: str = "cpu", dtype: str = "float32"
) -> Backend:
    """Build the registered backend ``name``; ``model`` is a folder or hub id (backend default if None)."""
    if name not in BACKENDS:
        raise UserError(f"unknown backend '{name}' (known: {', '.join(BACKENDS)})")
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype '{dtype}' (known: {', '.join(DTYPES)})")
    checked_device(device)
    return BACKENDS[name][0](model, scheduler, device, DTYPES[dtype])


def checked_device(device: str) -> torch.device:
    """``device`` as a torch device, or one line: not a device, or a GPU this machine lacks."""
    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise UserError(f"unknown device '{device}' (e.g. cpu, cuda, cuda:1)") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{device}' asked for, but CUDA is not available here")
    return torch_device


__all__ = ["BACKENDS", "DTYPES", "Backend", "Conditioning", "checked_device", "get_backend"]
