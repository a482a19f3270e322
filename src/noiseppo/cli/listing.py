"""``noiseppo list``: what a registry holds, one per line."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    listing = sub.add_parser("list", help="what a registry holds, one per line")
    listing.add_argument("what", choices=["presets", "rewards", "backends", "prompts", "policies"])
    listing.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from noiseppo.backends import BACKENDS
    from noiseppo.configs.presets import presets
    from noiseppo.prompts import PROMPT_SETS
    from noiseppo.rewards import REWARDS
    from noiseppo.storage.shipped import shipped_policies

    registries = {"prompts": PROMPT_SETS, "rewards": REWARDS, "backends": BACKENDS}
    if args.what in registries:
        listing = {name: description for name, (_, description) in registries[args.what].items()}
    else:
        listing = presets() if args.what == "presets" else shipped_policies()
    width = max([18, *(len(name) + 2 for name in listing)])
    for name, description in listing.items():
        print(f"{name:<{width}}{description}")
    if args.what == "rewards":  # the forms a reward takes besides a registered name
        print(f"{'module:function':<{width}}your own function from a module (README: Your model, your reward)")
        print(f"{'http://HOST:PORT/PATH':<{width}}a reward server (noiseppo reward-server, docs/reward_server.md)")
        print(f"{'0.5*A+1.0*B':<{width}}a weighted sum of rewards")
    return 0
