"""``noiseppo compare``: every method on the same held-out prompts and seeds; the work in noiseppo.comparison."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from noiseppo.cli.arguments import add_out_argument, add_threads_argument, int_at_least
from noiseppo.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    cmp = sub.add_parser(
        "compare",
        help="best-of-N, noise search, DDPO and Noise PPO on the same held-out prompts and seeds: compare.json",
    )
    cmp.add_argument(
        "--methods",
        required=True,
        help="comma-separated: standard, best-of-N, search@B, noise-ppo, noise-ppo+best-of-N, noise-ppo-blind "
        "(the prompt hidden from the policy), golden-top-K (K noises chosen on the training prompts), policy:NAME, "
        "ddpo, ddpo@ITERATIONS",
    )
    cmp.add_argument("--prompts", help="held-out prompts: a prompt set or a file")
    cmp.add_argument("--seeds", type=int_at_least(1), help="images per prompt (paired across methods)")
    cmp.add_argument("--seed", type=int_at_least(0), help="base seed (pairs with noiseppo sample)")
    cmp.add_argument("--steps", type=int_at_least(1), help="sampling steps of the frozen model")
    cmp.add_argument("--reward", help="the reward every method optimises and picks with")
    cmp.add_argument("--preset", help="the Noise PPO preset (and DDPO's budget)")
    cmp.add_argument(
        "--backend",
        help="shapes (default), diffusers, sd3 or flux: the frozen model every method runs on; another backend than "
        "shapes takes --model, --reward and --prompts of its own (DDPO: shapes and diffusers only)",
    )
    cmp.add_argument("--model", help="the backend's model folder or hub id (shapes: the shipped model)")
    cmp.add_argument("--device", help="torch device of the model, e.g. cuda (default: cpu)")
    cmp.add_argument("--dtype", help="float32 (default), float16 or bfloat16")
    add_threads_argument(cmp)
    cmp.add_argument(
        "--iterations",
        type=int_at_least(0),
        help="Noise PPO's iterations, and plain ddpo's (0: the preset's; a smaller budget for a short run)",
    )
    cmp.add_argument("--search-curve", help="renders per prompt at which search is also evaluated")
    cmp.add_argument("--bootstrap", type=int_at_least(100), help="bootstrap resamples")
    cmp.add_argument("--golden-noises", type=int_at_least(1), help="shared noises golden-top-K chooses its K from")
    cmp.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="preset overrides of the methods trained here, e.g. prompts=FILE (their training prompts); "
        "eval_prompts=, eval_seeds=, reward=, steps=, model= set --prompts, --seeds, --reward, --steps, --model",
    )
    add_out_argument(cmp)
    cmp.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from noiseppo.comparison.config import compare_config, prepare
    from noiseppo.storage.files import new_output_dir

    given = vars(args)  # the flags left out are None: CompareConfig's defaults
    try:
        if args.search_curve is not None:
            given["search_curve"] = tuple(int(b) for b in args.search_curve.split(",")) if args.search_curve else ()
    except ValueError:
        raise UserError(f"--search-curve: expected comma-separated whole numbers, got '{args.search_curve}'") from None
    config = compare_config(given, args.overrides)
    prepare(config)  # a bad method, key, prompt file or reward name: refused before torch loads
    from noiseppo.comparison.runner import run_compare
    from noiseppo.comparison.table import format_table

    with new_output_dir(args.out) as tmp:
        body = run_compare(config, tmp, say=lambda line: print(line, file=sys.stderr, flush=True))
    from noiseppo.report.page import REPORT, write_or_warn

    if write_or_warn([Path(args.out)], Path(args.out) / REPORT):  # the table and compare.png as a page
        print(f"report: {Path(args.out) / REPORT}")
    print(format_table(body))
    # One summary line, as one JSON object (the README's figures cite it): each method's score and
    # where every other figure is (against best-of-N, against DDPO, the curves).
    scores = {r["method"]: round(r[body["metric"]], 4) for r in body["rows"]}
    print(json.dumps({"wrote": str(Path(args.out) / "compare.json"), "metric": body["metric"], "rows": scores}))
    return 0
