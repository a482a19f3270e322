"""``noiseppo golden``: parsing here, the work in noiseppo.analysis.golden_run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from noiseppo.cli.arguments import (
    add_backend_arguments,
    add_guidance_argument,
    add_out_argument,
    add_threads_argument,
    int_at_least,
)
from noiseppo.cli.setup import set_up
from noiseppo.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    gold = sub.add_parser(
        "golden",
        help="measure the golden-noise hypothesis: shared noises x prompts (docs/golden_noise.md)",
        description="Render every prompt from the same standard noises at each step count, score every image, "
        "and measure how much of the reward is a noise main effect (golden noise), whether prompts agree on "
        "which noises are good, and whether the best noises transfer to new prompts; with --policy, how "
        "prompt-specific a policy's latents are.",
    )
    gold.set_defaults(func=run)
    gold.add_argument("--prompts", help="a prompt set or a .txt/.jsonl file (default: shapes-test)")
    gold.add_argument("--noises", help="shared noises per step count: one number, or one per --steps (default: 64)")
    gold.add_argument("--steps", help="comma-separated step counts (default: 1,2,4,8,16)")
    gold.add_argument(
        "--seed", type=int_at_least(0), default=0, help="base seed: noise j is image j of noiseppo sample --seed"
    )
    add_guidance_argument(gold)
    gold.add_argument("--reward", default="shapes", help="a registered reward (Shapes: correct and partial)")
    gold.add_argument("--batch", type=int_at_least(1), default=256, help="images per forward pass")
    gold.add_argument("--top-k", type=int_at_least(1), default=4, help="noises chosen in the transfer test")
    gold.add_argument("--splits", type=int_at_least(10), default=200, help="random prompt halves of the transfer test")
    gold.add_argument("--bootstrap", type=int_at_least(100), default=1000, help="bootstrap resamples")
    gold.add_argument("--permutations", type=int_at_least(100), default=1000, help="permutations of the rank tests")
    gold.add_argument("--policy", help="also measure this policy's prompt-specificity (run folder or shipped name)")
    gold.add_argument("--policy-seeds", type=int_at_least(1), default=8, help="seeds per prompt of the policy test")
    gold.add_argument(
        "--from",
        dest="from_dir",
        metavar="DIR",
        action="append",
        help="re-analyse the renders of a previous --out (repeatable: merge the step counts of several)",
    )
    add_threads_argument(gold)
    add_backend_arguments(gold)
    add_out_argument(gold)


def _golden_int_list(flag: str, text: str, count: int | None = None) -> list[int]:
    """A comma-separated list of whole numbers >= 1 (``count`` of them, or 1 for all)."""
    try:
        values = [int(t) for t in text.split(",")]
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated whole numbers, got '{text}'") from None
    if any(v < 1 for v in values):
        raise UserError(f"{flag}: every value must be >= 1, got '{text}'")
    if count is not None and len(values) == 1:
        values *= count
    if count is not None and len(values) != count:
        raise UserError(f"{flag}: give one number for every step count or one per step count ({count}), got '{text}'")
    return values


def run(args: argparse.Namespace) -> int:
    from noiseppo.analysis import golden_run
    from noiseppo.storage.files import new_output_dir

    if args.from_dir:
        given = [f"--{f}" for f in ("prompts", "noises", "steps", "policy") if getattr(args, f) is not None]
        if given:
            raise UserError(f"--from re-analyses a previous run's renders; {', '.join(given)} cannot change them")
        header, matrices, policy_raw, policy_info = golden_run.merge_cached(args.from_dir)
        noises = header["noises"]
    else:
        steps = _golden_int_list("--steps", args.steps or "1,2,4,8,16")
        if len(set(steps)) != len(steps):
            raise UserError(f"--steps: a step count is repeated in '{args.steps}'")
        noises = _golden_int_list("--noises", args.noises or "64", len(steps))
        if min(noises) < 2:
            raise UserError(f"--noises: need at least 2 noises to compare, got {min(noises)}")
    if not 1 <= args.top_k <= min(noises) // 2:
        raise UserError(f"--top-k: must be between 1 and half the fewest noises ({min(noises) // 2}), got {args.top_k}")
    if not args.from_dir:
        header, matrices, policy_raw, policy_info = _golden_render(args, steps, noises)
    header.update(top_k=args.top_k, splits=args.splits, bootstrap=args.bootstrap, permutations=args.permutations)
    with new_output_dir(args.out) as tmp:
        results, policy = golden_run.analyse_all(
            header,
            header["prompt_list"],
            matrices,
            policy_raw,
            args.top_k,
            args.splits,
            args.bootstrap,
            args.permutations,
        )
        policy = None if policy is None else {**policy_info, **policy}
        golden_run.write_outputs(tmp, header, results, policy, matrices, policy_raw, header["latent_shape"])
    print(golden_run.format_table(results))
    # One summary line: per step count the noise's share of the variance and the top-k noises' gain on
    # held-out prompts; every other figure is in golden.json beside the matrices, heatmap.png, steps.png
    # and best_noises_steps*.safetensors.
    line = golden_run.summary_line(header, results, policy)

    def figure(value: float | None, ci: list, sign: str = "") -> str:
        if value is None:
            return "n/a"
        return f"{value:{sign}.3f} [{ci[0]:{sign}.3f}, {ci[1]:{sign}.3f}]" if None not in ci else f"{value:{sign}.3f}"

    parts = [
        f"{k}: noise share {figure(v['noise_share'], v['noise_share_ci95'])}, top-{args.top_k} gain "
        f"{figure(v['topk_gain'], v['topk_gain_ci95'], '+')}"
        for k, v in line.items()
        if k.startswith("steps")
    ]
    print(f"wrote {Path(args.out) / 'golden.json'} ({line['metric']}): " + "; ".join(parts))
    return 0


def _golden_render(args: argparse.Namespace, steps: list[int], noises: list[int]) -> tuple:
    """Check every input, then render: (header, matrices, policy scores, policy settings)."""
    from noiseppo.analysis import golden_run
    from noiseppo.prompts import load_prompts
    from noiseppo.sampling.render import RenderSpec

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    prompts = load_prompts(args.prompts or "shapes-test")
    if len(prompts) < 2:
        raise UserError(f"--prompts: need at least 2 prompts to compare noises across, got {len(prompts)}")
    args.steps = steps  # so that the policy's training steps do not replace them in set_up
    setup = set_up(args, prompts, reward=True)
    if setup.policy is not None:  # refuses a template of one prompt, before any rendering
        golden_run.partners(golden_run.prompt_templates(prompts), args.seed)
    policy_steps = int(setup.trained.get("steps", 4))
    plan = dict(zip(steps, noises, strict=True))
    matrices, policy_raw, partners = golden_run.render_all(
        setup.backend,
        setup.reward,
        prompts,
        plan,
        RenderSpec(policy_steps, setup.guidance, args.policy_seeds, args.seed, args.batch),
        setup.policy,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    settings = {
        "backend": args.backend,
        "model": args.model,
        "scheduler": args.scheduler,
        "reward": args.reward,
        "prompts": args.prompts or "shapes-test",
    }
    header = golden_run.golden_header(
        settings, prompts, plan, args.seed, setup.guidance, setup.backend.latent_shape, matrices
    )
    policy_info = None
    if setup.policy is not None:
        policy_info = {"name": args.policy, "steps": policy_steps, "seeds": args.policy_seeds, "partners": partners}
    return header, matrices, policy_raw, policy_info
