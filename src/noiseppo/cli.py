"""``noiseppo``: argument parsing and error reporting; the logic lives in the modules.

A ``UserError`` becomes one line on stderr (``noiseppo: error: ...``) and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np
from PIL import Image, UnidentifiedImageError

from noiseppo.errors import UserError


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line and exit 2 like every other user error."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see '{self.prog} --help')")


def _int_at_least(minimum: int):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return convert


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got '{text}'")
    return value


def _prompts_from_args(args: argparse.Namespace) -> list[str]:
    from noiseppo.prompts import load_prompts

    if bool(args.prompt) == bool(args.prompts):
        raise UserError("give either --prompt (repeatable) or --prompts SET_OR_FILE")
    return list(args.prompt) if args.prompt else load_prompts(args.prompts)


def _load_image(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            # Transparent pixels lie on the Shapes world's white, not on black.
            rgba = im.convert("RGBA")
            pixels = np.asarray(Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB"))
    except FileNotFoundError:
        raise UserError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError) as e:
        raise UserError(f"{path}: cannot read image ({e.__class__.__name__})") from None
    return pixels


def cmd_score(args: argparse.Namespace) -> int:
    from noiseppo.rewards import get_reward

    reward = get_reward(args.reward)
    if len(args.prompt) not in (1, len(args.images)):
        raise UserError(
            f"give one --prompt for all images or one per image; got {len(args.prompt)} for {len(args.images)} images"
        )
    prompts = args.prompt * len(args.images) if len(args.prompt) == 1 else args.prompt
    size = getattr(reward, "image_size", None)  # (height, width) a reward insists on, if any
    pixels = []
    for path in args.images:
        image = _load_image(path)
        if size is not None and image.shape[:2] != size:
            h, w = image.shape[:2]
            raise UserError(
                f"{path}: image is {w}x{h}, reward '{args.reward}' reads {size[1]}x{size[0]} (it never resizes)"
            )
        pixels.append(image)
    if len({p.shape for p in pixels}) > 1:
        raise UserError("images of different sizes cannot be scored in one call")
    batch = np.stack(pixels).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
    details = getattr(reward, "details", None)
    if details:
        rows = details(batch, prompts)
    else:  # the reward contract: a float tensor, and checked scores
        import torch

        from noiseppo.rewards import score_batch

        rows = [{"score": float(s)} for s in score_batch(reward, torch.from_numpy(batch), prompts)]
    for path, row in zip(args.images, rows, strict=True):
        print(json.dumps({"image": path, **row}))
    return 0


def cmd_shapes_render(args: argparse.Namespace) -> int:
    from noiseppo.files import new_output_dir
    from noiseppo.seeds import sample_seed
    from noiseppo.shapes.grammar import parse
    from noiseppo.shapes.render import render_scene

    prompts = [parse(p).text for p in _prompts_from_args(args)]
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


def cmd_sample(args: argparse.Namespace) -> int:
    import torch

    from noiseppo.backends import get_backend
    from noiseppo.files import new_output_dir
    from noiseppo.grid import captioned_grid, to_pil
    from noiseppo.sampling import sample
    from noiseppo.shapes.verifier import verify

    prompts = _prompts_from_args(args)
    policy = None
    if args.policy:
        from noiseppo.policy import load_policy

        policy = load_policy(args.policy)
    _backend_defaults_from_policy(args)
    backend = get_backend(args.backend, args.model, args.scheduler, args.device, args.dtype)
    backend.encode(list(dict.fromkeys(prompts)))  # refuse bad prompts before any work or writing
    latents_fn = None
    if policy is not None:
        from noiseppo.backends import check_policy

        check_policy(policy, backend)
        latents_fn = policy.latents_fn(args.policy_mode)
    guidance = backend.default_guidance if args.guidance is None else args.guidance
    with new_output_dir(args.out) as tmp:
        samples = sample(backend, prompts, args.n, args.steps, guidance, args.seed, args.batch, latents_fn)
        images = torch.stack([s.image for s in samples])
        verdicts = verify(images, [s.prompt for s in samples]) if backend.name == "shapes" else None
        (tmp / "images").mkdir()
        rows, pil_images, captions = [], [], []
        for k, s in enumerate(samples):
            name = f"images/{k:04d}.png"
            pil = to_pil(s.image)
            pil.save(tmp / name)
            row = {"file": name, "prompt": s.prompt, "seed": s.seed, "steps": args.steps, "guidance": guidance}
            if policy is not None:
                row.update(policy=args.policy, policy_mode=args.policy_mode)
            caption = s.prompt
            if verdicts is not None:
                row.update(correct=verdicts[k].correct, partial=round(verdicts[k].partial, 4))
                caption = f"{'OK' if verdicts[k].correct else 'x'} {s.prompt}"
            rows.append(json.dumps(row))
            pil_images.append(pil)
            captions.append(caption)
        (tmp / "samples.jsonl").write_text("\n".join(rows) + "\n")
        captioned_grid(pil_images, captions).save(tmp / "grid.png")
    summary = f"wrote {len(samples)} images, samples.jsonl and grid.png to {args.out}"
    if verdicts is not None:
        summary += f"; verifier: correct {np.mean([v.correct for v in verdicts]):.3f}"
        summary += f", partial {np.mean([v.partial for v in verdicts]):.3f}"
    print(summary)
    return 0


def _backend_defaults_from_policy(args: argparse.Namespace) -> dict:
    """Backend settings a policy was trained with fill in the flags the user left out;
    returns that training config ({} without a policy or a saved config)."""
    from noiseppo.policy import training_config

    trained = (training_config(args.policy) if args.policy else None) or {}
    for key in ("backend", "model", "scheduler"):
        if getattr(args, key) is None and trained.get(key):
            setattr(args, key, trained[key])
    args.backend = args.backend or "shapes"
    args.scheduler = args.scheduler or "default"
    if args.steps is None:
        args.steps = trained.get("steps", 4)
    if args.guidance is None and trained.get("guidance"):  # 0 in a config: the backend's default
        args.guidance = float(trained["guidance"])
    return trained


def cmd_eval(args: argparse.Namespace) -> int:
    import time

    from noiseppo.backends import check_policy, get_backend
    from noiseppo.evaluate import evaluate_steps, format_table, summarise, write_eval
    from noiseppo.files import new_output_dir
    from noiseppo.policy import load_policy
    from noiseppo.prompts import load_prompts
    from noiseppo.rewards import get_reward

    policy = load_policy(args.policy)
    trained = _backend_defaults_from_policy(args)
    reward_name = args.reward or trained.get("reward") or "shapes"
    reward = get_reward(reward_name)
    prompts = load_prompts(args.prompts)
    try:
        steps = [int(s) for s in args.steps.split(",")] if isinstance(args.steps, str) else [int(args.steps)]
    except ValueError:
        raise UserError(f"--steps: expected comma-separated whole numbers, got '{args.steps}'") from None
    backend = get_backend(args.backend, args.model, args.scheduler, args.device, args.dtype)
    check_policy(policy, backend)
    backend.encode(list(dict.fromkeys(prompts)))  # refuse bad prompts before any work or writing
    guidance = backend.default_guidance if args.guidance is None else args.guidance
    header = {
        "policy": args.policy, "backend": args.backend, "model": args.model, "scheduler": args.scheduler,
        "reward": reward_name, "prompts": args.prompts, "seeds": args.seeds, "seed": args.seed,
        "guidance": guidance, "bootstrap": args.bootstrap,
    }  # fmt: skip
    rows, results = [], []
    with new_output_dir(args.out) as tmp:
        for s in steps:
            start = time.time()
            result = evaluate_steps(backend, policy, reward, prompts, s, args.seeds, guidance, args.seed, args.batch)
            results.append(result)
            rows.extend(summarise(result, args.bootstrap))
            print(f"steps {s}: {time.time() - start:.0f} s", file=sys.stderr)
        write_eval(tmp, header, rows, results)
    print(format_table(rows))
    print(f"wrote eval.json, gain.png and grid_steps*.png to {args.out}")
    return 0


def cmd_train_base(args: argparse.Namespace) -> int:
    from noiseppo.config import BaseTrainConfig
    from noiseppo.dataclass_args import dataclass_from_args
    from noiseppo.shapes.train_base import train

    config = dataclass_from_args(BaseTrainConfig, args)
    model = train(config, Path(args.out), resume=args.resume, device=args.device)
    print(f"model written to {model}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from noiseppo.presets import DEFAULT_PRESET, resolve
    from noiseppo.train import train

    if args.resume:
        given = [f for f in ("out", "config") if getattr(args, f)] + (["overrides"] if args.overrides else [])
        given += [f for f in TRAIN_FLAGS if getattr(args, f) is not None]
        if given or args.preset is not None:
            raise UserError("--resume RUN_DIR continues a run with its saved config; give no other settings")
        run = train(None, args.resume, resume=True)
    else:
        if not args.out:
            raise UserError("give --out RUN_DIR (or --resume RUN_DIR)")
        flags = {f: getattr(args, f) for f in TRAIN_FLAGS}
        config = resolve(args.preset or DEFAULT_PRESET, args.config, args.overrides, flags)
        run = train(config, args.out)
    print(f"policy written to {run / 'policy'}")
    return 0


def cmd_reward_server(args: argparse.Namespace) -> int:
    from noiseppo.rewards import get_reward
    from noiseppo.rewards.http import TOKEN_ENV, checked_token, is_loopback, make_server, redacted

    # Checked before the reward loads (seconds for a large model), and never printed.
    token = checked_token(args.token, "--token")
    if token is None:
        token = checked_token(os.environ.get(TOKEN_ENV), TOKEN_ENV)
    reward = get_reward(args.reward)
    server = make_server(
        reward, args.host, args.port, token=token, max_body_mb=args.max_body_mb, read_timeout=args.read_timeout,
        queue_timeout=args.queue_timeout,
    )  # fmt: skip
    host, port = server.server_address[:2]
    if token is None and not is_loopback(args.host):
        print(
            f"noiseppo: warning: serving on {args.host} without a token: anyone who can reach port {port} can "
            f"use this reward (give --token or set {TOKEN_ENV})",
            file=sys.stderr,
            flush=True,
        )
    needs = "bearer token required; " if token else ""
    shown = redacted(args.reward)  # a reward URL's fragment may hold its token
    print(f"serving reward '{shown}' at http://{host}:{port}/ ({needs}GET /health; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from noiseppo.backends import BACKENDS
    from noiseppo.policy import shipped_policies
    from noiseppo.presets import presets
    from noiseppo.prompts import PROMPT_SETS
    from noiseppo.rewards import REWARDS

    registries = {"prompts": PROMPT_SETS, "rewards": REWARDS, "backends": BACKENDS}
    if args.what in registries:
        listing = {name: description for name, (_, description) in registries[args.what].items()}
    else:
        listing = presets() if args.what == "presets" else shipped_policies()
    width = max([18, *(len(name) + 2 for name in listing)])
    for name, description in listing.items():
        print(f"{name:<{width}}{description}")
    return 0


def _add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", help="a registered backend (default: the policy's, else shapes)")
    parser.add_argument("--model", help="model folder or hub id (default: the backend's own)")
    parser.add_argument(
        "--scheduler",
        help="ddim, euler, dpm, or default: the model's own (DDIM for Shapes, the pipeline's for diffusers; "
        "sd3 and flux take only default)",
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument("--dtype", default="float32", help="float32, float16 or bfloat16")


TRAIN_FLAGS = ("backend", "model", "reward", "prompts", "steps", "iterations", "device", "dtype", "seed")
"""The settings people change most, also given as plain ``noiseppo train`` flags."""


def _config_help() -> str:
    from noiseppo.config import TrainConfig
    from noiseppo.dataclass_args import field_docs

    lines = ["config keys (YAML file or KEY=VALUE; defaults from the preset, see 'noiseppo list presets'):"]
    for key, doc in field_docs(TrainConfig).items():
        lines.append(f"  {key:<22}{doc}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    from noiseppo.config import BaseTrainConfig
    from noiseppo.dataclass_args import add_dataclass_arguments

    parser = _Parser(prog="noiseppo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    score = sub.add_parser("score", help="score images with a reward; one JSON object per image")
    score.add_argument("--reward", default="shapes", help="a registered reward (noiseppo list rewards)")
    score.add_argument(
        "--prompt", action="append", required=True, help="the prompt: once for all images, or once per image"
    )
    score.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    score.set_defaults(func=cmd_score)

    shapes = sub.add_parser("shapes", help="the embedded Shapes world")
    shapes_sub = shapes.add_subparsers(dest="shapes_command", required=True, metavar="COMMAND")
    render = shapes_sub.add_parser("render", help="render ground-truth scenes of the Shapes world")
    render.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    render.add_argument("--prompts", help="a prompt set (noiseppo list prompts) or a .txt/.jsonl file")
    render.add_argument("--n", type=_int_at_least(1), default=1, help="scenes per prompt")
    render.add_argument("--seed", type=_int_at_least(0), default=0, help="base seed (see noiseppo.seeds)")
    render.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    render.set_defaults(func=cmd_shapes_render)

    train_base = shapes_sub.add_parser("train-base", help="retrain the embedded Shapes model from scratch")
    train_base.add_argument("--out", required=True, help="run folder (checkpoint/, metrics.jsonl, model/)")
    train_base.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    add_dataclass_arguments(train_base, BaseTrainConfig)
    train_base.add_argument("--device", default="cpu", help="torch device (not saved: a run may resume elsewhere)")
    train_base.set_defaults(func=cmd_train_base)

    samp = sub.add_parser("sample", help="generate images with a frozen model (and, later, a noise policy)")
    samp.add_argument("--prompt", action="append", default=[], help="a prompt (repeatable)")
    samp.add_argument("--prompts", help="a prompt set (noiseppo list prompts) or a .txt/.jsonl file")
    samp.add_argument("--n", type=_int_at_least(1), default=4, help="images per prompt")
    samp.add_argument(
        "--steps", type=_int_at_least(1), help="sampling steps, 1-50 (default: the policy's training steps, else 4)"
    )
    samp.add_argument(
        "--guidance",
        type=float,
        help="classifier-free guidance scale (1.0: none; default: the policy's, else the model's)",
    )
    samp.add_argument("--seed", type=_int_at_least(0), default=0, help="base seed (see noiseppo.seeds)")
    samp.add_argument("--batch", type=_int_at_least(1), default=64, help="images per forward pass")
    _add_backend_arguments(samp)
    samp.add_argument("--policy", help="a run folder, a policy folder or a shipped policy (noiseppo list policies)")
    samp.add_argument(
        "--policy-mode", default="sample", choices=["sample", "mean"], help="policy latents: μ + σ ⊙ ε, or μ alone"
    )
    samp.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    samp.set_defaults(func=cmd_sample)

    ev = sub.add_parser("eval", help="paired evaluation of a noise policy against standard noise")
    ev.add_argument("--policy", required=True, help="a run folder, a policy folder or a shipped policy")
    ev.add_argument("--prompts", default="shapes-test", help="a prompt set or a .txt/.jsonl file")
    ev.add_argument("--steps", help="comma-separated step counts (default: the policy's training steps)")
    ev.add_argument("--seeds", type=_int_at_least(1), default=8, help="samples per prompt")
    ev.add_argument("--seed", type=_int_at_least(0), default=0, help="base seed (pairs with noiseppo sample)")
    ev.add_argument("--guidance", type=float, help="guidance scale (default: the policy's, else the model's own)")
    ev.add_argument("--reward", help="a registered reward (default: the policy's training reward)")
    ev.add_argument("--batch", type=_int_at_least(1), default=128, help="images per forward pass")
    ev.add_argument("--bootstrap", type=_int_at_least(100), default=10_000, help="bootstrap resamples")
    _add_backend_arguments(ev)
    ev.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    ev.set_defaults(func=cmd_eval)

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
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR exactly where it stopped")
    tr.add_argument("--backend", help="a registered backend (noiseppo list backends)")
    tr.add_argument("--model", help="model folder or hub id of the frozen model")
    tr.add_argument(
        "--reward",
        help="a registered reward (noiseppo list rewards), module:function, http://HOST:PORT/PATH or W*A+W*B",
    )
    tr.add_argument("--prompts", help="training prompts: a prompt set or a .txt/.jsonl file")
    tr.add_argument("--steps", type=_int_at_least(1), help="sampling steps of the frozen model")
    tr.add_argument("--iterations", type=_int_at_least(1), help="PPO iterations")
    tr.add_argument("--device", help="torch device")
    tr.add_argument("--dtype", help="dtype of the frozen model")
    tr.add_argument("--seed", type=_int_at_least(0), help="seed of the run")
    tr.set_defaults(func=cmd_train)

    serve = sub.add_parser(
        "reward-server",
        help="serve a reward over HTTP (the protocol of noiseppo.rewards.http)",
        description="Serve a reward over HTTP, so that a reward model can live in its own environment. "
        'POST {"prompts": [...], "images": [base64 PNG, ...]} to any path; the answer is {"scores": [...]}.',
    )
    serve.add_argument("--reward", required=True, help="a reward name, as for train (noiseppo list rewards)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=_int_at_least(0), default=8000, help="port (0: any free port)")
    serve.add_argument(
        "--token",
        help="require this bearer token (default: $NOISEPPO_REWARD_TOKEN, which, unlike a flag, other users "
        "cannot read in the process list); without one, a server off loopback warns",
    )
    serve.add_argument(
        "--max-body-mb",
        type=_positive_number,
        default=64.0,
        help="largest request body in MiB (default %(default)g; 413 beyond)",
    )
    serve.add_argument(
        "--read-timeout",
        type=_positive_number,
        default=30.0,
        help="seconds a client has to send its whole request (default %(default)g; 408 beyond)",
    )
    serve.add_argument(
        "--queue-timeout",
        type=_positive_number,
        default=30.0,
        help="seconds a request waits for the reward model while others are scored (default %(default)g; 503 beyond, "
        "which the client retries)",
    )
    serve.set_defaults(func=cmd_reward_server)

    listing = sub.add_parser("list", help="what a registry holds, one per line")
    listing.add_argument("what", choices=["presets", "rewards", "backends", "prompts", "policies"])
    listing.set_defaults(func=cmd_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except UserError as e:
        print(f"noiseppo: error: {e}", file=sys.stderr)
        return 2


def entry_point() -> NoReturn:
    sys.exit(main())
