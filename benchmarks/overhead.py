"""What Noise PPO costs beside rendering, as two ratios measured in one run.

    python benchmarks/overhead.py [--steps 4] [--repeats 20] [--threads 0] [--preset shapes] [--device cpu]

* ``train_over_sampling``: training throughput (images per second through whole PPO
  iterations: noise, policy, rendering, reward, advantages, update) over pure sampling
  throughput of the frozen model (encode, standard noise, render) at the same batch,
  steps and guidance. 1.0 means PPO is free; the target is >= 0.90.
* ``policy_over_generation``: one policy forward pass over one generation of the same
  batch at ``--steps`` steps. The target is <= 0.02.

The two sides alternate, ``--repeats`` times each, and the medians are compared, so a
machine that slows down mid-run slows both sides. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used, so that --help answers before torch loads
    from noiseppo.backends.base import Backend
    from noiseppo.training.trainer import Trainer


def sync(device: str) -> None:
    """CUDA runs asynchronously: stop a clock only when the GPU is done."""
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def sampling_clock(trainer: Trainer) -> Callable[[], float]:
    """Seconds to render one training batch with standard noise: encode, noise, render, in
    chunks of ``render_batch`` as training renders them, and nothing else."""
    config = trainer.config
    prompts = [p for p in trainer.prompts[: config.prompts_per_iteration] for _ in range(config.samples_per_prompt)]
    return render_clock(trainer.backend, prompts, config.steps, trainer.guidance, config.render_batch, config.device)


def render_clock(
    backend: Backend, prompts: list[str], steps: int, guidance: float, render_batch: int, device: str
) -> Callable[[], float]:
    """Seconds to render ``prompts`` with standard noise (encode, noise, render in chunks of
    ``render_batch``): pure sampling, without a Trainer (benchmarks/real_sizes.py measures its memory alone)."""
    import torch

    from noiseppo.sampling.render import encode_distinct
    from noiseppo.sampling.seeds import standard_noise

    def sampling() -> float:
        sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(prompts), render_batch):
                chunk = prompts[i : i + render_batch]
                eps = standard_noise(backend.latent_shape, range(i, i + len(chunk)))
                backend.generate(eps, encode_distinct(backend, chunk), steps, guidance)
        sync(device)
        return time.perf_counter() - start

    return sampling


def training_clock(trainer: Trainer) -> Callable[[], float]:
    """Seconds of one whole PPO iteration (``Trainer.step``)."""

    def training() -> float:
        sync(trainer.config.device)
        start = time.perf_counter()
        trainer.step()
        sync(trainer.config.device)
        return time.perf_counter() - start

    return training


def policy_clock(trainer: Trainer, prompts: list[str]) -> Callable[[], float]:
    """Seconds of the policy's forward alone: latents for ``prompts`` (one standard noise each)."""
    import torch

    from noiseppo.sampling.seeds import standard_noise

    backend, device = trainer.backend, trainer.config.device
    cond = backend.encode(prompts)
    eps = standard_noise(backend.latent_shape, range(len(prompts))).to(device)
    latents = trainer.policy.noise_to_latents("sample")

    def policy_forward() -> float:
        sync(device)
        start = time.perf_counter()
        with torch.no_grad():
            latents(cond, eps)
        sync(device)
        return time.perf_counter() - start

    return policy_forward


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="shapes")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    import torch  # after the arguments: --help answers at once

    from noiseppo.configs.presets import resolve
    from noiseppo.training.trainer import Trainer

    overrides = [f"steps={args.steps}", "eval_prompts=", f"threads={args.threads}", f"device={args.device}"]
    config = resolve(args.preset, overrides=overrides)
    trainer = Trainer(config)
    batch = config.prompts_per_iteration * config.samples_per_prompt
    prompts = [p for p in trainer.prompts[: config.prompts_per_iteration] for _ in range(config.samples_per_prompt)]
    sampling, training = sampling_clock(trainer), training_clock(trainer)

    policy_forward = policy_clock(trainer, prompts)

    training(), sampling(), policy_forward()  # warm-up: first calls pay for allocation
    times: dict[str, list[float]] = {"sampling": [], "training": [], "policy": []}
    for _ in range(args.repeats):
        times["sampling"].append(sampling())
        times["training"].append(training())
        times["policy"].extend(policy_forward() for _ in range(5))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "device": args.device,
        "batch": batch,
        "steps": config.steps,
        "guidance": trainer.guidance,
        "threads": torch.get_num_threads(),
        "sampling_images_per_s": batch / med["sampling"],
        "training_images_per_s": batch / med["training"],
        "policy_forward_s": med["policy"],
        "generation_s": med["sampling"],
        "train_over_sampling": med["sampling"] / med["training"],
        "policy_over_generation": med["policy"] / med["sampling"],
    }
    print(f"batch {batch}, {config.steps} steps, guidance {trainer.guidance}, {result['threads']} threads")
    print(f"pure sampling      {result['sampling_images_per_s']:8.1f} images/s")
    print(f"PPO training       {result['training_images_per_s']:8.1f} images/s")
    print(f"train / sampling   {result['train_over_sampling']:8.3f}   (target >= 0.90)")
    print(f"policy / generate  {result['policy_over_generation']:8.4f}   (target <= 0.02)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
