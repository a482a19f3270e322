"""The seam every frozen generator goes through.

A backend encodes prompts, states its latent shape, and turns initial latents into
images. It knows nothing of PPO or rewards; the policy knows nothing of its internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from noiseppo.errors import UserError
from noiseppo.names import unknown_name

SCHEDULERS: dict[str, type[SchedulerMixin]] = {
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpm": DPMSolverMultistepScheduler,
}
"""The sampling schedulers ``--scheduler`` names, for every backend."""


def named_scheduler(name: str) -> type[SchedulerMixin]:
    """The scheduler class of ``SCHEDULERS`` that ``--scheduler name`` selects, or one line naming
    them (and ``default``, which each backend reads as its own)."""
    if name not in SCHEDULERS:
        raise unknown_name("scheduler", name, [*SCHEDULERS, "default"])
    return SCHEDULERS[name]


@dataclass
class Conditioning:
    """A batch of encoded prompts, detached from any graph.

    ``token_states`` (N, L, D) and ``pooled`` (N, P) are what a noise policy conditions
    on, each at its own width (the backend's ``token_dim`` D and ``pooled_dim`` P); ``mask``
    (N, L) is True on real tokens. ``prompts`` is each row's text as the backend
    encoded it (canonical for Shapes: ``parse(p).text``); it is the one identity of a prompt's
    group, whose rewards normalise each other's advantages in training.
    """

    prompts: list[str]
    token_states: torch.Tensor
    pooled: torch.Tensor
    mask: torch.Tensor

    def __len__(self) -> int:
        return len(self.prompts)

    def select(self, index: torch.Tensor | list[int]) -> Conditioning:
        """The rows at ``index``, in that order."""
        rows = torch.as_tensor(index, dtype=torch.long)
        return Conditioning(
            [self.prompts[i] for i in rows.tolist()], self.token_states[rows], self.pooled[rows], self.mask[rows]
        )


class Backend(Protocol):
    """A frozen text-to-image generator.

    ``generate`` runs under no-grad, is deterministic given its latents, and consumes
    exactly the latents it is given: the initial noise *is* the input. Images are float
    tensors in [0, 1], shape (N, 3, H, W).
    """

    name: str
    latent_shape: tuple[int, ...]
    token_dim: int
    """The width of ``encode``'s token states."""
    pooled_dim: int
    """The width of ``encode``'s pooled vector (another width than the token states' in most models)."""
    default_guidance: float

    def encode(self, prompts: list[str]) -> Conditioning: ...

    def generate(
        self, latents: torch.Tensor, conditioning: Conditioning, steps: int, guidance: float
    ) -> torch.Tensor: ...


def resolve_guidance(backend: Backend, guidance: float | None) -> float:
    """The guidance scale to render with: ``None`` (a config's null, a flag left out) is the
    backend's own default; every number means itself (0 included)."""
    return backend.default_guidance if guidance is None else guidance


def check_generate_args(
    latents: torch.Tensor, n: int, latent_shape: tuple[int, ...], steps: int, guidance: float, max_steps: int
) -> None:
    """Refuse what ``Backend.generate`` cannot render: one line naming the bad value."""
    if not isinstance(latents, torch.Tensor) or tuple(latents.shape) != (n, *latent_shape):
        got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise UserError(f"latents must have shape {(n, *latent_shape)}, got {got}")
    if not latents.is_floating_point():
        raise UserError(f"latents must be floating point, got {latents.dtype}")
    if not isinstance(steps, int) or not 1 <= steps <= max_steps:
        raise UserError(f"steps must be a whole number from 1 to {max_steps}, got {steps}")
    if not guidance >= 0:  # also refuses NaN
        raise UserError(f"guidance must be >= 0, got {guidance}")


def check_compatible(
    wanted: tuple[tuple[int, ...], int, int], latent_shape: Sequence[int], token_dim: int, pooled_dim: int, source: str
) -> None:
    """Refuse a policy made for another model: the one check of what a policy was made for
    (``wanted``: ``NoisePolicy.sizes``, its latent shape and the widths of the token states and
    pooled vector it reads) against what ``source`` (a backend, a pipeline, the input of a call)
    takes and gives. One line names all three on both sides."""
    shape = tuple(int(d) for d in latent_shape)
    if tuple(wanted) != (shape, token_dim, pooled_dim):
        raise UserError(
            f"the policy is for latents of shape {wanted[0]}, token states {wanted[1]} wide and pooled "
            f"vectors {wanted[2]} wide; {source} has latents of shape {shape}, token states {token_dim} wide and "
            f"pooled vectors {pooled_dim} wide"
        )
