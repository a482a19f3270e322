"""The argument types and flags that several commands share."""

from __future__ import annotations

import argparse
import math

from noiseppo.errors import UserError


def int_at_least(minimum: int):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return convert


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got '{text}'")
    return value


def prompts_from_args(args: argparse.Namespace) -> list[str]:
    from noiseppo.prompts import load_prompts

    if bool(args.prompt) == bool(args.prompts):
        raise UserError("give either --prompt (repeatable) or --prompts SET_OR_FILE")
    return list(args.prompt) if args.prompt else load_prompts(args.prompts)


def add_guidance_argument(parser: argparse.ArgumentParser) -> None:
    """--guidance of the commands that render with a policy or the model's own noise (None: resolved later)."""
    parser.add_argument(
        "--guidance",
        type=float,
        help="classifier-free guidance scale (1.0: none; default: the policy's, else the model's)",
    )


def config_parser(sub, name: str, config: type, summary: str, description: str) -> argparse.ArgumentParser:
    """The subcommand ``name``, with one flag per field of the dataclass ``config`` (its docstrings as --help)."""
    from noiseppo.dataclass_args import add_dataclass_arguments

    parser = sub.add_parser(name, help=summary, description=description)
    add_dataclass_arguments(parser, config)
    return parser


def add_backend_arguments(parser: argparse.ArgumentParser, takes_policy: bool = True) -> None:
    default = "the policy's, else shapes" if takes_policy else "shapes"  # search has no --policy
    parser.add_argument("--backend", help=f"a registered backend (default: {default})")
    parser.add_argument("--model", help="model folder or hub id (default: the backend's own)")
    parser.add_argument(
        "--scheduler",
        help="ddim, euler, dpm, or default: the model's own (DDIM for Shapes, the pipeline's for diffusers; "
        "sd3 and flux take only default)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")


def add_out_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int_at_least(0), default=0, help="torch CPU threads (0: torch's default)")


def add_overlap_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-overlap-scoring",
        dest="overlap_scoring",
        action="store_false",
        help="score each batch after it renders, on the main thread (default: while the next batch renders)",
    )
