"""Data parallelism for ``noiseppo train``: one code path for one process and for many.

``accelerate launch --num_processes N noiseppo train ...`` starts N copies of the trainer.
Every copy draws the same prompts and noise (the generator of iteration ``i`` is seeded by
``(seed, i)`` on every rank), computes the policy's latents for the whole batch, and renders
and scores only its own contiguous slice of them. The rewards are then gathered, so every
rank holds the whole batch and computes the same per-prompt advantages on whole groups. In
the update each PPO minibatch is split evenly across the ranks and the gradients are
averaged (one all-reduce per minibatch step), which is the gradient of the whole
minibatch's mean loss: N processes and one process take the same steps. Only rank 0
evaluates, logs and writes checkpoints; every rank loads them.

A rank that fails (a reward that raises, a NaN batch) does not leave the others waiting:
after each step that one rank runs on its own (rendering and scoring its slice; rank 0's
evaluation and writes) the ranks exchange an error flag, and all of them stop with the
failing rank's message. A rank that dies outright (SIGKILL, the OOM killer) is caught by
torchrun's agent, which ``accelerate launch`` runs: it polls its workers, and when one exits
it stops the others and reports the dead one by rank and signal ("rank: 1 (local_rank: 1)
exitcode: -9 ... (SIGKILL)"), seconds later (tests/test_distributed.py). The process
group's time-out (``dist_timeout``) remains the backstop for a rank that hangs without
dying, and for a machine that drops off the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TypeVar

import torch
from accelerate import Accelerator
from accelerate.utils import InitProcessGroupKwargs, gather_object

from noiseppo.errors import UserError

T = TypeVar("T")


class Ranks:
    """This process's place among the training processes, and the few collectives PPO needs."""

    def __init__(self, device: str, timeout_s: float):
        handler = InitProcessGroupKwargs(timeout=timedelta(seconds=timeout_s))
        self.accelerator = Accelerator(cpu=device == "cpu", kwargs_handlers=[handler])
        self.world = self.accelerator.num_processes
        self.rank = self.accelerator.process_index
        self.is_main = self.accelerator.is_main_process
        # One process keeps the device asked for; several take one device each from accelerate.
        self.device = torch.device(device) if self.world == 1 else self.accelerator.device

    def share(self, n: int) -> slice:
        """This rank's contiguous slice of ``n`` items (``n`` divisible by the world size)."""
        if n % self.world:
            raise UserError(f"{n} items cannot be split evenly over {self.world} processes")
        size = n // self.world
        return slice(self.rank * size, (self.rank + 1) * size)

    def run(self, step: Callable[[], T]) -> T:
        """Run ``step`` on every rank; if it fails on any rank, raise that failure on all of them."""
        try:
            result, error = step(), None
        except UserError as e:
            result, error = None, e
        if self.world == 1:
            if error is not None:
                raise error
            return result  # type: ignore[return-value]
        errors = gather_object([None if error is None else f"process {self.rank}: {error}"])
        failed = [e for e in errors if e is not None]
        if failed:
            raise UserError(failed[0])
        return result  # type: ignore[return-value]

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every rank's ``tensor`` (equal shapes) along dim 0, in rank order."""
        return tensor if self.world == 1 else self.accelerator.gather(tensor.contiguous())

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.world == 1 else self.accelerator.reduce(tensor.clone(), "mean")

    def max(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor if self.world == 1 else self.gather(tensor.reshape(1)).max()

    def average_gradients(self, parameters: Iterable[torch.nn.Parameter]) -> None:
        """Replace every gradient by its mean over the ranks, in one all-reduce."""
        if self.world == 1:
            return
        grads = [p.grad for p in parameters if p.grad is not None]
        flat = self.mean(torch.cat([g.flatten() for g in grads]))
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
