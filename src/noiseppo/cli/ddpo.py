"""``noiseppo ddpo``: the DDPO baseline; the work in noiseppo.baselines (ddpo, ddpo_diffusers)."""

from __future__ import annotations

import argparse
from pathlib import Path

from noiseppo.cli.arguments import config_parser
from noiseppo.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    from noiseppo.configs.baselines import DDPOConfig

    ddpo = config_parser(
        sub,
        "ddpo",
        DDPOConfig,
        "DDPO: fine-tunes a copy of the Shapes denoiser, or LoRA on an SD pipeline's U-Net (a baseline)",
        "DDPO (Black et al. 2023, importance-sampled PPO over the DDIM eta=1 steps) with a Noise PPO preset's "
        "reward, prompts and render budget: on a copy of the Shapes denoiser (default), or with --backend diffusers "
        "--model FOLDER on LoRA adapters of a StableDiffusionPipeline's U-Net (SD 1.x/2.x, SD-Turbo; SDXL and the "
        "flow backends are refused), written to RUN/lora for pipe.load_lora_weights. docs/baselines.md.",
    )
    ddpo.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="preset overrides, e.g. reward=pickscore prompts=FILE steps=4"
    )
    ddpo.add_argument("--backend", help="shapes (the preset's, default) or diffusers (a StableDiffusionPipeline)")
    ddpo.add_argument("--reward", help="the reward, as for train (default: the preset's); the same as reward=NAME")
    ddpo.add_argument("--prompts", help="training prompts, as for train (default: the preset's); as prompts=FILE")
    ddpo.add_argument(
        "--model",
        help="Shapes model folder (default: the shipped one) or, with --backend diffusers, a pipeline "
        "folder or hub id; never modified",
    )
    ddpo.add_argument("--device", help="torch device of --backend diffusers, e.g. cuda (default: cpu)")
    ddpo.add_argument(
        "--dtype", help="float32, float16 or bfloat16, --backend diffusers (the adapters train in float32)"
    )
    ddpo.add_argument("--out", help="run folder (must not exist or be empty)")
    ddpo.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue a run (Shapes or --backend diffusers) from its last checkpoint, exactly; "
        "with --iterations N (at least what it has done), train it further to N",
    )
    ddpo.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from noiseppo.configs.baselines import DDPOConfig
    from noiseppo.dataclass_args import dataclass_from_args

    if args.resume:  # the run's own settings; only its length and the thread count may change
        named = [f.name for f in dataclasses.fields(DDPOConfig) if f.name not in ("iterations", "threads")]
        given = [
            f"--{k.replace('_', '-')}"
            for k in ("out", "model", "backend", "reward", "prompts", "device", "dtype", *named)
            if getattr(args, k) is not None
        ] + [o for o in args.overrides]
        if given:
            raise UserError(
                f"--resume continues with the run's saved settings: it takes --iterations and --threads, not {given[0]}"
            )
        from noiseppo.baselines.ddpo_resume import resume_ddpo

        out = Path(args.resume)
        summary = resume_ddpo(out, args.iterations or 0, args.threads or 0)
    else:
        from noiseppo.baselines.ddpo import ddpo_settings, train_ddpo

        if not args.out:
            raise UserError("give --out RUN_DIR (or --resume RUN_DIR)")
        out = Path(args.out)
        given = ("backend", "reward", "prompts", "device", "dtype")  # train's flags, as the preset's keys
        flags = [f"{k}={getattr(args, k)}" for k in given if getattr(args, k) is not None]
        config = dataclass_from_args(DDPOConfig, args)
        cfg = ddpo_settings(config, (*args.overrides, *flags))
        if cfg.backend == "diffusers":  # an SD pipeline with LoRA: its own run folder and resume
            from noiseppo.baselines.ddpo_diffusers import train_ddpo_diffusers

            summary = train_ddpo_diffusers(config, cfg, out, str(args.model or cfg.model))
        else:
            summary = train_ddpo(config, out, args.model, overrides=(*args.overrides, *flags))
    from noiseppo.baselines.ddpo import summary_line

    lora = "lora_parameters" in summary  # the diffusers run's adapters; the Shapes run's whole model
    print(f"LoRA weights written to {out / 'lora'}" if lora else f"tuned model written to {out / 'model'}")
    print(summary_line(summary, out))
    return 0
