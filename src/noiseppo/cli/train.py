"""``noiseppo train``: train a noise policy with PPO."""

from __future__ import annotations

import argparse

from noiseppo.cli.arguments import int_at_least
from noiseppo.errors import UserError

TRAIN_FLAGS = ("backend", "model", "reward", "prompts", "steps", "iterations", "device", "dtype", "seed")
"""The settings people change most, also given as plain ``noiseppo train`` flags."""


def _config_help() -> str:
    from noiseppo.configs.train import TrainConfig
    from noiseppo.dataclass_args import field_docs

    lines = ["config keys (YAML file or KEY=VALUE; defaults from the preset, see 'noiseppo list presets'):"]
    for key, doc in field_docs(TrainConfig).items():
        lines.append(f"  {key:<22}{doc}")
    return "\n".join(lines)


def add_parser(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser(
        "train",
        help="train a noise policy with PPO",
        description="Train a prompt-conditioned initial-noise policy for a frozen model with PPO.",
        epilog=_config_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tr.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. lr=1e-4 steps=2")
    tr.add_argument("--preset", help="a shipped preset (noiseppo list presets; default: shapes)")
    tr.add_argument("--config", help="a YAML file of config keys, applied over the preset")
    tr.add_argument("--out", help="run folder to create (must not exist or be empty)")
    tr.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR exactly where it stopped; with iterations=N (more than it has), train "
        "it further to N iterations (no other setting)",
    )
    tr.add_argument("--backend", help="a registered backend (noiseppo list backends)")
    tr.add_argument("--model", help="model folder or hub id of the frozen model")
    tr.add_argument(
        "--reward",
        help="a registered reward (noiseppo list rewards), module:function, http://HOST:PORT/PATH or W*A+W*B",
    )
    tr.add_argument("--prompts", help="training prompts: a prompt set or a .txt/.jsonl file")
    tr.add_argument("--steps", type=int_at_least(1), help="sampling steps of the frozen model")
    tr.add_argument("--iterations", type=int_at_least(1), help="PPO iterations")
    tr.add_argument("--device", help="torch device")
    tr.add_argument("--dtype", help="dtype of the frozen model")
    tr.add_argument("--seed", type=int_at_least(0), help="seed of the run")
    tr.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from noiseppo.configs.presets import DEFAULT_PRESET, resolve

    if not args.resume:  # a mistyped preset or key answers before torch loads (seconds)
        if not args.out:
            raise UserError("give --out RUN_DIR (or --resume RUN_DIR)")
        flags = {f: getattr(args, f) for f in TRAIN_FLAGS}
        config = resolve(args.preset or DEFAULT_PRESET, args.config, args.overrides, flags)
        from noiseppo.prompts import load_prompts
        from noiseppo.rewards import check_reward_name

        check_reward_name(config.reward)  # and the prompt files and model folder, each one line, before torch loads
        for prompts in filter(None, (config.prompts, config.eval_prompts)):
            load_prompts(prompts)
        from noiseppo.storage.local_paths import checked_model

        checked_model(config.model)
    from noiseppo.report.page import TrainPage
    from noiseppo.training.trainer import train

    if args.resume:
        from noiseppo.training.extend import RunFinished, resume_iterations

        given = [f"--{f}" for f in ("out", "config") if getattr(args, f)] + (["--preset"] if args.preset else [])
        given += [f"--{f}" for f in TRAIN_FLAGS if f != "iterations" and getattr(args, f) is not None]
        iterations = resume_iterations(args.overrides, args.iterations, given)  # the one setting it takes
        try:
            run = train(None, args.resume, resume=True, iterations=iterations, callbacks=[TrainPage()])
        except RunFinished as done:
            print(done)
            return 0
    else:
        run = train(config, args.out, callbacks=[TrainPage()])
    print(f"policy written to {run / 'policy'}")
    return 0
