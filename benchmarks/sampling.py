"""Sampling throughput of a frozen model (by default the embedded Shapes model) on this machine.

    python benchmarks/sampling.py [--backend shapes] [--model DIR] [--prompts shapes-test]
        [--scheduler default] [--steps 4] [--batch 64] [--guidance 3] [--device cpu]
        [--dtype float32] [--repeats 3]

Times ``backend.generate`` on one batch of prompts (prompt encoding and noise drawing
excluded), after one warm-up call, and reports the median images/s over ``--repeats``
calls, with guidance (two forward passes per step) and without (one). With
``--backend diffusers`` the same loop times a diffusers pipeline (``--model`` a hub id
or a local folder). The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", default="shapes")
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompts", default="shapes-test")
    ap.add_argument("--scheduler", default="default")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    import torch  # after the arguments: --help answers at once

    from noiseppo.backends import get_backend
    from noiseppo.prompts import load_prompts
    from noiseppo.sampling.seeds import standard_noise

    backend = get_backend(args.backend, args.model, args.scheduler, args.device, args.dtype)
    prompts = (load_prompts(args.prompts) * args.batch)[: args.batch]
    conditioning = backend.encode(prompts)
    latents = standard_noise(backend.latent_shape, range(args.batch))
    figures: dict[str, float | int | str] = {
        "backend": args.backend,
        "device": args.device,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "steps": args.steps,
        "batch": args.batch,
    }
    for label, guidance in [("guided", args.guidance), ("unguided", 1.0)]:
        backend.generate(latents, conditioning, args.steps, guidance)  # warm-up
        rates = []
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            backend.generate(latents, conditioning, args.steps, guidance)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            rates.append(args.batch / (time.perf_counter() - start))
        figures[f"images_per_s_{label}"] = round(float(np.median(rates)), 1)
        print(f"{label} (guidance {guidance}): {figures[f'images_per_s_{label}']} images/s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
