"""``noiseppo search``: per-prompt black-box noise search; the work in noiseppo.baselines.search."""

from __future__ import annotations

import argparse

from noiseppo.cli.arguments import (
    add_backend_arguments,
    add_out_argument,
    add_threads_argument,
    config_parser,
    prompts_from_args,
)
from noiseppo.cli.setup import set_up


def add_parser(sub: argparse._SubParsersAction) -> None:
    from noiseppo.configs.baselines import SearchConfig

    srch = config_parser(
        sub,
        "search",
        SearchConfig,
        "per-prompt black-box noise search: a free low-resolution mean per prompt, within a render budget",
        "Optimise a free low-resolution noise mean per prompt with any black-box reward (an evolution strategy), "
        "never rendering more than --budget images per prompt.",
    )
    srch.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    srch.add_argument("--prompts", help="a prompt set (noiseppo list prompts) or a .txt/.jsonl file")
    srch.add_argument(
        "--reward", default="shapes", help="a registered reward, module:function, http://HOST:PORT/PATH or W*A+W*B"
    )
    add_backend_arguments(srch, takes_policy=False)
    add_threads_argument(srch)
    add_out_argument(srch)
    srch.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    import torch

    from noiseppo.baselines.search import check_search, search, write_search
    from noiseppo.configs.baselines import SearchConfig
    from noiseppo.dataclass_args import dataclass_from_args
    from noiseppo.rewards.base import redacted
    from noiseppo.storage.files import new_output_dir

    config = dataclass_from_args(SearchConfig, args)
    check_search(config)  # a budget below one generation: refused before anything loads
    prompts = prompts_from_args(args)
    setup = set_up(args, prompts, reward=True)
    backend = setup.backend
    config = dataclasses.replace(config, guidance=setup.guidance)  # search.json's
    if args.threads:
        torch.set_num_threads(args.threads)
    with new_output_dir(args.out) as tmp:
        result = search(backend, setup.reward, prompts, config)
        header = {"backend": backend.name, "model": args.model, "reward": redacted(args.reward)}
        write_search(tmp, result, prompts, config, header)
    first, last = result.log[0], result.log[-1]
    print(
        f"searched {len(prompts)} prompt(s), {result.renders} renders each: mean reward of a generation's samples "
        f"{first['reward_mean']:.3f} (first) -> {last['reward_mean']:.3f} (last); kept: each prompt's best render "
        f"of the whole search (mean reward {last['best_reward_mean']:.3f}), its latents in latents.safetensors; "
        f"wrote latents.safetensors, images/, grid.png and search.json to {args.out}"
    )
    return 0
