"""``noiseppo eval``: the paired evaluation of a noise policy against standard noise."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from noiseppo.cli.arguments import (
    add_backend_arguments,
    add_guidance_argument,
    add_out_argument,
    add_overlap_argument,
    int_at_least,
)
from noiseppo.cli.setup import set_up
from noiseppo.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="paired evaluation of a noise policy against standard noise")
    ev.add_argument("--policy", required=True, help="a run folder, a policy folder or a shipped policy")
    ev.add_argument("--prompts", default="shapes-test", help="a prompt set or a .txt/.jsonl file")
    ev.add_argument("--steps", help="comma-separated step counts (default: the policy's training steps)")
    ev.add_argument("--seeds", type=int_at_least(1), default=8, help="samples per prompt")
    ev.add_argument("--seed", type=int_at_least(0), default=0, help="base seed (pairs with noiseppo sample)")
    add_guidance_argument(ev)
    ev.add_argument("--reward", help="a registered reward (default: the policy's training reward)")
    ev.add_argument("--batch", type=int_at_least(1), default=128, help="images per forward pass")
    ev.add_argument("--bootstrap", type=int_at_least(100), default=10_000, help="bootstrap resamples")
    add_backend_arguments(ev)
    add_overlap_argument(ev)
    add_out_argument(ev)
    ev.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    from noiseppo.evaluation.evaluate import evaluate_steps, format_table, summarise, write_eval
    from noiseppo.prompts import load_prompts
    from noiseppo.sampling.render import RenderSpec
    from noiseppo.storage.files import new_output_dir

    prompts = load_prompts(args.prompts)
    if args.steps is not None:  # else the policy's training steps (set_up)
        try:
            args.steps = [int(s) for s in args.steps.split(",")]
        except ValueError:
            raise UserError(f"--steps: expected comma-separated whole numbers, got '{args.steps}'") from None
    setup = set_up(args, prompts, reward=True, warn=True)
    guidance = setup.guidance
    header = {
        "policy": args.policy,
        "backend": args.backend,
        "model": args.model,
        "scheduler": args.scheduler,
        "reward": args.reward,
        "prompts": args.prompts,
        "seeds": args.seeds,
        "seed": args.seed,
        "guidance": guidance,
        "bootstrap": args.bootstrap,
    }
    rows, results = [], []
    with new_output_dir(args.out) as tmp:
        for s in setup.steps:
            start = time.time()
            spec = RenderSpec(s, guidance, args.seeds, args.seed, args.batch, args.overlap_scoring)
            result = evaluate_steps(setup.backend, setup.policy, setup.reward, prompts, spec)
            results.append(result)
            rows.extend(summarise(result, args.bootstrap))
            print(f"steps {s}: {time.time() - start:.0f} s", file=sys.stderr)
        write_eval(tmp, header, rows, results)
    print(format_table(rows))
    from noiseppo.report.page import REPORT, write_or_warn

    page = f" and {REPORT}" if write_or_warn([Path(args.out)], Path(args.out) / REPORT) else ""
    print(f"wrote eval.json, gain.png, grid_steps*.png{page} to {args.out}")
    return 0
