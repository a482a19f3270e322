"""How much a smooth, prompt-conditioned mean shift *could* gain: an oracle probe, not a method.

    python experiments/oracle_mean_shift.py [--steps 4] [--seeds 2] [--grid 8] [--betas 0,0.3,0.6,1.0]

For each held-out prompt the renderer draws one ground-truth scene (which a real policy
never sees), averages it down to a ``grid`` x ``grid`` map, removes each channel's mean
(the white background would otherwise push every latent off the prior), upsamples it
back, and adds ``beta`` times that map to the standard noise of each seed. The map has
the same form as the noise policy's output (a low-resolution mean, upsampled
bilinearly), so the table bounds from below what the policy class can express; what a
trained policy reaches against it measures what the learning leaves on the table. The
last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def layout_map(prompt: str, grid: int, size: int) -> torch.Tensor:
    import torch
    import torch.nn.functional as F

    from noiseppo.shapes.render import render_scene

    image = np.array(render_scene(prompt, 7)[0], dtype=np.float32) / 127.5 - 1.0
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    x = F.interpolate(F.adaptive_avg_pool2d(x, grid), size=size, mode="bilinear", align_corners=False)
    return (x - x.mean(dim=(2, 3), keepdim=True))[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--grid", type=int, default=8)
    ap.add_argument("--betas", default="0,0.3,0.6,1.0")
    args = ap.parse_args()
    import torch  # after the arguments: --help answers at once

    from noiseppo.backends import get_backend
    from noiseppo.prompts import load_prompts
    from noiseppo.sampling.render import RenderSpec, sample
    from noiseppo.shapes.verifier import verify

    backend = get_backend("shapes", None, "ddim")
    prompts = load_prompts("shapes-test")
    maps = {p: layout_map(p, args.grid, backend.latent_shape[-1]) for p in prompts}
    results = []
    print(f"{'beta':>6}{'mu_rms':>8}{'correct':>9}{'partial':>9}")
    for beta in (float(b) for b in args.betas.split(",")):

        def shifted(conditioning, eps, beta=beta):
            return eps + beta * torch.stack([maps[p] for p in conditioning.prompts])

        samples = sample(backend, prompts, RenderSpec(args.steps, 1.0, args.seeds, 0, 148), latents_fn=shifted)
        verdicts = verify(np.stack([s.image.numpy() for s in samples]), [s.prompt for s in samples])
        mu_rms = float(beta * torch.stack(list(maps.values())).pow(2).mean().sqrt())
        row = {
            "beta": beta,
            "mu_rms": mu_rms,
            "n": len(verdicts),
            "correct": float(np.mean([v.correct for v in verdicts])),
            "partial": float(np.mean([v.partial for v in verdicts])),
        }
        results.append(row)
        print(f"{beta:>6.2f}{mu_rms:>8.3f}{row['correct']:>9.3f}{row['partial']:>9.3f}", flush=True)
    print(json.dumps({"steps": args.steps, "seeds": args.seeds, "grid": args.grid, "results": results}))


if __name__ == "__main__":
    main()
