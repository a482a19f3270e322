"""``noiseppo sample``: images from a frozen model, from standard noise or a noise policy's."""

from __future__ import annotations

import argparse
import json

from noiseppo.cli.arguments import (
    add_backend_arguments,
    add_guidance_argument,
    add_out_argument,
    add_overlap_argument,
    int_at_least,
    prompts_from_args,
)
from noiseppo.cli.setup import backend_defaults_from_policy, warn_if_mismatched


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

    from noiseppo.backends import get_backend
    from noiseppo.backends.base import resolve_guidance
    from noiseppo.evaluation.grid import Block, Cell, grid_pages, save_pages
    from noiseppo.images import to_pil
    from noiseppo.rewards.shapes import ShapesReward
    from noiseppo.sampling.render import RenderSpec, sample
    from noiseppo.sampling.render_and_score import score_side
    from noiseppo.storage.files import new_output_dir

    prompts = prompts_from_args(args)
    policy = None
    if args.policy:
        from noiseppo.policy import load_policy

        policy = load_policy(args.policy)
    trained = backend_defaults_from_policy(args)
    backend = get_backend(args.backend, args.model, args.scheduler, args.device, args.dtype)
    backend.encode(list(dict.fromkeys(prompts)))  # refuse bad prompts before any work or writing
    latents_fn = None
    if policy is not None:
        from noiseppo.policy import check_policy

        check_policy(policy, backend)
        latents_fn = policy.noise_to_latents(args.policy_mode)
    guidance = resolve_guidance(backend, args.guidance)
    warn_if_mismatched(trained, [args.steps], guidance, args.scheduler, backend.default_guidance)
    with new_output_dir(args.out) as tmp:
        spec = RenderSpec(args.steps, guidance, args.n, args.seed, args.batch, args.overlap_scoring)
        verdicts = None
        if backend.name == "shapes":  # the verifier's verdicts, each chunk checked while the next one renders
            verdicts, samples = score_side(backend, ShapesReward(), prompts, spec, latents_fn)
        else:
            samples = sample(backend, prompts, spec, latents_fn)
        (tmp / "images").mkdir()
        rows, blocks = [], []
        for k, s in enumerate(samples):
            name = f"images/{k:04d}.png"
            pil = to_pil(s.image)
            pil.save(tmp / name)
            row = {"file": name, "prompt": s.prompt, "seed": s.seed, "steps": args.steps, "guidance": guidance}
            if policy is not None:
                row.update(policy=args.policy, policy_mode=args.policy_mode)
            cell = Cell(pil, f"sample {s.sample_index}")
            if verdicts is not None:
                correct, partial = bool(verdicts["correct"][k]), float(verdicts["partial"][k])
                row.update(correct=correct, partial=round(partial, 4))
                cell.correct, cell.score = correct, partial
            rows.append(json.dumps(row))
            if k == 0 or samples[k - 1].prompt_index != s.prompt_index:
                blocks.append(Block(s.prompt, []))
            blocks[-1].cells.append(cell)
        (tmp / "samples.jsonl").write_text("\n".join(rows) + "\n")
        noise = f"policy {args.policy} ({args.policy_mode})" if policy is not None else "standard noise (no policy)"
        title = f"{noise}, {args.steps} steps, guidance {guidance:g}, seed {args.seed}"
        grids = save_pages(grid_pages(blocks, title), tmp, "grid")
    summary = f"wrote {len(samples)} images, samples.jsonl and {grids} to {args.out}"
    if verdicts is not None:
        summary += f"; verifier: correct {np.mean(verdicts['correct']):.3f}"
        summary += f", partial {np.mean(verdicts['partial']):.3f}"
    print(summary)
    return 0
