"""``noiseppo sample``: images from a frozen model, from standard noise or a noise policy's."""

from __future__ import annotations

import argparse

from noiseppo.cli.arguments import (
    add_backend_arguments,
    add_guidance_argument,
    add_out_argument,
    add_overlap_argument,
    int_at_least,
    prompts_from_args,
)
from noiseppo.cli.setup import set_up


def add_parser(sub: argparse._SubParsersAction) -> None:
    samp = sub.add_parser("sample", help="generate images with a frozen model, from standard noise or a noise policy's")
    samp.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    samp.add_argument("--prompts", help="a prompt set (noiseppo list prompts) or a .txt/.jsonl file")
    samp.add_argument("--n", type=int_at_least(1), default=4, help="images per prompt")
    samp.add_argument(
        "--steps", type=int_at_least(1), help="sampling steps, 1-50 (default: the policy's training steps, else 4)"
    )
    add_guidance_argument(samp)
    samp.add_argument("--seed", type=int_at_least(0), default=0, help="base seed (see noiseppo.sampling.seeds)")
    samp.add_argument("--batch", type=int_at_least(1), default=64, help="images per forward pass")
    add_backend_arguments(samp)
    samp.add_argument("--policy", help="a run folder, a policy folder or a shipped policy (noiseppo list policies)")
    samp.add_argument(
        "--policy-mode", default="sample", choices=["sample", "mean"], help="policy latents: μ + σ ⊙ ε, or μ alone"
    )
    add_overlap_argument(samp)
    add_out_argument(samp)
    samp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from noiseppo.evaluation.samples import write_samples
    from noiseppo.rewards.shapes import ShapesReward
    from noiseppo.sampling.render import RenderSpec, sample
    from noiseppo.sampling.render_and_score import score_side
    from noiseppo.storage.files import new_output_dir

    prompts = prompts_from_args(args)
    setup = set_up(args, prompts, warn=True)
    backend, guidance = setup.backend, setup.guidance
    latents_fn = None if setup.policy is None else setup.policy.noise_to_latents(args.policy_mode)
    with new_output_dir(args.out) as tmp:
        spec = RenderSpec(args.steps, guidance, args.n, args.seed, args.batch, args.overlap_scoring)
        verdicts = None
        if backend.name == "shapes":  # the verifier's verdicts, each chunk checked while the next one renders
            verdicts, samples = score_side(backend, ShapesReward(), prompts, spec, latents_fn)
        else:
            samples = sample(backend, prompts, spec, latents_fn)
        settings = {"steps": args.steps, "guidance": guidance}
        if setup.policy is not None:
            settings.update(policy=args.policy, policy_mode=args.policy_mode)
        grids = write_samples(tmp, samples, settings, args.seed, verdicts)
    summary = f"wrote {len(samples)} images, samples.jsonl and {grids} to {args.out}"
    if verdicts is not None:
        summary += f"; verifier: correct {np.mean(verdicts['correct']):.3f}"
        summary += f", partial {np.mean(verdicts['partial']):.3f}"
    print(summary)
    return 0
