"""``noiseppo shapes render`` and ``noiseppo shapes train-base``: the embedded Shapes world."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from noiseppo.cli.arguments import add_out_argument, int_at_least, prompts_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    from noiseppo.configs.train import ShapesModelTrainConfig
    from noiseppo.dataclass_args import add_dataclass_arguments

    shapes = sub.add_parser("shapes", help="the embedded Shapes world")
    shapes_sub = shapes.add_subparsers(dest="shapes_command", required=True, metavar="COMMAND")
    render = shapes_sub.add_parser("render", help="render ground-truth scenes of the Shapes world")
    render.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    render.add_argument("--prompts", help="a prompt set (noiseppo list prompts) or a .txt/.jsonl file")
    render.add_argument("--n", type=int_at_least(1), default=1, help="scenes per prompt")
    render.add_argument("--seed", type=int_at_least(0), default=0, help="base seed (see noiseppo.sampling.seeds)")
    add_out_argument(render)
    render.set_defaults(func=run_render)

    train_base = shapes_sub.add_parser("train-base", help="retrain the embedded Shapes model from scratch")
    train_base.add_argument("--out", required=True, help="run folder (checkpoint/, metrics.jsonl, model/)")
    train_base.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    add_dataclass_arguments(train_base, ShapesModelTrainConfig)
    train_base.add_argument("--device", default="cpu", help="torch device (not saved: a run may resume elsewhere)")
    train_base.set_defaults(func=run_train_base)


def run_render(args: argparse.Namespace) -> int:
    from noiseppo.sampling.seeds import sample_seed
    from noiseppo.shapes.grammar import parse
    from noiseppo.shapes.render import render_scene
    from noiseppo.storage.files import new_output_dir

    prompts = [parse(p).text for p in prompts_from_args(args)]
    with new_output_dir(args.out) as tmp:
        (tmp / "images").mkdir()
        lines = []
        for i, prompt in enumerate(prompts):
            for j in range(args.n):
                seed = sample_seed(args.seed, i, j)
                image, objects = render_scene(prompt, seed)
                name = f"images/{len(lines):04d}.png"
                image.save(tmp / name)
                scene = [{"colour": o.colour, "shape": o.shape, "box": list(o.box)} for o in objects]
                lines.append(json.dumps({"file": name, "prompt": prompt, "seed": seed, "objects": scene}))
        (tmp / "scenes.jsonl").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} images and scenes.jsonl to {args.out}")
    return 0


def run_train_base(args: argparse.Namespace) -> int:
    from noiseppo.configs.train import ShapesModelTrainConfig
    from noiseppo.dataclass_args import dataclass_from_args
    from noiseppo.training.shapes_base import train_shapes_model

    config = dataclass_from_args(ShapesModelTrainConfig, args)
    model = train_shapes_model(config, Path(args.out), resume=args.resume, device=args.device)
    print(f"model written to {model}")
    return 0
